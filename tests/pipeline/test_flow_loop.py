"""The Prefect flow end to end in a fresh git + DVC repository, at minimal size.

One real run (module fixture): the real 135M model and real ALFWorld games, every stage of the
plan (the SFT cold start, evaluate-iter_000, one iteration of collect → review → counterfactual →
train → evaluate, the report), called in-process against a temporary Prefect API, with the
settings each stage reads recorded. Then DVC must see every stage as recorded (``dvc status``
clean, ``dvc repro`` has nothing to do), MLflow must hold the stages' metrics in one parent run,
the metrics and plots files must exist, and every setting a stage read must be one its contract
declares (so DVC reruns it when that setting changes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from settings_trace import declared, record_settings
from tiny_project import REPO, tiny_params

from skillmaster import stages
from skillmaster.config import Config
from skillmaster.orchestration import project
from skillmaster.orchestration.plan import stage_plan
from skillmaster.orchestration.project import run_tool
from skillmaster.paths import Paths
from skillmaster.stages import contract_of
from skillmaster.stages.contract import EXECUTION_SETTINGS

pytestmark = [pytest.mark.model, pytest.mark.alfworld, pytest.mark.server]

# one task (a group of G=2 rollouts) and one eval game: the shortest run that still goes through
# every stage (test_sharded_rollout and test_eval_stage cover larger batches)
FLOW_SETTINGS = {
    "rollout": {"num_tasks": 1, "engine": "vllm", "vllm": {"kv_cache_gib": 1}},
    "eval": {"limit": 1},
    "tracking": {"enabled": True, "experiment": "flow-test"},
    # the cold start on one game, one epoch, a few review targets
    "sft": {"enabled": True, "num_games": 1, "epochs": 1, "search_detours": 0, "reviews_per_episode": 1},
}
STAGES = [
    "model",
    "bank-init",
    "sft-data",
    "sft",
    "evaluate-iter_000",
    "collect-iter_001",
    "review-iter_001",
    "counterfactual-iter_001",
    "train-iter_001",
    "evaluate-iter_001",
    "report",
]


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    return run_tool(cmd, cwd, timeout=timeout)


def make_project(root: Path, base_model: Path, params: dict) -> Config:
    """A fresh git + DVC repo (see :mod:`skillmaster.orchestration.project`). dvc.yaml lists no code
    dependencies here: they are the package's source files, outside this repo."""
    return project.make_project(root, REPO, base_model, params)


