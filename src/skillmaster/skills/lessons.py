"""Review targets from evidence: the cold start's propose / update / keep examples (METHOD.md §5, §8).

No teacher model writes these replies. An episode's steps show mistakes and working tactics
(:mod:`skillmaster.skills.evidence`); each maps to a short household :class:`Lesson`. Whether the
lesson calls for ``propose_skill``, ``update_skill`` or ``keep_skill`` depends only on the skills
the review prompt shows:

- a shown skill (or mistake) already states the lesson (:attr:`Lesson.covers`) → ``keep_skill``
  naming it;
- a shown skill on the same subgoal (:attr:`Lesson.subgoal`) lacks the lesson's clause →
  ``update_skill`` of that skill (its exact title: ids are never shown), the clause added;
- neither → ``propose_skill`` in the task's category or ``general``.

To get all three kinds from the same evidence, :func:`review_example` edits the bank the prompt
is rendered from so that the intended call is the correct one for *that* prompt: a keep example
shows a covering skill (adding one when the bank has none), a propose example shows the bank with
every covering or same-subgoal item removed, an update example shows a same-subgoal skill without
the clause (a weaker skill stands in when the bank has none) and nothing that covers the lesson.
Every reply is checked against its own bank with the review stage's scorer
(:func:`~skillmaster.skills.tools.score_review`): the status must be the intended one and no
shaping penalty may fire. Wording varies (seeded); texts name object and place kinds, never ids.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skillmaster.config import ShapingConfig
from skillmaster.skills.bank import GENERAL, Bank, Edit, Mistake, Skill, apply_edit_detailed, iter_skills
from skillmaster.skills.evidence import Finding

KINDS = ("propose", "update", "keep")
TOOL_OF = {"propose": "propose_skill", "update": "update_skill", "keep": "keep_skill"}
STATUS_OF = {"propose": "added", "update": "updated", "keep": "kept"}
DEFAULT_SHARES = {"propose": 0.4, "update": 0.3, "keep": 0.3}
"""Share of each kind among the cold start's review targets."""

_TRANSFORM = {
    "clean": ("clean", "Clean", "sinkbasin", "cleaned"),
    "heat": ("heat", "Heat", "microwave", "heated"),
    "cool": ("cool", "Cool", "fridge", "cooled"),
}
_TAKE_SUBGOAL = r"\b(take|taking|pick|grab|acqui)"
_SEARCH_SUBGOAL = r"search|explor|hunt|sweep|look for|\bfind|visit|unseen|places"
_PLACE_SUBGOAL = r"plac|\bput\b|destination|deliver"


@dataclass(frozen=True)
class Lesson:
    """One reusable household lesson. Texts may hold ``{verb}``, ``{Verb}``, ``{appliance}``
    (the transformation of Clean/Heat/Cool tasks), filled by :meth:`text`."""

    key: str
    scope: str
    """``general`` (proposed as a general skill) or ``task`` (the task's own category)."""
    titles: tuple[str, ...]
    principles: tuple[str, ...]
    when: str
    clause: str
    """The sentence an update adds to a same-subgoal skill."""
    gist: str
    """What the lesson says, after "says to …"."""
    covers: str
    """Regex (case-insensitive): a skill or mistake whose text matches states the lesson."""
    subgoal: str
    """Regex: a skill whose *title* matches is about the same subgoal (titles name subgoals; a
    principle mentions many things in passing)."""
    weak: tuple[str, str, str]
    """(title, principle, when_to_apply) of a same-subgoal skill without the clause."""

    def text(self, template: str, verb: str = "") -> str:
        v, big, appliance, _ = _TRANSFORM.get(verb, ("", "", "", ""))
        return template.replace("{verb}", v).replace("{Verb}", big).replace("{appliance}", appliance)

    def covers_text(self, text: str, verb: str = "") -> bool:
        return re.search(self.text(self.covers, verb), text, re.IGNORECASE) is not None

    def subgoal_text(self, text: str, verb: str = "") -> bool:
        return re.search(self.text(self.subgoal, verb), text, re.IGNORECASE) is not None


