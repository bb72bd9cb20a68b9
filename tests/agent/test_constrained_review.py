"""Review replies decoded under the tools' grammar (``review.constrained``), on both engines with the
real 135M model: sampled at temperature 1 (where the free-text replies of the default run were a
third parse errors), every reply that ends within its budget is a well-formed call of a known tool
with valid arguments, and the grammar leaves the other prompts of a batch alone.
"""

from __future__ import annotations

import pytest

from skillmaster.agent.prompts import PromptParts, apply_chat_template
from skillmaster.config import ModelConfig, ShapingConfig, VllmConfig
from skillmaster.skills.bank import iter_skills
from skillmaster.skills.retrieval import render_skill_block, select_template
from skillmaster.skills.review import ReviewStep, render_review_prompt
from skillmaster.skills.store import load_bank
from skillmaster.skills.tools import review_grammar, score_review

pytestmark = pytest.mark.model

FORMAT_FAULTS = ("parse_error", "unknown_tool", "invalid_arguments")
TASKS = [
    ("put a clean mug in coffeemachine.", "clean", False),
    ("put some apple in fridge.", "pick_and_place", True),
    ("heat some egg and put it in garbagecan.", "heat", False),
]


def review_prompts(tokenizer, bank):
    out = []
    for task, category, won in TASKS:
        block, shown = render_skill_block(select_template(bank, task, category))
        steps = [
            ReviewStep(0, "You are in the middle of a room. You see a cabinet 1, a fridge 1.", "go to cabinet 1"),
            ReviewStep(1, "The cabinet 1 is closed.", "take mug 1 from cabinet 1"),
            ReviewStep(2, "Nothing happens.", "take mug 1 from cabinet 1"),
        ]  # fmt: skip
        prompt = render_review_prompt(
            task_text=task,
            category=category,
            won=won,
            episode_reward=10.0 if won else -1.0,
            skills_block=block,
            final_feedback="Nothing happens.",
            steps=steps,
        )
        titles = {s.skill_id: s.title for _, s in iter_skills(bank)}
        grammar = review_grammar(category, [titles[i] for i in shown if i in titles])
        out.append(
            (apply_chat_template(tokenizer, PromptParts(prompt.system, "", prompt.user)), category, grammar)
        )
    return out


@pytest.fixture(
    scope="module",
    # the transformers engine samples under the grammar minutes slower than vLLM on 2 cores: slow
    params=[pytest.param("hf", marks=pytest.mark.slow), "vllm"],
)
def engine(request, base_model_dir):
    if request.param == "hf":
        pytest.importorskip("xgrammar")  # installed with vLLM
        from skillmaster.agent.policy import Policy

        yield Policy.load(base_model_dir, ModelConfig(dtype="bfloat16", device="cpu"), max_batch_size=8)
        return
    pytest.importorskip("vllm")
    from skillmaster.agent.vllm_engine import VllmPolicy

    with VllmPolicy.load(
        base_model_dir,
        ModelConfig(dtype="bfloat16", device="cpu"),
        VllmConfig(kv_cache_gib=1, max_model_len=4096),
    ) as e:
        yield e


def test_sampled_replies_under_the_grammar_are_valid_calls(engine, repo_root):
    bank = load_bank(repo_root / "src/skillmaster/resources/seed_bank_alfworld_small.json")
    prompts = review_prompts(engine.tokenizer, bank) * 3
    gens = engine.generate(
        [p for p, _, _ in prompts],
        max_new_tokens=256,
        temperature=1.0,
        stop="</tool_call>",
        seeds=list(range(len(prompts))),
        grammars=[g for _, _, g in prompts],
    )
    finished = [(g, c) for g, (_, c, _) in zip(gens, prompts, strict=True) if not g.truncated]
    assert finished, [g.text for g in gens]  # the base model's think text often runs out the budget
    for gen, category in finished:
        out = score_review(gen.text, bank, category, ShapingConfig())
        assert out.status not in FORMAT_FAULTS, (out.status, out.detail, gen.text)
        assert gen.text.startswith("<think>") and gen.text.endswith("</tool_call>"), gen.text


def test_the_grammar_binds_only_its_own_prompt(engine, repo_root):
    """A prompt without a grammar, in the same batch as one with a grammar, gets the reply it gets
    when no prompt of that batch has one."""
    bank = load_bank(repo_root / "src/skillmaster/resources/seed_bank_alfworld_small.json")
    (prompt, _, grammar), (other, _, _) = review_prompts(engine.tokenizer, bank)[:2]
    kw = dict(max_new_tokens=24, temperature=1.0, stop="</tool_call>", seeds=[1, 2])
    free = engine.generate([prompt, other], **kw)
    mixed = engine.generate([prompt, other], grammars=[grammar, None], **kw)
    assert mixed[1].token_ids == free[1].token_ids
    assert mixed[0].text.startswith("<think>")


def test_without_xgrammar_the_review_decodes_free_text_with_a_notice(monkeypatch, caplog):
    from skillmaster.agent import generation
    from skillmaster.stages.review import constrained_decoding

    assert constrained_decoding(False) is False
    monkeypatch.setattr(generation, "xgrammar_installed", lambda: False)
    with caplog.at_level("WARNING"):
        assert constrained_decoding(True) is False
    assert "xgrammar is not installed" in caplog.text
