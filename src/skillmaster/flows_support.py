"""What the Prefect flow (flows/loop.py) needs besides calling tasks; kept here so it is tested."""

from __future__ import annotations

import logging
from pathlib import Path

from skillmaster.config import Config, load_config, parse_set
from skillmaster.io import atomic_write_text
from skillmaster.orchestration import dvc_commit_stage, dvc_stage_up_to_date
from skillmaster.pipeline import StageSpec, render_dvc_yaml, stage_plan
from skillmaster.runtime import configure_environment, project_root
from skillmaster.stages import run_stage

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


def run_recorded(name: str, cfg: Config, root: Path, shared: dict) -> dict:
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
        metrics = run_stage(spec.stage, cfg, spec.iteration, root=root, shared=shared)
    dvc_commit_stage(root, name)
    return metrics
