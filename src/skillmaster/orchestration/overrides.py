"""The run overlay: a run's ``KEY=VALUE`` overrides in ``overrides.yaml``, never in params.yaml.

A flow run (the Prefect UI's custom run, ``skillmaster loop -S``) writes its overrides here before
it starts, replacing those of the run before it; a run without overrides empties the file.
``skillmaster experiment`` writes each row's settings here (its overlays' values) while that row's
steps run, and puts the previous overlay back afterwards. Every
load of ``params.yaml`` merges the file on top (:func:`skillmaster.config.load_config`) and
``dvc.yaml`` lists each overridden key as a DVC param of the stages that read it
(:mod:`skillmaster.orchestration.plan`), so ``dvc repro``, ``dvc status`` and the flow agree on the
settings, and the user's params.yaml (with its comments) stays as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from skillmaster.config import load_config, overrides_path, sets_to_dict
from skillmaster.io import atomic_write_text

HEADER = (
    "# Run overlay, written by the latest flow run (its `overrides`, e.g. from the Prefect UI's custom\n"
    "# run or `skillmaster loop -S KEY=VALUE`) or `skillmaster experiment` row, and merged on top of\n"
    "# params.yaml by every stage.\n"
    "# Do not edit: the next run replaces it. Put lasting settings into params.yaml or configs/.\n"
)


def write_run_overrides(params: Path, overrides: list[str]) -> dict[str, Any]:
    """Validate ``overrides`` against ``params`` (without any previous overlay), then write them as
    the run overlay beside it, atomically; ``[]`` empties it. A bad override raises ConfigError
    and leaves the previous overlay as it was. Returns the overlay's settings."""
    load_config(params, sets=overrides, run_overrides=False)  # one-sentence error on a bad override
    data = sets_to_dict(overrides)
    path = overrides_path(params)
    if not data and not path.is_file():
        return data
    body = yaml.safe_dump(data, sort_keys=True) if data else "{}\n"
    atomic_write_text(path, HEADER + body)
    return data


def sync_dvc_yaml(params: Path, root: Path) -> bool:
    """Bring ``root``'s dvc.yaml in line with ``params`` and its run overlay (which keys each stage
    reads from ``overrides.yaml``, how many iterations); returns whether it changed."""
    from skillmaster.orchestration.plan import render_dvc_yaml

    path = root / "dvc.yaml"
    text = render_dvc_yaml(load_config(params), root)
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


def apply_run_overrides(params: Path, overrides: list[str], root: Path) -> dict[str, Any]:
    """:func:`write_run_overrides`, then :func:`sync_dvc_yaml`: what a run does before its stages
    (``dvc repro``/``dvc exp run`` then see the overlay's keys as the stages' params)."""
    data = write_run_overrides(params, overrides)
    sync_dvc_yaml(params, root)
    return data
