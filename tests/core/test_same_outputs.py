"""scripts/same_outputs.py: two projects' outputs compared file by file (JSON by value, timings
and the project's own path left out; other files byte for byte)."""

import importlib.util
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("same_outputs", REPO / "scripts" / "same_outputs.py")
same_outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(same_outputs)


def project(root: Path, success: float, seconds: float, table: bytes) -> Path:
    (root / "metrics" / "iter_001").mkdir(parents=True)
    (root / "data").mkdir()
    lock = {
        "stages": {
            "collect": {"outs": [{"path": "data/steps.parquet", "md5": "x"}, {"path": "metrics", "md5": "y"}]}
        }
    }
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    (root / "data" / "steps.parquet").write_bytes(table)
    metrics = {
        "success_rate": success,
        "seconds": seconds,
        "generation": {"tokens_per_s": seconds},
        "base": str(root / "models"),
    }
    (root / "metrics" / "iter_001" / "collect.json").write_text(json.dumps(metrics))
    return root


def test_timings_and_the_project_path_are_not_differences(tmp_path):
    a = project(tmp_path / "a", 0.5, 10.0, b"table")
    b = project(tmp_path / "b", 0.5, 99.0, b"table")
    r = same_outputs.compare(a, b)
    assert r["differ"] == [] and r["same"] == ["data/steps.parquet", "metrics/iter_001/collect.json"]
    assert same_outputs.main([str(a), str(b)]) == 0


def test_a_changed_value_or_file_is_a_difference(tmp_path, capsys):
    a = project(tmp_path / "a", 0.5, 10.0, b"table")
    b = project(tmp_path / "b", 0.25, 10.0, b"other table")
    r = same_outputs.compare(a, b)
    assert r["differ"] == [
        "data/steps.parquet (other bytes)",
        "metrics/iter_001/collect.json:/success_rate 0.5 -> 0.25",
    ]
    assert same_outputs.main([str(a), str(b)]) == 1
    assert same_outputs.main([str(a)]) == 2 and "usage" in capsys.readouterr().out
