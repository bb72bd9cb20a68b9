"""Reading a bank: sizes and flat stats (|B| of METHOD.md §6), the diff between two banks, and the
listings of ``skillmaster skills show|diff``. Pure functions of :class:`~skillmaster.skills.bank.Bank`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from skillmaster.skills.bank import Bank, Skill, iter_skills


# --------------------------------------------------------------------------- sizes and stats
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
