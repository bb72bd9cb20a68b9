"""DVC bookkeeping: stages a flow runs, and a DVC experiment's outputs put back into the workspace.

A flow that runs a stage records it in DVC (``dvc commit``), so ``dvc status`` is clean afterwards
and ``dvc repro`` has nothing to do; a stage DVC already has up to date is skipped, as ``dvc repro``
would.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from skillmaster.errors import ConfigError, DataError


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


def experiment_ref(name: str, root: Path) -> str:
    """The git ref of the newest DVC experiment called ``name`` (DVC keeps them under ``refs/exps``)."""
    listed = subprocess.run(
        ["git", "for-each-ref", "--sort=-creatordate", "--format=%(refname)", "refs/exps"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    refs = [r for r in listed.stdout.split() if r.rsplit("/", 1)[-1] == name]
    refs = [r for r in refs if not r.startswith(("refs/exps/apply/", "refs/exps/exec/"))]
    if listed.returncode != 0 or not refs:
        raise ConfigError(f"no DVC experiment named '{name}' in {root} (see `dvc exp list --all-commits`)")
    return refs[0]


def checkout_outputs(name: str, root: Path) -> None:
    """Put DVC experiment ``name``'s outputs (its ``dvc.lock``, then ``dvc checkout`` from DVC's cache,
    and its committed ``metrics/`` and ``plots/``) into the workspace, leaving code and ``params.yaml`` as
    they are. ``dvc exp apply`` brings back the experiment's whole commit, so after a code change it
    would put the experiment's code back too."""
    from skillmaster.io import atomic_write_text
    from skillmaster.orchestration.project import tool_env

    ref = experiment_ref(name, root)
    lock = subprocess.run(
        ["git", "show", f"{ref}:dvc.lock"], cwd=root, capture_output=True, text=True, check=False
    )
    if lock.returncode != 0:
        raise DataError(f"DVC experiment '{name}' ({ref}) has no dvc.lock: it did not finish")
    atomic_write_text(root / "dvc.lock", lock.stdout)
    done = subprocess.run(["dvc", "checkout", "--force", "--quiet"], cwd=root, env=tool_env(), check=False)
    if done.returncode != 0:
        raise DataError(
            f"dvc checkout of experiment '{name}' failed (exit code {done.returncode}); "
            "its outputs may be missing from DVC's cache"
        )
    # The `cache: false` outputs (metrics/, plots/) are not in DVC's cache but in the experiment's commit.
    for folder in ("metrics", "plots"):
        listed = subprocess.run(
            ["git", "ls-tree", "--name-only", ref, folder],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.returncode == 0 and listed.stdout.strip():
            shutil.rmtree(root / folder, ignore_errors=True)  # no files of another run left beside them
            restored = subprocess.run(
                ["git", "restore", f"--source={ref}", "--worktree", "--", folder], cwd=root, check=False
            )
            if restored.returncode != 0:
                raise DataError(f"git could not restore {folder}/ of experiment '{name}' ({ref})")
