"""``skillmaster bench engines`` counts engines from the stages' generation counters (hand-made
metrics in the shapes both routes write); the runs themselves are what the command measures."""

import json

import pytest
from typer.testing import CliRunner

from skillmaster.bench.engines import engine_starts, format_engines_report
from skillmaster.cli import app


def _write(root, rel, generation):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"success_rate": 0.5, "generation": generation}))


def _gen(starts, seconds, tokens):
    return {"engine": "vllm", "engine_starts": starts, "engine_start_seconds": seconds, "tokens": tokens}


def test_dvc_repro_counts_an_engine_per_stage(tmp_path):
    _write(tmp_path, "iter_000/eval.json", _gen(1, 30.0, 100))
    _write(tmp_path, "iter_001/collect.json", _gen(1, 25.5, 80))
    _write(tmp_path, "iter_001/review.json", _gen(1, 27.25, 40))
    _write(tmp_path, "iter_001/train.json", {"engine": "none"})  # no starts: not an engine
    (tmp_path / "summary.json").write_text(json.dumps({"iterations": []}))
    assert engine_starts(tmp_path) == (3, pytest.approx(82.75))


def test_the_flow_counts_its_one_engine_once(tmp_path):
    """In the flow the counters are the engine's whole life, repeated in every stage it served."""
    for rel, tokens in [
        ("iter_000/eval.json", 100),
        ("iter_001/collect.json", 180),
        ("iter_001/eval.json", 260),
    ]:
        _write(tmp_path, rel, _gen(1, 31.8, tokens))
    assert engine_starts(tmp_path) == (1, pytest.approx(31.8))


def test_no_metrics_no_engines(tmp_path):
    assert engine_starts(tmp_path) == (0, 0)


def test_the_report_names_the_baseline_and_the_ratio():
    report = {
        "profile": "quick",
        "sides": {
            "dvc repro": {"wall_seconds": 600.0, "engine_starts": 9, "engine_start_seconds": 240.0},
            "flow": {"wall_seconds": 210.0, "engine_starts": 1, "engine_start_seconds": 30.0},
        },
        "wall_ratio": 0.35,
        "start_seconds_saved": 210.0,
        "start_share_of_dvc_repro": 0.4,
    }
    text = format_engines_report(report)
    assert "dvc repro (baseline)" in text and "9 engine starts" in text
    assert "ratio flow / dvc repro 0.350" in text and "40.0% of the dvc repro run" in text


def test_one_side_reports_no_ratio():
    """`--side flow` times one route alone: the report says it has no baseline instead of a ratio."""
    report = {
        "profile": "params.yaml as make run uses it",
        "sides": {"flow": {"wall_seconds": 5400.0, "engine_starts": 1, "engine_start_seconds": 33.0}},
    }
    text = format_engines_report(report)
    assert "flow, one engine" in text and "1 engine starts" in text
    assert "no ratio" in text and "dvc repro (baseline)" not in text


def test_an_unknown_side_is_one_sentence_before_anything_runs(tmp_path):
    result = CliRunner().invoke(app, ["bench", "engines", "--side", "dvc", "--model-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--side takes 'dvc repro' or 'flow'" in " ".join(result.output.split())
