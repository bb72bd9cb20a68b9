"""DVC bookkeeping for stages a flow runs.

A flow that runs a stage records it in DVC (``dvc commit``), so ``dvc status`` is clean afterwards
and ``dvc repro`` has nothing to do; a stage DVC already has up to date is skipped, as ``dvc repro``
would.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def dvc_stage_up_to_date(root: Path, stage: str) -> bool:
    """True when DVC has ``stage`` recorded and nothing it depends on changed."""
    from dvc.repo import Repo

    # DVC resolves a stage's relative outs against the working directory, not the repo root
    with contextlib.chdir(root), Repo(str(root)) as repo:
        return not repo.status(targets=[stage])


def dvc_commit_stage(root: Path, stage: str) -> None:
    """Record a stage that ran outside ``dvc repro``: hash its deps/outs, cache outs, update dvc.lock."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        repo.commit(stage, force=True)
