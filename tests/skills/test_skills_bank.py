"""Bank schema, apply_edit for every status, duplicate detection, fresh ids, sizes (METHOD.md §2)."""

from __future__ import annotations

import json

import pytest

from skillmaster.errors import DataError
from skillmaster.skills.bank import (
    Bank,
    Edit,
    Skill,
    apply_edit,
    apply_edit_detailed,
    empty_bank,
    find_duplicate,
    find_skill,
    next_dynamic_number,
    normalise,
)
from skillmaster.skills.diff import bank_size, bank_stats
from skillmaster.skills.store import load_bank, parse_bank

EXPECTED_SIZES = {  # (general, task-specific, mistakes), METHOD.md §2 and the resource file
    "alfworld_shared": (12, 32, 11),
    "webshop_shared": (15, 39, 12),
    "alfworld_small": (3, 5, 2),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_seed_banks_load_with_expected_sizes(name, seed_bank_paths):
    path = seed_bank_paths[name]
    if not path.is_file():
        pytest.skip(f"{path} is not available here")
    bank = load_bank(path)
    size = bank_size(bank)
    assert (size.general, size.task_specific, size.mistakes) == EXPECTED_SIZES[name]
    assert size.total == sum(EXPECTED_SIZES[name])
    # the free-form metadata of the seed banks survives a round trip
    assert json.loads(bank.to_json())["metadata"] == json.loads(path.read_text())["metadata"]


def test_empty_bank_round_trips_and_takes_edits():
    bank = empty_bank(["heat"])
    assert bank_size(bank).total == 0
    assert parse_bank(json.loads(bank.to_json())) == bank
    new, status = apply_edit(bank, Edit(kind="propose", category="general", title="T", principle="P"))
    assert status == "added"
    assert new.general_skills[0].skill_id == "dyn_001"
    assert parse_bank({}) == Bank()  # an empty JSON object is an empty bank


@pytest.mark.parametrize(
    ("doc", "fault"),
    [
        (
            {"general_skills": [{"skill_id": "a", "title": "t", "principle": "p", "colour": "x"}]},
            "general_skills[0].colour: unknown key",
        ),
        (
            {"general_skills": [{"skill_id": "a", "principle": "p"}]},
            "general_skills[0].title: Field required",
        ),
        ({"general_skills": [{"skill_id": "a", "title": "  ", "principle": "p"}]}, "title must not be empty"),
        ({"task_specific_skills": {"Heat Tasks": []}}, "category 'Heat Tasks' is not allowed"),
        ({"task_specific_skills": {"general": []}}, "category 'general' is not allowed"),
        ({"surprise": 1}, "surprise: unknown key"),
        ({"metadata": {"next_dynamic_id": 0}}, "next_dynamic_id must be an integer >= 1"),
        (
            {
                "general_skills": [{"skill_id": "a", "title": "t", "principle": "p"}],
                "common_mistakes": [{"mistake_id": "a", "description": "d"}],
            },
            "id 'a' is used twice",
        ),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_schema_errors_name_the_source_and_the_fault(doc, fault):
    with pytest.raises(DataError) as exc:
        parse_bank(doc, "banks/x.json")
    assert str(exc.value).startswith("banks/x.json: ")
    assert fault in str(exc.value)


def test_normalise_lowercases_and_collapses_whitespace():
    assert normalise("  Use\tthe   Microwave \n") == "use the microwave"


def test_duplicate_detection_on_normalised_title_or_principle(tiny_bank):
    assert find_duplicate(tiny_bank, "search unseen   PLACES", "something new") == "g2"
    assert find_duplicate(tiny_bank, "new title", " heat the OBJECT with a microwave.") == "h1"
    # punctuation is not normalised away (METHOD.md §2: case and whitespace only)
    assert find_duplicate(tiny_bank, "use the microwave!", "heat it with a microwave") is None
    assert find_duplicate(tiny_bank, "Use the microwave", "x", exclude_id="h1") is None
    # mistakes are not skills: their text never makes a duplicate
    assert find_duplicate(tiny_bank, "Paraphrasing actions.", "Copy them.") is None


def _dump(bank: Bank) -> str:
    return bank.to_json()


def test_apply_edit_propose_added_general_category_and_new_category(tiny_bank):
    before = _dump(tiny_bank)
    b1, s1 = apply_edit(
        tiny_bank,
        Edit(kind="propose", category="general", title=" New one ", principle="Do it.", when_to_apply="now"),
    )
    b2, s2 = apply_edit(b1, Edit(kind="propose", category="heat", title="Wait", principle="Wait for it."))
    b3, s3 = apply_edit(
        b2, Edit(kind="propose", category="cool", title="Fridge", principle="Use the fridge.")
    )
    assert (s1, s2, s3) == ("added", "added", "added")
    assert b1.general_skills[-1] == Skill(
        skill_id="dyn_001", title="New one", principle="Do it.", when_to_apply="now"
    )
    assert [s.skill_id for s in b2.task_specific_skills["heat"]] == ["h1", "dyn_002"]
    assert [s.skill_id for s in b3.task_specific_skills["cool"]] == ["dyn_003"]
    assert b3.metadata["next_dynamic_id"] == 4
    assert _dump(tiny_bank) == before  # pure: the input bank is unchanged


@pytest.mark.parametrize(
    ("edit", "status", "dup"),
    [
        (
            Edit(kind="propose", category="heat", title="GO BEFORE YOU ACT", principle="other"),
            "duplicate",
            "g1",
        ),
        (
            Edit(kind="propose", category="general", title="other", principle="visit new   places first."),
            "duplicate",
            "g2",
        ),
        (Edit(kind="propose", category="Heat!", title="t", principle="p"), "invalid_arguments", ""),
        (Edit(kind="propose", category="heat", title=" ", principle="p"), "invalid_arguments", ""),
        (Edit(kind="update", skill_id="nope", title="t", principle="p"), "not_found", ""),
        (Edit(kind="update", skill_id="h1", title="Use the sink", principle="p"), "duplicate", "c1"),
        (Edit(kind="update", skill_id="h1", title="t", principle=""), "invalid_arguments", ""),
        (Edit(kind="keep"), "kept", ""),
    ],
)
def test_apply_edit_statuses_that_leave_the_bank_unchanged(tiny_bank, edit, status, dup):
    res = apply_edit_detailed(tiny_bank, edit)
    assert (res.status, res.duplicate_of) == (status, dup)
    assert res.bank == tiny_bank
    assert res.skill_id == ""


def test_apply_edit_update_by_id_and_by_title_keeps_id_and_section(tiny_bank):
    b1, s1 = apply_edit(
        tiny_bank,
        Edit(
            kind="update",
            skill_id="h1",
            title="Use the microwave",
            principle="Heat it longer.",
            when_to_apply="heat tasks",
        ),
    )
    assert s1 == "updated"  # its own title is not a duplicate of itself
    assert b1.task_specific_skills["heat"][0] == Skill(
        skill_id="h1", title="Use the microwave", principle="Heat it longer.", when_to_apply="heat tasks"
    )
    res = apply_edit_detailed(
        tiny_bank,
        Edit(kind="update", skill_id="  search unseen PLACES", title="Search new places", principle="p"),
    )
    assert (res.status, res.skill_id, res.section) == ("updated", "g2", "general")
    assert [s.skill_id for s in res.bank.general_skills] == ["g1", "g2"]
    assert res.bank.general_skills[1].title == "Search new places"
    assert tiny_bank.general_skills[1].title == "Search  unseen places"  # pure


def test_find_skill_prefers_exact_id_then_general_then_categories():
    bank = Bank(
        general_skills=(Skill(skill_id="x", title="h1", principle="p1"),),
        task_specific_skills={
            "heat": (Skill(skill_id="h1", title="Same", principle="p2"),),
            "cool": (Skill(skill_id="k1", title="same", principle="p3"),),
        },
    )
    assert find_skill(bank, "h1")[1].skill_id == "h1"  # exact id beats a title match
    assert find_skill(bank, "SAME")[1].skill_id == "h1"  # first category in file order
    assert find_skill(bank, "p1") is None  # principles are not references


def test_fresh_ids_are_never_reused():
    bank = empty_bank()
    bank, _ = apply_edit(bank, Edit(kind="propose", category="general", title="a", principle="a"))
    bank, _ = apply_edit(bank, Edit(kind="propose", category="general", title="b", principle="b"))
    assert [s.skill_id for s in bank.general_skills] == ["dyn_001", "dyn_002"]
    removed = bank.model_copy(update={"general_skills": bank.general_skills[:1]})  # dyn_002 removed by hand
    again, _ = apply_edit(removed, Edit(kind="propose", category="general", title="c", principle="c"))
    assert again.general_skills[-1].skill_id == "dyn_003"
    # without the counter, the highest existing dyn_N still wins
    no_meta = Bank(general_skills=(Skill(skill_id="dyn_041", title="t", principle="p"),))
    assert next_dynamic_number(no_meta) == 42
    # a counter below an id that already exists skips over it
    clash = Bank(
        general_skills=(Skill(skill_id="dyn_002", title="t", principle="p"),), metadata={"next_dynamic_id": 1}
    )
    assert next_dynamic_number(clash) == 3


def test_bank_size_and_stats(tiny_bank):
    size = bank_size(tiny_bank)
    assert (size.general, size.task_specific, size.mistakes, size.total) == (2, 2, 1, 5)
    assert bank_stats(tiny_bank) == {
        "bank_general": 2,
        "bank_task_specific": 2,
        "bank_mistakes": 1,
        "bank_total": 5,
        "bank_cat_heat": 1,
        "bank_cat_clean": 1,
    }


def test_bank_is_frozen(tiny_bank):
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on assignment
        tiny_bank.general_skills = ()
