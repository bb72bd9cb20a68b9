"""A fresh SkillMaster project in another folder: git + DVC repo, params, dvc.yaml, base model.

Used by ``skillmaster bench orchestration`` and the pipeline tests to run the real stages (through
the Prefect flow or bare) without touching the checkout's own DVC state, MLflow store or outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from skillmaster.config import Config, deep_merge, read_yaml, validate_config
from skillmaster.orchestration.plan import render_dvc_yaml
from skillmaster.paths import Paths

VENV_BIN = str(Path(sys.executable).parent)


def tool_env() -> dict[str, str]:
    """The environment for ``dvc``/``git`` subprocesses: this interpreter's bin first on PATH, so
    dvc.yaml's ``skillmaster`` commands resolve to this installation (as ``make`` arranges)."""
    return os.environ | {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_tool(cmd: list[str], cwd: Path, timeout: float = 600) -> str:
    """Run ``cmd`` in ``cwd``; its stdout, or a RuntimeError quoting its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def make_project(root: Path, source: Path, base_model: Path, settings: dict[str, Any]) -> Config:
    """Create a git + DVC repository at ``root`` holding ``source``'s params.yaml with ``settings``
    merged over it, the generated dvc.yaml, the seed bank, and ``models/base`` copied from
    ``base_model`` (the ``model`` stage then finds it prepared)."""
    root.mkdir(parents=True)
    run_tool(["git", "init", "-q"], root)
    run_tool(["dvc", "init", "-q"], root)
    shutil.copy(source / ".gitignore", root / ".gitignore")
    params = deep_merge(read_yaml(source / "params.yaml"), settings)
    cfg = validate_config(params, str(source / "params.yaml"))
    if cfg.skills.seed_bank:
        bank = root / cfg.skills.seed_bank
        bank.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / cfg.skills.seed_bank, bank)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.yaml").write_text(render_dvc_yaml(cfg, root))
    shutil.copytree(base_model, Paths(root).base_model)
    run_tool(["git", "add", "-A"], root)
    run_tool(["git", "commit", "-q", "-m", "scratch project"], root)
    return cfg
