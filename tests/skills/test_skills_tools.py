"""Tool-call parsing, statuses and format shaping of the review turn (METHOD.md §5)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillmaster.config import ShapingConfig
from skillmaster.skills.bank import Bank, Edit, Skill
from skillmaster.skills.tools import (
    STATUSES,
    TOOL_SCHEMAS,
    is_env_action,
    parse_tool_call,
    review_stats,
    score_review,
    shaping_reward,
    validate_arguments,
)

_BANK = Bank(general_skills=(Skill(skill_id="g1", title="t", principle="p"),))  # for hypothesis
KEEP = {"name": "keep_skill", "arguments": {"reason": "covered"}}
KEEP_JSON = json.dumps(KEEP)


def call(payload: dict | str, think: bool = True) -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return ("<think>Short reason.</think>" if think else "") + f"<tool_call>{body}</tool_call>"


@pytest.mark.parametrize(
    ("response", "name", "args", "error", "tagged"),
    [
        (call(KEEP), "keep_skill", {"reason": "covered"}, "", True),
        (f"<tool_call>\n   {KEEP_JSON}\n\n</tool_call>", "keep_skill", {"reason": "covered"}, "", True),
        (f"<tool_call>```json\n{KEEP_JSON}\n```</tool_call>", "keep_skill", {"reason": "covered"}, "", True),
        (f"<tool_call>\n```\n{KEEP_JSON}\n```\n</tool_call>", "keep_skill", {"reason": "covered"}, "", True),
        (f"```xml\n<tool_call>{KEEP_JSON}</tool_call>\n```", "keep_skill", {"reason": "covered"}, "", True),
        (f"<TOOL_CALL>{KEEP_JSON}</TOOL_CALL>", "keep_skill", {"reason": "covered"}, "", True),
        (
            f"<tool_call>{KEEP_JSON}}}</tool_call>",
            "keep_skill",
            {"reason": "covered"},
            "",
            True,
        ),  # stray brace
        (
            f"<tool_call>{KEEP_JSON}",
            "keep_skill",
            {"reason": "covered"},
            "",
            False,
        ),  # unclosed: read to the end
        (
            f"<think>x</think> {KEEP_JSON} trailing",
            "keep_skill",
            {"reason": "covered"},
            "",
            False,
        ),  # bare JSON
        (f"```json\n{KEEP_JSON}\n```", "keep_skill", {"reason": "covered"}, "", False),
        (
            '{"a": 1} then {"name": "keep_skill", "arguments": {"reason": "r"}}',
            "keep_skill",
            {"reason": "r"},
            "",
            False,
        ),
        (
            '<tool_call>{"name": " keep_skill ", "arguments": "{\\"reason\\": \\"r\\"}"}</tool_call>',
            "keep_skill",
            {"reason": "r"},
            "",
            True,
        ),
        (
            '<tool_call>{"name": "keep_skill"}</tool_call>',
            "keep_skill",
            {},
            "",
            True,
        ),  # → invalid_arguments later
        (
            call(KEEP) + call({"name": "propose_skill", "arguments": {}}),
            "keep_skill",
            {"reason": "covered"},
            "",
            True,
        ),
        ("<tool_call>{name: keep_skill}</tool_call>", None, None, "invalid JSON", True),
        ("<tool_call></tool_call>", None, None, "no JSON object found", True),
        ("<tool_call>[1, 2]</tool_call>", None, None, "no JSON object found", True),
        ('<tool_call>{"arguments": {}}</tool_call>', None, None, "tool call has no name", True),
        ('<tool_call>{"name": ""}</tool_call>', None, None, "tool call has no name", True),
        ('<tool_call>{"name": 3}</tool_call>', None, None, "tool call has no name", True),
        (
            '<tool_call>{"name": "keep_skill", "arguments": [1]}</tool_call>',
            "keep_skill",
            None,
            "not a JSON object",
            True,
        ),
        (
            '<tool_call>{"name": "keep_skill", "arguments": "oops"}</tool_call>',
            "keep_skill",
            None,
            "not JSON",
            True,
        ),
        ("I would keep the skills.", None, None, "no JSON object found", False),
        ('{"reason": "no name key"}', None, None, "no JSON object found", False),
        ("", None, None, "no JSON object found", False),
    ],
)
def test_parse_tool_call_table(response, name, args, error, tagged):
    parsed = parse_tool_call(response)
    assert parsed.name == name
    assert parsed.arguments == args
    assert error in parsed.error if error else parsed.error == ""
    assert parsed.tagged == tagged


def test_multiple_tool_calls_use_the_first_and_flag_it(tiny_bank):
    out = score_review(
        call(KEEP) + call({"name": "propose_skill", "arguments": {}}), tiny_bank, "heat", ShapingConfig()
    )
    assert out.status == "kept"
    assert "multiple_tool_calls" in out.flags
    assert out.shaping == pytest.approx(0.1)  # informational: no penalty


_pieces = st.sampled_from(
    ["<think>", "</think>", "<tool_call>", "</tool_call>", "```json", "```", "{", "}", "[", "]", '"name"', ":",
     '"keep_skill"', '"arguments"', '"reason"', ",", '"', "\\", "...", "<action>", "</action>", "go to desk 1", " ", "\n"]
)  # fmt: skip
_texts = st.one_of(
    st.text(max_size=400), st.lists(st.one_of(_pieces, st.text(max_size=8)), max_size=60).map("".join)
)


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_parser_and_scorer_never_raise(text):
    parsed = parse_tool_call(text)
    assert parsed.error or (isinstance(parsed.name, str) and isinstance(parsed.arguments, dict))
    out = score_review(text, _BANK, "heat", ShapingConfig())
    assert out.status in STATUSES
    assert isinstance(out.shaping, float)


# --------------------------------------------------------------------------- issue #21: a parsed call always saves
# a decoded reply is valid text: lone surrogates only ever reach the parser as JSON escapes
_escapes = st.sampled_from(
    ["\\ud83d", "\\ude00", "\\ud83d\\ude00", "\\u0000", "\\u00e9", "\\n", "\\\\", '\\"', "\\udfff", "\\ud800"]
)
_values = st.lists(st.one_of(_escapes, st.text(alphabet=st.characters(exclude_characters='"\\', exclude_categories=("Cs",)), max_size=6)),
                   min_size=1, max_size=8).map("".join)  # fmt: skip


def _save_everything(text: str, bank: Bank, category: str, folder) -> str:
    """Everything the review and counterfactual stages write for one reply: the REVIEWS row (parquet),
    the edit as JSON, and the bank B' of an edit; returns the status."""
    from skillmaster.skills.store import load_bank, save_bank
    from skillmaster.tables import REVIEWS

    out = score_review(text, bank, category, ShapingConfig())
    row = {
        "iteration": 1, "task_id": "t", "group_id": 0, "traj_id": "001-0000-00", "family": "f",
        "category": category, "prompt": "p", "prefix_chars": 0, "response": text, "response_ids": [1],
        "prompt_tokens": 1, "response_tokens": 1, "temperature": 1.0, "top_p": 1.0, "tool": out.tool, "arguments": out.arguments_json(),
        "status": out.status, "shaping": out.shaping, "shaping_flags": out.flags, "skill_id": out.skill_id,
        "edit": out.edit_json(),
    }  # fmt: skip
    REVIEWS.write(REVIEWS.from_rows([row]), folder / "reviews.parquet")
    assert REVIEWS.read(folder / "reviews.parquet")["edit"][0] == out.edit_json()
    if out.status in ("added", "updated"):
        Edit.model_validate_json(out.edit_json())
        save_bank(out.new_bank, folder / "bank.json")
        assert load_bank(folder / "bank.json") == out.new_bank
    return out.status