LESSONS: dict[str, Lesson] = {
    lesson.key: lesson
    for lesson in (
        Lesson(
            "take_listed",
            "general",
            ("Take only what is listed", "Check the object is there before taking it"),
            (
                "Take an object only when the observation at your current place lists it; otherwise search another place.",
                "Before a take action, make sure the current observation lists the object; if it is not there, keep searching.",
            ),
            "Before any take action.",
            "Take an object only when the current observation lists it.",
            "take an object only when the observation lists it",
            r"(only|make sure|check)[^.]{0,60}(lists?|listed|visible|there)\b|not there",
            _TAKE_SUBGOAL,
            (
                "Pick up the target",
                "Pick up the target object and carry it where the task says.",
                "When the task names an object.",
            ),
        ),
        Lesson(
            "search_new_places",
            "general",
            ("Search each place once", "Go to places not searched yet"),
            (
                "Keep track of the places already searched and go to a new one until the object is found.",
                "While the object is missing, visit a place you have not searched yet instead of returning to one already checked.",
            ),
            "While the target object has not been found.",
            "Go to a place not searched yet instead of returning to one already checked.",
            "go to places not searched yet",
            r"not (yet )?(been )?(visited|searched|checked|looked)|unvisited|unseen|unexplored|already "
            r"(searched|checked|visited|inspected)|revisit|back and forth|same (two )?places?|exactly once|new (one|place)",
            _SEARCH_SUBGOAL,
            (
                "Look for the object",
                "Go from place to place until you see the object.",
                "While the target object has not been found.",
            ),
        ),
        Lesson(
            "open_closed",
            "general",
            ("Open closed receptacles", "Look inside closed places"),
            (
                "When a place you search is closed, open it and look inside before moving on.",
                "A closed drawer, cabinet or fridge may hold the object: open it and check before leaving.",
            ),
            "Arriving at a closed receptacle while searching.",
            "Open a closed receptacle and look inside before leaving it.",
            "open closed receptacles while searching",
            r"\bopen\b[^.]{0,60}(closed|inside|in it|contents|check|look)|closed[^.]{0,60}\bopen\b",
            _SEARCH_SUBGOAL,
            (
                "Check likely places",
                "Check the places where the object is likely to be.",
                "While the target object has not been found.",
            ),
        ),
        Lesson(
            "take_when_seen",
            "general",
            ("Take the object when you see it", "Do not walk past the object"),
            (
                "When the observation lists the object you need, take it before going anywhere else.",
                "As soon as the object the task needs is listed where you are, pick it up instead of moving on.",
            ),
            "Arriving at a place that holds the object the task needs.",
            "When the observation lists the object you need, take it before leaving.",
            "take the object as soon as it is listed",
            r"(as soon as|immediately|first sight|when (the|it|you)[^.]{0,30}(see|listed|lists|visible))"
            r"|(do not|don't|never) (leave|walk)",
            _TAKE_SUBGOAL,
            (
                "Pick up the target",
                "Pick up the target object and carry it where the task says.",
                "When the task names an object.",
            ),
        ),
        Lesson(
            "transform_first",
            "task",
            ("{Verb} before placing", "{Verb} the object first"),
            (
                "{Verb} the object with the {appliance} before you move it to the destination; placing it first does not finish the task.",
                "Take the object to the {appliance} and {verb} it there, and only then put it at the destination.",
            ),
            "Tasks that ask for a {verb}ed object.",
            "{Verb} it before moving it to the destination.",
            "{verb} the object before placing it",
            r"before (plac|mov|putting|any placement|the final|heading)|only then|until[^.]{0,40}{verb}",
            r"{verb}|{appliance}",
            (
                "{Verb} with the {appliance}",
                "Go to the {appliance} and {verb} the object there.",
                "Tasks that ask for a {verb}ed object.",
            ),
        ),
        Lesson(
            "lamp_in_hand",
            "task",
            ("Hold the object under the lamp", "Take the object before the lamp"),
            (
                "Take the object first and turn on the lamp while holding it; using the lamp empty-handed does not finish the task.",
                "Pick up the object, carry it to a lamp and use the lamp while you hold it.",
            ),
            "Tasks that ask to look at an object under a lamp.",
            "Use the lamp only while holding the object.",
            "hold the object when using the lamp",
            r"(while|when|after)[^.]{0,30}(holding|hold|in hand|taken)|empty.handed|carry[^.]{0,30}(lamp|light)"
            r"|(take|pick)[^.]{0,40}(first|before)[^.]{0,40}(lamp|use)",
            r"lamp|light",
            (
                "Turn on the lamp",
                "Go to the desklamp and turn it on with 'use'.",
                "Tasks that ask to look at an object under a lamp.",
            ),
        ),
        Lesson(
            "two_objects",
            "task",
            ("Place two objects one at a time", "Count the objects placed"),
            (
                "After placing the first object, search for a second one of the same type and place it too.",
                "When the task asks for two objects, keep searching after the first is placed until both are there.",
            ),
            "Tasks that ask to put two objects somewhere.",
            "When the task asks for two objects, place a second one after the first.",
            "place a second object after the first",
            r"\b(two (objects|of)|second (one|object)|both objects|counts?|tally|multiple|how many)\b",
            _PLACE_SUBGOAL,
            (
                "Place at the destination",
                "Carry the object to the destination and move it there.",
                "Put or place tasks.",
            ),
        ),
        Lesson(
            "no_repeat",
            "general",
            ("Do not repeat a failed action", "Change an action that had no effect"),
            (
                "If an action gets 'Nothing happens.', do not send it again; choose another admissible action.",
                "An action that had no effect will not work the second time: pick another one from the admissible list.",
            ),
            "After an action that had no effect.",
            "Do not send an action again after it had no effect.",
            "avoid repeating an action that had no effect",
            r"(do not|don't|never|not)[^.]{0,20}(repeat|again|retry)|nothing happens|no effect|rejected"
            r"|action loops?|repeated identical",
            r"admissib|\bactions?\b|copy",
            (
                "Copy actions exactly",
                "Copy one action exactly as written in the admissible actions.",
                "Every step.",
            ),
        ),
        Lesson(
            "find_take_place",
            "task",
            ("Find, take, then place", "Carry the object to the destination"),
            (
                "Search until the object is listed, take it, go to the destination and move it there.",
                "Take the object where you find it, then go to the receptacle the task names and move it there.",
            ),
            "Tasks that ask to put an object in or on a receptacle.",
            "Take the object first, then go to the destination and move it there.",
            "take the object and then place it at the destination",
            r"(tak\w*|pick)[^.]{0,60}(then|and)[^.]{0,20}(go|carry|navigate|move)|after taking",
            _PLACE_SUBGOAL,
            (
                "Place at the destination",
                "Carry the object to the destination and move it there.",
                "Put or place tasks.",
            ),
        ),
    )
}
"""Every lesson the cold start teaches, by key."""

