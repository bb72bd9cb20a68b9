"""The skill bank: schema, pure edits, duplicate detection, diff and the crash-safe store (METHOD.md §2).

A bank is one JSON document::

    general_skills:       [ {skill_id, title, principle, when_to_apply} ... ]
    task_specific_skills: { <category>: [ {skill_id, title, principle, when_to_apply} ... ] }
    common_mistakes:      [ {mistake_id, description, why_it_happens, how_to_avoid} ... ]
    metadata:             { free-form; ``next_dynamic_id`` keeps new ids fresh }

The models are frozen (lists are tuples), so a :class:`Bank` is never edited in place:
:func:`apply_edit` returns a new bank. Unknown keys are schema errors (``extra="forbid"``), except
inside the free-form ``metadata``. The seed banks of ``shared/data/skills/`` and an
:func:`empty_bank` load as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skillmaster.errors import DataError
from skillmaster.io import atomic_write_bytes, atomic_write_text

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


@dataclass(frozen=True)
class BankSize:
    """Skill counts by section; ``total`` = general + task-specific + mistakes (|B| of METHOD.md §6)."""

    general: int
    task_specific: int
    mistakes: int
    by_category: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.general + self.task_specific + self.mistakes


def bank_size(bank: Bank) -> BankSize:
    by_cat = {c: len(s) for c, s in bank.task_specific_skills.items()}
    return BankSize(len(bank.general_skills), sum(by_cat.values()), len(bank.common_mistakes), by_cat)


def bank_stats(bank: Bank, prefix: str = "bank_") -> dict[str, int]:
    """Flat metrics for MLflow / DVC: sizes by section and per category."""
    size = bank_size(bank)
    out = {
        f"{prefix}general": size.general,
        f"{prefix}task_specific": size.task_specific,
        f"{prefix}mistakes": size.mistakes,
        f"{prefix}total": size.total,
    }
    out.update({f"{prefix}cat_{c}": n for c, n in size.by_category.items()})
    return out


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
    """``(new_bank, status)``: DESIGN.md's pure bank edit. See :func:`apply_edit_detailed`."""
    res = apply_edit_detailed(bank, edit)
    return res.bank, res.status


# --------------------------------------------------------------------------- store
def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    parts: list[str] = []
    for p in first["loc"]:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    where = "".join(parts)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {msg}{tail}" if where else f"{msg}{tail}"


def parse_bank(data: Any, source: str = "<bank>") -> Bank:
    """Validate a decoded JSON document as a bank; a :class:`DataError` names the source and fault."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: a skill bank must be a JSON object, got {type(data).__name__}")
    try:
        return Bank.model_validate(data)
    except ValidationError as err:
        raise DataError(f"{source}: not a valid skill bank: {_describe(err)}") from None
    except RecursionError:
        raise DataError(f"{source}: not a valid skill bank: nested too deeply") from None


def load_bank(path: str | Path) -> Bank:
    """Read and validate a bank file. Missing, non-JSON or schema-invalid files raise a
    :class:`DataError` naming the file and the fault; the file is left untouched."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: skill bank not found (check the path, or run the stage that writes it)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: skill bank is not valid JSON ({exc}); fix or remove the file") from None
    except RecursionError:
        raise DataError(
            f"{path}: skill bank is nested too deeply to be a bank; fix or remove the file"
        ) from None
    return parse_bank(data, str(path))


