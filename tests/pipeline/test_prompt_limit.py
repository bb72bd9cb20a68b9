"""Prompts longer than the engine takes are shortened, not refused (``agent.prompts.PROMPT_FIT_RULE``).

Real ALFWorld games and the real 135M model on both engines, with a length limit far below the
games' prompts (step prompts here are ~400-500 tokens): every episode plays on, every prompt sent
fits the limit less ``max_new_tokens``, each shortened prompt follows the rule (oldest history
dropped first, else cut from the left behind the system text) and is counted in its trajectory's
``prompts_shortened`` and the stage metric of the same name. On vLLM a prompt over
``rollout.vllm.max_model_len`` would otherwise fail the whole call; the vLLM test also runs the
shard as a cluster worker does (``run_collect_shard``) and checks that its engine processes end
with it.
"""

from __future__ import annotations

import re
import time

import polars as pl
import psutil
import pytest
from tiny_project import seed_workdir, tiny_config

from skillmaster.agent.prompts import CUT_MARK, prompt_length
from skillmaster.rollout.metrics import rollout_metrics

pytestmark = [pytest.mark.model, pytest.mark.alfworld, pytest.mark.timeout(600)]

MAX_NEW_TOKENS = 16
HISTORY = 6
SHOWN = re.compile(r"Your last (\d+) of (\d+) actions")


def shortened_by_the_rule(row: dict) -> bool:
    """Whether a step row's prompt was shortened, read off the prompt: cut from the left (the suffix
    starts with the cut mark, the prefix is the system text only), or showing fewer history steps
    than ``min(history_length, step)``."""
    prompt, cut = row["prompt"], row["prefix_chars"]
    if prompt[cut:].startswith(CUT_MARK):
        assert "Your task is to:" not in prompt[:cut] and "<|im_start|>system" in prompt[:cut]
        return True
    shown = SHOWN.search(prompt)
    return (int(shown.group(1)) if shown else 0) < min(HISTORY, row["step"])


def engine_processes() -> list[str]:
    """vLLM's engine-core and worker processes, and environment workers, under this process."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and (
                p.name().startswith("VLLM") or "spawn_main" in " ".join(p.cmdline())
            ):
                out.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            pass
    return out


def check_shortened(steps: pl.DataFrame, trajs: pl.DataFrame, tokenizer, budget: int) -> int:
    assert (trajs["end_reason"] != "error").all(), trajs["error"].to_list()
    assert trajs["length"].min() >= 1  # every episode played on
    for row in steps.iter_rows(named=True):
        assert row["prompt_tokens"] == prompt_length(tokenizer, row["prompt"], row["prefix_chars"]) <= budget
        assert row["prompt"].endswith("<|im_start|>assistant\n")
    per_traj = (
        steps.with_columns(
            pl.struct("prompt", "prefix_chars", "step")
            .map_elements(shortened_by_the_rule, return_dtype=pl.Boolean)
            .alias("short")
        )
        .group_by("traj_id")
        .agg(pl.col("short").sum().cast(pl.Int32).alias("n"))
    )
    counted = dict(trajs.select("traj_id", "prompts_shortened").iter_rows())
    assert dict(per_traj.iter_rows()) == counted
    total = rollout_metrics(trajs, steps)["prompts_shortened"]
    assert total == sum(counted.values()) > 0
    return total


def test_transformers_engine_shortens_prompts_over_its_limit(base_model_dir, alfworld_data, model_cfg):
    """The transformers engine's limit is its model's ``max_position_embeddings`` (8192 here); a
    tiny one is given to the real engine so that real prompts go over it."""
    from skillmaster.agent.policy import Policy
    from skillmaster.config import Config, RolloutConfig
    from skillmaster.envs.alfworld import AlfworldSuite
    from skillmaster.envs.pool import EnvPool
    from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes

    policy = Policy.load(base_model_dir, model_cfg, max_model_len=440 + MAX_NEW_TOKENS)
    assert Policy.load(base_model_dir, model_cfg).max_model_len == 8192
    suite = AlfworldSuite(data_dir=str(alfworld_data), max_steps=3)
    tasks = suite.tasks("valid_seen")[:2]
    cfg = Config(
        rollout=RolloutConfig(max_new_tokens=MAX_NEW_TOKENS, history_length=HISTORY, max_obs_chars=200)
    )
    settings = RolloutSettings.from_config(cfg, max_steps=3, seed=1)
    specs = [
        EpisodeSpec(f"t-{g}-{m}", t, group_id=g, iteration=1) for g, t in enumerate(tasks) for m in range(2)
    ]
    with EnvPool(suite, num_envs=len(specs), num_workers=1) as pool:
        steps, trajs = collect_episodes(policy, pool, specs, settings, progress=False)
    check_shortened(steps, trajs, policy.tokenizer, 440)


@pytest.mark.vllm
def test_vllm_shard_shortens_prompts_over_max_model_len_and_ends_its_engine(
    tmp_path, base_model_dir, alfworld_data
):
    pytest.importorskip("vllm")
    from skillmaster.modeling import load_tokenizer
    from skillmaster.stages.collect import run_collect_shard

    cfg = tiny_config(
        {
            "rollout": {
                "engine": "vllm",
                "vllm": {"max_model_len": 256, "kv_cache_gib": 1},
                "max_new_tokens": MAX_NEW_TOKENS,
                "history_length": HISTORY,
            },
        }
    )
    seed_workdir(tmp_path, base_model_dir, cfg)
    steps, trajs = run_collect_shard(cfg.model_dump_json(), 1, 0, str(tmp_path))
    deadline = time.monotonic() + 15
    while engine_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not engine_processes()  # the shard closed its engine (and its pool: no worker left either)
    check_shortened(steps, trajs, load_tokenizer(base_model_dir), 256 - MAX_NEW_TOKENS)
    assert set(steps["engine"]) == {"vllm"}


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_review_prompts_over_max_model_len_are_cut_after_their_system_text(
    tmp_path, base_model_dir, alfworld_data
):
    """Review prompts (~300 tokens of instructions, then the episode) on one engine with collect."""
    pytest.importorskip("vllm")
    from skillmaster.stages import run_stage
    from skillmaster.stages.resources import Resources
    from skillmaster.tables import REVIEWS

    limit, review_tokens = 448, 16
    cfg = tiny_config({"rollout": {"engine": "vllm", "vllm": {"max_model_len": limit, "kv_cache_gib": 1}}})
    assert cfg.review.max_new_tokens == review_tokens
    paths = seed_workdir(tmp_path, base_model_dir, cfg)
    resources = Resources()
    try:
        run_stage("collect", cfg, 1, root=tmp_path, resources=resources)
        metrics = run_stage("review", cfg, 1, root=tmp_path, resources=resources)
        tokenizer = resources.policy.tokenizer
    finally:
        resources.close()
    reviews = REVIEWS.read(paths.reviews(1))
    assert reviews.height == cfg.rollout.num_tasks * cfg.rollout.group_size
    cut = 0
    for row in reviews.iter_rows(named=True):
        prompt, head = row["prompt"], row["prompt"][: row["prefix_chars"]]
        assert (
            row["prompt_tokens"]
            == prompt_length(tokenizer, prompt, row["prefix_chars"])
            <= limit - review_tokens
        )
        assert head.rstrip().endswith("<|im_start|>user") and prompt.endswith("<|im_start|>assistant\n")
        cut += prompt[len(head) :].startswith(CUT_MARK)
    assert metrics["prompts_shortened"] == cut > 0
