"""The bank's lineage: every scored edit with where it came from and why it was (not) committed.

Read from the pipeline's tables (``data/iter_NNN/{collect,review,counterfactual}`` and
``data/banks/``): for each edit of each iteration, the review that made it (its tool, evidence or
reason), the episode it reviewed (task, family, outcome), its probes with the scores before and
after, U, the commit decision, and the skill's text before and after. ``skillmaster skills
history`` prints it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from skillmaster.paths import Paths


@dataclass(frozen=True)
class HistoryEntry:
    iteration: int
    traj_id: str
    task_id: str
    family: str
    won: bool | None
    """Outcome of the reviewed episode (None when the collect table is gone)."""
    status: str
    """added | updated (the review's status)."""
    section: str
    skill_id: str
    """The skill's id in the next bank when committed, else the review's scratch id (a proposal's
    scratch id means nothing outside its review)."""
    evidence: str
    """The proposal's ``evidence`` or the update's ``reason``."""
    probe_task_ids: list[str]
    scores_before: list[float]
    scores_after: list[float]
    utility: float
    scored: bool
    committed: bool
    commit_reason: str
    before: dict[str, str] | None
    """The skill's title, principle and when_to_apply before the edit (None for a proposal)."""
    after: dict[str, str]


def _fields(skill) -> dict[str, str]:
    return {"title": skill.title, "principle": skill.principle, "when_to_apply": skill.when_to_apply}


def bank_history(root: Path, committed_only: bool = True, iteration: int | None = None) -> list[HistoryEntry]:
    """Every edit (only committed ones by default) of every iteration found under ``root``."""
    from skillmaster.skills.bank import Edit, find_skill
    from skillmaster.skills.store import load_bank
    from skillmaster.tables import EDITS, REVIEWS, TRAJECTORIES

    paths = Paths(root)
    out: list[HistoryEntry] = []
    it = 1
    while paths.edits(it).is_file():
        if iteration is not None and it != iteration:
            it += 1
            continue
        edits = EDITS.read(paths.edits(it))
        args = {}
        if paths.reviews(it).is_file():
            reviews = REVIEWS.read(paths.reviews(it))
            args = {r["traj_id"]: json.loads(r["arguments"] or "{}") for r in reviews.iter_rows(named=True)}
        won = {}
        if paths.trajectories(it).is_file():
            won = dict(TRAJECTORIES.read(paths.trajectories(it)).select("traj_id", "won").iter_rows())
        before_bank = load_bank(paths.bank(it - 1)) if paths.bank(it - 1).is_file() else None
        after_bank = load_bank(paths.bank(it)) if paths.bank(it).is_file() else None
        for row in edits.iter_rows(named=True):
            if committed_only and not row["committed"]:
                continue
            edit = Edit.model_validate_json(row["edit"])
            before = None
            if edit.kind == "update" and before_bank is not None:
                hit = find_skill(before_bank, edit.skill_id)
                before = _fields(hit[1]) if hit else None
            after = {"title": edit.title, "principle": edit.principle, "when_to_apply": edit.when_to_apply}
            skill_id = row["committed_id"] or row["skill_id"]
            if row["committed"] and after_bank is not None and (hit := find_skill(after_bank, skill_id)):
                after = _fields(hit[1])
            a = args.get(row["traj_id"], {})
            out.append(
                HistoryEntry(
                    iteration=it,
                    traj_id=row["traj_id"],
                    task_id=row["task_id"],
                    family=row["family"],
                    won=won.get(row["traj_id"]),
                    status=row["status"],
                    section=edit.category,
                    skill_id=skill_id,
                    evidence=str(a.get("evidence") or a.get("reason") or ""),
                    probe_task_ids=list(row["probe_task_ids"]),
                    scores_before=list(row["scores_before"]),
                    scores_after=list(row["scores_after"]),
                    utility=float(row["utility"]),
                    scored=bool(row["scored"]),
                    committed=bool(row["committed"]),
                    commit_reason=row["commit_reason"],
                    before=before,
                    after=after,
                )
            )
        it += 1
    return out


def _scores(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def format_history(entries: list[HistoryEntry], committed_only: bool = True) -> str:
    """The lineage as text: one block per edit, grouped by iteration."""
    if not entries:
        what = "committed edits" if committed_only else "scored or proposed edits"
        return f"no {what} yet (the bank is still the starting bank)"
    lines: list[str] = []
    current = None
    for e in entries:
        if e.iteration != current:
            current = e.iteration
            n = sum(x.iteration == current for x in entries)
            what = "committed edits" if committed_only else "edits"
            lines.append(f"iteration {current}: {n} {what} (iter_{current - 1:03d} → iter_{current:03d})")
        mark = "+" if e.status == "added" else "~"
        outcome = "?" if e.won is None else ("won" if e.won else "failed")
        fate = "committed" if e.committed else (e.commit_reason if e.scored else "not scored")
        name = e.skill_id if e.committed or e.status == "updated" else "(new skill)"
        lines.append("")
        lines.append(f"{mark} {e.status} {name} [{e.section}]: {fate}")
        lines.append(f"    from episode {e.traj_id} ({e.family}, {outcome}): {e.task_id}")
        if e.evidence:
            lines.append(f"    evidence: {e.evidence}")
        if e.scored:
            lines.append(f"    probes: {', '.join(e.probe_task_ids) or '(none)'}")
            lines.append(
                f"    s(B) = {_scores(e.scores_before)}  s(B') = {_scores(e.scores_after)}  U = {e.utility:.4f}"
            )
        else:
            lines.append("    not scored (over counterfactual.max_edits, or counterfactual off)")
        for key, new in e.after.items():
            old = (e.before or {}).get(key)
            if e.before is None:
                lines.append(f"    {key}: {new}")
            elif old != new:
                lines.append(f"    {key}:")
                lines.append(f"      - {old}")
                lines.append(f"      + {new}")
    return "\n".join(lines)


def history_json(entries: list[HistoryEntry]) -> str:
    return json.dumps([asdict(e) for e in entries], indent=2, ensure_ascii=False)
