"""Planning helpers of the counterfactual gate and the evaluations, on hand-computed cases (issue #39)."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from skillmaster.skills.power import (
    detectable_difference,
    false_pass_rate_sign_test,
    false_pass_rate_u_positive,
    false_pass_rate_u_positive_continuous,
    mcnemar_p,
    paired_power,
)
from skillmaster.skills.utility import sign_test_p, utility


# --------------------------------------------------------------------------- U > 0 under the null
@pytest.mark.parametrize(
    ("p", "k", "expected"),
    [
        (0.25, 1, 0.125),  # one probe: Δ > 0 with probability p/2
        (0.25, 2, 0.25 * 0.75 + 0.125**2),  # (+,0), (0,+): 2·(p/2)(1−p); (+,+): (p/2)²
        (1.0, 2, 0.25),  # every Δ nonzero: only (+,+) passes, (+,−) is a tie of counts
        (1.0, 3, 0.5),  # n₊ ≥ 2 of 3 fair coins
        (0.0, 4, 0.0),  # no Δ ever nonzero: U = 0
    ],
)
def test_u_positive_hand_computed(p, k, expected):
    assert false_pass_rate_u_positive(p, k) == pytest.approx(expected, abs=1e-15)


def test_u_positive_is_half_of_the_non_ties_with_equal_magnitudes():
    """U > 0 ⇔ n₊ > n₋, so P(pass) = (1 − P(n₊ = n₋))/2; P(n₊ = n₋) summed by hand."""
    p, k = 0.25, 4
    tie = sum(
        math.comb(k, j) * math.comb(k - j, j) * (p / 2) ** (2 * j) * (1 - p) ** (k - 2 * j)
        for j in range(k // 2 + 1)
    )
    assert false_pass_rate_u_positive(p, k) == pytest.approx((1 - tie) / 2)
    # the clip and γ do not move the U > 0 boundary
    assert false_pass_rate_u_positive(p, k, gamma=0.0, clip=False) == pytest.approx((1 - tie) / 2)


def test_u_threshold_and_magnitude():
    # K = 2, m = 1, γ = 0.2: U(2,0) = 1.2, U(1,0) = 0.6 → above 1.0 only (+,+)
    assert false_pass_rate_u_positive(0.25, 2, threshold=1.0) == pytest.approx(0.125**2)
    # a smaller magnitude makes γ dominate, not the sign of U: still (1 − P(tie))/2
    assert false_pass_rate_u_positive(0.25, 2, magnitude=0.01) == pytest.approx(
        false_pass_rate_u_positive(0.25, 2)
    )


def test_u_positive_continuous_and_the_issue_figures():
    """The issue's ≈22/33/43/50% at P(Δ≠0) ≈ 0.25 are the continuous-magnitude figures
    (1 − 0.75^K)/2; with equal magnitudes count ties fail U > 0 and the rates are lower."""
    continuous = {k: false_pass_rate_u_positive_continuous(0.25, k) for k in (2, 4, 8, 16, 32)}
    assert continuous[2] == pytest.approx(0.21875) and continuous[16] == pytest.approx((1 - 0.75**16) / 2)
    equal = {k: false_pass_rate_u_positive(0.25, k) for k in (2, 4, 8, 16, 32)}
    assert [round(equal[k], 4) for k in (2, 4, 8, 16, 32)] == [0.2031, 0.2883, 0.3553, 0.3993, 0.4292]
    assert all(equal[k] < continuous[k] < 0.5 for k in equal)


def test_u_positive_continuous_by_simulation():
    """Random magnitudes (uniform), γ = 0.2, clip on: the simulated rate is the closed form."""
    rng, p, k, n = random.Random(0), 0.25, 4, 40_000
    hits = 0
    for _ in range(n):
        deltas = [rng.choice((-1, 1)) * rng.random() if rng.random() < p else 0.0 for _ in range(k)]
        hits += utility([0.0] * k, deltas, 0.2, True) > 0
    exact = false_pass_rate_u_positive_continuous(p, k)
    assert abs(hits / n - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


# --------------------------------------------------------------------------- the sign test under the null
def test_sign_test_hand_computed():
    # K = 4, α = 0.1: only (+,+,+,+) has p = 1/16 < 0.1 (three + and a tie: 1/8)
    assert false_pass_rate_sign_test(0.25, 4, 0.1) == pytest.approx(0.125**4)
    # every Δ nonzero, K = 8, α = 0.1: n₊ ≥ 7 (p = 9/256); n₊ = 6 has p = 37/256 > 0.1
    assert false_pass_rate_sign_test(1.0, 8, 0.1) == pytest.approx(9 / 256)
    # K = 2 can never pass at α = 0.1 (smallest p = 1/4)
    assert false_pass_rate_sign_test(0.9, 2, 0.1) == 0.0


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 1.0])
def test_sign_test_size_never_exceeds_alpha(p, k):
    assert false_pass_rate_sign_test(p, k, 0.1) <= 0.1
    assert false_pass_rate_sign_test(p, k, 0.05) <= false_pass_rate_sign_test(p, k, 0.1)


def test_sign_test_rate_matches_simulation_of_sign_test_p():
    rng, p, k, alpha, n = random.Random(1), 0.5, 8, 0.1, 40_000
    hits = sum(
        sign_test_p([rng.choice((-1.0, 1.0)) if rng.random() < p else 0.0 for _ in range(k)]) < alpha
        for _ in range(n)
    )
    exact = false_pass_rate_sign_test(p, k, alpha)
    assert abs(hits / n - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


def test_null_rates_reject_impossible_inputs():
    with pytest.raises(ValueError, match="p_nonzero"):
        false_pass_rate_u_positive(1.5, 4)
    with pytest.raises(ValueError, match="k must be"):
        false_pass_rate_sign_test(0.25, 0, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        false_pass_rate_sign_test(0.25, 4, 1.0)


# --------------------------------------------------------------------------- paired evaluations
@pytest.mark.parametrize(
    ("gains", "losses", "expected"),
    [
        (0, 11, 2 / 2**11),  # 2·P(X ≤ 0 | 11)
        (1, 16, 2 * (1 + 17) / 2**17),  # 2·P(X ≤ 1 | 17)
        (2, 12, 2 * (1 + 14 + 91) / 2**14),
        (3, 3, 1.0),  # capped at 1
        (0, 0, 1.0),
    ],
)
def test_mcnemar_p_hand_computed(gains, losses, expected):
    assert mcnemar_p(gains, losses) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_p(losses, gains) == mcnemar_p(gains, losses)


def test_paired_power_hand_computed():
    # every pair a gain: reject iff 2/2ⁿ ≤ α → n = 5 (p = 1/16) fails at 0.05, n = 6 (1/32) passes
    assert paired_power(1.0, 0.0, 5, 0.05) == 0.0
    assert paired_power(1.0, 0.0, 6, 0.05) == pytest.approx(1.0)
    # half the pairs gains, the rest concordant, n = 6: only 6 gains of 6 rejects (n ≤ 5 cannot)
    assert paired_power(0.5, 0.0, 6, 0.05) == pytest.approx(0.5**6)
    # every pair discordant, no effect: the size, 2/2⁶
    assert paired_power(0.5, 0.5, 6, 0.05) == pytest.approx(2 / 64)
    assert paired_power(0.3, 0.1, 0, 0.05) == 0.0


@pytest.mark.parametrize("n", [10, 40, 140])
def test_paired_power_size_and_monotone(n):
    assert paired_power(0.05, 0.05, n, 0.05) <= 0.05 + 1e-12
    assert paired_power(0.10, 0.02, n, 0.05) > paired_power(0.06, 0.02, n, 0.05)
    assert paired_power(0.10, 0.02, n, 0.10) >= paired_power(0.10, 0.02, n, 0.05)


def test_paired_power_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="at most 1"):
        paired_power(0.7, 0.6, 10, 0.05)
    with pytest.raises(ValueError, match="alpha"):
        paired_power(0.1, 0.1, 10, 0.0)


def test_detectable_difference_solves_the_normal_power_equation():
    """Rates 0.5 in G = 20 games, m = 10 episodes per arm: the returned δ satisfies
    (δ − z_{1−α/2}·√V(0)) / √V(δ) = z_power with V(δ) = [0.25 + (0.5+δ)(0.5−δ)] / (G·m)."""
    g, m = 20, 10
    points = detectable_difference([0.5] * g, m, alpha=0.05, power=0.8)
    d = points / 100
    z = NormalDist()
    lhs = (d - z.inv_cdf(0.975) * math.sqrt(0.5 / (g * m))) / math.sqrt(
        (0.25 + (0.5 + d) * (0.5 - d)) / (g * m)
    )
    assert lhs == pytest.approx(z.inv_cdf(0.8), abs=1e-6)
    # close to the textbook (z_α/2 + z_β)·σ/√n with σ² = 2·0.25
    assert points == pytest.approx(100 * (1.959964 + 0.841621) * math.sqrt(0.5 / (g * m)), rel=0.02)


def test_detectable_difference_behaves():
    rates = [0.1] * 70 + [0.3] * 70
    base = detectable_difference(rates, 1)
    assert detectable_difference(rates, 4) < base  # more episodes, smaller effects
    assert detectable_difference(rates, 1, power=0.9) > base
    assert detectable_difference(rates, 1, alpha=0.1) < base
    assert detectable_difference([1.0] * 10, 1) == math.inf  # nothing left to improve
    with pytest.raises(ValueError, match="at least one game"):
        detectable_difference([], 1)
    with pytest.raises(ValueError, match="episodes_per_game"):
        detectable_difference([0.2], 0)


def test_sign_test_power_of_an_edit_that_helps():
    from skillmaster.skills.power import sign_test_power

    # wins a quarter of its probes, never loses: passes at α = 0.1 iff n₊ ≥ 4 (2⁻⁴ < 0.1 ≤ 2⁻³)
    def at_least_4(k: int) -> float:
        return sum(math.comb(k, i) * 0.25**i * 0.75 ** (k - i) for i in range(4, k + 1))

    for k in (4, 8, 16, 32):
        assert sign_test_power(0.25, 0.0, k, 0.1) == pytest.approx(at_least_4(k))
    assert sign_test_power(0.25, 0.0, 4, 0.1) == pytest.approx(0.25**4)
    assert sign_test_power(0.125, 0.125, 8, 0.1) == pytest.approx(false_pass_rate_sign_test(0.25, 8, 0.1))
    with pytest.raises(ValueError, match="at most 1"):
        sign_test_power(0.6, 0.6, 4, 0.1)
