"""Tables → samples → micro-batches: rewards, advantages, token ids, packing and sharding."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from train_tables import make_tables

from skillmaster.agent.tokens import encode_prompt
from skillmaster.config import Config, TrainConfig
from skillmaster.errors import DataError
from skillmaster.train.samples import (
    Sample,
    add_advantages,
    build_rl_samples,
    build_sft_samples,
    collate,
    padding_share,
    plan_micro_batches,
    plan_steps,
    rl_sample_frame,
    shard,
    subsample_actions,
)


def test_rewards_follow_method_section_7(tokenizer):
    tables = make_tables(tokenizer, steps_per_episode=2)
    frame = rl_sample_frame(tables.steps, tables.trajectories, tables.reviews, tables.edits)
    actions = frame.filter(pl.col("kind") == "action")
    reviews = frame.filter(pl.col("kind") == "review")
    assert actions.height == tables.steps.height and reviews.height == tables.reviews.height
    won = actions.filter(pl.col("traj_id") == "g0-r0")["reward"].to_list()
    lost = actions.filter(pl.col("traj_id") == "g0-r1")["reward"].to_list()
    assert won == [10.0, 10.0]  # episode reward 10 + penalty 0, on both steps
    assert lost == [-0.5, -0.5]  # episode reward 0 + penalty −0.5
    by_traj = dict(zip(reviews["traj_id"], reviews["reward"], strict=True))
    assert by_traj["g0-r0"] == pytest.approx(0.1 + 1.5)  # shaping + utility
    assert by_traj["g0-r1"] == pytest.approx(-0.4)  # no edit row: utility 0


def test_missing_trajectory_and_duplicate_edits_are_data_errors(tables):
    with pytest.raises(DataError, match="traj_id missing"):
        rl_sample_frame(tables.steps, tables.trajectories.filter(pl.col("traj_id") != "g1-r1"))
    with pytest.raises(DataError, match="several edits"):
        rl_sample_frame(
            tables.steps, tables.trajectories, tables.reviews, pl.concat([tables.edits, tables.edits])
        )


def test_advantages_are_per_kind_and_subsampling_keeps_reviews(tables):
    frame = rl_sample_frame(tables.steps, tables.trajectories, tables.reviews, tables.edits)
    frame, metrics = add_advantages(frame, "dualadv", 0.2)
    group0 = frame.filter(pl.col("group_id") == 0)
    act = group0.filter(pl.col("kind") == "action")["advantage"]
    rev = group0.filter(pl.col("kind") == "review")["advantage"]
    assert act.sum() == pytest.approx(0.0, abs=1e-9) and act.max() > 0
    assert rev.sum() == pytest.approx(0.0, abs=1e-9) and rev.abs().max() == pytest.approx(
        0.2 * 0.7071, rel=1e-3
    )
    assert metrics["samples/action"] == 4.0
    small = subsample_actions(frame, 3, seed=1)
    assert small.filter(pl.col("kind") == "action").height == 3
    assert frame.filter(pl.col("kind") == "action").height == 4
    assert small.filter(pl.col("kind") == "review").height == 4
    assert subsample_actions(frame, 3, seed=1).equals(small)  # seeded


def test_token_ids_are_the_policy_prompt_ids_plus_stored_response_ids(tables, tokenizer):
    cfg = Config(train=TrainConfig(max_samples=None))
    samples, metrics = build_rl_samples(
        cfg, tables.steps, tables.trajectories, tables.reviews, tables.edits, tokenizer
    )
    assert len(samples) == 8 and metrics["samples/trained"] == 8.0
    row = tables.steps.row(0, named=True)
    prefix, suffix = encode_prompt(tokenizer, row["prompt"], row["prefix_chars"])
    assert samples[0].prompt_ids == prefix + suffix
    assert samples[0].response_ids == row["response_ids"]
    assert {s.kind for s in samples} == {"action", "review"}
    no_review = Config(review={"enabled": False}, counterfactual={"enabled": False})
    only_actions, _ = build_rl_samples(
        no_review, tables.steps, tables.trajectories, tables.reviews, None, tokenizer
    )
    assert {s.kind for s in only_actions} == {"action"}


def test_sft_samples_end_with_eos(tokenizer):
    frame = pl.DataFrame(
        {
            "prompt": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"],
            "prefix_chars": [0],
            "response": ["<action>look</action>"],
            "kind": ["action"],
        }
    )
    (sample,) = build_sft_samples(frame, tokenizer)
    assert sample.response_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(sample.response_ids[:-1]) == "<action>look</action>"


def test_micro_batches_respect_the_budget_and_group_lengths():
    lengths = [100, 30, 95, 31, 60, 250, 29]
    plan = plan_micro_batches(lengths, 200)
    assert sorted(i for mb in plan for i in mb) == list(range(7))
    for mb in plan:
        assert len(mb) * max(lengths[i] for i in mb) <= 200 or len(mb) == 1
    assert plan == [[5], [0, 2], [4, 3, 1], [6]]  # longest first, greedy; 250 > budget goes alone
    assert padding_share(lengths, plan) < 0.15
    assert padding_share([10, 10], [[0, 1]]) == 0.0
    assert padding_share([10, 30], [[0, 1]]) == pytest.approx(1 - 40 / 60)


def test_plan_steps_mini_batches_and_epochs():
    lengths = list(range(10, 30))
    one = plan_steps(lengths, None, 1, 10_000)
    assert len(one) == 1 and sorted(i for mb in one[0] for i in mb) == list(range(20))
    many = plan_steps(lengths, 8, 2, 10_000, seed=3)
    assert len(many) == 6  # 2 epochs × ceil(20 / 8)
    for epoch in (many[:3], many[3:]):
        assert sorted(i for step in epoch for mb in step for i in mb) == list(range(20))
    assert plan_steps(lengths, 8, 2, 10_000, seed=3) == many


def test_shards_cover_everything_once_and_balance():
    lengths = [50] * 7 + [10]
    plan = plan_micro_batches(lengths, 100)  # 4 micro-batches of 2
    parts = [shard(plan, lengths, r, 2) for r in range(2)]
    assert sorted(i for p in parts for mb in p for i in mb) == list(range(8))
    assert abs(len(parts[0]) - len(parts[1])) <= 1
    # fewer micro-batches than ranks: the largest is split
    split = [shard([[0, 1, 2]], [5, 5, 5], r, 2) for r in range(2)]
    assert sorted(i for p in split for mb in p for i in mb) == [0, 1, 2] and all(split)
    assert shard([[0]], [5], 1, 2) == []


def test_collate_positions_point_at_the_logits_of_each_response_token():
    samples = [Sample([1, 2, 3], [4, 5]), Sample([6], [7, 8, 9])]
    mb = collate(samples, [0, 1], pad_id=0)
    assert mb.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert mb.response_ids.tolist() == [[4, 5, 0], [7, 8, 9]]
    assert mb.response_mask.tolist() == [[True, True, False], [True, True, True]]
    assert mb.positions.tolist() == [[2, 3, 3], [0, 1, 2]]
    assert mb.tokens == 9 and mb.index.tolist() == [0, 1]
    assert mb.advantages.dtype == torch.float32


def test_a_step_bonus_adds_to_action_rewards_only(tokenizer):
    tables = make_tables(tokenizer, steps_per_episode=2)
    bonus = pl.DataFrame(
        {"traj_id": ["g0-r1", "g0-r1"], "step": [0, 1], "bonus": [2.5, 1.25]},
        schema_overrides={"step": pl.Int32},
    )
    plain = rl_sample_frame(tables.steps, tables.trajectories, tables.reviews, tables.edits)
    frame = rl_sample_frame(tables.steps, tables.trajectories, tables.reviews, tables.edits, step_bonus=bonus)
    lost = frame.filter((pl.col("kind") == "action") & (pl.col("traj_id") == "g0-r1")).sort("step")
    assert lost["reward"].to_list() == [-0.5 + 2.5, -0.5 + 1.25]  # episode 0 + penalty −0.5 + bonus
    others = frame.filter(pl.col("traj_id") != "g0-r1")
    assert others["reward"].to_list() == plain.filter(pl.col("traj_id") != "g0-r1")["reward"].to_list()
    review = frame.filter((pl.col("kind") == "review") & (pl.col("traj_id") == "g0-r1"))
    assert review["reward"].to_list() == pytest.approx([-0.4])  # reviews get no bonus


def test_progress_reward_scales_the_progress_to_go(tokenizer):
    tables = make_tables(tokenizer, steps_per_episode=2)
    progress = pl.DataFrame(
        {"traj_id": ["g0-r0", "g0-r0"], "step": [0, 1], "progress_to_go": [1.0, 0.5]},
        schema_overrides={"step": pl.Int32},
    )
    on = Config(train=TrainConfig(progress_reward=4.0))
    samples, metrics = build_rl_samples(
        on, tables.steps, tables.trajectories, None, None, tokenizer, progress=progress
    )
    won = [s.reward for s in samples if s.kind == "action"][:2]
    assert won == [10.0 + 4.0, 10.0 + 2.0]
    assert metrics["samples/mean_progress_bonus"] == pytest.approx(3.0)
    off, _ = build_rl_samples(
        Config(), tables.steps, tables.trajectories, None, None, tokenizer, progress=progress
    )
    assert [s.reward for s in off if s.kind == "action"][:2] == [10.0, 10.0]  # the paper: no bonus
