"""Process-wide set-up: keep every tool's state inside the project, telemetry off, quiet logs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

PROJECT_MARKERS = ("params.yaml", "dvc.yaml")


def project_root(start: Path | None = None) -> Path:
    """The nearest folder (from ``start`` or the CWD upwards) holding params.yaml or dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / m).is_file() for m in PROJECT_MARKERS):
            return folder
    return here


def configure_environment(root: Path | None = None) -> None:
    """Point Prefect/MLflow/DVC/HF state into the project and switch analytics off.

    Values already set by the user win (``setdefault``), so a Prefect server address or a remote
    MLflow store configured in the shell is respected.
    """
    root = root or project_root()
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    # Prefect 3.7 puts its memo store under ~/.prefect whatever PREFECT_HOME says
    os.environ.setdefault(
        "PREFECT_SERVER_MEMO_STORE_PATH", str(Path(os.environ["PREFECT_HOME"]) / "memo_store.toml")
    )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_UI_ENABLED", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # vLLM: no usage reports; its compile cache and config inside the project
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_DO_NOT_TRACK", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(root / ".skillmaster" / "vllm-cache"))
    os.environ.setdefault("VLLM_CONFIG_ROOT", str(root / ".skillmaster" / "vllm-config"))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    for noisy in ("transformers", "accelerate", "peft", "urllib3", "alembic", "mlflow", "httpx", "vllm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def git_commit(root: Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    root = root or project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


_FORK_PARENT: list[int] = []


def _before_fork() -> None:
    _FORK_PARENT[:] = [os.getpid()]


def _after_fork_in_child() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if _FORK_PARENT and os.getppid() != _FORK_PARENT[0]:  # the parent died before the line above
        os._exit(1)


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the process that started it dies."""
    if sys.platform.startswith("linux"):
        _FORK_PARENT[:] = [os.getppid()]
        _after_fork_in_child()


def children_die_with_this_process() -> None:
    """Linux: every process forked from now on gets SIGKILL when the process that forked it dies.

    A stage starts helper processes (vLLM's engine core, which starts its worker, and the
    environment workers). A normal exit, an error, SIGTERM or Ctrl-C ends them through the stage's
    clean-up; this covers SIGKILL (or a crash), after which they would otherwise live on. The hook is
    inherited by forked children; a child that vLLM *spawns* (its CPU worker) imports the console
    script's module, :mod:`skillmaster.cli`, which calls :func:`die_with_parent` there.
    """
    if sys.platform.startswith("linux") and not _FORK_PARENT:
        _FORK_PARENT.append(os.getpid())
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
