"""Action parsing (METHOD.md §4): a table of replies, penalties, and a never-raises property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillmaster.agent.parsing import TEMPLATE_RE, normalise_action, parse_action, step_penalty
from skillmaster.config import PenaltyConfig

ADMISSIBLE = ["go to desk 1", "take mug 1 from desk 1", "look", "inventory"]
P = PenaltyConfig()

CASES = [
    # (reply, truncated, action, valid, faults, malformed)
    (
        "<think>The mug is on the desk.</think><action>go to desk 1</action>",
        False,
        "go to desk 1",
        True,
        (),
        False,
    ),
    ("<think>ok</think>\n<action> Go To Desk 1. </action>", False, "go to desk 1", True, (), False),
    (
        "<think>ok</think><action>'take mug 1 from desk 1'</action>",
        False,
        "take mug 1 from desk 1",
        True,
        (),
        False,
    ),
    (
        "<think>ok</think><action>open drawer 9</action>",
        False,
        "open drawer 9",
        False,
        ("invalid_action",),
        False,
    ),
    ("<think>ok</think> go to desk 1", False, "", False, ("missing_action_tag", "invalid_action"), False),
    (
        "<think>I should go",
        True,
        "",
        False,
        ("truncated", "missing_action_tag", "missing_think_end", "invalid_action"),
        False,
    ),
    ("<think>hmm</think><action>look", True, "look", True, ("truncated", "missing_action_tag"), False),
    ("", False, "", False, ("empty", "missing_action_tag", "invalid_action"), True),
    ("   \n ", False, "", False, ("empty", "missing_action_tag", "invalid_action"), True),
    ("<th>go</th><action>look</action>", False, "look", True, (), True),
    ("<think>Task complete.</think><action>look</action>", False, "look", True, (), True),
    ("<think>" + "maybe " * 8 + "</think><action>look</action>", False, "look", True, ("repetitive",), False),
    (
        "<think>x</think>\n" + "go to desk 1\n" * 4 + "<action>look</action>",
        False,
        "look",
        True,
        ("repetitive",),
        False,
    ),
    ("<action>inventory</action><action>look</action>", False, "inventory", True, (), False),
]


@pytest.mark.parametrize(("reply", "truncated", "action", "valid", "faults", "malformed"), CASES)
def test_parse_table(reply, truncated, action, valid, faults, malformed):
    parsed = parse_action(reply, ADMISSIBLE, truncated=truncated)
    assert parsed.action == action
    assert parsed.valid is valid
    assert parsed.faults == faults
    assert parsed.malformed is malformed


def test_penalties_add_up_and_skip_malformed():
    # METHOD.md §4: truncated -2, missing action tag -2, missing think end -1, invalid -0.5
    faults = ("truncated", "missing_action_tag", "missing_think_end", "invalid_action", "malformed")
    assert step_penalty(faults, P) == pytest.approx(-2 - 2 - 1 - 0.5)
    assert step_penalty((), P) == 0.0
    assert step_penalty(("empty", "repetitive"), P) == pytest.approx(-2.5)


def test_template_actions_admit_any_filled_value():
    webshop = ["search[<your query>]", "click[b09rf2dlzx]", "click[next >]"]
    assert parse_action("<think>x</think><action>search[red running shoes]</action>", webshop).action == (
        "search[red running shoes]"
    )
    assert parse_action("<think>x</think><action>Search[ shoes ]</action>", webshop).valid
    assert not parse_action("<think>x</think><action>search[]</action>", webshop).valid
    assert not parse_action("<think>x</think><action>search[<your query>]</action>", webshop).valid
    assert parse_action("<think>x</think><action>click[next >]</action>", webshop).valid
    assert not parse_action("<think>x</think><action>click[buy now]</action>", webshop).valid


def test_normalise_action():
    assert normalise_action('  "Go   to DESK 1."  ') == "go to desk 1"
    assert normalise_action("[look]") == "look"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.lists(st.text(max_size=20), max_size=5), st.booleans())
def test_parse_never_raises(reply, admissible, truncated):
    parsed = parse_action(reply, admissible, truncated=truncated)
    assert isinstance(parsed.action, str)
    if parsed.valid:
        assert parsed.action in admissible or any(TEMPLATE_RE.match(a) for a in admissible)
    assert set(parsed.faults) <= {
        "empty",
        "truncated",
        "missing_action_tag",
        "missing_think_end",
        "repetitive",
        "invalid_action",
    }
