"""A run's overrides go to the run overlay (overrides.yaml), never into params.yaml; dvc.yaml lists
each overridden key as a DVC param of exactly the stages that read it."""

from __future__ import annotations

import shutil

import pytest
import yaml

from skillmaster.config import load_config
from skillmaster.errors import ConfigError
from skillmaster.orchestration.overrides import write_run_overrides
from skillmaster.orchestration.plan import reads_setting, render_dvc_yaml


@pytest.fixture
def params(repo_root, tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", path)
    bank = load_config(path).skills.seed_bank
    (tmp_path / bank).parent.mkdir(parents=True)
    shutil.copy(repo_root / bank, tmp_path / bank)
    return path


def test_overrides_go_to_the_overlay_and_params_yaml_stays_byte_identical(params):
    before = params.read_bytes()
    write_run_overrides(params, ["rollout.num_tasks=8", "train.lora.r=8"])
    assert params.read_bytes() == before
    overlay = yaml.safe_load((params.parent / "overrides.yaml").read_text())
    assert overlay == {"rollout": {"num_tasks": 8}, "train": {"lora": {"r": 8}}}
    cfg = load_config(params)
    assert cfg.rollout.num_tasks == 8 and cfg.train.lora.r == 8
    assert load_config(params, run_overrides=False).rollout.num_tasks == 4


def test_the_next_run_replaces_the_overlay_and_no_overrides_empties_it(params):
    write_run_overrides(params, ["rollout.num_tasks=8"])
    write_run_overrides(params, ["eval.limit=2"])
    assert load_config(params).rollout.num_tasks == 4 and load_config(params).eval.limit == 2
    write_run_overrides(params, [])
    assert yaml.safe_load((params.parent / "overrides.yaml").read_text()) == {}
    assert load_config(params) == load_config(params, run_overrides=False)


def test_a_bad_override_leaves_params_and_the_overlay_untouched(params):
    write_run_overrides(params, ["eval.limit=2"])
    overlay, text = (params.parent / "overrides.yaml").read_text(), params.read_text()
    with pytest.raises(ConfigError, match="num_tasks"):
        write_run_overrides(params, ["rollout.num_tasks=-3"])
    assert params.read_text() == text and (params.parent / "overrides.yaml").read_text() == overlay


def test_dvc_yaml_lists_an_override_for_exactly_the_stages_that_read_it(params):
    root = params.parent
    plain = yaml.safe_load(render_dvc_yaml(load_config(params), root))["stages"]
    write_run_overrides(params, ["rollout.temperature=0.7"])
    stages = yaml.safe_load(render_dvc_yaml(load_config(params), root))["stages"]
    listed = {
        n for n, s in stages.items() if {"overrides.yaml": ["rollout.temperature"]} in s.get("params", [])
    }
    reading = {n for n, s in plain.items() if reads_setting(s.get("params", []), "rollout.temperature")}
    assert listed == reading and "collect-iter_001" in listed and "sft" not in listed
    # a setting no stage reads (MLflow's) reruns nothing
    write_run_overrides(params, ["tracking.experiment=other"])
    assert yaml.safe_load(render_dvc_yaml(load_config(params), root))["stages"] == plain


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        (["rollout"], "rollout.temperature", True),
        (["rollout.temperature"], "rollout.temperature", True),
        (["rollout.top_p"], "rollout.temperature", False),
        (["rollout.vllm.kv_cache_gib"], "rollout.vllm", True),
        (["eval"], "evaluation.x", False),
    ],
)
def test_reads_setting(settings, key, expected):
    assert reads_setting(settings, key) is expected


def test_config_override_is_the_dvc_route_to_the_same_overlay(params, repo_root, monkeypatch):
    """`skillmaster config override -o OVERLAY` writes the overlay the flow and the experiment
    runner write, and brings dvc.yaml in line, so a plain `dvc repro` runs the baseline."""
    from typer.testing import CliRunner

    from skillmaster.cli import app

    root = params.parent
    monkeypatch.chdir(root)
    before = params.read_bytes()
    grpo = repo_root / "configs/baseline-grpo.yaml"
    result = CliRunner().invoke(app, ["config", "override", "-o", str(grpo), "-S", "eval.limit=3"])
    assert result.exit_code == 0, result.output
    assert params.read_bytes() == before
    cfg = load_config(params)
    assert cfg.method == "grpo" and not cfg.skills.enabled and cfg.eval.limit == 3
    listed = {
        key
        for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
        for entry in stage.get("params", [])
        if isinstance(entry, dict)
        for key in entry.get("overrides.yaml", [])
    }
    assert {"eval.limit", "method", "skills.enabled"} <= listed
    assert CliRunner().invoke(app, ["config", "override"]).exit_code == 0  # nothing: empty it
    assert load_config(params) == load_config(params, run_overrides=False)
    assert "overrides.yaml" not in (root / "dvc.yaml").read_text()
    bad = CliRunner().invoke(app, ["config", "override", "-S", "rollout.num_tasks=-3"])
    assert bad.exit_code != 0 and load_config(params) == load_config(params, run_overrides=False)