@pytest.mark.parametrize("escape", ["\\ud83d", "\\ude00", "\\udbff", "x\\ud83dy", "\\ude00\\ud83d"])
def test_unpaired_surrogate_escape_is_a_parse_error_not_a_crash(tmp_path, escape):
    args = _args(title=None)
    body = (
        json.dumps({"name": "propose_skill", "arguments": args})[:-2] + f', "title": "Heat it {escape}"}}}}'
    )
    text = f"<think>ok</think><tool_call>{body}</tool_call>"
    assert text.isascii()
    assert _save_everything(text, _BANK, "heat", tmp_path) == "parse_error"
    assert "surrogate" in parse_tool_call(text).error
    # also inside a JSON-encoded arguments string
    nested = json.dumps({"name": "keep_skill", "arguments": '{"reason": "x' + escape + '"}'})
    assert _save_everything(f"<tool_call>{nested}</tool_call>", _BANK, "heat", tmp_path) == "parse_error"


def test_a_paired_surrogate_escape_is_a_character(tmp_path):
    body = json.dumps({"name": "propose_skill", "arguments": _args(title="Heat it \U0001f600")})
    text = f"<think>ok</think><tool_call>{body}</tool_call>"
    assert "\\ud83d\\ude00" in text  # json.dumps escapes it as a pair
    assert _save_everything(text, _BANK, "heat", tmp_path) == "added"


