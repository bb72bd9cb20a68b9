"""MLflow tracking on a real local store: params, stepped metrics, artifacts, run reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from skillmaster.config import Config, TrackingConfig
from skillmaster.tracking import RUN_ID_ENV, MlflowTracker, NullTracker, open_tracker, resolve_uri

pytestmark = pytest.mark.server


def test_resolve_uri_makes_sqlite_paths_absolute(tmp_path):
    assert resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_logs_and_reads_back_from_the_real_store(tmp_path):
    cfg = Config(tracking=TrackingConfig(experiment="t"))
    tracker = open_tracker(cfg, tmp_path)
    tracker.log_params({"extra": {"note": "hello"}})
    tracker.log_metrics({"eval/success_rate": 0.25}, step=1)
    tracker.log_metrics({"eval/success_rate": 0.5, "skip_nan": float("nan")}, step=2)
    art = tmp_path / "bank.json"
    art.write_text('{"general_skills": []}')
    tracker.log_artifact(art, "iter_001")
    tracker.close()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=resolve_uri(cfg.tracking.uri, tmp_path))
    run = client.get_run(tracker.run_id)
    assert run.data.params["extra.note"] == "hello"
    assert run.data.params["rollout.group_size"] == "2"  # the whole config is logged
    history = client.get_metric_history(tracker.run_id, "eval/success_rate")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert "skip_nan" not in run.data.metrics
    [listed] = client.list_artifacts(tracker.run_id, "iter_001")
    assert listed.path == "iter_001/bank.json"
    local = client.download_artifacts(tracker.run_id, "iter_001/bank.json", str(tmp_path / "dl"))
    assert Path(local).read_text() == art.read_text()
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlartifacts").is_dir()


def test_stages_of_one_pipeline_run_share_the_parent_run(tmp_path, monkeypatch):
    cfg = Config(tracking=TrackingConfig(experiment="t2"))
    a = open_tracker(cfg, tmp_path)
    a.close()
    b = open_tracker(cfg, tmp_path)  # same settings and code: same run
    assert b.run_id == a.run_id
    c = open_tracker(Config(seed=5, tracking=cfg.tracking), tmp_path)  # other settings: another run
    assert c.run_id != a.run_id
    monkeypatch.setenv(RUN_ID_ENV, c.run_id)  # a flow pins the run
    assert open_tracker(cfg, tmp_path).run_id == c.run_id
    assert isinstance(a, MlflowTracker)


def test_tracking_off_is_a_noop(tmp_path):
    cfg = Config(tracking=TrackingConfig(enabled=False))
    tracker = open_tracker(cfg, tmp_path)
    assert isinstance(tracker, NullTracker) and tracker.run_id is None
    tracker.log_metrics({"x": 1.0}, step=1)
    tracker.log_artifact(tmp_path)
    tracker.close()
    assert not (tmp_path / "mlflow.db").exists()


def test_only_rank_0_of_a_launch_opens_the_store(tmp_path, monkeypatch):
    """Under `accelerate launch` every rank runs the stage: one writer to the MLflow store."""
    cfg = Config(tracking=TrackingConfig(experiment="ranks"))
    monkeypatch.setenv("RANK", "1")
    assert isinstance(open_tracker(cfg, tmp_path), NullTracker)
    assert not (tmp_path / "mlflow.db").exists()
    monkeypatch.setenv("RANK", "0")
    assert isinstance(open_tracker(cfg, tmp_path), MlflowTracker)
    assert (tmp_path / "mlflow.db").exists()
