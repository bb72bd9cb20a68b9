"""The review tools' grammar (``review.constrained``): what it admits and what it refuses.

Checked with xgrammar's own matcher (the one both engines decode with), on whole strings. The
refused replies are the default run's real failure forms (a stray period after a closing quote, a
category in another case, an argument missing, an update of a skill nobody was shown).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillmaster.config import ShapingConfig
from skillmaster.skills.bank import Bank, Skill
from skillmaster.skills.tools import (
    EDIT_STATUSES,
    GRAMMAR_ARGUMENT_CHARS,
    GRAMMAR_THINK_CHARS,
    TOOL_ARGS,
    review_grammar,
    score_review,
)

xgr_testing = pytest.importorskip("xgrammar.testing")

BANK = Bank(
    general_skills=(Skill(skill_id="g1", title="Search unseen places first", principle="Look where you have not."),),
    task_specific_skills={"clean": (Skill(skill_id="c1", title='Clean at the "sinkbasin"', principle="Clean it."),)},
    metadata={"next_dynamic_id": 1},
)  # fmt: skip
TITLES = ["Search unseen places first", 'Clean at the "sinkbasin"']


def admits(grammar: str, text: str) -> bool:
    return xgr_testing._is_grammar_accept_string(grammar, text)


def reply(name: str, think: str = "The agent walked past the mug.", **arguments) -> str:
    call = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<think>{think}</think><tool_call>{call}</tool_call>"


PROPOSE = dict(category="clean", title="Rinse first", principle="Clean before you place.", when_to_apply="Clean tasks.", evidence="Placed it dirty.")  # fmt: skip
UPDATE = dict(skill_id='Clean at the "sinkbasin"', title="Clean at the sinkbasin", principle="Go there, clean, then place.", when_to_apply="Clean tasks.", reason="Placed it dirty.")  # fmt: skip


def test_well_formed_calls_of_every_tool_are_admitted():
    g = review_grammar("clean", TITLES)
    assert admits(g, reply("keep_skill", reason="The shown skills cover it."))
    assert admits(g, reply("propose_skill", **PROPOSE))
    assert admits(g, reply("propose_skill", **{**PROPOSE, "category": "general"}))
    assert admits(g, reply("update_skill", **UPDATE))
    assert admits(g, reply("keep_skill", reason="Use 'move <object> to <receptacle>' {as shown}."))


def test_think_and_arguments_are_bounded_so_a_rambling_reply_must_close():
    """A 135M policy at T = 1 rambles; the bounds make the grammar close the think and each value."""
    g = review_grammar("clean", TITLES)
    assert admits(g, reply("keep_skill", think="x" * GRAMMAR_THINK_CHARS, reason="Covered."))
    assert not admits(g, reply("keep_skill", think="x" * (GRAMMAR_THINK_CHARS + 1), reason="Covered."))
    for arg in ("title", "principle", "when_to_apply", "evidence"):
        limit = GRAMMAR_ARGUMENT_CHARS[arg]
        assert admits(g, reply("propose_skill", **{**PROPOSE, arg: "y" * limit})), arg
        assert not admits(g, reply("propose_skill", **{**PROPOSE, arg: "y" * (limit + 1)})), arg
    limit = GRAMMAR_ARGUMENT_CHARS["reason"]
    assert admits(g, reply("keep_skill", reason="z" * limit))
    assert not admits(g, reply("keep_skill", reason="z" * (limit + 1)))
    tags = "Use 'move <object> to <receptacle>'"  # up to two `<` after the first character
    assert admits(g, reply("keep_skill", reason=tags))
    assert admits(g, reply("keep_skill", reason="<a" + "z" * (limit - 1) + "<b" + "z" * (limit - 1)))
    assert not admits(g, reply("keep_skill", reason=tags + " <x>"))


@pytest.mark.parametrize(
    "text",
    [
        reply("propose_skill", **{**PROPOSE, "category": "heat"}),  # another task's category
        reply("propose_skill", **{**PROPOSE, "category": "General"}),  # the closed name only
        reply("update_skill", **{**UPDATE, "skill_id": "Heat in the microwave"}),  # not shown
        reply("propose_skill", **{k: v for k, v in PROPOSE.items() if k != "evidence"}),  # missing
        reply("keep_skill", reason="ok", extra="no"),  # an unknown argument
        reply("keep_skill", reason=""),  # empty
        reply("change_to_new_place", reason="ok"),  # an unknown tool
        reply("keep_skill", reason="ok").replace('ok"', 'ok".'),  # the stray period of the default run
        reply("keep_skill", reason="ok").replace("<think>", "<assert>"),  # no think
        reply("keep_skill", reason="ok") + " and more",  # text after the call
        reply("keep_skill", reason="ok</tool_call> more"),  # the stop string inside an argument
        reply("keep_skill", reason=" "),  # blank
    ],
)
def test_the_default_runs_failure_forms_are_refused(text):
    assert not admits(review_grammar("clean", TITLES), text)


def test_without_shown_skills_there_is_nothing_to_update():
    g = review_grammar("clean", [])
    assert "update_skill" not in g
    assert not admits(g, reply("update_skill", **UPDATE))
    assert admits(g, reply("keep_skill", reason="ok"))


_any = st.text(st.characters(exclude_categories=("Cs",)), min_size=0, max_size=12)
_plain = st.text(st.characters(codec="ascii", min_codepoint=32), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_whatever_the_grammar_admits_parses_back_to_a_valid_call(data):
    """Replies written raw (no JSON escaping: what a model samples), some admitted, some not."""
    name = data.draw(st.sampled_from(sorted(TOOL_ARGS)))
    args = {a: data.draw(st.one_of(_plain, _any)) for a in TOOL_ARGS[name]}
    if name == "propose_skill":
        args["category"] = data.draw(st.sampled_from(["clean", "general"]))
    if name == "update_skill":
        args["skill_id"] = json.dumps(data.draw(st.sampled_from(TITLES)))[1:-1]
    body = ", ".join(f'"{k}": "{v}"' for k, v in args.items())
    text = f'<think>{data.draw(_plain)}</think><tool_call>{{"name": "{name}", "arguments": {{{body}}}}}</tool_call>'
    if admits(review_grammar("clean", TITLES), text):
        outcome = score_review(text, BANK, "clean", ShapingConfig())
        assert outcome.status in (*EDIT_STATUSES, "kept", "duplicate"), (outcome.status, text)
