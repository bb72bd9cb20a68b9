"""Issue #21: stages under faults, injected the way they were found.

- a full disk: ``RLIMIT_FSIZE`` in the stage's process (writes past the limit fail with EFBIG, and
  the environments' resets fail as they did on a full disk: textworld copies its planner library
  into a temporary folder on every start);
- read-only folders (as root, the subprocess drops CAP_DAC_OVERRIDE so that the mode bits count);
- corrupt or inconsistent input tables, a missing SFT model, an unusable MLflow store.

Each test checks the one-sentence error and that the previous outputs are byte for byte what they
were (nothing half-written, nothing deleted, no temporary file left behind).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from tiny_project import REPO, seed_workdir, tiny_config, tiny_params

from skillmaster.errors import DataError, EnvFailure
from skillmaster.paths import Paths
from skillmaster.stages import run_stage
from skillmaster.tables import REVIEWS, STEPS, TRAJECTORIES

SEED_BANK = str(REPO / "src" / "skillmaster" / "resources" / "seed_bank_alfworld_small.json")
OTHER_BANK = {"general_skills": [{"skill_id": "g", "title": "Look first", "principle": "Read the room."}]}
FULL_DISK = 4096
"""Bytes a process may write into one file: enough for nothing the stages write."""


def project(root: Path, *overrides: dict) -> Path:
    """Write the tiny settings (seed bank by absolute path) as ``root/params.yaml``."""
    data = tiny_params({"skills": {"seed_bank": SEED_BANK}}, *overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def _drop_dac() -> None:
    """As root, give up the power to write into folders whose mode forbids it (PR_CAPBSET_DROP of
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH before exec): then mode 0555 means read-only."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):
            libc.prctl(24, cap, 0, 0, 0)


