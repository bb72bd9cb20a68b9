"""The evaluate stage on real games: metrics JSON, the episodes behind it, the report's plots, and
``skillmaster eval`` agreeing with the stage.

One evaluation (module fixture) of the base model with the seed bank on 2 valid_seen games
(stratified over families, 2 steps each); the metrics must be exactly what the episodes table
says, and the report must turn them into the CSV and PNG that DVC and MLflow show.
"""

from __future__ import annotations

import csv
import json

import polars as pl
import pytest
import yaml
from tiny_project import seed_workdir, tiny_config, tiny_params

from skillmaster.plots import label
from skillmaster.stages import run_stage
from skillmaster.tables import TRAJECTORIES

pytestmark = [pytest.mark.model, pytest.mark.alfworld]

SPLIT = "valid_seen"
TIMINGS = ("seconds", "stage_seconds", "tracking_seconds")  # added by run_stage, not written


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, base_model_dir, alfworld_data):
    """(root, paths, cfg, stage metrics) after ``evaluate`` of iteration 0 and the report."""
    root = tmp_path_factory.mktemp("eval")
    cfg = tiny_config({"eval": {"splits": [SPLIT], "limit": 2}})
    paths = seed_workdir(root, base_model_dir, cfg)
    metrics = run_stage("evaluate", cfg, 0, root=root)
    run_stage("report", cfg, 0, root=root)
    return root, paths, cfg, metrics


def test_metrics_json_matches_the_episodes(evaluated):
    _, paths, cfg, metrics = evaluated
    written = json.loads(paths.metrics(0, "eval").read_text())
    assert written == {k: v for k, v in metrics.items() if k not in TIMINGS}
    episodes = TRAJECTORIES.read(paths.eval_dir(0) / "episodes.parquet")
    assert episodes.height == 2 and episodes["family"].n_unique() == 2  # one game of each of two families
    assert episodes["condition"].unique().to_list() == ["eval_skills"]
    assert episodes["length"].max() <= cfg.env.max_steps

    m = written[SPLIT]["eval_skills"]
    assert m["episodes"] == 2
    assert m["successes"] == int(episodes["won"].sum())
    assert m["success_rate"] == pytest.approx(float(episodes["won"].mean()))
    per_family = episodes.group_by("family").agg(pl.len().alias("n"), pl.col("won").sum().alias("wins"))
    assert m["by_family"] == {
        r["family"]: {"episodes": r["n"], "successes": r["wins"], "success_rate": r["wins"] / r["n"]}
        for r in per_family.iter_rows(named=True)
    }
    wins = episodes.filter(pl.col("won"))
    assert m["mean_success_length"] == (float(wins["length"].mean()) if wins.height else None)
    assert m["env_steps"] == int(episodes["length"].sum())


def test_report_writes_plots_from_the_metrics(evaluated):
    _, paths, _, metrics = evaluated
    m = metrics[SPLIT]["eval_skills"]
    with (paths.plots_dir / "success_by_family.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["iteration"] == "0"
    assert float(rows[0]["overall"]) == pytest.approx(m["success_rate"])
    for family, f in m["by_family"].items():
        assert float(rows[0][label(family)]) == pytest.approx(f["success_rate"])
    with (paths.plots_dir / "bank_size.csv").open() as f:
        bank_rows = list(csv.DictReader(f))
    assert bank_rows[0]["iteration"] == "0" and int(bank_rows[0]["total"]) > 0
    for name in ("success_by_family.png", "bank_size.png"):
        assert (paths.plots_dir / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
    summary = json.loads(paths.summary.read_text())
    assert summary["iterations"][0]["eval"] == {k: v for k, v in metrics.items() if k not in TIMINGS}


def test_eval_command_agrees_with_the_stage(evaluated, monkeypatch):
    """``skillmaster eval`` plays the same games with the same seeds as the stage (same policy, newest bank)."""
    from typer.testing import CliRunner

    from skillmaster.cli import app

    root, _, _, metrics = evaluated
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params({"eval": {"splits": [SPLIT], "limit": 2}})))
    monkeypatch.chdir(root)
    out = CliRunner().invoke(app, ["eval", "--split", SPLIT, "--limit", "2", "--json", "--out", "evalout"])
    assert out.exit_code == 0, out.output
    reported = json.loads(out.stdout[out.stdout.index("{") :])
    assert reported[SPLIT] == metrics[SPLIT]
    assert reported["generation"]["engine"] == "hf" and reported["generation"]["sequences"] > 0
    # --out keeps the episodes and the metrics
    kept = json.loads((root / "evalout" / "metrics.json").read_text())
    assert kept[SPLIT] == metrics[SPLIT] and kept["generation"]["engine"] == "hf"
    episodes = pl.read_parquet(root / "evalout" / "episodes.parquet")
    assert episodes.height == 2 and set(episodes["split"]) == {SPLIT}
    # a second run into the same folder is refused before it plays anything; the first result stays
    again = CliRunner().invoke(app, ["eval", "--split", SPLIT, "--limit", "2", "--out", "evalout"])
    assert again.exit_code != 0 and "already holds an evaluation" in str(again.exception)
    assert json.loads((root / "evalout" / "metrics.json").read_text()) == kept