@settings(max_examples=300, deadline=None)
@given(_values, _values, st.sampled_from(["propose_skill", "update_skill", "keep_skill"]))
def test_a_parsed_call_always_saves(title, principle, tool):
    """Property: whatever the reply (escapes included), the review row, the edit and the edited bank
    can all be written and read back."""
    import tempfile
    from pathlib import Path

    args = {
        "propose_skill": {"category": "heat", "title": title, "principle": principle, "when_to_apply": title,
                          "evidence": principle},
        "update_skill": {"skill_id": "t", "title": title, "principle": principle, "when_to_apply": "x",
                         "reason": principle},
        "keep_skill": {"reason": title},
    }[tool]  # fmt: skip
    # build the JSON by hand so that the raw escapes reach the parser as the model wrote them
    inner = ", ".join(f'"{k}": "{v}"' for k, v in args.items())
    text = f'<think>r</think><tool_call>{{"name": "{tool}", "arguments": {{{inner}}}}}</tool_call>'
    with tempfile.TemporaryDirectory() as tmp:
        assert _save_everything(text, _BANK, "heat", Path(tmp)) in STATUSES


@settings(max_examples=200, deadline=None)
@given(_texts)
def test_any_reply_always_saves(text):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        assert _save_everything(text, _BANK, "heat", Path(tmp)) in STATUSES


def test_parser_survives_pathological_nesting():
    deep = '<tool_call>{"name": "keep_skill", "arguments": ' + "[" * 100_000 + "</tool_call>"
    assert parse_tool_call(deep).error.startswith("invalid JSON")  # RecursionError inside json is caught
    assert parse_tool_call('{"a": ' * 50_000).error
    assert parse_tool_call("{" * 50_000).error


