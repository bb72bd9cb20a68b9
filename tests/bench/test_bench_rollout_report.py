"""The rollout benchmark's report, assembled from fixed measurements (no model, no engine, no games):
its keys, ratios and pass marks, and the readable table. The real run is test_bench_rollout.py (slow)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from skillmaster.bench.rollout import (
    SEED_BANK,
    TARGETS,
    _Bench,
    _Measured,
    _report,
    _Side,
    format_rollout_report,
)


def _side(steps: int, seconds: float, actions: dict, hit: float) -> _Side:
    stats = {"prefix_cache_hit_rate": hit, "prompt_tokens": 1000, "prefilled_tokens": 400}
    return _Side(steps, seconds, seconds * 1.5, seconds / 2, actions, stats, [("p", 0)] * steps)


def _generation(project_s: float, bare_s: float) -> dict:
    return {
        "project_s": project_s,
        "bare_s": bare_s,
        "ratio": round(project_s / bare_s, 4),
        "identical_outputs": True,
        "prompts": 4,
        "baseline": "bare",
    }


@pytest.fixture
def report() -> dict:
    task = SimpleNamespace(split="valid_seen", category="heat")
    bench = _Bench(
        quick=True,
        size={"tasks": 1, "group_size": 2, "max_steps": 2, "max_new_tokens": 8, "rounds": 1},
        model_dir=None,
        model_cfg=None,
        dtype="float32",
        suite=None,
        tasks=[task],
        warm={},
        settings=SimpleNamespace(max_steps=2, max_new_tokens=8),
        bank=None,
        retriever=None,
        episodes=[object(), object()],
        workers=2,
    )
    actions = {("a", 0): "go to desk 1", ("a", 1): "look", ("b", 0): "look", ("b", 1): "look"}
    naive_actions = {("a", 0): "go to desk 1", ("a", 1): "look", ("b", 0): "open drawer 1", ("b", 1): "look"}
    measured = _Measured(
        naive={
            "env_steps": 4,
            "seconds": 8.0,
            "cpu_seconds": 9.0,
            "generate_seconds": 6.0,
            "actions": naive_actions,
        },
        hf=_side(4, 2.0, actions, 0.5),
        vllm=_side(4, 0.5, actions, 0.6),
        hf_generation=_generation(1.0, 1.1),
        vllm_generation=_generation(1.2, 1.0),
        vllm_start_s=12.345,
        load=1.234,
        stop_check={"ratio": 0.1},
        skill_block_tokens=321,
    )
    return _report(bench, measured)


def test_report_keys_ratios_and_pass_marks(report):
    assert list(report) == [
        "benchmark", "quick", "device", "dtype", "torch_threads", "vllm_threads_bind", "load_avg_1m_at_start",
        "split", "tasks", "group_size", "episodes", "max_steps", "max_new_tokens", "decoding", "env_workers",
        "seed_bank", "steps_per_s", "engine_start_s", "generation", "prefix_cache", "stop_check",
        "skill_block_tokens", "targets", "pass",
    ]  # fmt: skip
    a = report["steps_per_s"]
    assert list(a) == ["vllm", "hf", "naive", "vllm_over_hf", "vllm_over_naive", "hf_over_naive", "baseline"]
    assert (a["vllm"]["steps_per_s"], a["hf"]["steps_per_s"], a["naive"]["steps_per_s"]) == (8.0, 2.0, 0.5)
    assert (a["vllm_over_hf"], a["vllm_over_naive"], a["hf_over_naive"]) == (4.0, 16.0, 4.0)
    assert a["vllm"]["same_actions_as_naive"] == 0.75 and a["naive"]["generate_share"] == 0.75
    assert (
        report["prefix_cache"]["vllm_hit_rate"] == 0.6 and report["prefix_cache"]["hf_prefill_saved"] == 0.5
    )
    assert report["engine_start_s"] == {"vllm": 12.35} and report["load_avg_1m_at_start"] == 1.23
    assert (
        report["seed_bank"] == SEED_BANK and report["episodes"] == 2 and report["skill_block_tokens"] == 321
    )
    assert set(report["pass"]) == set(report["targets"]) == set(TARGETS)
    assert report["pass"] == {"vllm_over_hf": True, "vllm_over_naive": True, "vllm_generation_ratio": True}
    json.dumps(report)  # the CLI prints it as JSON


def test_the_table_reads_the_report(report):
    text = format_rollout_report(report)
    assert text.startswith("bench rollout (quick; cpu float32")
    assert "vLLM/transformers 4.00" in text and "ratio 1.200" in text


def test_the_bench_shows_the_configured_seed_bank(tmp_path, repo_root):
    from skillmaster.bench.rollout import configured_seed_bank, load_seed_bank
    from skillmaster.skills.store import load_bank

    params = tmp_path / "params.yaml"
    assert configured_seed_bank(params) == SEED_BANK  # no params.yaml: the bundled bank
    params.write_text("env:\n  name: alfworld\nskills:\n  seed_bank: banks/mine.json\n")
    assert configured_seed_bank(params) == "banks/mine.json"
    (tmp_path / "overrides.yaml").write_text("skills:\n  seed_bank: null\n")  # the run overlay counts
    assert configured_seed_bank(params) is None
    params.write_text("env:\n  name: webshop\nskills:\n  seed_bank: null\n")
    assert configured_seed_bank(params) == SEED_BANK  # another environment's bank would not fit

    empty = load_seed_bank(None, tmp_path, ("heat", "cool"))
    assert set(empty.task_specific_skills) == {"heat", "cool"} and not empty.general_skills
    bundled = load_bank(repo_root / SEED_BANK)
    assert load_seed_bank(SEED_BANK, repo_root, ()) == bundled
    assert load_seed_bank(SEED_BANK, tmp_path, ()) == bundled  # outside a checkout: the package's copy


def test_the_table_names_an_empty_seed_bank(report):
    assert "skills from an empty bank" in format_rollout_report(report | {"seed_bank": None})
