"""The SkillMaster loop as a Prefect flow: the same stages as dvc.yaml, recorded in DVC.

Run it with ``skillmaster loop`` (ephemeral Prefect, no server needed), ``python flows/loop.py``, or
schedule it from the Prefect UI (:mod:`skillmaster.orchestration.deploy`, the README). Each stage is
a task that calls the very stage function ``dvc repro`` calls; a stage DVC already has up to date is
skipped, a finished one is recorded with ``dvc commit``, so afterwards ``dvc status`` is clean and
``dvc repro`` has nothing to do. The stages share the flow's process and one
:class:`~skillmaster.stages.resources.Resources`: one generation engine serves them all, and after
a train stage it loads the new weights in place (vLLM) instead of starting again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow, task

from skillmaster.config import Config, load_config, parse_set
from skillmaster.io import atomic_write_text
from skillmaster.orchestration.dvc import dvc_commit_stage, dvc_stage_up_to_date
from skillmaster.orchestration.plan import StageSpec, render_dvc_yaml, stage_plan
from skillmaster.orchestration.runners import shard_runner
from skillmaster.runtime import configure_environment, project_root
from skillmaster.stages import run_stage
from skillmaster.stages.resources import Resources

log = logging.getLogger(__name__)


def apply_overrides(params: Path, overrides: list[str]) -> None:
    """Write ``KEY=VALUE`` overrides into the params file, as ``dvc exp run -S`` does: validated
    first, comments and key order kept (ruamel round trip), written atomically."""
    if not overrides:
        return
    from io import StringIO

    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    load_config(params, sets=overrides)  # validated first: a bad override leaves the file alone
    doc = rt.load(params.read_text())
    for assignment in overrides:
        keys, value = parse_set(assignment)
        target = doc
        for k in keys[:-1]:
            if k not in target or target[k] is None:
                target[k] = {}
            target = target[k]
        target[keys[-1]] = value
    buf = StringIO()
    rt.dump(doc, buf)
    atomic_write_text(params, buf.getvalue())


def prepare_run(params: Path, overrides: list[str]) -> tuple[Config, Path, list[StageSpec]]:
    """Settings, project root and stage plan of a flow run; dvc.yaml is brought in line first."""
    root = project_root(params.resolve().parent)
    configure_environment(root)
    params = params if params.is_absolute() else root / params
    apply_overrides(params, overrides)
    cfg = load_config(params)
    dvc_yaml = root / "dvc.yaml"
    text = render_dvc_yaml(cfg, root)
    if not dvc_yaml.is_file() or dvc_yaml.read_text() != text:
        atomic_write_text(dvc_yaml, text)
    return cfg, root, stage_plan(cfg, root)


def run_recorded(name: str, cfg: Config, root: Path, resources: Resources) -> dict:
    """Run DVC stage ``name`` unless DVC has it up to date, then record it with ``dvc commit``."""
    spec = next(s for s in stage_plan(cfg, root) if s.name == name)
    if dvc_stage_up_to_date(root, name):
        log.info("%s is up to date in DVC; skipped", name)
        return {"skipped": True}
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
    """One pipeline stage (task run named after the DVC stage, e.g. collect-iter_001)."""
    return run_recorded(name, cfg, root, _RESOURCES)


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
        _RESOURCES.close()  # the generation engine (and its processes) ends with the flow
    return results
