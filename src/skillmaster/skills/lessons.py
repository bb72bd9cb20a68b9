"""Review targets from evidence: the cold start's propose / update / keep examples (METHOD.md §5, §8).

No teacher model writes these replies. An episode's steps show mistakes and working tactics
(:mod:`skillmaster.envs.knowledge`, read by the environment's detectors); each maps to a short
:class:`Lesson` of the environment's :class:`LessonBook` (ALFWorld's household lessons:
:mod:`skillmaster.envs.alfworld.lessons`). Whether the lesson calls for ``propose_skill``,
``update_skill`` or ``keep_skill`` depends only on the skills the review prompt shows:

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skillmaster.config import ShapingConfig
from skillmaster.envs.knowledge import Finding, Lesson, LessonBook
from skillmaster.skills.bank import GENERAL, Bank, Edit, Mistake, Skill, apply_edit_detailed, iter_skills

KINDS = ("propose", "update", "keep")
TOOL_OF = {"propose": "propose_skill", "update": "update_skill", "keep": "keep_skill"}
STATUS_OF = {"propose": "added", "update": "updated", "keep": "kept"}
DEFAULT_SHARES = {"propose": 0.4, "update": 0.3, "keep": 0.3}
"""Share of each kind among the cold start's review targets."""


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
    book: LessonBook,
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
    ``select`` gives the skills and mistakes a prompt shows for a bank; ``book`` the environment's
    lessons.
    """
    lesson = book.lesson_for(finding, family)
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

    evidence = book.evidence_sentence(finding, family, rng)
    outcome = "The episode succeeded" if won else "The episode failed"
    if won and finding.kind not in book.tactics:
        outcome = "The episode succeeded, but not cleanly"
    gist = text(lesson.gist)

    if kind == "keep":
        for other in findings:
            if other.kind == finding.kind:
                continue
            bank = _cover(bank, book.lesson_for(other, family), other, category, select, rng)
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