@pytest.fixture(scope="module", autouse=True)
def dvc_state_in_tmp(tmp_path_factory):
    """DVC keeps per-repo state under a site cache folder (/var/tmp/dvc by default): keep it in tmp."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_SITE_CACHE_DIR", str(tmp_path_factory.mktemp("dvc-site")))
        yield


READS: dict[str, set[str]] = {}
"""Settings each stage read during the flow run (stage name -> dotted keys)."""


def _recording(name: str, fn):
    def run(ctx):
        with record_settings(ctx.cfg) as touched:
            try:
                return fn(ctx)
            finally:
                READS.setdefault(name, set()).update(touched)

    return run


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, base_model_dir, alfworld_data, prefect_api):
    """The tiny project after one flow run: (root, cfg, flow results). The working directory stays
    elsewhere: the flow finds the project from the params path. Every stage runs with the settings
    it reads recorded (into :data:`READS`)."""
    from skillmaster.orchestration.flow import skillmaster_loop

    root = tmp_path_factory.mktemp("flow") / "project"
    cfg = make_project(root, base_model_dir, tiny_params(FLOW_SETTINGS))
    with pytest.MonkeyPatch.context() as mp:
        for name in stages.STAGE_MODULES:
            stage = stages.get_stage(name)
            mp.setitem(stages._REGISTRY, name, stages.Stage(stage.contract, _recording(name, stage.fn)))
        results = skillmaster_loop(params=str(root / "params.yaml"))
    return root, cfg, results


def test_flow_runs_every_stage_of_the_plan(flow_run):
    root, cfg, results = flow_run
    assert [s.name for s in stage_plan(cfg, root)] == STAGES
    assert list(results) == STAGES
    assert not any(r.get("skipped") for r in results.values())
    assert results["collect-iter_001"]["episodes"] == 2  # B=1 task x G=2
    assert results["report"]["iterations"] == 1


def test_every_setting_a_stage_reads_is_in_its_contract(flow_run):
    """What DVC reruns is what the stage declares: a setting a stage reads but does not declare
    would leave it stale when that setting changes."""
    assert set(READS) == set(stages.STAGE_MODULES)  # every stage ran
    undeclared = {
        name: sorted(k for k in keys if not declared(k, contract_of(name).settings + EXECUTION_SETTINGS))
        for name, keys in READS.items()
    }
    assert not any(undeclared.values()), json.dumps(undeclared, indent=1)


def test_one_engine_serves_the_whole_flow_and_takes_the_trained_weights_in_place(flow_run):
    """The flow's stages share its process: one vLLM engine starts (at evaluate-iter_000) and, after
    train-iter_001, loads the new policy in place for evaluate-iter_001 instead of starting again."""
    _, _, results = flow_run
    first, last = results["evaluate-iter_000"]["generation"], results["evaluate-iter_001"]["generation"]
    assert first["engine"] == last["engine"] == "vllm"
    assert first["engine_starts"] == last["engine_starts"] == 1
    assert first["weight_updates"] == 0 and last["weight_updates"] == 1
    assert results["collect-iter_001"]["generation"]["weight_updates"] == 0  # same policy as evaluate@0


def test_dvc_sees_every_stage_recorded(flow_run):
    root, cfg, _ = flow_run
    status = json.loads(_run(["dvc", "status", "--json"], root) or "{}")
    assert status == {}, f"dvc status is not clean after the flow: {status}"
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == {s.name for s in stage_plan(cfg, root)}
    out = _run(["dvc", "repro"], root)  # nothing left to do
    assert "Running stage" not in out, out
    for name in STAGES:
        assert f"Stage '{name}' didn't change, skipping" in out, out


def test_a_sampling_setting_marks_exactly_the_stages_that_read_it(flow_run):
    """After the flow, `dvc status` is clean; changing `rollout.temperature` marks the stages whose
    contract reads it (collection, probes, ...), no other."""
    root, cfg, _ = flow_run
    params = root / "params.yaml"
    before = params.read_text()
    readers = {
        s.name
        for s in stage_plan(cfg, root)
        if any(p in ("rollout", "rollout.temperature") for p in s.params)
    }
    assert "collect-iter_001" in readers and "train-iter_001" not in readers and "model" not in readers
    data = yaml.safe_load(before)
    data["rollout"]["temperature"] = 0.7
    try:
        params.write_text(yaml.safe_dump(data, sort_keys=False))
        status = json.loads(_run(["dvc", "status", "--json"], root) or "{}")
    finally:
        params.write_text(before)
    assert set(status) == readers, status
    assert json.loads(_run(["dvc", "status", "--json"], root) or "{}") == {}


def test_mlflow_holds_the_stage_metrics(flow_run):
    from mlflow.tracking import MlflowClient

    root, _, _ = flow_run
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("flow-test")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # every stage logs into the parent run
    metrics = runs[0].data.metrics
    for key in (
        "collect/success_rate",
        "collect/episodes",
        "review/mean_shaping",
        "review/valid_edit_share",
        "edits/scored",
        "edits/committed",
        "bank/size",
        "train/loss",
        "train/kl",
        "eval/valid_seen/eval_skills/mean_length",
        "success",
    ):
        assert key in metrics, (key, sorted(metrics))
    # one name per number: "/" between parts, no second spelling of a stage's metric
    assert not [k for k in metrics if "." in k.replace("e.g.", "")], sorted(metrics)
    assert not [
        k for k in metrics if k.startswith(("eval/valid_seen/eval_skills/success_rate", "success_rate"))
    ]
    assert not [k for k in metrics if k.startswith("counterfactual/bank_")]
    run_id = runs[0].info.run_id
    history = client.get_metric_history(run_id, "success")
    assert sorted(m.step for m in history) == [0, 1]  # one point per iteration, eval 0 included
    # the report fills in what DVC skipped but logs no finished stage's number a second time
    assert sorted(m.step for m in client.get_metric_history(run_id, "collect/episodes")) == [1]
    assert runs[0].data.params["loop.iterations"] == "1"
    assert runs[0].info.run_name.startswith("skillmaster-alfworld-")


def test_metrics_and_plots_are_written(flow_run):
    root, _, _ = flow_run
    p = Paths(root)
    for it, stage in [
        (0, "eval"),
        (1, "collect"),
        (1, "review"),
        (1, "counterfactual"),
        (1, "train"),
        (1, "eval"),
    ]:
        assert json.loads(p.metrics(it, stage).read_text()), (it, stage)
    summary = json.loads(p.summary.read_text())
    assert [s["iteration"] for s in summary["iterations"]] == [0, 1]
    for name in [plot.name for plot in contract_of("report").plots]:
        for ext in ("csv", "png"):
            assert (p.plots_dir / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    reviews = (p.plots_dir / "skill_reviews.csv").read_text().splitlines()
    assert reviews[0].startswith("iteration,added,updated,kept") and len(reviews) == 2  # iteration 1
    rows = (p.plots_dir / "success_by_family.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,overall") and len(rows) == 3
    assert (p.policy(1) / "COMPLETE").is_file() and p.bank(1).is_file()


@pytest.mark.slow
def test_dvc_repro_builds_the_project_then_the_flow_skips_every_stage(
    tmp_path, base_model_dir, alfworld_data, prefect_api
):
    """The other way round: `dvc repro` runs every stage through the `skillmaster` command, then a
    flow run finds all of them up to date in DVC and runs nothing."""
    root = tmp_path / "project"
    make_project(root, base_model_dir, tiny_params(FLOW_SETTINGS))
    out = _run(["dvc", "repro"], root, timeout=1800)
    for name in STAGES:
        assert f"Running stage '{name}'" in out, out
    assert json.loads(_run(["dvc", "status", "--json"], root) or "{}") == {}
    from skillmaster.orchestration.flow import skillmaster_loop

    results = skillmaster_loop(params=str(root / "params.yaml"))
    assert results == {name: {"skipped": True} for name in STAGES}
    assert json.loads(Paths(root).summary.read_text())["iterations"][1]["collect"]["episodes"] == 2


def test_the_flow_run_page_shows_stage_logs_and_headline_metrics(flow_run):
    """What the Prefect UI shows of the run: each stage's start, progress and end in the flow run's
    log pane, and a headline-metrics artifact per stage (plus the run's settings)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    messages = "\n".join(entry.message for entry in logs)
    for name in STAGES:
        assert f"{name}: started" in messages and f"{name}: finished" in messages, (name, messages)
    assert "/2 ep" in messages  # the collector's progress: episodes of the G=2 group
    assert "steps: " in messages and "loss=" in messages  # the trainer's progress with its loss
    keys = {a.key: a.data for a in artifacts}
    assert "settings" in keys
    assert "| edits/scored |" in keys["counterfactual-iter-001"]
    assert "| train/loss |" in keys["train-iter-001"]
    assert "| success |" in keys["evaluate-iter-001"]
