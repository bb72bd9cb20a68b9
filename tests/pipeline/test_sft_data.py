"""SFT rows replayed from a real walkthrough (the ``sft-data`` stage) against the rollout path.

The stage replays one training game's expert walkthrough. Independently, the test plays the same
walkthrough on its own environment and renders each step's prompt with the function policy
rollouts use (``collector.render_step_prompt``): the stored prompts must be those strings, the
targets must parse back (``parse_action``) to the walkthrough's actions, and the SFT samples
must put loss on exactly the target's tokens (``build_sft_samples`` → ``collate``).
"""

from __future__ import annotations

import polars as pl
import pytest
import torch
from tiny_project import seed_workdir, tiny_config

from skillmaster.agent.parsing import parse_action
from skillmaster.agent.tokens import encode_prompt, encode_response
from skillmaster.envs.registry import make_suite
from skillmaster.modeling import load_tokenizer
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, _Live, render_step_prompt
from skillmaster.skills.bank import load_bank
from skillmaster.skills.retrieval import make_retriever, render_skill_block
from skillmaster.skills.tools import VALID_STATUSES, score_review
from skillmaster.stages import run_stage
from skillmaster.tables import SFT_SAMPLES
from skillmaster.train.samples import build_sft_samples, collate

pytestmark = [pytest.mark.model, pytest.mark.alfworld]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, base_model_dir, alfworld_data):
    """(cfg, paths, stage metrics, samples frame, tokenizer) after ``sft-data`` on one game."""
    root = tmp_path_factory.mktemp("sft")
    # no search detours: the rows must then be the walkthrough itself (detours: tests/agent/test_expert.py)
    cfg = tiny_config(
        {"sft": {"enabled": True, "num_games": 1, "review_examples": True, "search_detours": 0}}
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


def test_review_examples_are_valid_tool_calls(replayed):
    cfg, paths, _, frame, _ = replayed
    reviews = frame.filter(pl.col("kind") == "review")
    assert reviews.height == 1
    bank = load_bank(paths.bank(0))
    task = next(t for t in make_suite(cfg.env).tasks(cfg.sft.split) if t.task_id == reviews["task_id"][0])
    outcome = score_review(reviews["response"][0], bank, task.category, cfg.review.shaping)
    assert outcome.status in VALID_STATUSES and outcome.flags == []
    assert outcome.shaping == pytest.approx(cfg.review.shaping.valid_call)


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