def prev_path(path: str | Path) -> Path:
    """Where :func:`save_bank` keeps the version it replaced: ``iter_001.json`` → ``iter_001.prev.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix or '.json'}")


def save_bank(bank: Bank, path: str | Path) -> Path:
    """Write ``bank`` atomically (temp file + rename), keeping the replaced version at :func:`prev_path`.

    The bank is re-validated first. An existing file that is not a valid bank is never
    overwritten: a :class:`DataError` asks the user to fix or move it.
    """
    path = Path(path)
    text = parse_bank(json.loads(bank.to_json()), str(path)).to_json()  # round-trip check
    if path.exists():
        try:
            load_bank(path)
        except DataError as err:
            raise DataError(
                f"{err}; refusing to overwrite it (move it away to save a new bank there)"
            ) from None
        old = path.read_bytes()
        if old.decode("utf-8") == text:
            return path
        atomic_write_bytes(prev_path(path), old)
    return atomic_write_text(path, text)


# --------------------------------------------------------------------------- diff
@dataclass(frozen=True)
class Change:
    """One entry of a bank diff. ``before``/``after``: the item's fields (None when absent)."""

    kind: Literal["added", "updated", "removed"]
    item_id: str
    section: str
    before: dict[str, str] | None = None
    after: dict[str, str] | None = None


def _index(bank: Bank) -> dict[str, tuple[str, dict[str, str]]]:
    out = {s.skill_id: (sec, s.model_dump()) for sec, s in iter_skills(bank)}
    out.update({m.mistake_id: ("mistakes", m.model_dump()) for m in bank.common_mistakes})
    return out


def diff_banks(a: Bank, b: Bank) -> list[Change]:
    """Changes from ``a`` to ``b`` matched by id: added, updated (fields or section), removed.

    Order: added and updated in ``b``'s order, then removed in ``a``'s order.
    """
    ia, ib = _index(a), _index(b)
    out: list[Change] = []
    for i, (sec, item) in ib.items():
        if i not in ia:
            out.append(Change("added", i, sec, None, item))
        elif ia[i] != (sec, item):
            out.append(Change("updated", i, sec, ia[i][1], item))
    out += [Change("removed", i, sec, item, None) for i, (sec, item) in ia.items() if i not in ib]
    return out


def format_diff(changes: list[Change], name_a: str = "A", name_b: str = "B") -> str:
    """A readable changelog: one block per change; updates show each changed field before/after."""
    if not changes:
        return f"{name_a} → {name_b}: no changes"
    counts = {k: sum(c.kind == k for c in changes) for k in ("added", "updated", "removed")}
    lines = [f"{name_a} → {name_b}: " + ", ".join(f"{n} {k}" for k, n in counts.items())]
    for c in changes:
        lines.append("")
        if c.kind == "updated":
            assert c.before is not None and c.after is not None
            lines.append(f"~ updated {c.item_id} [{c.section}]")
            for key in c.after:
                if c.before.get(key) != c.after[key]:
                    lines.append(f"    {key}:")
                    lines.append(f"      - {c.before.get(key, '')}")
                    lines.append(f"      + {c.after[key]}")
        else:
            item = c.after if c.kind == "added" else c.before
            assert item is not None
            mark = "+" if c.kind == "added" else "-"
            lines.append(f"{mark} {c.kind} {c.item_id} [{c.section}]")
            lines += [f"    {k}: {v}" for k, v in item.items() if not k.endswith("_id") and v]
    return "\n".join(lines)


# --------------------------------------------------------------------------- display
def format_bank(bank: Bank) -> str:
    """Human-readable listing of a whole bank (``skillmaster skills show``)."""
    size = bank_size(bank)
    lines = [
        f"{size.total} items: {size.general} general, {size.task_specific} task-specific, "
        f"{size.mistakes} mistakes"
    ]

    def skill_lines(skills: tuple[Skill, ...]) -> None:
        for s in skills:
            lines.append(f"  [{s.skill_id}] {s.title}: {s.principle}")
            if s.when_to_apply:
                lines.append(f"      when: {s.when_to_apply}")

    lines.append(f"\nGeneral skills ({size.general})")
    skill_lines(bank.general_skills)
    for cat, skills in bank.task_specific_skills.items():
        lines.append(f"\n{cat} ({len(skills)})")
        skill_lines(skills)
    lines.append(f"\nCommon mistakes ({size.mistakes})")
    for m in bank.common_mistakes:
        lines.append(f"  [{m.mistake_id}] {m.description}")
        if m.how_to_avoid:
            lines.append(f"      instead: {m.how_to_avoid}")
    return "\n".join(lines)
