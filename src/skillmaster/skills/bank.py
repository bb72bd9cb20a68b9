"""The skill bank: schema, ids, duplicate detection and pure edits (METHOD.md §2).

A bank is one JSON document::

    general_skills:       [ {skill_id, title, principle, when_to_apply} ... ]
    task_specific_skills: { <category>: [ {skill_id, title, principle, when_to_apply} ... ] }
    common_mistakes:      [ {mistake_id, description, why_it_happens, how_to_avoid} ... ]
    metadata:             { free-form; ``next_dynamic_id`` keeps new ids fresh }

The models are frozen (lists are tuples), so a :class:`Bank` is never edited in place:
:func:`apply_edit` returns a new bank. Unknown keys are schema errors (``extra="forbid"``), except
inside the free-form ``metadata``. The released seed banks (SkillRL's ALFWorld and WebShop banks) and an
:func:`empty_bank` load as they are.

Reading and writing bank files: :mod:`skillmaster.skills.store`; sizes, stats, diffs and listings:
:mod:`skillmaster.skills.diff`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GENERAL = "general"
"""Section name of the general skills (also the ``category`` of a general proposal)."""
DYN_PREFIX = "dyn_"
_DYN_RE = re.compile(r"^dyn_(\d+)$")
_CATEGORY_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


# --------------------------------------------------------------------------- schema
class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _non_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return value


class Skill(_Frozen):
    skill_id: str
    title: str
    principle: str
    when_to_apply: str = ""

    @field_validator("skill_id", "title", "principle")
    @classmethod
    def _not_blank(cls, v: str, info) -> str:
        return _non_blank(v, info.field_name)


class Mistake(_Frozen):
    mistake_id: str
    description: str
    why_it_happens: str = ""
    how_to_avoid: str = ""

    @field_validator("mistake_id", "description")
    @classmethod
    def _not_blank(cls, v: str, info) -> str:
        return _non_blank(v, info.field_name)


class Bank(_Frozen):
    """A whole skill bank (METHOD.md §2). Frozen: edits go through :func:`apply_edit`."""

    general_skills: tuple[Skill, ...] = ()
    task_specific_skills: dict[str, tuple[Skill, ...]] = Field(default_factory=dict)
    common_mistakes: tuple[Mistake, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("task_specific_skills")
    @classmethod
    def _category_names(cls, v: dict[str, tuple[Skill, ...]]) -> dict[str, tuple[Skill, ...]]:
        for name in v:
            if name == GENERAL or not _CATEGORY_RE.match(name):
                raise ValueError(
                    f"category {name!r} is not allowed (use lower-case letters, digits and '_', not 'general')"
                )
        return v

    @field_validator("metadata")
    @classmethod
    def _next_id(cls, v: dict[str, Any]) -> dict[str, Any]:
        nxt = v.get("next_dynamic_id")
        if nxt is not None and (not isinstance(nxt, int) or isinstance(nxt, bool) or nxt < 1):
            raise ValueError(f"metadata.next_dynamic_id must be an integer >= 1 (got {nxt!r})")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> Bank:
        seen: set[str] = set()
        ids = [s.skill_id for _, s in iter_skills(self)] + [m.mistake_id for m in self.common_mistakes]
        for i in ids:
            if i in seen:
                raise ValueError(f"id {i!r} is used twice (every skill and mistake needs its own id)")
            seen.add(i)
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def empty_bank(categories: tuple[str, ...] | list[str] = ()) -> Bank:
    """A bank with no skills (optionally with empty category lists)."""
    return Bank(task_specific_skills={c: () for c in categories}, metadata={"next_dynamic_id": 1})


# --------------------------------------------------------------------------- queries
def normalise(text: str) -> str:
    """Duplicate key of METHOD.md §2: lower-cased, whitespace collapsed (and stripped)."""
    return " ".join(text.lower().split())


def iter_skills(bank: Bank) -> Iterator[tuple[str, Skill]]:
    """``(section, skill)`` for every skill: general first, then categories in file order."""
    for s in bank.general_skills:
        yield GENERAL, s
    for cat, skills in bank.task_specific_skills.items():
        for s in skills:
            yield cat, s


def find_skill(bank: Bank, ref: str) -> tuple[str, Skill] | None:
    """Resolve an update target (released code): exact ``skill_id`` first, then normalised title.

    General skills are searched before task-specific ones; the first hit wins. Mistakes are not
    targets (they have another schema and are never shown with an id).
    """
    for section, s in iter_skills(bank):
        if s.skill_id == ref:
            return section, s
    key = normalise(ref)
    for section, s in iter_skills(bank):
        if normalise(s.title) == key:
            return section, s
    return None


def find_duplicate(bank: Bank, title: str, principle: str, exclude_id: str | None = None) -> str | None:
    """Id of a skill whose normalised title or principle equals the given one (METHOD.md §2), or None."""
    t, p = normalise(title), normalise(principle)
    for _, s in iter_skills(bank):
        if s.skill_id != exclude_id and (normalise(s.title) == t or normalise(s.principle) == p):
            return s.skill_id
    return None


def all_ids(bank: Bank) -> set[str]:
    return {s.skill_id for _, s in iter_skills(bank)} | {m.mistake_id for m in bank.common_mistakes}


def next_dynamic_number(bank: Bank) -> int:
    """Number N of the next fresh id ``dyn_NNN``: above ``metadata.next_dynamic_id - 1`` and every
    existing ``dyn_N``, so ids are never reused, even after a skill was removed."""
    n = int(bank.metadata.get("next_dynamic_id", 1))
    ids = all_ids(bank)
    for i in ids:
        m = _DYN_RE.match(i)
        if m:
            n = max(n, int(m.group(1)) + 1)
    while f"{DYN_PREFIX}{n:03d}" in ids:
        n += 1
    return n


# --------------------------------------------------------------------------- edits
class Edit(_Frozen):
    """One bank edit decided by a review (METHOD.md §5).

    - ``propose``: add a skill to ``category`` (a task category or ``"general"``); the id is
      allocated by :func:`apply_edit`.
    - ``update``: overwrite title, principle and when_to_apply of ``skill_id`` (an id, or the exact
      title of a skill; :func:`skillmaster.skills.tools.score_review` stores the resolved id).
      The id and the section are kept.
    - ``keep``: no change.
    """

    kind: Literal["propose", "update", "keep"]
    category: str = ""
    skill_id: str = ""
    title: str = ""
    principle: str = ""
    when_to_apply: str = ""


@dataclass(frozen=True)
class EditResult:
    """What :func:`apply_edit_detailed` did. ``skill_id``: the skill added or updated (``""``
    otherwise); ``duplicate_of``: the existing skill an edit collided with."""

    bank: Bank
    status: str
    skill_id: str = ""
    section: str = ""
    duplicate_of: str = ""


def _replace_in_section(bank: Bank, section: str, new: Skill) -> Bank:
    def swap(skills: tuple[Skill, ...]) -> tuple[Skill, ...]:
        return tuple(new if s.skill_id == new.skill_id else s for s in skills)

    if section == GENERAL:
        return bank.model_copy(update={"general_skills": swap(bank.general_skills)})
    cats = dict(bank.task_specific_skills)
    cats[section] = swap(cats[section])
    return bank.model_copy(update={"task_specific_skills": cats})


def apply_edit_detailed(bank: Bank, edit: Edit) -> EditResult:
    """Apply ``edit`` to a copy of ``bank`` (pure; ``bank`` is never modified).

    Statuses: propose → ``added`` | ``duplicate`` | ``invalid_arguments`` (bad category name);
    update → ``updated`` | ``not_found`` | ``duplicate`` (the new title or principle equals another
    skill's); keep → ``kept``. Text fields are stripped.
    """
    title, principle, when = edit.title.strip(), edit.principle.strip(), edit.when_to_apply.strip()
    if edit.kind == "keep":
        return EditResult(bank, "kept")
    if edit.kind == "propose":
        cat = edit.category.strip()
        if not title or not principle or (cat != GENERAL and not _CATEGORY_RE.match(cat)):
            return EditResult(bank, "invalid_arguments")
        dup = find_duplicate(bank, title, principle)
        if dup is not None:
            return EditResult(bank, "duplicate", duplicate_of=dup)
        n = next_dynamic_number(bank)
        new = Skill(skill_id=f"{DYN_PREFIX}{n:03d}", title=title, principle=principle, when_to_apply=when)
        meta = {**bank.metadata, "next_dynamic_id": n + 1}
        if cat == GENERAL:
            out = bank.model_copy(update={"general_skills": (*bank.general_skills, new), "metadata": meta})
        else:
            cats = dict(bank.task_specific_skills)
            cats[cat] = (*cats.get(cat, ()), new)
            out = bank.model_copy(update={"task_specific_skills": cats, "metadata": meta})
        return EditResult(out, "added", new.skill_id, cat)
    # update
    if not title or not principle:
        return EditResult(bank, "invalid_arguments")
    hit = find_skill(bank, edit.skill_id)
    if hit is None:
        return EditResult(bank, "not_found")
    section, old = hit
    dup = find_duplicate(bank, title, principle, exclude_id=old.skill_id)
    if dup is not None:
        return EditResult(bank, "duplicate", duplicate_of=dup)
    new = old.model_copy(update={"title": title, "principle": principle, "when_to_apply": when})
    return EditResult(_replace_in_section(bank, section, new), "updated", old.skill_id, section)


def apply_edit(bank: Bank, edit: Edit) -> tuple[Bank, str]:
    """``(new_bank, status)``: the pure bank edit (docs/ARCHITECTURE.md). See :func:`apply_edit_detailed`."""
    res = apply_edit_detailed(bank, edit)
    return res.bank, res.status
