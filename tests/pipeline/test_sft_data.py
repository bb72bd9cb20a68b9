"""SFT rows replayed from a real walkthrough (the ``sft-data`` stage) against the rollout path.

The stage replays one training game's expert walkthrough. Independently, the test plays the same
walkthrough on its own environment and renders each step's prompt with the function policy
rollouts use (``collector.render_step_prompt``): the stored prompts must be those strings, the
targets must parse back (``parse_action``) to the walkthrough's actions, and the SFT samples
must put loss on exactly the target's tokens (``build_sft_samples`` → ``collate``).

The review targets come from the won replay and one episode with a scripted mistake (two targets
each): every one must be a well-formed call of its tool that fits the review budget, and be right
for the skills its own prompt shows (a keep names one of them, an update revises one of them, a
proposal adds a title none of them has). The mistake episode's actions are never targets.
"""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
import torch
from tiny_project import seed_workdir, tiny_config

from skillmaster.agent.parsing import parse_action
from skillmaster.agent.tokens import encode_prompt, encode_response
from skillmaster.envs.registry import make_suite
from skillmaster.modeling import load_tokenizer
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, _Live, render_step_prompt
from skillmaster.skills.retrieval import make_retriever, render_skill_block
from skillmaster.skills.store import load_bank
from skillmaster.skills.tools import (
    TOOL_ARGS,
    has_instance_id,
    has_placeholder,
    parse_tool_call,
    validate_arguments,
)
from skillmaster.stages import run_stage
from skillmaster.stages.sft_data import REVIEW_TOKEN_MARGIN
from skillmaster.tables import SFT_SAMPLES
from skillmaster.train.samples import build_sft_samples, collate

pytestmark = [pytest.mark.model, pytest.mark.alfworld]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, base_model_dir, alfworld_data):
    """(cfg, paths, stage metrics, samples frame, tokenizer) after ``sft-data`` on one game."""
    root = tmp_path_factory.mktemp("sft")
    # no search detours: the rows must then be the walkthrough itself (detours: tests/agent/test_expert.py)
    cfg = tiny_config(
        {
            "sft": {
                "enabled": True,
                "num_games": 1,
                "review_examples": True,
                "search_detours": 0,
                "mistake_episodes": 1,
                "reviews_per_episode": 2,
            },
            "review": {"max_new_tokens": 256, "obs_chars": 900},
            # a Clean game: every scripted mistake can be made there (a room with closed receptacles)
            "env": {"families": ["pick_clean_then_place_in_recep"]},
        }
    )
    paths = seed_workdir(root, base_model_dir, cfg)
    metrics = run_stage("sft-data", cfg, 0, root=root)
    return cfg, paths, metrics, SFT_SAMPLES.read(paths.sft_data), load_tokenizer(paths.base_model)


def test_prompts_are_the_rollout_prompts_and_targets_parse_to_the_walkthrough(replayed):
    cfg, paths, metrics, frame, tokenizer = replayed
    assert metrics["games"] == metrics["walkthroughs_won"] == 1
    actions = frame.filter(pl.col("kind") == "action").sort("step")
    [task_id] = actions["task_id"].unique().to_list()

    suite = make_suite(cfg.env)
    task = next(t for t in suite.tasks(cfg.sft.split) if t.task_id == task_id)
    plan = suite.walkthrough(task_id, cfg.sft.split)
    assert actions["step"].to_list() == list(range(len(plan)))

    # the same episode, played here step by step, rendered by the rollouts' prompt function
    env = make_suite(cfg.env.model_copy(update={"max_steps": len(plan) + 1})).make_env()
    obs, info = env.reset(options={"task_id": task_id, "split": cfg.sft.split})
    bank = load_bank(paths.bank(0))
    block, shown = render_skill_block(make_retriever(cfg.skills)(bank, info["task_text"], task.category))
    assert shown, "the seed bank shows skills for this task"
    state = _Live(
        spec=EpisodeSpec("check", task, 0, 0, bank=bank),
        obs=obs,
        info=info,
        initial_obs=obs,
        skills_block=block,
        skills_shown=tuple(shown),
    )
    settings = RolloutSettings.from_config(cfg)
    for row, action in zip(actions.iter_rows(named=True), plan, strict=True):
        prompt, prefix_chars = render_step_prompt(tokenizer, state, row["step"], settings)
        assert row["prompt"] == prompt, f"step {row['step']}: the SFT prompt is not the rollout prompt"
        assert row["prefix_chars"] == prefix_chars
        parsed = parse_action(row["response"], info["admissible_actions"])
        assert (parsed.action, parsed.valid, parsed.faults, parsed.malformed) == (action, True, (), False)
        obs, _, terminated, _, info = env.step(action)
        state.history.append((action, obs))
        state.obs, state.info = obs, info
    assert terminated and info["won"]