def cli(root: Path, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``skillmaster *args`` in ``root``, optionally on a "full disk" (RLIMIT_FSIZE)."""

    def limits() -> None:
        _drop_dac()
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "skillmaster.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limits,
    )


def one_sentence(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last, out.stderr
    assert "Traceback" not in out.stderr


def snapshot(root: Path, *folders: str) -> dict[str, bytes]:
    """Every file under ``folders`` (relative name → bytes), temporaries included."""
    out = {}
    for folder in folders:
        for p in sorted((root / folder).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def read_only_works(tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp("ro") / "ro"
    folder.mkdir(mode=0o555)
    probe = subprocess.run(["touch", str(folder / "x")], preexec_fn=_drop_dac, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("this machine cannot make a folder read-only for the tests' user")


# --------------------------------------------------------------------------- a full disk
@pytest.mark.alfworld
@pytest.mark.model
def test_full_disk_sft_data_fails_and_keeps_the_samples(tmp_path, base_model_dir, alfworld_data):
    root = project(tmp_path, {"sft": {"enabled": True, "num_games": 1, "search_detours": 0}})
    cfg = tiny_config({"sft": {"enabled": True, "num_games": 1, "search_detours": 0}})
    paths = seed_workdir(root, base_model_dir, cfg)
    run_stage("sft-data", cfg, 0, root=root)
    assert pl.read_parquet(paths.sft_data).height > 0
    before = snapshot(root, "data")
    out = cli(root, "stage", "sft-data", fsize=FULL_DISK)
    one_sentence(out, "episodes ended in an environment error")
    assert "1 of 1" in out.stderr and "File too large" in out.stderr
    assert snapshot(root, "data") == before


@pytest.mark.alfworld
@pytest.mark.model
@pytest.mark.parametrize(("stage", "iteration"), [("collect", 1), ("evaluate", 0)])
def test_full_disk_collect_and_evaluate_fail_before_writing(
    tmp_path, base_model_dir, alfworld_data, stage, iteration
):
    root = project(tmp_path)
    paths = seed_workdir(root, base_model_dir, tiny_config())
    # the previous (good) outputs of both stages, which a failed run must leave as they are
    STEPS.write(STEPS.empty(), paths.steps(1))
    TRAJECTORIES.write(TRAJECTORIES.empty(), paths.trajectories(1))
    TRAJECTORIES.write(TRAJECTORIES.empty(), paths.eval_dir(0) / "episodes.parquet")
    before = snapshot(root, "data")
    out = cli(root, "stage", stage, "--iteration", str(iteration), fsize=FULL_DISK)
    one_sentence(out, "episodes ended in an environment error")
    assert snapshot(root, "data") == before
    assert not (root / "metrics").exists()
    assert not list(paths.state.rglob("COMPLETE"))  # no shard of errors kept for a resume


def test_env_error_threshold_is_more_than_half():
    from skillmaster.stages.common import MAX_ENV_ERROR_SHARE, check_env_errors

    def trajs(reasons):
        return pl.DataFrame(
            {"end_reason": reasons, "error": ["OSError: disk full" if r == "error" else "" for r in reasons]}
        )

    assert MAX_ENV_ERROR_SHARE == 0.5
    check_env_errors(trajs(["error", "won"]), "stage")  # half: the stage goes on
    check_env_errors(trajs([]), "stage")
    with pytest.raises(
        EnvFailure, match=r"stage: 2 of 3 episodes ended in an environment error \(first: OSError"
    ):
        check_env_errors(trajs(["error", "step_limit", "error"]), "stage")


def test_full_disk_bank_init_keeps_the_previous_bank(tmp_path):
    root = project(tmp_path)
    run_stage("bank-init", tiny_config({"skills": {"seed_bank": SEED_BANK}}), 0, root=root)
    other = tmp_path / "other_bank.json"
    other.write_text(json.dumps(OTHER_BANK))
    before = snapshot(root, "data")
    out = cli(root, "stage", "bank-init", "-S", f"skills.seed_bank={other}", fsize=1024)
    # the kept previous version is written first, and fails first
    one_sentence(
        out, f"{Paths(root).bank(0).with_name('iter_000.prev.json')}: File too large (the file size limit"
    )
    assert snapshot(root, "data") == before  # the bank is never deleted before the new one is written


def test_bank_init_keeps_the_replaced_bank_and_refuses_a_corrupt_one(tmp_path):
    root = project(tmp_path)
    cfg = tiny_config({"skills": {"seed_bank": SEED_BANK}})
    bank = Paths(root).bank(0)
    run_stage("bank-init", cfg, 0, root=root)
    seed = bank.read_bytes()
    other = tmp_path / "other_bank.json"
    other.write_text(json.dumps(OTHER_BANK))
    run_stage("bank-init", tiny_config({"skills": {"seed_bank": str(other)}}), 0, root=root)
    assert bank.with_name("iter_000.prev.json").read_bytes() == seed  # the kept previous version
    bank.write_text('{"general_skills": [')
    with pytest.raises(DataError, match="refusing to overwrite"):
        run_stage("bank-init", cfg, 0, root=root)
    assert bank.read_text() == '{"general_skills": ['


# --------------------------------------------------------------------------- read-only folders
def test_read_only_output_folder_is_one_sentence_before_any_work(tmp_path, read_only_works):
    root = project(tmp_path)
    run_stage("bank-init", tiny_config({"skills": {"seed_bank": SEED_BANK}}), 0, root=root)
    banks = Paths(root).bank(0).parent
    before = snapshot(root, "data")
    banks.chmod(0o555)
    try:
        out = cli(root, "stage", "bank-init", "-S", f"skills.seed_bank={tmp_path / 'missing.json'}")
    finally:
        banks.chmod(0o755)
    # the folder is checked before the stage reads its input (the seed bank does not even exist)
    one_sentence(out, f"{banks}: Permission denied (check that the folder is writable by you")
    assert snapshot(root, "data") == before


def test_read_only_eval_out_fails_before_the_evaluation(tmp_path, read_only_works):
    root = project(tmp_path)
    results = tmp_path / "results"
    results.mkdir(mode=0o555)
    out = cli(root, "eval", "--no-skills", "--out", str(results / "base"))
    one_sentence(out, f"{results}: Permission denied")


# --------------------------------------------------------------------------- MLflow
def test_unwritable_mlflow_store_fails_the_stage_at_once(tmp_path, read_only_works):
    store = tmp_path / "store"
    store.mkdir(mode=0o555)
    root = project(tmp_path, {"tracking": {"enabled": True, "uri": f"sqlite:///{store}/mlflow.db"}})
    out = cli(root, "stage", "review", "--iteration", "1")  # no collection here: only the store fails
    one_sentence(out, f"MLflow store sqlite:///{store}/mlflow.db cannot be opened or written")
    assert "tracking.enabled: false" in out.stderr


# --------------------------------------------------------------------------- the SFT model
def test_evaluation_never_falls_back_to_the_base_model(tmp_path, base_model_dir):
    root = project(tmp_path)
    cfg = tiny_config({"sft": {"enabled": True}, "skills": {"seed_bank": SEED_BANK}})
    seed_workdir(root, base_model_dir, cfg)
    with pytest.raises(
        DataError, match=r"models/sft: the SFT model is missing or incomplete while sft.enabled"
    ):
        run_stage("evaluate", cfg, 0, root=root)
    out = cli(root, "eval", "--no-skills", "-S", "sft.enabled=true")
    one_sentence(out, "the SFT model is missing or incomplete")
    assert not Paths(root).eval_dir(0).exists()


def test_eval_episode_ids_are_the_same_in_every_iteration(tmp_path, monkeypatch):
    """Paired evaluation: the episode id seeds the sampling, so it must not contain the iteration."""
    import contextlib

    import skillmaster.stages.evaluate as ev
    from skillmaster.envs.base import TaskSpec
    from skillmaster.stages import StageContext

    seen: dict[int, list[str]] = {}
    tasks = [TaskSpec(f"t{i}", "fam", "cat", "valid_seen") for i in range(3)]

    def fake_collect(policy, pool, episodes, settings, retriever, desc=""):
        seen.setdefault(episodes[0].iteration, []).extend(e.traj_id for e in episodes)
        seeds = {settings.seed}
        seen.setdefault(-1, []).extend(str(s) for s in seeds)
        return STEPS.empty(), TRAJECTORIES.empty()

    monkeypatch.setattr(ev, "collect_episodes", fake_collect)
    monkeypatch.setattr(ev, "make_pool", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(ev, "eval_tasks", lambda ctx, splits, limit: dict.fromkeys(splits, tasks))
    monkeypatch.setattr(ev, "retriever_of", lambda ctx: None)
    cfg = tiny_config()
    for it in (0, 1, 2):
        ctx = StageContext(cfg=cfg, iteration=it, paths=Paths(tmp_path), root=tmp_path)
        ev.evaluate(ctx, None, None, ["valid_seen"], ["eval_skills", "eval_no_skills"], None)
    assert seen[0] == seen[1] == seen[2] and len(set(seen[0])) == 6
    assert len(set(seen[-1])) == 1  # one sampling seed for every iteration


# --------------------------------------------------------------------------- empty or inconsistent tables
def _trajectory(traj_id: str, length: int) -> dict:
    return {
        "iteration": 1, "task_id": "t", "group_id": 0, "traj_id": traj_id, "split": "train",
        "family": "pick_and_place_simple", "category": "pick_and_place", "task_text": "put a mug on a desk",
        "won": False, "score": 0.0, "episode_reward": 0.0, "penalty_total": 0.0, "length": length,
        "invalid_count": 0, "end_reason": "step_limit", "error": "", "skills_shown": [], "skills_block": "",
        "initial_observation": "You are in a room.", "final_observation": "Nothing happens.",
        "condition": "train", "probe_of": "", "probe": -1, "temperature": 1.0,
    }  # fmt: skip


def _step(traj_id: str, step: int) -> dict:
    return {
        "iteration": 1, "task_id": "t", "group_id": 0, "traj_id": traj_id, "step": step, "prompt": "p",
        "prefix_chars": 0, "response": "r", "response_ids": [1], "action": "look", "valid": True,
        "faults": [], "penalty": 0.0, "observation": "o", "env_reward": 0.0, "done": False,
        "prompt_tokens": 1, "response_tokens": 1, "temperature": 1.0, "top_p": 1.0, "engine": "hf",
    }  # fmt: skip


BROKEN_COLLECTIONS = {
    "empty steps": (
        [_trajectory("a", 2), _trajectory("b", 1)],
        [],
        "trajectory 'a' has 2 steps but the steps table holds 0 rows",
    ),
    "no trajectories": ([], [], "the trajectories table is empty"),
    "missing steps": (
        [_trajectory("a", 2), _trajectory("b", 1)],
        [_step("a", 0), _step("a", 1)],
        "trajectory 'b' has 1 steps but the steps table holds 0 rows",
    ),
    "steps of an unknown trajectory": (
        [_trajectory("a", 1)],
        [_step("a", 0), _step("z", 0)],
        "rows of trajectories that do not exist ('z')",
    ),
    "a trajectory twice": ([_trajectory("a", 0), _trajectory("a", 0)], [], "trajectory 'a' appears twice"),
}


def _no_model(*_a, **_k):
    raise AssertionError("the stage loaded the model before checking its inputs")


@pytest.mark.parametrize("stage", ["review", "train"])
@pytest.mark.parametrize("case", sorted(BROKEN_COLLECTIONS))
def test_inconsistent_collection_fails_before_the_model_loads(tmp_path, monkeypatch, stage, case):
    import skillmaster.stages.review as review_mod
    import skillmaster.train.grpo as grpo

    monkeypatch.setattr(review_mod, "load_policy", _no_model)
    monkeypatch.setattr(grpo, "train_iteration", _no_model)
    trajs, steps, needle = BROKEN_COLLECTIONS[case]
    root = project(tmp_path)
    cfg = tiny_config({"skills": {"seed_bank": SEED_BANK}})
    paths = Paths(root)
    run_stage("bank-init", cfg, 0, root=root)
    STEPS.write(STEPS.from_rows(steps), paths.steps(1))
    TRAJECTORIES.write(TRAJECTORIES.from_rows(trajs), paths.trajectories(1))
    REVIEWS.write(REVIEWS.empty(), paths.reviews(1))  # a previous review table, to be kept
    before = snapshot(root, "data")
    with pytest.raises(DataError, match=re.escape(needle)):
        run_stage(stage, cfg, 1, root=root)
    assert snapshot(root, "data") == before


def test_null_rows_are_a_clear_error(tmp_path, monkeypatch):
    import skillmaster.stages.review as review_mod

    monkeypatch.setattr(review_mod, "load_policy", _no_model)
    root = project(tmp_path)
    cfg = tiny_config({"skills": {"seed_bank": SEED_BANK}})
    paths = Paths(root)
    run_stage("bank-init", cfg, 0, root=root)
    STEPS.write(STEPS.empty(), paths.steps(1))
    frame = TRAJECTORIES.from_rows([_trajectory("a", 0)]).with_columns(
        pl.lit(None, pl.Utf8).alias("task_text")
    )
    paths.trajectories(1).parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(paths.trajectories(1))  # written by something else than the pipeline
    with pytest.raises(DataError, match=r"missing \(null\) values in \['task_text'\]"):
        run_stage("review", cfg, 1, root=root)
    assert not paths.reviews(1).exists()


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([], "the reviews table is empty while review.enabled is true"),
        ([{"status": "added", "edit": ""}], "has status added but no readable edit"),
        ([{"status": "updated", "edit": '{"kind": "teleport"}'}], "has status updated but no readable edit"),
    ],
)
def test_counterfactual_checks_the_reviews_before_anything(tmp_path, monkeypatch, rows, needle):
    import skillmaster.stages.counterfactual as cf

    monkeypatch.setattr(cf, "load_policy", _no_model)
    root = project(tmp_path)
    cfg = tiny_config({"skills": {"seed_bank": SEED_BANK}})
    paths = Paths(root)
    run_stage("bank-init", cfg, 0, root=root)
    base = {name: "" for name, dtype in REVIEWS.columns.items() if dtype == pl.Utf8}
    full = [
        base | {"iteration": 1, "group_id": 0, "traj_id": f"r{i}", "prefix_chars": 0, "response_ids": [],
                "prompt_tokens": 0, "response_tokens": 0, "shaping": 0.0, "shaping_flags": [],
                "temperature": 1.0, "top_p": 1.0} | row
        for i, row in enumerate(rows)
    ]  # fmt: skip
    REVIEWS.write(REVIEWS.from_rows(full), paths.reviews(1))
    with pytest.raises(DataError, match=needle):
        run_stage("counterfactual", cfg, 1, root=root)
    assert not paths.bank(1).exists() and not paths.counterfactual_dir(1).exists()


@pytest.mark.alfworld
def test_eval_with_an_unknown_split_fails_before_the_model_loads(tmp_path, monkeypatch, alfworld_data):
    import skillmaster.stages.evaluate as ev
    from skillmaster.errors import SkillMasterError

    monkeypatch.setattr(ev, "load_policy", _no_model)
    root = project(tmp_path)
    cfg = tiny_config({"skills": {"seed_bank": SEED_BANK}, "eval": {"splits": ["valid_sean"]}})
    run_stage("bank-init", cfg, 0, root=root)
    (root / "models" / "base").mkdir(parents=True)
    (root / "models" / "base" / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(SkillMasterError, match="'valid_sean' is not an ALFWorld split"):
        run_stage("evaluate", cfg, 0, root=root)