_PROCEDURE = {
    "pick_and_place_simple": "find_take_place",
    "pick_two_obj_and_place": "two_objects",
    "look_at_obj_in_light": "lamp_in_hand",
    "pick_clean_then_place_in_recep": "transform_first",
    "pick_heat_then_place_in_recep": "transform_first",
    "pick_cool_then_place_in_recep": "transform_first",
}
LESSON_OF_FINDING = {
    "take_absent": "take_listed",
    "revisit": "search_new_places",
    "closed_unopened": "open_closed",
    "missed_visible": "take_when_seen",
    "place_before_transform": "transform_first",
    "lamp_empty_handed": "lamp_in_hand",
    "stopped_after_one": "two_objects",
    "repeated_invalid": "no_repeat",
    "searched_then_found": "search_new_places",
    "opened_and_found": "open_closed",
}
"""Finding kind → the lesson it teaches (``procedure`` depends on the family: :func:`lesson_for`)."""


def lesson_for(finding: Finding, family: str) -> Lesson:
    key = _PROCEDURE[family] if finding.kind == "procedure" else LESSON_OF_FINDING[finding.kind]
    return LESSONS[key]


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(n, f"{n}th")


def evidence_sentence(finding: Finding, family: str, rng: random.Random) -> str:
    """One sentence of what the episode shows (kinds only, never ids; step numbers 1-based as the
    review prompt shows them)."""
    d = {"object": "object", "place": "place", **finding.details}
    n = (finding.step or 0) + 1
    verb = d.get("verb", "")
    past = _TRANSFORM.get(verb, ("", "", "", "changed"))[3]
    options = {
        "take_absent": [
            f"At step {n} the agent tried to take a {d['object']} that the {d['place']} did not hold, and nothing happened.",
            f"Step {n} tried to take a {d['object']} from a {d['place']} whose observation did not list one.",
        ],
        "revisit": [
            f"At step {n} the agent went back to a {d['place']} it had already searched and left without doing anything.",
            f"Step {n} returned to an already searched {d['place']} for nothing.",
        ],
        "closed_unopened": [
            f"At step {n} the agent left a closed {d['place']} without opening it.",
            f"Step {n} walked away from a closed {d['place']} without looking inside.",
        ],
        "missed_visible": [
            f"At step {n} the agent left a {d['place']} that held a {d['object']} without taking it.",
            f"Step {n} walked past a {d['object']} that the {d['place']} showed.",
        ],
        "place_before_transform": [
            f"At step {n} the agent put the {d['object']} at the {d['place']} before it was {past}.",
            f"Step {n} placed the {d['object']} without having {past} it first.",
        ],
        "lamp_empty_handed": [
            f"At step {n} the agent turned on the {d['object']} while holding nothing.",
            f"Step {n} used the {d['object']} before taking the object.",
        ],
        "stopped_after_one": [
            f"Only one {d['object']} was placed; the episode ended before a second one was found.",
            f"The agent placed one {d['object']} and stopped without looking for the second.",
        ],
        "repeated_invalid": [
            f"At step {n} the agent sent the same action again after it had no effect.",
            f"Step {n} repeated an action that had already failed.",
        ],
        "searched_then_found": [
            f"The agent found the {d['object']} at the {_ordinal(int(d.get('count', 2)))} place it visited, trying one new place at a time.",
            f"The {d['object']} turned up after several places were checked once each.",
        ],
        "opened_and_found": [
            f"The {d['object']} was inside a closed {d['place']} that the agent opened.",
            f"Opening a closed {d['place']} revealed the {d['object']}.",
        ],
    }
    if finding.kind == "procedure":
        key = _PROCEDURE[family]
        obj = d["object"]
        options["procedure"] = {
            "find_take_place": [
                f"The agent found the {obj}, took it and moved it to the destination.",
                f"Taking the {obj} first and then carrying it to the destination solved the task.",
            ],
            "two_objects": [
                f"The agent placed one {obj}, then searched for a second one and placed it too.",
                f"Both {obj}s were placed one after the other.",
            ],
            "lamp_in_hand": [
                f"The agent took the {obj} first and turned on the lamp while holding it.",
                f"Holding the {obj} while using the lamp solved the task.",
            ],
            "transform_first": [
                f"The agent {past} the {obj} before moving it to the destination.",
                f"The {obj} was {past} first and only then placed.",
            ],
        }[key]
    return rng.choice(options[finding.kind])