def test_review_examples_are_valid_calls_right_for_their_prompts(replayed):
    cfg, paths, metrics, frame, tokenizer = replayed
    reviews = frame.filter(pl.col("kind") == "review")
    assert metrics["mistake_episodes"] == 1 and metrics["review_episodes"] == 2
    assert reviews.height == metrics["review_samples"] == 4  # 2 episodes x 2 targets
    tools = [parse_tool_call(r).name for r in reviews["response"]]
    assert set(tools) <= set(TOOL_ARGS) and len(set(tools)) >= 2  # more than one kind of call
    assert (
        metrics["review_targets_propose"] + metrics["review_targets_update"] + metrics["review_targets_keep"]
        == 4
    )
    assert json.loads(paths.metrics(0, "sft_data").read_text())["review_samples"] == 4  # the DVC metrics file
    task = next(t for t in make_suite(cfg.env).tasks(cfg.sft.split) if t.task_id == reviews["task_id"][0])
    budget = cfg.review.max_new_tokens - REVIEW_TOKEN_MARGIN
    for r in reviews.iter_rows(named=True):
        call = parse_tool_call(r["response"])
        assert call.error == "" and call.tagged and "<think>" in r["response"], r["response"]
        assert validate_arguments(call.name, call.arguments, task.category)[1] == ""
        assert not has_placeholder(r["response"], call.arguments) and not has_instance_id(call.arguments)
        assert len(encode_response(tokenizer, r["response"])) + 1 <= budget
        shown = r["prompt"].split("Skills shown to the agent:", 1)[1].split("steps:", 1)[0]
        named = (
            re.search(r"'([^']+)'", call.arguments.get("reason", "")) if call.name == "keep_skill" else None
        )
        if call.name == "keep_skill":
            assert named and named.group(1) in shown  # it names a shown skill or mistake
        elif call.name == "update_skill":
            assert f"- {call.arguments['skill_id']}:" in shown  # it revises a shown skill
        else:
            assert call.arguments["title"] not in shown  # a new title


def test_loss_mask_covers_exactly_the_target_tokens(replayed):
    _, _, _, frame, tokenizer = replayed
    samples = build_sft_samples(frame, tokenizer)
    assert len(samples) == frame.height
    mb = collate(samples, list(range(len(samples))), tokenizer.pad_token_id)
    eos = tokenizer.eos_token_id
    for b, (row, s) in enumerate(zip(frame.iter_rows(named=True), samples, strict=True)):
        prefix, suffix = encode_prompt(tokenizer, row["prompt"], row["prefix_chars"])
        assert s.prompt_ids == prefix + suffix  # the ids the policy conditions on in rollouts
        assert s.response_ids == [*encode_response(tokenizer, row["response"]), eos]
        assert tokenizer.decode(s.response_ids[:-1]) == row["response"]
        p, r = len(s.prompt_ids), len(s.response_ids)
        mask = mb.response_mask[b]
        assert int(mask.sum()) == r and bool(mask[:r].all())
        # the scored positions predict exactly the target tokens, the first of them right after the prompt
        scored = mb.positions[b][mask]
        assert scored.tolist() == list(range(p - 1, p + r - 1))
        assert mb.input_ids[b, scored + 1].tolist() == s.response_ids
        assert torch.equal(mb.response_ids[b][mask], torch.tensor(s.response_ids))
        assert mb.input_ids[b, :p].tolist() == s.prompt_ids  # the prompt comes first, unchanged
