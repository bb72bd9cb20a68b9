"""``skillmaster bench rollout --quick --json`` through the CLI, on the real model and real games.

Only the report's shape and sanity are checked (no timing assertions): the benchmark's speed
claims are what it prints, not what a test decides on a shared machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.model, pytest.mark.alfworld, pytest.mark.slow]


POSITIVE = {  # every figure the report names, per section: positive and finite
    "steps_per_s": ["batched", "naive", "ratio", "cpu_ratio", "batched_seconds", "naive_seconds"],
    "generation": ["policy_s", "bare_s", "ratio", "ratio_warm_cache", "ratio_no_prefix_reuse", "cpu_ratio"],
    "prefill": ["prompt_tokens_per_step", "prefilled_tokens_per_step", "reduction", "skill_block_tokens"],
}


def test_bench_rollout_quick_json(base_model_dir, alfworld_data, tmp_path):
    args = ["bench", "rollout", "--quick", "--json", "--threads", "1"]  # 1 thread: steadiest when shared
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
    a, g, p = report["steps_per_s"], report["generation"], report["prefill"]
    for section, keys in POSITIVE.items():
        for key in keys:
            value = report[section][key]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (section, key)
    assert a["ratio"] == pytest.approx(a["batched"] / a["naive"], rel=0.05)
    assert g["ratio"] == pytest.approx(g["policy_s"] / g["bare_s"], rel=0.05)
    # fixed steps on both sides (no malformed guard; no game is won in 2 steps)
    assert a["batched_env_steps"] == a["naive_env_steps"] == report["episodes"] * report["max_steps"]
    assert 0.0 <= a["matching_actions"] <= 1.0
    # greedy: the policy (with and without its prefix store) writes what bare generate writes
    assert g["identical_outputs"] is True and g["prompts"] == report["episodes"]
    # prefix reuse runs fewer prompt tokens than the prompts hold; the skill block is in the prefix
    assert 0.0 < p["reduction"] < 1.0
    assert p["prefilled_tokens_per_step"] < p["prompt_tokens_per_step"]
    assert p["prompt_tokens_per_step"] > p["skill_block_tokens"]
    assert report["seed_bank"].endswith("seed_bank_alfworld_small.json")
    assert (
        set(report["pass"])
        == set(report["targets"])
        == {"steps_per_s_ratio", "generation_ratio", "prefill_reduction"}
    )
    assert all(isinstance(v, bool) for v in report["pass"].values())