# --------------------------------------------------------------------------- banks shown
Select = Callable[[Bank], tuple[Sequence[Skill], Sequence[Mistake]]]
"""The skills and mistakes a review prompt shows for a bank (the configured retrieval)."""


def _skill_text(s: Skill) -> str:
    return f"{s.title}. {s.principle} {s.when_to_apply}"


def _mistake_text(m: Mistake) -> str:
    return f"{m.description} {m.how_to_avoid}"


def _without(bank: Bank, skill_ids: set[str], mistake_ids: set[str]) -> Bank:
    return bank.model_copy(
        update={
            "general_skills": tuple(s for s in bank.general_skills if s.skill_id not in skill_ids),
            "task_specific_skills": {
                c: tuple(s for s in v if s.skill_id not in skill_ids)
                for c, v in bank.task_specific_skills.items()
            },
            "common_mistakes": tuple(m for m in bank.common_mistakes if m.mistake_id not in mistake_ids),
        }
    )


def _insert(bank: Bank, section: str, title: str, principle: str, when: str) -> tuple[Bank, Skill] | None:
    res = apply_edit_detailed(
        bank, Edit(kind="propose", category=section, title=title, principle=principle, when_to_apply=when)
    )
    if res.status != "added":
        return None
    return res.bank, next(s for sec, s in iter_skills(res.bank) if s.skill_id == res.skill_id)


