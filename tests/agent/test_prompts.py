"""Agent prompt rendering (METHOD.md §3) and the prefix/suffix split the policy caches."""

from __future__ import annotations

import pytest

from skillmaster.agent.prompts import (
    CUT_MARK,
    OUTPUT_FORMAT,
    apply_chat_template,
    fit_prompt,
    prompt_length,
    render_action_prompt,
)
from skillmaster.agent.tokens import encode_prompt
from skillmaster.errors import ConfigError
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


# --------------------------------------------------------------------------- prompts over the engine's limit
HISTORY = [
    (f"go to desk {i}", f"You arrive at desk {i}. On the desk {i}, you see a pen {i}.") for i in range(1, 5)
]


def _with_history(shown: int):
    return render_action_prompt(
        env_name="alfworld",
        task_text="put a clean mug in coffeemachine.",
        skills_block=BLOCK,
        step=len(HISTORY),
        history=HISTORY,
        observation="You see a sinkbasin 1.",
        admissible=["go to sinkbasin 1", "help", "look"],
        history_length=shown,
        max_obs_chars=60,
    )


@pytest.mark.model
def test_a_prompt_that_fits_is_left_alone_and_history_is_dropped_oldest_first(base_model_dir):
    tok = load_tokenizer(base_model_dir)
    full, n, shortened = fit_prompt(tok, _with_history, 4, None)
    assert (full, n, shortened) == (*apply_chat_template(tok, _with_history(4)), False)
    assert fit_prompt(tok, _with_history, 4, prompt_length(tok, full, n)) == (full, n, False)
    two, n2 = apply_chat_template(tok, _with_history(2))
    text, prefix_chars, shortened = fit_prompt(tok, _with_history, 4, prompt_length(tok, two, n2))
    assert shortened and (text, prefix_chars) == (two, n)  # the prefix (system, task, skills) is kept
    assert "[1] go to desk 1" not in text and "[2] go to desk 2" not in text and "[4] go to desk 4" in text


@pytest.mark.model
def test_a_prompt_still_too_long_is_cut_from_the_left_after_the_system_text(base_model_dir):
    tok = load_tokenizer(base_model_dir)
    bare, n = apply_chat_template(tok, _with_history(0))
    head = bare[: bare.index("Your task is to:")]  # the template header and the system text
    assert _with_history(0).system in head
    budget = prompt_length(tok, bare, n) - 25
    text, prefix_chars, shortened = fit_prompt(tok, _with_history, 4, budget)
    assert shortened and budget - 3 <= prompt_length(tok, text, prefix_chars) <= budget
    assert (text[:prefix_chars], text[prefix_chars:][: len(CUT_MARK)]) == (head, CUT_MARK)
    assert "Your task is to:" not in text and "go to desk" not in text
    assert text.endswith(bare[-200:])  # observation, admissible actions, reply format, assistant turn
    with pytest.raises(ConfigError, match="system text and template header take"):
        fit_prompt(tok, _with_history, 4, prompt_length(tok, head, len(head)))
