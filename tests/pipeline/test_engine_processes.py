"""A stage killed mid-generation leaves no process behind: the vLLM engine core and its worker, the
environment workers and multiprocessing's helpers all end, on SIGTERM (clean-up, exit 130) and on
SIGKILL (no clean-up: the children are set to die with their parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from tiny_project import REPO, tiny_params

pytest.importorskip("vllm")
pytestmark = [pytest.mark.model, pytest.mark.alfworld, pytest.mark.vllm]


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],  # SIGKILL: make test-slow
    ids=["sigterm", "sigkill"],
)
def test_a_killed_stage_leaves_no_engine_process(sig, tmp_path, base_model_dir, alfworld_data):
    params = tiny_params(
        {
            "rollout": {"engine": "vllm", "vllm": {"kv_cache_gib": 1}, "max_new_tokens": 48},
            "env": {"max_steps": 20},
            "skills": {"seed_bank": str(REPO / "src/skillmaster/resources/seed_bank_alfworld_small.json")},
        }
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "models").mkdir()
    os.symlink(base_model_dir.resolve(), tmp_path / "models" / "base", target_is_directory=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "skillmaster.cli", "eval", "--split", "valid_seen", "--limit", "4"],
        cwd=tmp_path,
        env={**os.environ, "ALFWORLD_DATA": str(alfworld_data)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen, deadline = "", time.monotonic() + 600
        while "eval valid_seen" not in seen and time.monotonic() < deadline:  # the episodes have begun
            chunk = proc.stderr.readline()
            if not chunk:
                break
            seen += chunk
        assert "eval valid_seen" in seen, seen[-3000:]
        time.sleep(1.0)  # generating now
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(c.name() for c in _alive(children))
        assert "VLLM::EngineCore" in names and "VLLM::Worker" in names, names
        assert proc.poll() is None, "the evaluation ended before it could be killed"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        rest = proc.stderr.read()
        deadline = time.monotonic() + 15
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(children), [(p.pid, p.name()) for p in _alive(children)]
        if sig == signal.SIGTERM:
            assert proc.returncode == 130
            assert "interrupted; finished outputs are kept, rerun to resume" in rest
        else:
            assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