def _cover(
    bank: Bank, lesson: Lesson, finding: Finding, category: str, select: Select, rng: random.Random
) -> Bank | None:
    """``bank`` with a shown skill stating ``lesson`` (itself when one is shown already)."""
    verb = finding.details.get("verb", "")
    skills, mistakes = select(bank)
    if any(lesson.covers_text(_skill_text(s), verb) for s in skills) or any(
        lesson.covers_text(_mistake_text(m), verb) for m in mistakes
    ):
        return bank
    i = rng.randrange(len(lesson.titles))
    section = GENERAL if lesson.scope == "general" else category
    inserted = _insert(
        bank, section, lesson.text(lesson.titles[i], verb), lesson.text(lesson.principles[i], verb),
        lesson.text(lesson.when, verb),
    )  # fmt: skip
    if inserted is None or inserted[1].skill_id not in {s.skill_id for s in select(inserted[0])[0]}:
        return None
    return inserted[0]


def merge_principle(principle: str, clause: str) -> str:
    """A principle with a clause added as its last sentence."""
    return f"{principle.strip().rstrip('.')}. {clause.strip()}"


@dataclass(frozen=True)
class ReviewExample:
    """One synthesised review target: the bank its prompt shows, and the reply."""

    kind: str
    """propose | update | keep."""
    lesson: str
    finding: str
    bank: Bank
    reply: str
    status: str
    """The status the reply gets on ``bank`` (added | updated | kept)."""


