"""Building the next bank from scored edits: threshold, order, conflicts, policies (METHOD.md §6)."""

from __future__ import annotations

import pytest

from skillmaster.skills.bank import Edit
from skillmaster.skills.commit import ScoredEdit, commit_edits, commit_stats


def _propose(title: str, cat: str = "heat") -> Edit:
    return Edit(
        kind="propose", category=cat, skill_id="dyn_001", title=title, principle=f"{title} principle."
    )


def _update(target: str, principle: str) -> Edit:
    return Edit(
        kind="update", skill_id=target, category="heat", title="Use the microwave", principle=principle
    )


@pytest.fixture
def edits() -> list[ScoredEdit]:
    return [
        ScoredEdit("t1", _propose("Wait for it"), 0.5),
        ScoredEdit("t2", _propose("WAIT  for it", cat="general"), 0.3),  # duplicates t1's proposal
        ScoredEdit("t3", _update("h1", "Heat it twice."), 0.2),  # loses to t4 on the same skill
        ScoredEdit("t4", _update("h1", "Heat it three times."), 0.4),
        ScoredEdit("t5", _propose("Zero gain"), 0.0),  # not above the threshold
        ScoredEdit("t0", _propose("Tie breaker", cat="clean"), 0.5),  # ties with t1: key order
        ScoredEdit("t6", _propose("Never scored"), 0.0, scored=False),
    ]


def test_threshold_policy(tiny_bank, edits):
    before = tiny_bank.to_json()
    bank, decisions = commit_edits(tiny_bank, edits, policy="threshold", threshold=0.0)
    got = {d.key: (d.committed, d.reason, d.skill_id, d.rank) for d in decisions}
    assert [d.key for d in decisions] == [e.key for e in edits]  # input order
    assert got == {
        "t0": (True, "committed", "dyn_001", 0),
        "t1": (True, "committed", "dyn_002", 1),
        "t4": (True, "committed", "h1", 2),
        "t2": (False, "duplicate", "", 3),
        "t3": (False, "conflict", "", 4),
        "t5": (False, "below_threshold", "", 5),
        "t6": (False, "below_threshold", "", 6),
    }
    assert [s.skill_id for s in bank.task_specific_skills["heat"]] == ["h1", "dyn_002"]
    assert bank.task_specific_skills["heat"][0].principle == "Heat it three times."
    assert [s.skill_id for s in bank.task_specific_skills["clean"]] == ["c1", "dyn_001"]
    assert bank.metadata["next_dynamic_id"] == 3
    assert tiny_bank.to_json() == before  # pure


def test_higher_threshold_commits_less(tiny_bank, edits):
    bank, decisions = commit_edits(tiny_bank, edits, threshold=0.45)
    assert sorted(d.key for d in decisions if d.committed) == ["t0", "t1"]
    # both updates (U 0.2 and 0.4) stay out
    assert (
        bank.task_specific_skills["heat"][0].principle == tiny_bank.task_specific_skills["heat"][0].principle
    )


def test_off_policy_is_a_dry_run(tiny_bank, edits):
    bank, decisions = commit_edits(tiny_bank, edits, policy="off")
    assert bank == tiny_bank
    assert {d.reason for d in decisions} == {"policy_off"} and not any(d.committed for d in decisions)


def test_all_policy_ignores_utility(tiny_bank, edits):
    _, decisions = commit_edits(tiny_bank, edits, policy="all")
    assert sorted(d.key for d in decisions if d.committed) == ["t0", "t1", "t4", "t5", "t6"]


def test_unknown_policy_and_empty_input(tiny_bank):
    with pytest.raises(ValueError, match="unknown commit policy"):
        commit_edits(tiny_bank, [], policy="sometimes")
    assert commit_edits(tiny_bank, []) == (tiny_bank, [])


def test_update_of_a_missing_skill_is_reported(tiny_bank):
    _, decisions = commit_edits(tiny_bank, [ScoredEdit("t", _update("gone", "p"), 1.0)])
    assert (decisions[0].committed, decisions[0].reason) == (False, "not_found")


def test_commit_stats(tiny_bank, edits):
    _, decisions = commit_edits(tiny_bank, edits)
    stats = commit_stats(edits, decisions)
    assert stats["edits_total"] == 7 and stats["edits_scored"] == 6 and stats["edits_committed"] == 3
    assert stats["mean_utility_committed"] == pytest.approx((0.5 + 0.5 + 0.4) / 3)
    assert stats["mean_utility_scored"] == pytest.approx((0.5 + 0.3 + 0.2 + 0.4 + 0.0 + 0.5) / 6)
    assert commit_stats([], [])["mean_utility_committed"] == 0.0


# --------------------------------------------------------------------------- commit: test (issue #39)
def test_test_policy_commits_on_the_sign_test_not_on_u(tiny_bank):
    edits = [
        ScoredEdit("a", _propose("Strong evidence"), 0.1, p_value=1 / 16),
        ScoredEdit("b", _propose("High utility, no evidence"), 0.9, p_value=0.5),
        ScoredEdit("c", _propose("At alpha"), 0.3, p_value=0.1),  # p < alpha is strict
        ScoredEdit("d", _propose("Unscored"), 0.0, scored=False, p_value=0.0),  # never committed
    ]
    bank, decisions = commit_edits(tiny_bank, edits, policy="test", alpha=0.1)
    got = {d.key: (d.committed, d.reason) for d in decisions}
    assert got == {
        "a": (True, "committed"),
        "b": (False, "not_significant"),
        "c": (False, "not_significant"),
        "d": (False, "not_significant"),
    }
    assert [s.title for s in bank.task_specific_skills["heat"]][-1] == "Strong evidence"
    # a looser alpha admits c; U plays no part
    _, decisions = commit_edits(tiny_bank, edits, policy="test", alpha=0.2)
    assert sorted(d.key for d in decisions if d.committed) == ["a", "c"]


def test_test_policy_resolves_conflicts_by_p_first(tiny_bank):
    edits = [
        ScoredEdit("t3", _update("h1", "Heat it twice."), 0.9, p_value=0.06),
        ScoredEdit("t4", _update("h1", "Heat it three times."), 0.2, p_value=0.01),
    ]
    bank, decisions = commit_edits(tiny_bank, edits, policy="test", alpha=0.1)
    assert [(d.key, d.committed, d.reason, d.rank) for d in decisions] == [
        ("t3", False, "conflict", 1),
        ("t4", True, "committed", 0),
    ]
    assert bank.task_specific_skills["heat"][0].principle == "Heat it three times."
    # the threshold policy ranks by U instead
    bank, _ = commit_edits(tiny_bank, edits, policy="threshold")
    assert bank.task_specific_skills["heat"][0].principle == "Heat it twice."
