"""The SkillMaster loop as a Prefect flow: the same stages as dvc.yaml, recorded in DVC.

Run it with ``skillmaster loop`` (ephemeral Prefect, no server needed), ``python flows/loop.py``, or
schedule it from the Prefect UI (:mod:`skillmaster.orchestration.deploy`, docs/operations.md). Each stage is
a task that calls the very stage function ``dvc repro`` calls; a stage DVC already has up to date is
skipped, a finished one is recorded with ``dvc commit``, so afterwards ``dvc status`` is clean and
``dvc repro`` has nothing to do. The stages share the flow's process and one
:class:`~skillmaster.stages.resources.Resources`: one generation engine serves them all, and after
a train stage it loads the new weights in place (vLLM, ``rollout.vllm.weight_sync``: a LoRA
checkpoint merged and pushed in memory, or its merged folder reloaded;
:func:`~skillmaster.agent.engines.open_policy`) instead of starting again. With
``rollout.vllm.sleep_mode`` (CUDA) the engine sleeps while a train stage holds the GPU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from prefect import flow, task

from skillmaster.config import Config, load_config
from skillmaster.io import atomic_write_text
from skillmaster.orchestration.dvc import dvc_commit_stage, dvc_stage_up_to_date
from skillmaster.orchestration.overrides import write_run_overrides
from skillmaster.orchestration.plan import StageSpec, render_dvc_yaml, stage_plan
from skillmaster.orchestration.runners import shard_runner
from skillmaster.orchestration.ui import forward_logs, publish_settings, publish_stage
from skillmaster.runtime import configure_environment, project_root
from skillmaster.stages import run_stage
from skillmaster.stages.resources import Resources

log = logging.getLogger(__name__)


def prepare_run(params: Path, overrides: list[str]) -> tuple[Config, Path, list[StageSpec]]:
    """Settings, project root and stage plan of a flow run: the run's overrides become the run
    overlay (``overrides.yaml``, params.yaml untouched), then dvc.yaml is brought in line."""
    root = project_root(params.resolve().parent)
    configure_environment(root)
    params = params if params.is_absolute() else root / params
    write_run_overrides(params, overrides)
    cfg = load_config(params)
    dvc_yaml = root / "dvc.yaml"
    text = render_dvc_yaml(cfg, root)
    if not dvc_yaml.is_file() or dvc_yaml.read_text() != text:
        atomic_write_text(dvc_yaml, text)
    return cfg, root, stage_plan(cfg, root)


def yield_device(resources: Resources) -> None:
    """Before a train stage: the open generation engine sleeps (``rollout.vllm.sleep_mode`` on
    CUDA: weights offloaded, KV cache freed) so training gets the GPU; it wakes when it next
    generates or loads the trained weights. Elsewhere nothing happens."""
    sleep = getattr(resources.policy, "sleep", None)
    if sleep is not None and sleep():
        log.info("generation engine asleep while the train stage runs")


def run_recorded(spec: StageSpec, cfg: Config, root: Path, resources: Resources) -> dict:
    """Run DVC stage ``spec`` unless DVC has it up to date, then record it with ``dvc commit``."""
    name = spec.name
    if dvc_stage_up_to_date(root, name):
        log.info("%s is up to date in DVC; skipped", name)
        return {"skipped": True}
    if spec.stage == "train":
        yield_device(resources)
    if spec.launcher:  # multi-process training: the same command dvc.yaml holds
        import shlex
        import subprocess

        subprocess.run(shlex.split(spec.cmd), cwd=root, check=True)
        metrics = {"launched": spec.cmd}
    else:
        metrics = run_stage(
            spec.stage, cfg, spec.iteration, root=root, resources=resources, run_shards=shard_runner(cfg)
        )
    dvc_commit_stage(root, name)
    return metrics


# --------------------------------------------------------------------------- the flow
_RESOURCES = Resources()
"""What the stage tasks of this process share (the generation engine, environment suites)."""


@task(name="stage", retries=1, retry_delay_seconds=5)
def stage(name: str, cfg: Config, root: Path) -> dict:
    """One pipeline stage (task run named after the DVC stage, e.g. collect-iter_001): its progress
    goes to the flow run's logs, its headline metrics to an artifact on the flow-run page."""
    spec = next(s for s in stage_plan(cfg, root) if s.name == name)
    with forward_logs() as logger:
        logger.info("%s: started", name)
        start = time.monotonic()
        metrics = run_recorded(spec, cfg, root, _RESOURCES)
        publish_stage(spec, root, cfg, metrics, time.monotonic() - start, logger)
    return metrics


@flow(name="skillmaster-loop", log_prints=True)
def skillmaster_loop(
    params: str = "params.yaml", overrides: list[str] | None = None, plan_only: bool = False
) -> dict:
    """Iterations of collect → review → counterfactual → train → evaluate, then the report.

    Args:
        params: The settings file, relative to the project root (the served project's params.yaml).
        overrides: Settings of this run, as KEY=VALUE (e.g. "loop.iterations=1", "eval.limit=2");
            they go to the run overlay overrides.yaml, never into params.yaml, and replace the last
            run's overrides. Empty: params.yaml as it is.
        plan_only: Resolve the settings, write dvc.yaml and list the stages it would run, without
            running any (a dry run of the settings).
    """
    cfg, root, plan = prepare_run(Path(params), overrides or [])
    publish_settings(cfg, overrides or [], plan)
    if plan_only:
        return {"plan": [spec.name for spec in plan]}
    results = {}
    try:
        for spec in plan:
            results[spec.name] = stage.with_options(
                task_run_name=spec.name,
                retries=cfg.orchestration.retries,
                retry_delay_seconds=cfg.orchestration.retry_delay_s,
            )(spec.name, cfg, root)
    finally:
        _RESOURCES.close()  # the generation engine (and its processes) ends with the flow
    return results
