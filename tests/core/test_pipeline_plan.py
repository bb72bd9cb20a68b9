"""dvc.yaml is generated from params.yaml: the committed file is in sync, the stage graph is the loop."""

from __future__ import annotations

import yaml

from skillmaster.config import load_config
from skillmaster.orchestration.plan import check_in_sync, render_dvc_yaml, stage_plan


def test_committed_dvc_yaml_matches_params(repo_root):
    check_in_sync(load_config(repo_root / "params.yaml"), repo_root)


def test_plan_is_the_loop_with_one_stage_per_iteration_step(repo_root):
    cfg = load_config(repo_root / "params.yaml", sets=["loop.iterations=2"])
    names = [s.name for s in stage_plan(cfg, repo_root)]
    assert names[:5] == ["model", "bank-init", "sft-data", "sft", "evaluate-iter_000"]
    for it in ("iter_001", "iter_002"):
        steps = [n for n in names if n.endswith(it)]
        assert steps == [f"{s}-{it}" for s in ("collect", "review", "counterfactual", "train", "evaluate")]
    assert names[-1] == "report"
    # every code dependency is a real file of the package
    for spec in stage_plan(cfg, repo_root):
        for dep in spec.deps:
            if dep.startswith("src/"):
                assert (repo_root / dep).is_file(), dep


def test_iteration_two_depends_on_iteration_one(repo_root):
    cfg = load_config(repo_root / "params.yaml", sets=["loop.iterations=2"])
    doc = yaml.safe_load(render_dvc_yaml(cfg, repo_root))["stages"]
    assert "cmd" in doc["collect-iter_002"]
    deps = " ".join(doc["collect-iter_002"]["deps"])
    assert "iter_001" in deps  # the bank and the policy of the previous iteration


def test_accelerate_config_runs_train_under_accelerate_launch(repo_root):
    cfg = load_config(
        repo_root / "params.yaml", sets=["train.accelerate_config=configs/accelerate/multi-gpu-ddp.yaml"]
    )
    doc = yaml.safe_load(render_dvc_yaml(cfg, repo_root))["stages"]
    assert doc["train-iter_001"]["cmd"] == (
        "accelerate launch --config_file configs/accelerate/multi-gpu-ddp.yaml "
        "-m skillmaster.cli stage train --iteration 1"
    )
    assert doc["collect-iter_001"]["cmd"] == "skillmaster stage collect --iteration 1"


def test_a_missing_accelerate_config_is_one_clear_error(repo_root):
    import pytest

    from skillmaster.errors import ConfigError

    cfg = load_config(
        repo_root / "params.yaml", sets=["train.accelerate_config=configs/accelerate/nope.yaml"]
    )
    with pytest.raises(ConfigError, match=r"train\.accelerate_config"):
        stage_plan(cfg, repo_root)


def test_a_training_parameter_touches_only_the_train_stages(repo_root):
    cfg = load_config(repo_root / "params.yaml")
    direct = [
        s.name for s in stage_plan(cfg, repo_root) if any(p == "train" or p == "train.lr" for p in s.params)
    ]
    assert direct == [f"train-iter_{i:03d}" for i in range(1, cfg.loop.iterations + 1)]


def test_plumbing_is_no_code_dependency(repo_root):
    """Editing a comment in config.py (or paths, io, tracking, the stage framework) changes no
    stage's dependencies, so `dvc status` stays clean; each stage still depends on its own code."""
    from skillmaster.orchestration.plan import PLUMBING

    cfg = load_config(repo_root / "params.yaml")
    plumbing = {"src/" + m.replace(".", "/") + ".py" for m in PLUMBING} | {
        "src/" + m.replace(".", "/") + "/__init__.py" for m in PLUMBING
    }
    for stage in stage_plan(cfg, repo_root):
        code = [d for d in stage.deps if d.startswith("src/")]
        assert code, stage.name
        assert not plumbing & set(code), (stage.name, plumbing & set(code))
    assert "src/skillmaster/config.py" not in (repo_root / "dvc.yaml").read_text()
