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
        (("config", "show", "-S", "rollout.num_tasks=[1,"), "the value is not valid YAML"),  # issue #21
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


# --------------------------------------------------------------------------- issue #21
def test_a_deeply_nested_bank_is_one_sentence(tmp_path):
    (tmp_path / "deep.json").write_text('{"metadata": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001)
    out = run("skills", "show", "--file", str(tmp_path / "deep.json"))
    assert out.returncode == 2 and "nested too deeply" in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0


def test_a_broken_config_json_is_one_sentence(tmp_path, base_model_dir):
    broken = tmp_path / "model"
    broken.mkdir()
    for f in base_model_dir.iterdir():
        if f.name != "model.safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": ')  # cut short
    out = run("model", "prepare", "-S", f"model.source={broken}", "--out", str(tmp_path / "out"))
    assert out.returncode == 2 and "config.json is not valid JSON" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0
    # the same file in a prepared model folder (models/base) stops a stage before anything loads
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "models").mkdir()
    broken.rename(tmp_path / "models" / "base")
    out = run("eval", "--no-skills", "--limit", "1", "-S", "sft.enabled=false", cwd=tmp_path)
    assert out.returncode == 2 and "config.json is not valid JSON" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


CTRL_C = """
import os, signal, sys, threading
from skillmaster import cli

def slow(*_a, **_k):  # stands in for a long stage: Ctrl-C arrives while it runs
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    threading.Event().wait(30)

import skillmaster.stages as stages
stages.run_stage = slow
sys.argv = ["skillmaster", "stage", "bank-init"]
cli.main()
"""


def test_ctrl_c_says_what_is_kept(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    out = subprocess.run(
        [sys.executable, "-c", CTRL_C], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 130
    assert "interrupted; finished outputs are kept, rerun to resume" in out.stderr
    assert "Traceback" not in out.stderr
