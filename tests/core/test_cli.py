"""The console script: help, one-sentence errors with exit code 2, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skillmaster.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("model", "stage", "eval", "skills", "pipeline", "config"):
        assert command in out.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("config", "show", "-S", "rollout.group_size=1"), "rollout.group_size must be at least 2"),
        (("config", "show", "-p", "nope.yaml"), "nope.yaml: config file not found"),
        (("stage", "teleport"), "unknown stage 'teleport'"),
        (("stage", "collect", "--iteration", "9"), "needs --iteration between 1 and loop.iterations"),
    ],
)
def test_user_mistakes_are_one_clear_sentence(args, needle):
    out = run(*args)
    assert out.returncode == 2
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0


def test_missing_model_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    out = run("eval", "--no-skills", "--limit", "1", cwd=tmp_path)
    assert out.returncode == 2
    assert "no prepared model here; run `skillmaster model prepare` first" in out.stderr
