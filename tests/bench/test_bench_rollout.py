"""``skillmaster bench rollout --quick --json`` through the CLI, on the real model and real games.

Only the report's shape and sanity are checked (no timing assertions): the benchmark's speed
claims are what it prints, not what a test decides on a shared machine. Slow: it starts a vLLM
engine and runs the naive loop.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.model, pytest.mark.alfworld, pytest.mark.slow]


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_bench_rollout_quick_json(base_model_dir, alfworld_data, tmp_path):
    args = ["bench", "rollout", "--quick", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "skillmaster.cli", *args, "--model-dir", str(base_model_dir)],
        cwd=tmp_path,  # no params.yaml here: the env section's defaults, games from ALFWORLD_DATA
        env={**os.environ, "ALFWORLD_DATA": str(alfworld_data)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["benchmark"] == "rollout" and report["quick"] is True
    assert report["episodes"] == report["tasks"] * report["group_size"] >= 2
    a, g, c = report["steps_per_s"], report["generation"], report["prefix_cache"]
    for side in ("vllm", "hf", "naive"):
        assert _positive(a[side]["steps_per_s"]) and _positive(a[side]["seconds"]), side
        # fixed steps on every side (no malformed guard; no game is won in 2 steps)
        assert a[side]["env_steps"] == report["episodes"] * report["max_steps"], side
    for key in ("vllm_over_hf", "vllm_over_naive", "hf_over_naive"):
        assert _positive(a[key]), key
    assert a["vllm_over_hf"] == pytest.approx(a["vllm"]["steps_per_s"] / a["hf"]["steps_per_s"], rel=0.05)
    assert 0.0 <= a["vllm"]["same_actions_as_naive"] <= 1.0
    for engine in ("vllm", "hf"):
        assert _positive(g[engine]["project_s"]) and _positive(g[engine]["bare_s"]), engine
        assert g[engine]["ratio"] == pytest.approx(g[engine]["project_s"] / g[engine]["bare_s"], rel=0.05)
        # greedy: the project's path writes what the bare engine call writes
        assert g[engine]["identical_outputs"] is True, engine
    assert g["vllm"]["prompts"] == a["vllm"]["env_steps"]
    # the episodes of a task share their prompt prefix: the prefix cache serves part of every prompt
    assert 0.0 < c["vllm_hit_rate"] < 1.0 and 0.0 < c["hf_prefill_saved"] < 1.0
    assert _positive(report["engine_start_s"]["vllm"])
    assert report["seed_bank"].endswith("seed_bank_alfworld_small.json")
    assert (
        set(report["pass"])
        == set(report["targets"])
        == {"vllm_over_hf", "vllm_over_naive", "vllm_generation_ratio"}
    )
    assert all(isinstance(v, bool) for v in report["pass"].values())
