"""The review tools' arguments as pydantic models (METHOD.md §5 table): valid calls round-trip, and
every invalid-argument case gives ``invalid_arguments`` with the reason ``check_arguments`` gave
before the models replaced it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillmaster.config import ShapingConfig
from skillmaster.skills.bank import Bank, Skill
from skillmaster.skills.tools import (
    TOOL_ARGS,
    TOOLS,
    KeepSkill,
    ProposeSkill,
    UpdateSkill,
    score_review,
    validate_arguments,
)

BANK = Bank(task_specific_skills={"heat": (Skill(skill_id="h1", title="Use the microwave", principle="p"),)})
VALID = {
    "propose_skill": {
        "category": " heat ",
        "title": " Let it heat",
        "principle": "Wait until the heating action succeeds.\n",
        "when_to_apply": "Heat tasks.",
        "evidence": "The agent left too early.",
    },
    "update_skill": {
        "skill_id": "Use the microwave ",
        "title": "Use the microwave",
        "principle": "Heat it twice.",
        "when_to_apply": "Heat tasks.",
        "reason": "Once was not enough.",
    },
    "keep_skill": {"reason": "\tcovered"},
}
STATUS = {"propose_skill": "added", "update_skill": "updated", "keep_skill": "kept"}


def reply(name: str, args: dict) -> str:
    return f"<think>ok</think><tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>"


def test_each_tool_has_its_model_with_the_method_table_arguments():
    assert {"propose_skill": ProposeSkill, "update_skill": UpdateSkill, "keep_skill": KeepSkill} == TOOLS
    assert TOOL_ARGS == {
        "propose_skill": ("category", "title", "principle", "when_to_apply", "evidence"),
        "update_skill": ("skill_id", "title", "principle", "when_to_apply", "reason"),
        "keep_skill": ("reason",),
    }


@pytest.mark.parametrize("name", sorted(VALID))
def test_a_valid_call_round_trips(name):
    args = VALID[name]
    model, problem = validate_arguments(name, args, "heat")
    assert problem == ""
    assert isinstance(model, TOOLS[name])
    assert model.model_dump() == {k: v.strip() for k, v in args.items()}  # stored stripped, nothing else
    again = TOOLS[name].model_validate_json(model.model_dump_json(), context={"category": "heat"})
    assert again == model
    out = score_review(reply(name, args), BANK, "heat", ShapingConfig())
    assert (out.status, out.shaping, out.arguments) == (STATUS[name], 0.1, args)  # raw arguments recorded


def test_the_stripped_values_reach_the_edit():
    out = score_review(reply("propose_skill", VALID["propose_skill"]), BANK, "heat", ShapingConfig())
    assert out.edit is not None
    assert (out.edit.category, out.edit.title, out.edit.principle) == (
        "heat",
        "Let it heat",
        "Wait until the heating action succeeds.",
    )


def _with(name: str, **changes) -> dict:
    args = dict(VALID[name]) | changes
    return {k: v for k, v in args.items() if v is not None}


def _without(name: str, *keys: str) -> dict:
    return {k: v for k, v in VALID[name].items() if k not in keys}


# the reasons are those check_arguments gave before the arguments became models
INVALID = [
    ("propose_skill", _without("propose_skill", "evidence"), "missing ['evidence']"),
    ("propose_skill", _with("propose_skill", extra="also this"), "unknown ['extra']"),
    (
        "propose_skill",
        _without("propose_skill", "title") | {"b": 1, "a": 2},
        "unknown ['a', 'b']; missing ['title']",
    ),
    ("propose_skill", _with("propose_skill", title="  "), "not non-empty strings: ['title']"),
    ("propose_skill", _with("propose_skill", title=3), "not non-empty strings: ['title']"),
    (
        "propose_skill",
        _with("propose_skill", principle=None, title=["x"]),
        "missing ['principle']",  # names first, types after
    ),
    (
        "propose_skill",
        _with("propose_skill", evidence="", when_to_apply=True),
        "not non-empty strings: ['when_to_apply', 'evidence']",
    ),
    (
        "propose_skill",
        _with("propose_skill", category="clean"),
        "category must be 'heat' or 'general' (got 'clean')",
    ),
    ("propose_skill", _with("propose_skill", category=" "), "not non-empty strings: ['category']"),
    (
        "propose_skill",
        _with("propose_skill", category="clean", title=""),
        "not non-empty strings: ['title']",  # types before the category
    ),
    ("update_skill", _with("update_skill", skill_id=None), "missing ['skill_id']"),
    ("update_skill", _with("update_skill", reason={"why": "x"}), "not non-empty strings: ['reason']"),
    ("update_skill", _with("update_skill", category="heat"), "unknown ['category']"),
    ("keep_skill", {}, "missing ['reason']"),
    ("keep_skill", {"reason": "\n"}, "not non-empty strings: ['reason']"),
    ("keep_skill", {"reason": None}, "not non-empty strings: ['reason']"),
    ("keep_skill", {"reason": "r", "title": "t"}, "unknown ['title']"),
]


@pytest.mark.parametrize(("name", "args", "reason"), INVALID)
def test_invalid_arguments_keep_their_status_and_reason(name, args, reason):
    model, problem = validate_arguments(name, args, "heat")
    assert model is None and problem == reason
    out = score_review(reply(name, args), BANK, "heat", ShapingConfig())
    assert (out.status, out.detail, out.shaping, out.new_bank) == ("invalid_arguments", reason, -1.0, BANK)


def test_general_is_always_an_allowed_category_and_the_check_needs_the_task():
    assert validate_arguments("propose_skill", _with("propose_skill", category="general"), "heat")[1] == ""
    assert (
        ProposeSkill.model_validate(_with("propose_skill", category="clean")).category == "clean"
    )  # no task


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(VALID)),
    st.dictionaries(
        st.sampled_from(
            ["category", "title", "principle", "when_to_apply", "evidence", "skill_id", "reason", "z"]
        ),
        st.one_of(
            st.text(max_size=5), st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)
        ),
        max_size=3,
    ),
)
def test_models_and_the_reason_agree(name, changes):
    """Property: a call validates exactly when there is no reason, and the model holds the stripped strings."""
    args = VALID[name] | changes
    model, problem = validate_arguments(name, args, "heat")
    assert (model is None) == bool(problem)
    if model is not None:
        assert model.model_dump() == {k: v.strip() for k, v in args.items()}
        assert score_review(reply(name, args), BANK, "heat", ShapingConfig()).status != "invalid_arguments"
    else:
        assert score_review(reply(name, args), BANK, "heat", ShapingConfig()).status == "invalid_arguments"
