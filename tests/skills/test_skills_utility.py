"""Counterfactual utility and probe scores on hand-computed cases (METHOD.md §6)."""

from __future__ import annotations

import pytest

from skillmaster.skills.utility import probe_score, utility


@pytest.mark.parametrize(
    ("won", "length", "t_max", "expected"),
    [(True, 10, 50, 1.8), (True, 50, 50, 1.0), (True, 0, 50, 2.0), (True, 3, 15, 1.8), (False, 10, 50, 0.0)],
)
def test_probe_score(won, length, t_max, expected):
    assert probe_score(won, length, t_max) == pytest.approx(expected)


@pytest.mark.parametrize(("length", "t_max"), [(51, 50), (-1, 50), (0, 0)])
def test_probe_score_rejects_impossible_inputs(length, t_max):
    with pytest.raises(ValueError):
        probe_score(True, length, t_max)


# Each case: before, after, gamma, clip, c, |B|, |B'|, U computed by hand.
CASES = [
    # Δ = [1.9, 0, 0, -1.2]: mean 0.175, net (1-1)/4 = 0 → 0.175 with or without the clip
    ([0.0, 1.5, 0.0, 1.2], [1.9, 1.5, 0.0, 0.0], 0.2, True, 0.0, 10, 11, 0.175),
    ([0.0, 1.5, 0.0, 1.2], [1.9, 1.5, 0.0, 0.0], 0.2, False, 0.0, 10, 11, 0.175),
    # Δ = [-1, -0.5]: mean -0.75, net -1 → -0.75 - 0.2 = -0.95; clip on → 0
    ([1.0, 1.0], [0.0, 0.5], 0.2, False, 0.0, 10, 10, -0.95),
    ([1.0, 1.0], [0.0, 0.5], 0.2, True, 0.0, 10, 10, 0.0),
    # the size penalty is outside the clip: 0 - 0.1·(11-10) = -0.1; off: -0.95 - 0.1 = -1.05
    ([1.0, 1.0], [0.0, 0.5], 0.2, True, 0.1, 10, 11, -0.1),
    ([1.0, 1.0], [0.0, 0.5], 0.2, False, 0.1, 10, 11, -1.05),
    # an update does not grow the bank; a shrinking bank is not rewarded
    ([0.0], [1.5], 0.2, True, 0.5, 10, 10, 1.7),
    ([0.0], [1.5], 0.2, True, 0.5, 10, 9, 1.7),
    # paper γ = 0.3: Δ = [0.5, 0.2, 0, -0.1], mean 0.15, net (2-1)/4 = 0.25 → 0.15 + 0.075 = 0.225
    ([1.0, 1.0, 1.0, 1.2], [1.5, 1.2, 1.0, 1.1], 0.3, True, 0.0, 5, 6, 0.225),
    # γ alone can turn a small mean loss positive: Δ = [0.1, 0.1, -0.5], mean -0.1, net 1/3 → -0.1 + 0.2/3
    ([1.0, 1.0, 1.5], [1.1, 1.1, 1.0], 0.2, False, 0.0, 1, 1, -0.1 + 0.2 / 3),
    ([1.0, 1.0, 1.5], [1.1, 1.1, 1.0], 0.6, False, 0.0, 1, 1, -0.1 + 0.6 / 3),
    # all ties: U = 0 (minus the size term)
    ([1.8, 0.0], [1.8, 0.0], 0.2, True, 0.25, 3, 4, -0.25),
    # no probes: U = 0 (released code), whatever the size term
    ([], [], 0.2, True, 1.0, 3, 4, 0.0),
]


@pytest.mark.parametrize(("before", "after", "gamma", "clip", "c", "nb", "na", "expected"), CASES)
def test_utility_hand_computed(before, after, gamma, clip, c, nb, na, expected):
    got = utility(before, after, gamma=gamma, clip=clip, size_penalty=c, size_before=nb, size_after=na)
    assert got == pytest.approx(expected)


def test_utility_needs_paired_probes():
    with pytest.raises(ValueError, match="pair up"):
        utility([1.0, 0.0], [1.0], gamma=0.2)


# --------------------------------------------------------------------------- the sign-test gate (issue #39)
@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        ([1.0, 0.5, 2.0, 0.0], 1 / 8),  # n = 3 (the tie dropped), all positive: 1/2³
        ([1.0, 1.0, 1.0, 1.0, -1.0], 6 / 32),  # n = 5, n₊ = 4: (C(5,4) + C(5,5)) / 2⁵
        ([0.25] * 10, 1 / 1024),  # ten positives: 1/2¹⁰
        ([1.0, -1.0], 3 / 4),  # n = 2, n₊ = 1: (C(2,1) + C(2,2)) / 4
        ([-1.0, -0.5, -2.0], 1.0),  # no positive: P(X ≥ 0) = 1
        ([0.0, 0.0, 0.0], 1.0),  # no nonzero delta
        ([], 1.0),
        ([1.0] * 6 + [-1.0] * 2, 37 / 256),  # n = 8, n₊ = 6: (28 + 8 + 1) / 256
    ],
)
def test_sign_test_p_hand_computed(deltas, expected):
    from skillmaster.skills.utility import sign_test_p

    assert sign_test_p(deltas) == expected  # exact, not approximate


def test_identical_prompts_give_u_zero_and_p_one():
    """Paired probes with identical prompts play identical episodes: every Δ is exactly 0."""
    from skillmaster.skills.utility import probe_deltas, sign_test_p

    scores = [0.0, 1.7333333333333334, 0.125, 1.1]
    deltas = probe_deltas(scores, list(scores))
    assert deltas == [0.0] * 4
    for clip in (True, False):
        assert utility(scores, list(scores), gamma=0.2, clip=clip) == 0.0
    assert sign_test_p(deltas) == 1.0
    with pytest.raises(ValueError, match="pair up"):
        probe_deltas([1.0], [])
