"""Build the next iteration's bank from scored edits (METHOD.md §6, "Committing edits"). Pure.

Edits are tried in a deterministic order, highest utility first (ties: by ``key``, e.g. the
trajectory id; under ``test``, lowest sign-test p first, then highest utility), each applied to the
bank built so far with :func:`~skillmaster.skills.bank.apply_edit`:

- a second update of a skill already changed this round is a ``conflict`` (the edit tried first won);
- a proposal (or update) that duplicates a skill committed before it is a ``duplicate``
  (again the edit tried first won);
- proposals get fresh ids in the new bank (the scratch id of the review is not kept).

Policies (registry :data:`COMMIT_POLICIES`): ``threshold`` commits edits with U > threshold;
``test`` commits edits whose one-sided sign test over the K paired probe deltas gives p < alpha
(:func:`~skillmaster.skills.utility.sign_test_p`); ``off`` keeps the bank unchanged (the paper's
dry-run training); ``all`` commits every edit regardless of U (the released code's validation
behaviour).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skillmaster.skills.bank import Bank, Edit, apply_edit_detailed


@dataclass(frozen=True)
class ScoredEdit:
    """An edit with status added/updated and its utility U. ``key`` identifies its review (traj id)."""

    key: str
    edit: Edit
    utility: float
    scored: bool = True
    """False when the edit was not scored (over ``counterfactual.max_edits``); U is then 0."""
    p_value: float = 1.0
    """One-sided sign-test p of its K probe deltas (:func:`~skillmaster.skills.utility.sign_test_p`);
    1 when unscored."""


@dataclass(frozen=True)
class CommitDecision:
    """Fate of one edit. ``reason``: committed | below_threshold (``threshold``: U ≤ threshold) |
    not_significant (``test``: p ≥ alpha) | policy_off | conflict | duplicate | not_found |
    invalid_arguments. ``skill_id``: its id in the new bank ("" if not
    committed). ``rank``: position in the commit order (0 = tried first)."""

    key: str
    committed: bool
    reason: str
    skill_id: str = ""
    rank: int = -1


def _eligible_threshold(e: ScoredEdit, threshold: float, alpha: float) -> bool:
    return e.utility > threshold


def _eligible_test(e: ScoredEdit, threshold: float, alpha: float) -> bool:
    return e.scored and e.p_value < alpha


def _eligible_all(e: ScoredEdit, threshold: float, alpha: float) -> bool:
    return True


COMMIT_POLICIES: dict[str, Callable[[ScoredEdit, float, float], bool] | None] = {
    "threshold": _eligible_threshold,
    "test": _eligible_test,
    "all": _eligible_all,
    "off": None,
}
"""Commit policy name → eligibility test ``(edit, threshold, alpha) -> bool`` (None: commit nothing)."""

REJECTED = {"threshold": "below_threshold", "test": "not_significant"}
"""The reason an edit the policy's test rejects is recorded with."""


def commit_order(edits: Sequence[ScoredEdit], policy: str = "threshold") -> list[int]:
    """Indices of ``edits`` by utility descending, then key, then input position; under ``test``
    by sign-test p ascending first (the best-evidenced edit wins a conflict)."""
    if policy == "test":
        return sorted(range(len(edits)), key=lambda i: (edits[i].p_value, -edits[i].utility, edits[i].key, i))
    return sorted(range(len(edits)), key=lambda i: (-edits[i].utility, edits[i].key, i))


def commit_edits(
    bank: Bank,
    edits: Sequence[ScoredEdit],
    policy: str = "threshold",
    threshold: float = 0.0,
    alpha: float = 0.1,
) -> tuple[Bank, list[CommitDecision]]:
    """The next bank and one decision per edit (in the input order). ``bank`` is not modified.
    ``threshold`` is the ``threshold`` policy's, ``alpha`` the ``test`` policy's."""
    if policy not in COMMIT_POLICIES:
        raise ValueError(f"unknown commit policy {policy!r} (choose from {sorted(COMMIT_POLICIES)})")
    eligible = COMMIT_POLICIES[policy]
    decisions: list[CommitDecision | None] = [None] * len(edits)
    touched: set[str] = set()
    for rank, i in enumerate(commit_order(edits, policy)):
        e = edits[i]
        if eligible is None:
            decisions[i] = CommitDecision(e.key, False, "policy_off", rank=rank)
            continue
        if not eligible(e, threshold, alpha):
            decisions[i] = CommitDecision(e.key, False, REJECTED.get(policy, "below_threshold"), rank=rank)
            continue
        if e.edit.kind == "update" and e.edit.skill_id in touched:
            decisions[i] = CommitDecision(e.key, False, "conflict", rank=rank)
            continue
        res = apply_edit_detailed(bank, e.edit)
        if res.status in ("added", "updated"):
            bank = res.bank
            touched.add(res.skill_id)
            decisions[i] = CommitDecision(e.key, True, "committed", res.skill_id, rank)
        else:
            decisions[i] = CommitDecision(e.key, False, res.status, rank=rank)
    return bank, [d for d in decisions if d is not None]


def commit_stats(edits: Sequence[ScoredEdit], decisions: Sequence[CommitDecision]) -> dict[str, float]:
    """Iteration metrics: edits proposed/scored/committed and the mean U of committed edits."""
    committed = [e.utility for e, d in zip(edits, decisions, strict=True) if d.committed]
    return {
        "edits_total": len(edits),
        "edits_scored": sum(e.scored for e in edits),
        "edits_committed": len(committed),
        "mean_utility_committed": sum(committed) / len(committed) if committed else 0.0,
        "mean_utility_scored": (
            sum(e.utility for e in edits if e.scored) / max(1, sum(e.scored for e in edits))
        ),
    }