def review_example(
    kind: str,
    finding: Finding,
    *,
    findings: Sequence[Finding] = (),
    bank: Bank,
    category: str,
    family: str,
    won: bool,
    select: Select,
    rng: random.Random,
) -> ReviewExample | None:
    """The review target of ``kind`` for ``finding`` (module text), or None when the bank cannot
    be arranged so that the call is the correct one (e.g. an inserted skill would not be shown).

    ``findings``: everything the episode's shown steps show. A keep is only correct when the shown
    skills cover all of it, so a keep example's bank covers every one of their lessons; a propose or
    update example edits the bank for ``finding``'s lesson only (one tool call per review).
    ``select`` gives the skills and mistakes a prompt shows for a bank.
    """
    lesson = lesson_for(finding, family)
    verb = finding.details.get("verb", "")
    section = GENERAL if lesson.scope == "general" else category
    text = lambda t: lesson.text(t, verb)  # noqa: E731
    covers = lambda t: lesson.covers_text(t, verb)  # noqa: E731
    on_subgoal = lambda t: lesson.subgoal_text(t, verb)  # noqa: E731

    shown_skills, shown_mistakes = select(bank)
    covering = [s for s in shown_skills if covers(_skill_text(s))]
    covering_m = [m for m in shown_mistakes if covers(_mistake_text(m))]
    all_cover_ids = {s.skill_id for _, s in iter_skills(bank) if covers(_skill_text(s))}
    all_cover_m = {m.mistake_id for m in bank.common_mistakes if covers(_mistake_text(m))}

    evidence = evidence_sentence(finding, family, rng)
    outcome = "The episode succeeded" if won else "The episode failed"
    if won and finding.kind not in ("searched_then_found", "opened_and_found", "procedure"):
        outcome = "The episode succeeded, but not cleanly"
    gist = text(lesson.gist)

    if kind == "keep":
        for other in findings:
            if other.kind == finding.kind:
                continue
            bank = _cover(bank, lesson_for(other, family), other, category, select, rng)
            if bank is None:
                return None
        shown_skills, shown_mistakes = select(bank)
        covering = [s for s in shown_skills if covers(_skill_text(s))]
        covering_m = [m for m in shown_mistakes if covers(_mistake_text(m))]
        what = "skill"
        if covering:
            name = covering[0].title
        elif covering_m:
            what, name = "mistake", covering_m[0].description.rstrip(".")
        else:
            i = rng.randrange(len(lesson.titles))
            inserted = _insert(
                bank, section, text(lesson.titles[i]), text(lesson.principles[i]), text(lesson.when)
            )
            if inserted is None:
                return None
            bank, skill = inserted
            name = skill.title
            if skill.skill_id not in {s.skill_id for s in select(bank)[0]}:
                return None
        think = rng.choice(
            [
                f"{outcome}. {evidence} The shown {what} '{name}' already says to {gist}, so the bank covers this.",
                f"{outcome}. {evidence} This is already covered by the shown {what} '{name}'.",
            ]
        )
        reason = f"The shown {what} '{name}' already says to {gist}."
        call = {"name": "keep_skill", "arguments": {"reason": reason}}
    elif kind == "propose":
        in_section = {s.skill_id for sec, s in iter_skills(bank) if sec == section}
        drop = all_cover_ids | {
            s.skill_id for s in shown_skills if s.skill_id in in_section and on_subgoal(s.title)
        }
        bank = _without(bank, drop, all_cover_m)
        i = rng.randrange(len(lesson.titles))
        think = rng.choice(
            [
                f"{outcome}. {evidence} No shown skill says to {gist}, so this is a new lesson.",
                f"{outcome}. {evidence} The shown skills do not cover this, so I propose a skill to {gist}.",
            ]
        )
        call = {
            "name": "propose_skill",
            "arguments": {
                "category": section,
                "title": text(lesson.titles[i]),
                "principle": text(lesson.principles[i]),
                "when_to_apply": text(lesson.when),
                "evidence": evidence,
            },
        }
    elif kind == "update":
        bank = _without(bank, all_cover_ids, all_cover_m)
        shown_skills, _ = select(bank)
        in_section = {s.skill_id for sec, s in iter_skills(bank) if sec == section}
        candidates = [s for s in shown_skills if s.skill_id in in_section and on_subgoal(s.title)]
        if candidates:
            target = candidates[0]
        else:
            title, principle, when = (text(t) for t in lesson.weak)
            inserted = _insert(bank, section, title, principle, when)
            if inserted is None:
                return None
            bank, target = inserted
            if target.skill_id not in {s.skill_id for s in select(bank)[0]}:
                return None
        think = rng.choice(
            [
                f"{outcome}. {evidence} The shown skill '{target.title}' is about this step but does not say "
                f"to {gist}, so I update it.",
                f"{outcome}. {evidence} '{target.title}' misses this point, so I add it to that skill.",
            ]
        )
        call = {
            "name": "update_skill",
            "arguments": {
                "skill_id": target.title,
                "title": target.title,
                "principle": merge_principle(target.principle, text(lesson.clause)),
                "when_to_apply": target.when_to_apply or text(lesson.when),
                "reason": f"{evidence} The skill did not say to {gist}.",
            },
        }
    else:
        raise ValueError(f"unknown review kind {kind!r} (choose from {KINDS})")
    if kind != "keep":  # nothing the prompt shows may state the lesson already
        skills, mistakes = select(bank)
        if any(covers(_skill_text(x)) for x in skills) or any(covers(_mistake_text(m)) for m in mistakes):
            return None
    reply = f"<think>{think}</think><tool_call>{json.dumps(call, ensure_ascii=False)}</tool_call>"
    return ReviewExample(kind, lesson.key, finding.kind, bank, reply, STATUS_OF[kind])


def check_example(example: ReviewExample, category: str, shaping: ShapingConfig) -> str:
    """Empty when the reply scores as intended on its own bank (status, no flags); else why not."""
    from skillmaster.skills.tools import score_review

    out = score_review(example.reply, example.bank, category, shaping)
    if out.status != example.status:
        return f"status {out.status} ({out.detail}) instead of {example.status}"
    if out.flags:
        return f"flags {out.flags}"
    return ""


def assign_kinds(slots: Sequence[int], shares: dict[str, float] | None = None) -> list[list[str]]:
    """For episodes with ``slots[i]`` review examples each, the kind of every example, so that the
    running counts follow ``shares`` (default 40% propose, 30% update, 30% keep) and no episode
    gets the same kind twice while another kind is possible. Deterministic."""
    shares = shares or DEFAULT_SHARES
    counts = dict.fromkeys(shares, 0)
    out = []
    for n in slots:
        mine: list[str] = []
        for _ in range(n):
            total = sum(counts.values()) + 1
            options = [k for k in shares if k not in mine] or list(shares)
            kind = max(options, key=lambda k: (shares[k] * total - counts[k], shares[k], -KINDS.index(k)))
            counts[kind] += 1
            mine.append(kind)
        out.append(mine)
    return out
