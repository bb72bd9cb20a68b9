"""The SkillMaster loop as a Prefect flow: the same stages as dvc.yaml, recorded in DVC.

Run it with ``skillmaster loop`` (ephemeral Prefect, no server needed) or schedule it from the
Prefect UI (see flows/deploy.py and the README). Each stage is a task that calls the very stage
function ``dvc repro`` calls; a stage DVC already has up to date is skipped, a finished one is
recorded with ``dvc commit``, so afterwards ``dvc status`` is clean and ``dvc repro`` has nothing
to do. Stages share the flow's process, so one generation engine serves them all: after a train stage
it loads the new weights in place (vLLM) instead of starting again.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from skillmaster.config import Config
from skillmaster.flows_support import prepare_run, run_recorded
from skillmaster.stages.common import close_policy

_SHARED: dict = {}
"""Objects kept between stage tasks of this process (the loaded policy, the env suite)."""


@task(name="stage", retries=1, retry_delay_seconds=5)
def stage(name: str, cfg: Config, root: Path) -> dict:
    """One pipeline stage (task run named after the DVC stage, e.g. collect-iter_001)."""
    return run_recorded(name, cfg, root, _SHARED)


@flow(name="skillmaster-loop", log_prints=True)
def skillmaster_loop(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Iterations of collect → review → counterfactual → train → evaluate, then the report.

    ``overrides`` are ``KEY=VALUE`` settings written into params.yaml first (as ``dvc exp run -S``
    does), so DVC and MLflow see the settings this run used.
    """
    cfg, root, plan = prepare_run(Path(params), overrides or [])
    results = {}
    try:
        for spec in plan:
            results[spec.name] = stage.with_options(
                task_run_name=spec.name,
                retries=cfg.orchestration.retries,
                retry_delay_seconds=cfg.orchestration.retry_delay_s,
            )(spec.name, cfg, root)
    finally:
        close_policy(_SHARED)  # the generation engine (and its processes) ends with the flow
    return results


if __name__ == "__main__":
    skillmaster_loop()