def _args(**kw):
    base = {
        "category": "heat",
        "title": "Let it heat",
        "principle": "Wait until the heating action succeeds.",
        "when_to_apply": "Heat tasks.",
        "evidence": "The agent left too early.",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def _update(**kw):
    base = {
        "skill_id": "Use the microwave",
        "title": "Use the microwave",
        "principle": "Heat it twice.",
        "when_to_apply": "Heat tasks.",
        "reason": "Once was not enough.",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("response", "status", "shaping", "flags"),
    [
        (call({"name": "propose_skill", "arguments": _args()}), "added", 0.1, []),
        (call({"name": "propose_skill", "arguments": _args(category="general")}), "added", 0.1, []),
        (call({"name": "update_skill", "arguments": _update()}), "updated", 0.1, []),
        (call({"name": "update_skill", "arguments": _update(skill_id="h1")}), "updated", 0.1, []),
        (call(KEEP), "kept", 0.1, []),
        (
            call({"name": "propose_skill", "arguments": _args(title="use the MICROWAVE")}),
            "duplicate",
            -0.4,
            ["duplicate"],
        ),
        (
            call({"name": "update_skill", "arguments": _update(title="Use the sink")}),
            "duplicate",
            -0.4,
            ["duplicate"],
        ),
        (
            call({"name": "update_skill", "arguments": _update(skill_id="Missing skill")}),
            "not_found",
            0.1,
            [],
        ),
        (
            call({"name": "update_skill", "arguments": _update(skill_id="m1")}),
            "not_found",
            0.1,
            [],
        ),  # mistakes are not targets
        (
            call({"name": "propose_skill", "arguments": _args(category="clean")}),
            "invalid_arguments",
            -1.0,
            [],
        ),
        (call({"name": "propose_skill", "arguments": _args(evidence=None)}), "invalid_arguments", -1.0, []),
        (
            call({"name": "propose_skill", "arguments": _args(extra="also this")}),
            "invalid_arguments",
            -1.0,
            [],
        ),
        (call({"name": "propose_skill", "arguments": _args(title="  ")}), "invalid_arguments", -1.0, []),
        (call({"name": "propose_skill", "arguments": _args(title=3)}), "invalid_arguments", -1.0, []),
        (call({"name": "keep_skill", "arguments": {}}), "invalid_arguments", -1.0, []),
        (call({"name": "Keep_Skill", "arguments": {"reason": "r"}}), "unknown_tool", -1.5, []),
        (call({"name": "delete_skill", "arguments": {}}), "unknown_tool", -1.5, []),
        (call("not json"), "parse_error", -2.0, []),
        # stacking terms
        (call(KEEP, think=False), "kept", -0.4, ["missing_think"]),
        ("<think>x" + call(KEEP)[len("<think>Short reason.</think>") :], "kept", -0.4, ["missing_think"]),
        ("<think>x</think>" + KEEP_JSON, "kept", -0.4, ["missing_tool_call_tags"]),
        (KEEP_JSON, "kept", -0.9, ["missing_think", "missing_tool_call_tags"]),
        ("no call at all", "parse_error", -3.0, ["missing_think", "missing_tool_call_tags"]),
        (call({"name": "go to countertop 1", "arguments": {}}), "unknown_tool", -4.5, ["env_action"]),
        (call({"name": "search[red shoes]", "arguments": {}}), "unknown_tool", -4.5, ["env_action"]),
        (call({"name": "click[buy now]", "arguments": {}}), "unknown_tool", -4.5, ["env_action"]),
        (
            "<think>go</think><action>take apple 1 from table 1</action>",
            "parse_error",
            -5.5,
            ["missing_tool_call_tags", "env_action"],
        ),
        (call({"name": "keep_skill", "arguments": {"reason": "..."}}), "kept", -1.4, ["placeholder"]),
        (
            call({"name": "propose_skill", "arguments": _args(title="<title>")}),
            "added",
            -1.4,
            ["placeholder"],
        ),
        (
            call({"name": "propose_skill", "arguments": _args(principle="Do this, then that…")}),
            "added",
            -1.4,
            ["placeholder"],
        ),
        (
            call({"name": "propose_skill", "arguments": _args(evidence="TODO")}),
            "added",
            -1.4,
            ["placeholder"],
        ),
        (
            call({"name": "propose_skill", "arguments": _args(when_to_apply="when_to_apply")}),
            "added",
            -1.4,
            ["placeholder"],
        ),
        (
            "<think><think>x</think>" + call(KEEP)[len("<think>Short reason.</think>") :],
            "kept",
            -1.4,
            ["placeholder"],
        ),
        (
            call(
                {
                    "name": "propose_skill",
                    "arguments": _args(title="Systematic search", principle="search", evidence="..."),
                }
            ),
            "added",
            -1.4,
            ["placeholder"],
        ),
        (
            call({"name": "propose_skill", "arguments": _args(title="Use the microwave", evidence="...")}),
            "duplicate",
            -1.9,
            ["placeholder", "duplicate"],
        ),
    ],
)
def test_score_review_status_and_shaping(tiny_bank, response, status, shaping, flags):
    out = score_review(response, tiny_bank, "heat", ShapingConfig())
    assert out.status == status, out.detail
    assert out.shaping == pytest.approx(shaping)
    assert [f for f in out.flags if f not in ("multiple_tool_calls", "instance_id")] == flags


def test_generic_template_words_inside_a_sentence_are_not_placeholders(tiny_bank):
    args = _args(principle="Use 'heat <object> with <microwave>' right after taking the object.")
    out = score_review(call({"name": "propose_skill", "arguments": args}), tiny_bank, "heat", ShapingConfig())
    assert (out.status, out.flags) == ("added", [])


def test_instance_ids_are_flagged_without_penalty(tiny_bank):
    args = _args(principle="Look inside drawer 2 before cabinet 10.")
    out = score_review(call({"name": "propose_skill", "arguments": args}), tiny_bank, "heat", ShapingConfig())
    assert out.status == "added" and "instance_id" in out.flags
    assert out.shaping == pytest.approx(0.1)
    clean = score_review(
        call({"name": "propose_skill", "arguments": _args(principle="Check the top 3 places in step 2.")}),
        tiny_bank,
        "heat",
        ShapingConfig(),
    )
    assert "instance_id" not in clean.flags


def test_added_and_updated_outcomes_carry_the_edit_and_the_scratch_bank(tiny_bank):
    cfg = ShapingConfig()
    before = tiny_bank.to_json()
    added = score_review(call({"name": "propose_skill", "arguments": _args()}), tiny_bank, "heat", cfg)
    assert added.skill_id == "dyn_001"
    assert added.edit == Edit(
        kind="propose",
        category="heat",
        skill_id="dyn_001",
        title="Let it heat",
        principle="Wait until the heating action succeeds.",
        when_to_apply="Heat tasks.",
    )
    assert [s.skill_id for s in added.new_bank.task_specific_skills["heat"]] == ["h1", "dyn_001"]
    updated = score_review(
        call({"name": "update_skill", "arguments": _update(skill_id=" use the MICROWAVE ")}),
        tiny_bank,
        "heat",
        cfg,
    )
    assert (updated.status, updated.skill_id, updated.edit.skill_id, updated.edit.category) == (
        "updated",
        "h1",
        "h1",
        "heat",
    )
    assert updated.new_bank.task_specific_skills["heat"][0].principle == "Heat it twice."
    assert Edit.model_validate_json(updated.edit_json()) == updated.edit
    assert json.loads(added.arguments_json())["category"] == "heat"
    kept = score_review(call(KEEP), tiny_bank, "heat", cfg)
    assert kept.new_bank is tiny_bank and kept.edit is None and kept.edit_json() == ""
    assert tiny_bank.to_json() == before


def test_shaping_follows_the_config(tiny_bank):
    cfg = ShapingConfig(valid_call=1.0, duplicate=-10.0, missing_think=-100.0)
    assert shaping_reward("duplicate", ["duplicate", "missing_think"], cfg) == pytest.approx(-109.0)
    assert shaping_reward("not_found", [], cfg) == pytest.approx(1.0)
    assert shaping_reward("parse_error", ["multiple_tool_calls"], cfg) == pytest.approx(-2.0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("go to desk 1", True),
        ("take apple 1 from table 1", True),
        ("look", True),
        ("inventory", True),
        ("done", True),
        ("search[blue shirt]", True),
        ("Click [Buy Now]", True),
        ("buy now", True),
        ("next >", True),
        ("keep_skill", False),
        ("propose_skill", False),
        ("delete_skill", False),
        (None, False),
        ("", False),
    ],
)
def test_env_action_names(name, expected):
    assert is_env_action(name) is expected


