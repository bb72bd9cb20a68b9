"""The policy on the real 135M model: prefix KV reuse, stop strings, token accounting."""

from __future__ import annotations

import pytest

from skillmaster.agent.policy import Policy
from skillmaster.agent.prompts import apply_chat_template, render_action_prompt
from skillmaster.skills.retrieval import render_skill_block, select_template
from skillmaster.skills.store import load_bank

pytestmark = pytest.mark.model

SEED_BANK = "src/skillmaster/resources/seed_bank_alfworld_small.json"


@pytest.fixture(scope="module")
def policy(base_model_dir, model_cfg):
    return Policy.load(base_model_dir, model_cfg)


def _prompts(tokenizer, repo_root):
    bank = load_bank(repo_root / SEED_BANK)
    out = []
    for step, (task, category) in enumerate(
        [
            ("put a clean mug in coffeemachine.", "clean"),
            ("look at bowl under the desklamp.", "look_at_obj_in_light"),
            ("put a clean mug in coffeemachine.", "clean"),
        ]
    ):
        block, _ = render_skill_block(select_template(bank, task, category))
        parts = render_action_prompt(
            env_name="alfworld",
            task_text=task,
            skills_block=block,
            step=step,
            history=[("go to desk 1", "You arrive at desk 1. On the desk 1, you see a mug 1.")] * step,
            observation="You are in the middle of a room. You see a cabinet 1, a desk 1 and a sinkbasin 1.",
            admissible=["go to cabinet 1", "go to desk 1", "go to sinkbasin 1", "look", "inventory"],
            history_length=2,
            max_obs_chars=200,
        )
        out.append(apply_chat_template(tokenizer, parts))
    return out


def test_prefix_reuse_gives_identical_greedy_outputs_and_prefills_less(policy, repo_root):
    prompts = _prompts(policy.tokenizer, repo_root)
    policy.prefix_reuse = False
    plain = policy.generate(prompts, max_new_tokens=24, temperature=0.0, stop=None)
    policy.prefix_reuse = True
    policy.clear_cache()
    cached = policy.generate(prompts, max_new_tokens=24, temperature=0.0, stop=None)
    again = policy.generate(prompts, max_new_tokens=24, temperature=0.0, stop=None)  # all prefixes cached now
    assert [g.token_ids for g in cached] == [g.token_ids for g in plain]
    assert [g.token_ids for g in again] == [g.token_ids for g in plain]
    assert [g.prompt_tokens for g in cached] == [g.prompt_tokens for g in plain]
    # prompts 0 and 2 share a prefix: the suffix alone is prefilled
    assert all(c.prefilled_tokens < p.prefilled_tokens / 2 for c, p in zip(cached, plain, strict=True))
    assert policy.stats.prefix_tokens_computed > 0


def test_stop_string_cuts_reply_and_ids(policy, repo_root):
    prompt = _prompts(policy.tokenizer, repo_root)[:1]
    free = policy.generate(prompt, max_new_tokens=16, temperature=0.0, stop=None)[0]
    assert free.truncated and len(free.token_ids) == 16
    # stop at the first word the model writes anyway: the reply ends right after it
    word = free.text.split()[1]
    cut = policy.generate(prompt, max_new_tokens=16, temperature=0.0, stop=word)[0]
    assert cut.text.endswith(word) and not cut.truncated
    assert len(cut.token_ids) < 16
    assert word in policy.tokenizer.decode(cut.token_ids)
    assert word not in policy.tokenizer.decode(cut.token_ids[:-1])


def test_sampling_is_seeded(policy, repo_root):
    prompts = _prompts(policy.tokenizer, repo_root)
    a = policy.generate(prompts, max_new_tokens=12, temperature=1.0, seed=7)
    b = policy.generate(prompts, max_new_tokens=12, temperature=1.0, seed=7)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]


def test_a_sampled_reply_depends_on_its_seed_not_on_its_batch(policy, repo_root):
    prompts = _prompts(policy.tokenizer, repo_root)
    together = policy.generate(prompts, max_new_tokens=12, temperature=1.0, seeds=[11, 22, 33])
    alone = policy.generate(prompts[1:2], max_new_tokens=12, temperature=1.0, seeds=[22])
    reordered = policy.generate([prompts[2], prompts[1]], max_new_tokens=12, temperature=1.0, seeds=[33, 22])
    assert together[1].token_ids == alone[0].token_ids == reordered[1].token_ids
    assert together[2].token_ids == reordered[0].token_ids
    other = policy.generate(prompts[1:2], max_new_tokens=12, temperature=1.0, seeds=[23])
    assert other[0].token_ids != alone[0].token_ids


def test_length_buckets_return_replies_in_the_callers_order(policy, repo_root):
    # longest suffix first, so the bucketed call must reorder (and restore the order of) the prompts
    prompts = _prompts(policy.tokenizer, repo_root)[::-1]
    whole = policy.generate(prompts, max_new_tokens=12, temperature=1.0, seeds=[5, 6, 7])
    policy.max_batch_size = 2
    try:
        calls = policy.stats.calls
        bucketed = policy.generate(prompts, max_new_tokens=12, temperature=1.0, seeds=[5, 6, 7])
        assert policy.stats.calls == calls + 2
    finally:
        policy.max_batch_size = None
    assert [g.token_ids for g in bucketed] == [g.token_ids for g in whole]
    assert [g.prompt_tokens for g in bucketed] == [g.prompt_tokens for g in whole]


def test_tail_stop_looks_at_the_reply_only(policy):
    import torch

    from skillmaster.agent.policy import TailStop

    tok = policy.tokenizer
    prompt = tok("History: <action>look</action> Now:", add_special_tokens=False).input_ids
    replies = ["<think>go</think><action>look</action>", "<think>still thinking about it</think>"]
    rows = [prompt + tok(r, add_special_tokens=False).input_ids for r in replies]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    stop = TailStop(tok, "</action>", prompt_len=len(prompt))
    n1 = len(rows[0])
    assert stop(ids[:, :n1], None).tolist()[0] is True
    assert stop(ids[:, : n1 - 1], None).tolist()[0] is False  # not yet complete
    # the prompt's own "</action>" never stops a reply
    assert stop(ids[:, : len(prompt) + 1], None).tolist() == [False, False]
