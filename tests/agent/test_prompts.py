"""Agent prompt rendering (METHOD.md §3) and the prefix/suffix split the policy caches."""

from __future__ import annotations

import pytest

from skillmaster.agent.prompts import OUTPUT_FORMAT, apply_chat_template, render_action_prompt
from skillmaster.agent.tokens import encode_prompt
from skillmaster.modeling import load_tokenizer

BLOCK = "General principles:\n- Look first: check every place once.\n\nMistakes to avoid:\n- Don't: loop."


def _render(step=2, skills=BLOCK, history=None):
    return render_action_prompt(
        env_name="alfworld",
        task_text="put a clean mug in coffeemachine.",
        skills_block=skills,
        step=step,
        history=history
        if history is not None
        else [
            ("go to desk 1", "You arrive at desk 1."),
            ("take mug 1 from desk 1", "You pick up the mug 1. " * 20),
        ],
        observation="You see a sinkbasin 1.",
        admissible=["go to sinkbasin 1", "help", "look"],
        history_length=1,
        max_obs_chars=60,
    )


def test_layout_order_and_cuts():
    parts = _render()
    user = parts.prefix + parts.suffix
    # task, skill block, history, observation, admissible actions, format: in this order (METHOD.md §3)
    keys = [
        "Your task is to: put a clean mug",
        "General principles:",
        "Mistakes to avoid:",
        "[2] take mug 1 from desk 1 ->",
        "Current observation: You see a sinkbasin 1.",
        "Admissible actions: go to sinkbasin 1 | look",
        OUTPUT_FORMAT,
    ]
    positions = [user.index(k) for k in keys]
    assert positions == sorted(positions)
    assert "help" not in user.split("Admissible actions:")[1]
    assert "[1] go to desk 1" not in user  # history_length=1 shows only the last step
    hist_line = next(line for line in user.splitlines() if line.startswith("[2]"))
    assert hist_line.endswith("...") and len(hist_line) < 120  # observation cut to 60 chars


def test_prefix_is_constant_across_steps_and_skills_can_be_off():
    a, b = _render(step=0, history=[]), _render(step=2)
    assert a.prefix == b.prefix and a.suffix != b.suffix
    off = _render(skills=None)
    assert "## Skills" not in off.prefix and "Your task is to:" in off.prefix


@pytest.mark.model
def test_chat_template_split_and_encoding(base_model_dir):
    tok = load_tokenizer(base_model_dir)
    text, prefix_chars = apply_chat_template(tok, _render())
    assert 0 < prefix_chars < len(text)
    assert text[:prefix_chars].endswith(_render().prefix)
    assert text.endswith("<|im_start|>assistant\n")
    p_ids, s_ids = encode_prompt(tok, text, prefix_chars)
    assert tok.decode(p_ids + s_ids) == text
    # the prefix of a later step encodes to the very same ids (what makes its KV reusable)
    text2, n2 = apply_chat_template(tok, _render(step=0, history=[]))
    assert encode_prompt(tok, text2, n2)[0] == p_ids
