"""The overlays in configs/: each loads over params.yaml, and each baseline turns off exactly its part."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillmaster.algo.advantages import ADVANTAGES
from skillmaster.config import Config, flatten, load_config, parse_set
from skillmaster.orchestration.plan import render_dvc_yaml
from skillmaster.skills.commit import COMMIT_POLICIES

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"
OVERLAYS = sorted((REPO / "configs").glob("*.yaml"))
BASELINES = {
    "baseline-grpo.yaml": {
        "method": "grpo",
        "skills.enabled": False,
        "review.enabled": False,
        "counterfactual.enabled": False,
    },
    "baseline-static-skills.yaml": {
        "method": "skillrl-static",
        "review.enabled": False,
        "counterfactual.enabled": False,
    },
    "baseline-no-counterfactual.yaml": {
        "method": "skillmaster-no-cf",
        "counterfactual.enabled": False,
        "counterfactual.commit": "all",
    },
    "baseline-merged-advantage.yaml": {"method": "skillmaster-merged-adv", "train.advantage": "merged"},
}
"""Each baseline → the settings it must change (and nothing else) relative to what it is stacked on."""


def changed(base: Config, other: Config) -> dict:
    a, b = flatten(base.model_dump(mode="json")), flatten(other.model_dump(mode="json"))
    return {k: b[k] for k in a if a[k] != b[k]}


def test_every_baseline_listed_here_exists_and_vice_versa():
    on_disk = {p.name for p in OVERLAYS if p.name.startswith("baseline-")}
    assert on_disk == set(BASELINES)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_loads_over_params(overlay):
    cfg = load_config(PARAMS, overlays=[overlay])
    assert isinstance(cfg, Config)
    assert cfg.train.advantage in ADVANTAGES
    assert cfg.counterfactual.commit in COMMIT_POLICIES


@pytest.mark.parametrize(
    "base",
    [[], ["configs/paper-alfworld.yaml"], ["configs/paper-webshop.yaml"]],
    ids=["params", "paper-alfworld", "paper-webshop"],
)
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_changes_exactly_its_settings(name, base):
    stack = [REPO / b for b in base]
    default = load_config(PARAMS, overlays=stack)
    baseline = load_config(PARAMS, overlays=[*stack, REPO / "configs" / name])
    assert changed(default, baseline) == BASELINES[name]
    assert baseline.fingerprint() != default.fingerprint()  # its own MLflow run


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_runs_with_dvc_exp_run_set_flags(name):
    """`skillmaster config sets` gives the same settings, and the baseline needs no new dvc.yaml,
    so `dvc exp run $(skillmaster config sets configs/<baseline>.yaml)` runs the same stages."""
    from skillmaster.cli import app

    overlay = REPO / "configs" / name
    result = CliRunner().invoke(app, ["config", "sets", str(overlay), "--params", str(PARAMS)])
    assert result.exit_code == 0, result.output
    words = shlex.split(result.stdout)
    assert words[::2] == ["-S"] * (len(words) // 2)
    sets = words[1::2]
    assert all(parse_set(s) for s in sets)
    via_sets = load_config(PARAMS, sets=sets)
    assert via_sets == load_config(PARAMS, overlays=[overlay])
    assert render_dvc_yaml(via_sets, REPO) == render_dvc_yaml(load_config(PARAMS), REPO)


def test_paper_alfworld_has_the_papers_settings():
    cfg = load_config(PARAMS, overlays=[REPO / "configs" / "paper-alfworld.yaml"])
    assert cfg.model.source == "Qwen/Qwen2.5-7B-Instruct" and cfg.model.device == "cuda"
    assert cfg.train.mixed_precision == "bf16" and not cfg.train.lora.enabled
    assert (cfg.rollout.num_tasks, cfg.rollout.group_size, cfg.env.max_steps) == (8, 8, 50)
    assert (cfg.rollout.history_length, cfg.skills.top_k_general) == (12, 13)
    assert (cfg.train.lr, cfg.train.kl_coef, cfg.train.review_adv_weight) == (1e-6, 0.01, 0.2)
    assert (cfg.train.clip_eps, cfg.train.dual_clip, cfg.train.entropy_coef, cfg.train.epochs) == (
        0.2,
        3.0,
        0.001,
        1,
    )
    assert (cfg.counterfactual.probes_per_edit, cfg.counterfactual.gamma) == (4, 0.2)
    assert (cfg.sft.epochs, cfg.sft.lr, cfg.sft.warmup_ratio) == (2, 1e-5, 0.1)
    assert cfg.eval.splits == ["valid_seen", "valid_unseen"] and cfg.eval.temperature == 0.4
    assert cfg.train.mini_batch_size % cfg.rollout.group_size == 0
    # the paper's utility and rewards; the CPU run's signal-making settings stay off
    cf = cfg.counterfactual
    assert (cf.score, cf.paired, cf.placebo_edits, cf.max_edits) == ("success", False, 0, None)
    assert cfg.train.progress_reward == 0.0 and cfg.review.prompt == "method"
    assert cfg.review.max_new_tokens == 512


def test_paper_webshop_stands_alone():
    """On params.yaml alone it has the paper's GPU settings; stacking paper-alfworld.yaml under it
    changes nothing but the cold start's settings, which WebShop does not use (sft.enabled false)."""
    web = REPO / "configs" / "paper-webshop.yaml"
    cfg = load_config(PARAMS, overlays=[web], run_overrides=False)
    assert cfg.env.name == "webshop" and not cfg.sft.enabled
    assert cfg.model.source == "Qwen/Qwen2.5-7B-Instruct" and cfg.model.device == "cuda"
    assert cfg.train.mixed_precision == "bf16" and not cfg.train.lora.enabled
    assert (cfg.rollout.num_tasks, cfg.rollout.group_size, cfg.env.max_steps) == (8, 8, 15)
    assert (cfg.rollout.history_length, cfg.skills.top_k_general, cfg.train.kl_coef) == (2, 6, 0.05)
    assert cfg.loop.iterations == 300 and cfg.eval.splits == ["test"]
    stacked = load_config(
        PARAMS, overlays=[REPO / "configs" / "paper-alfworld.yaml", web], run_overrides=False
    )
    assert all(k.startswith("sft.") for k in changed(cfg, stacked)), changed(cfg, stacked)