def test_tool_schemas_and_review_stats():
    assert [t["function"]["name"] for t in TOOL_SCHEMAS] == ["propose_skill", "update_skill", "keep_skill"]
    assert TOOL_SCHEMAS[0]["function"]["parameters"]["required"] == [
        "category",
        "title",
        "principle",
        "when_to_apply",
        "evidence",
    ]
    stats = review_stats(["added", "kept", "kept", "parse_error"])
    assert stats["reviews_kept"] == 2 and stats["reviews_updated"] == 0 and stats["reviews_total"] == 4
    assert len(stats) == len(STATUSES) + 1


def test_review_shares_count_tools_and_valid_edits():
    from skillmaster.skills.tools import review_shares

    tools = ["propose_skill", "update_skill", "keep_skill", "", "go to desk 1"]
    statuses = ["added", "not_found", "kept", "parse_error", "unknown_tool"]
    out = review_shares(tools, statuses)
    assert (out["tool_propose_skill"], out["tool_update_skill"], out["tool_keep_skill"]) == (1, 1, 1)
    assert (out["tool_none"], out["tool_other"]) == (1, 1)
    assert out["valid_edit_share"] == 0.2  # only the addition: not_found is valid but changes nothing
    assert (
        out["valid_keep_share"] == 0.2 and out["valid_call_share"] == 0.6 and out["parse_error_share"] == 0.2
    )
    assert review_shares([], [])["valid_edit_share"] == 0.0


# --------------------------------------------------------------------------- written forms of a category
@pytest.mark.parametrize(
    ("written", "task", "stored"),
    [("General", "heat", "general"), ("Heat", "heat", "heat"), (" HEAT ", "heat", "heat"),
     ("Pick and place", "pick_and_place", "pick_and_place"), ("pick-and-place", "pick_and_place", "pick_and_place")],
)  # fmt: skip
def test_a_category_in_another_case_or_spacing_is_that_category(written, task, stored):
    args, problem = validate_arguments("propose_skill", _args(category=written), task)
    assert problem == "" and args.category == stored


def test_another_category_is_still_wrong_whatever_its_case():
    args, problem = validate_arguments("propose_skill", _args(category="Cool"), "heat")
    assert args is None and "category must be 'heat'" in problem


def test_an_argument_name_with_stray_spaces_is_that_argument():
    args = _args()
    args[" evidence"] = args.pop("evidence")
    ok, problem = validate_arguments("propose_skill", args, "heat")
    assert problem == "" and ok.evidence == "The agent left too early."
    clash = {**_args(), " evidence": "again"}  # both forms: not guessed, an unknown name
    assert validate_arguments("propose_skill", clash, "heat")[0] is None