def test_a_stage_step_limit_above_env_max_steps_is_honoured(alfworld_data, tmp_path):
    """eval.max_steps / counterfactual.max_steps above env.max_steps: the environment must not
    truncate the episode at env.max_steps (it once did)."""
    from skillmaster.paths import Paths
    from skillmaster.stages import StageContext
    from skillmaster.stages.common import suite_of

    ctx = StageContext(
        cfg=tiny_config({"env": {"max_steps": 1}}), iteration=0, paths=Paths(tmp_path), root=tmp_path
    )
    assert suite_of(ctx).max_steps == 1
    suite = suite_of(ctx, 3)
    task = suite.tasks(SPLIT)[0]
    env = suite.make_env()
    env.reset(options={"task_id": task.task_id, "split": task.split})
    assert [env.step("look")[3] for _ in range(3)] == [False, False, True]


def test_a_killed_evaluation_resumes_at_its_first_unfinished_chunk(evaluated, monkeypatch):
    """``skillmaster eval --out --chunk 1``: a kill in the second chunk keeps the first; the rerun
    plays only the second, and the result is the stage's (chunking changes no episode)."""
    from typer.testing import CliRunner

    import skillmaster.stages.evaluate as ev
    from skillmaster.cli import app

    root, _, _, metrics = evaluated
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params({"eval": {"splits": [SPLIT], "limit": 2}})))
    monkeypatch.chdir(root)
    real, played = ev.collect_episodes, []

    def killed_in_second_chunk(policy, pool, episodes, *args, **kwargs):
        played.append([e.traj_id for e in episodes])
        if len(played) == 2:
            raise KeyboardInterrupt
        return real(policy, pool, episodes, *args, **kwargs)

    monkeypatch.setattr(ev, "collect_episodes", killed_in_second_chunk)
    args = ["eval", "--split", SPLIT, "--limit", "2", "--json", "--out", "chunked", "--chunk", "1"]
    assert CliRunner().invoke(app, args).exit_code != 0
    partial = root / "chunked" / ev.PARTIAL
    assert (partial / SPLIT / "chunk_000" / "COMPLETE").is_file() and not (
        partial / SPLIT / "chunk_001"
    ).exists()
    assert not (root / "chunked" / "metrics.json").exists()

    played.clear()
    monkeypatch.setattr(ev, "collect_episodes", lambda *a, **k: played.append(a[2]) or real(*a, **k))
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert [[e.traj_id for e in eps] for eps in played] == [[f"{SPLIT}-eval_skills-0001"]]  # only the second
    reported = json.loads(out.stdout[out.stdout.index("{") :])
    assert reported[SPLIT] == metrics[SPLIT]
    # the generation counters are the whole evaluation's, also the chunk the killed process played
    whole = CliRunner().invoke(app, ["eval", "--split", SPLIT, "--limit", "2", "--json"])
    assert whole.exit_code == 0, whole.output
    once = json.loads(whole.stdout[whole.stdout.index("{") :])["generation"]
    counted = ("sequences", "prompt_tokens", "generated_tokens")
    assert once["sequences"] > 0
    assert {k: reported["generation"][k] for k in counted} == {k: once[k] for k in counted}
    assert [c["episodes"] for c in reported["chunks"]] == [1, 1]
    assert all(c["seconds"] > 0 for c in reported["chunks"])
    assert json.loads((root / "chunked" / "metrics.json").read_text())["chunks"] == reported["chunks"]
    assert not partial.exists()  # the finished part is gone once the result is written

    # a partial result of another evaluation is never mixed in: one sentence, before anything plays
    (root / "other").mkdir()
    (root / "other" / ev.PARTIAL).mkdir()
    (root / "other" / ev.PARTIAL / "request.json").write_text('{"split": "train"}')
    other = CliRunner().invoke(app, ["eval", "--split", SPLIT, "--limit", "2", "--out", "other"])
    assert other.exit_code != 0 and "holds the finished part of a different evaluation" in str(
        other.exception
    )
