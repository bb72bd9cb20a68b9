"""Review targets synthesised from evidence (skills.lessons, with ALFWorld's lessons): each one is right
for its own prompt.

For every finding of every family, every kind (propose / update / keep) and several starting banks
(the project's small seed bank, a tiny hand-written one, an empty one, SkillRL's seed bank when the
shared copy is there), the target must parse back to a valid tool call whose status on the bank
its prompt shows is the intended one (added / updated / kept) with no shaping flag, and the bank
must make that call the right one: a keep names a shown item that states the lesson, a propose
shows nothing that states it (nor a same-subgoal skill to update), an update revises a shown
same-subgoal skill that lacked it and the new text states it. Texts hold no object ids, and every
target fits the review budget of params.yaml with its margin (the real tokenizer).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from skillmaster.config import ShapingConfig, load_config
from skillmaster.envs.alfworld.games import FAMILY_CATEGORY
from skillmaster.envs.alfworld.lessons import BOOK, lesson_for
from skillmaster.envs.knowledge import Finding
from skillmaster.skills.bank import GENERAL, Bank, empty_bank, iter_skills
from skillmaster.skills.lessons import (
    KINDS,
    STATUS_OF,
    TOOL_OF,
    assign_kinds,
    check_example,
    review_example,
)
from skillmaster.skills.retrieval import select_template
from skillmaster.skills.store import load_bank
from skillmaster.skills.tools import parse_tool_call, score_review

REPO = Path(__file__).resolve().parents[2]
FAMILIES = FAMILY_CATEGORY
VERB = {"clean": "clean", "heat": "heat", "cool": "cool"}


def findings_of(family: str) -> list[Finding]:
    verb = VERB.get(FAMILIES[family], "")
    out = [
        Finding("take_absent", 3, {"object": "apple", "place": "drawer"}),
        Finding("revisit", 5, {"place": "cabinet"}),
        Finding("closed_unopened", 2, {"place": "drawer"}),
        Finding("missed_visible", 4, {"object": "apple", "place": "countertop"}),
        Finding("repeated_invalid", 6, {}),
        Finding("searched_then_found", 3, {"object": "apple", "count": "3"}),
        Finding("opened_and_found", 3, {"object": "apple", "place": "drawer"}),
        Finding("procedure", None, {"object": "apple", **({"verb": verb} if verb else {})}),
    ]
    if verb:
        out.append(
            Finding("place_before_transform", 4, {"object": "apple", "place": "cabinet", "verb": verb})
        )
    if family == "look_at_obj_in_light":
        out.append(Finding("lamp_empty_handed", 1, {"object": "desklamp"}))
    if family == "pick_two_obj_and_place":
        out.append(Finding("stopped_after_one", None, {"object": "apple"}))
    return out


def banks(seed_bank_paths, tiny_bank) -> dict[str, Bank]:
    out = {
        "small": load_bank(seed_bank_paths["alfworld_small"]),
        "tiny": tiny_bank,
        "empty": empty_bank(sorted(set(FAMILIES.values()))),
    }
    if seed_bank_paths["alfworld_shared"].is_file():
        out["skillrl"] = load_bank(seed_bank_paths["alfworld_shared"])
    return out


def shown(bank: Bank, category: str):
    sel = select_template(bank, "", category)
    return (*sel.general, *sel.task_specific), sel.mistakes


def all_examples(seed_bank_paths, tiny_bank):
    """(bank name, family, finding, kind, example or None) for every combination."""
    out = []
    for name, bank in banks(seed_bank_paths, tiny_bank).items():
        for family, category in FAMILIES.items():
            found = findings_of(family)
            for finding in found:
                for kind in KINDS:
                    rng = random.Random(f"{name}{family}{finding.kind}{kind}")
                    ex = review_example(
                        kind, finding, book=BOOK, findings=[finding, found[-1]], bank=bank, category=category,
                        family=family, won=finding.kind == "procedure", select=lambda b, c=category: shown(b, c),
                        rng=rng,
                    )  # fmt: skip
                    out.append((name, family, finding, kind, ex))
    return out


@pytest.fixture(scope="module")
def examples(seed_bank_paths):
    from skillmaster.skills.bank import Mistake, Skill

    tiny = Bank(
        general_skills=(Skill(skill_id="g1", title="Go before you act", principle="Move to a place before using it."),),
        task_specific_skills={"heat": (Skill(skill_id="h1", title="Use the microwave", principle="Heat it."),)},
        common_mistakes=(Mistake(mistake_id="m1", description="Paraphrasing actions.", how_to_avoid="Copy them."),),
        metadata={"next_dynamic_id": 1},
    )  # fmt: skip
    return all_examples(seed_bank_paths, tiny)


def test_every_target_has_its_intended_status_on_its_own_bank(examples):
    made = [x for x in examples if x[4] is not None]
    assert len(made) == len(examples)  # every combination can be arranged
    for name, family, finding, kind, ex in made:
        category = FAMILIES[family]
        where = (name, family, finding.kind, kind)
        assert check_example(ex, category, ShapingConfig()) == "", where
        call = parse_tool_call(ex.reply)
        assert call.error == "" and call.name == TOOL_OF[kind] and call.tagged, where
        out = score_review(ex.reply, ex.bank, category, ShapingConfig())
        assert out.status == STATUS_OF[kind] == ex.status and out.flags == [], (where, out.detail, out.flags)
        assert out.shaping == pytest.approx(ShapingConfig().valid_call)


def test_each_bank_makes_its_call_the_right_one(examples):
    for name, family, finding, kind, ex in examples:
        category = FAMILIES[family]
        lesson = lesson_for(finding, family)
        verb = finding.details.get("verb", "")
        skills, mistakes = shown(ex.bank, category)
        texts = [f"{s.title}. {s.principle} {s.when_to_apply}" for s in skills]
        texts += [f"{m.description} {m.how_to_avoid}" for m in mistakes]
        covered = [t for t in texts if lesson.covers_text(t, verb)]
        args = json.loads(re.search(r"<tool_call>(.*)</tool_call>", ex.reply).group(1))["arguments"]
        where = (name, family, finding.kind, kind)
        section = GENERAL if lesson.scope == "general" else category
        in_section = {s.skill_id for sec, s in iter_skills(ex.bank) if sec == section}
        if kind == "keep":
            named = re.search(r"'([^']+)'", args["reason"]).group(1)
            assert any(named in t for t in covered), where  # the named item states the lesson
        elif kind == "propose":
            assert covered == [], where
            assert not [
                s for s in skills if s.skill_id in in_section and lesson.subgoal_text(s.title, verb)
            ], where
            assert args["category"] == section
            assert lesson.covers_text(f"{args['title']}. {args['principle']}", verb), where
        else:
            assert covered == [], where  # nothing shown states it yet ...
            target = next(s for s in skills if s.title == args["skill_id"])  # ... the target is shown
            assert target.skill_id in in_section and lesson.subgoal_text(target.title, verb), where
            assert lesson.covers_text(args["principle"], verb), where  # ... and the update adds it
            assert args["principle"].startswith(target.principle.rstrip(".")), where


def test_targets_name_no_instances_and_fit_the_review_budget(examples, base_model_dir):
    from skillmaster.agent.tokens import encode_response
    from skillmaster.modeling import load_tokenizer
    from skillmaster.stages.sft_data import REVIEW_TOKEN_MARGIN

    tokenizer = load_tokenizer(base_model_dir)
    budget = load_config(REPO / "params.yaml").review.max_new_tokens - REVIEW_TOKEN_MARGIN
    longest = 0
    for name, family, finding, kind, ex in examples:
        ids = re.findall(r"\b([a-z]+) \d+\b", ex.reply.lower())
        assert set(ids) <= {"step"}, (name, family, finding.kind, kind, ids)
        longest = max(longest, len(encode_response(tokenizer, ex.reply)) + 1)
    assert longest <= budget, longest


def test_every_target_is_a_reply_the_tools_grammar_admits(examples):
    """With ``review.constrained`` the policy decodes under this grammar: the targets it learnt in
    SFT must be replies the grammar allows on their own prompts (category, shown skills)."""
    xgr_testing = pytest.importorskip("xgrammar.testing")
    from skillmaster.skills.tools import review_grammar

    for name, family, finding, kind, ex in examples:
        category = FAMILIES[family]
        titles = [s.title for s in shown(ex.bank, category)[0]]
        grammar = review_grammar(category, titles)
        assert xgr_testing._is_grammar_accept_string(grammar, ex.reply), (name, family, finding.kind, kind)


def test_wording_varies():
    bank = empty_bank(["clean"])
    replies = {
        review_example(
            "propose", Finding("revisit", 2, {"place": "cabinet"}), book=BOOK, bank=bank, category="clean",
            family="pick_clean_then_place_in_recep", won=False, select=lambda b: shown(b, "clean"),
            rng=random.Random(seed),
        ).reply
        for seed in range(12)
    }  # fmt: skip
    assert len(replies) >= 4


def test_assign_kinds_follows_the_shares_and_varies_within_an_episode():
    kinds = assign_kinds([2] * 10)
    flat = [k for episode in kinds for k in episode]
    assert (flat.count("propose"), flat.count("update"), flat.count("keep")) == (8, 6, 6)
    assert all(len(set(episode)) == 2 for episode in kinds)
    assert assign_kinds([1, 1, 1]) == [["propose"], ["update"], ["keep"]]
    assert assign_kinds([3]) == [["propose", "update", "keep"]]
