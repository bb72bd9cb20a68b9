"""Planning the counterfactual gate and the evaluations: how often chance commits an edit without
content, and how large an effect a paired design can detect. Pure arithmetic (stdlib only), no I/O;
nothing in the pipeline imports it.

The null model of a probe delta (:func:`false_pass_rate_u_positive`, :func:`false_pass_rate_sign_test`):
each of the K paired probe deltas is independently nonzero with probability ``p_nonzero``, its sign
+ or − with probability 1/2 each (the edit and its control are exchangeable), and its magnitude
fixed. The K deltas are then a multinomial of (n₊, n₋, n₀) with cell probabilities
(p/2, p/2, 1 − p), enumerated exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from statistics import NormalDist

from skillmaster.skills.utility import utility


def _check_probability(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (got {value})")


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha})")


def _trinomial(k: int, a: int, b: int, pa: float, pb: float) -> float:
    """P(n_a = a, n_b = b, n_rest = k − a − b) for k independent draws with cell probabilities
    (pa, pb, 1 − pa − pb)."""
    c = k - a - b
    pc = 1.0 - pa - pb
    ways = math.comb(k, a) * math.comb(k - a, b)
    prob = 1.0
    for p, n in ((pa, a), (pb, b), (pc, c)):
        if n:
            if p <= 0.0:
                return 0.0
            prob *= p**n
    return ways * prob


@cache
def _sign_tail(n: int, n_pos: int) -> float:
    """P(X ≥ n_pos), X ~ Binomial(n, 1/2), exact (:func:`~skillmaster.skills.utility.sign_test_p`)."""
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(n_pos, n + 1)) / 2**n


def false_pass_rate_u_positive(
    p_nonzero: float,
    k: int,
    gamma: float = 0.2,
    clip: bool = True,
    magnitude: float = 1.0,
    threshold: float = 0.0,
) -> float:
    """Exact probability that a null edit passes ``U > threshold`` with K probes (METHOD.md §6).

    Under the null model of this module (each Δ_k = +m, −m, 0 with probabilities p/2, p/2, 1 − p;
    m = ``magnitude``)::

        P(pass) = Σ_{n₊+n₋+n₀=K} K!/(n₊! n₋! n₀!) (p/2)^(n₊+n₋) (1−p)^n₀ · 1[U(n₊, n₋) > threshold]

    with U computed by :func:`~skillmaster.skills.utility.utility` on those deltas (γ, clip; no size
    term). With threshold 0 and equal magnitudes, U > 0 exactly when n₊ > n₋, so
    P(pass) = (1 − P(n₊ = n₋)) / 2, below 1/2 and rising towards it with K. Magnitudes that vary
    continuously instead break the count ties: then P(pass) = (1 − (1 − p)^K) / 2
    (:func:`false_pass_rate_u_positive_continuous`).
    """
    _check_probability(p_nonzero, "p_nonzero")
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    half = p_nonzero / 2
    total = 0.0
    for a in range(k + 1):
        for b in range(k + 1 - a):
            deltas = [magnitude] * a + [-magnitude] * b + [0.0] * (k - a - b)
            if utility([0.0] * k, deltas, gamma, clip) > threshold:
                total += _trinomial(k, a, b, half, half)
    return total


def false_pass_rate_u_positive_continuous(p_nonzero: float, k: int) -> float:
    """Probability that a null edit passes ``U > 0`` when the nonzero deltas' magnitudes are drawn
    from a continuous distribution symmetric under the edit/control swap (any γ, clip on or off)::

        P(pass) = (1 − (1 − p)^K) / 2

    The null distribution of (Δ_1..Δ_K) is symmetric under a global sign flip, so U > 0 and U < 0 are
    equally likely, and U = 0 has probability P(all Δ_k = 0) = (1 − p)^K (a nonzero set of deltas
    sums to exactly zero with probability 0).
    """
    _check_probability(p_nonzero, "p_nonzero")
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    return (1.0 - (1.0 - p_nonzero) ** k) / 2


def false_pass_rate_sign_test(p_nonzero: float, k: int, alpha: float) -> float:
    """Exact probability that a null edit passes the sign-test gate (p < alpha) with K probes::

        P(pass) = Σ_{n₊+n₋+n₀=K} K!/(n₊! n₋! n₀!) (p/2)^(n₊+n₋) (1−p)^n₀ · 1[P(X ≥ n₊ | n₊+n₋, 1/2) < α]

    At most alpha whatever ``p_nonzero`` (conditionally on n = n₊ + n₋ the test has size ≤ α), and
    usually well below it, since p-values are discrete and ties carry no evidence. Magnitudes do
    not matter.
    """
    _check_probability(p_nonzero, "p_nonzero")
    return sign_test_power(p_nonzero / 2, p_nonzero / 2, k, alpha)


def sign_test_power(p_gain: float, p_loss: float, k: int, alpha: float) -> float:
    """Exact probability that an edit passes the sign-test gate (p < alpha) with K probes when each
    probe delta is independently positive with probability p₊ = ``p_gain``, negative with p₋ =
    ``p_loss`` and zero otherwise::

        P(pass) = Σ_{n₊+n₋+n₀=K} K!/(n₊! n₋! n₀!) p₊^n₊ p₋^n₋ (1−p₊−p₋)^n₀ · 1[P(X ≥ n₊ | n₊+n₋, 1/2) < α]

    p₊ = p₋ is the null (:func:`false_pass_rate_sign_test`); p₊ > p₋ an edit that helps, e.g. an edit
    that wins a quarter of its probes and never loses one (p₊ = 0.25, p₋ = 0) passes at α = 0.1 only
    with n₊ ≥ 4: 0.4% of the time at K = 4, 11% at K = 8, 60% at K = 16.
    """
    _check_probability(p_gain, "p_gain")
    _check_probability(p_loss, "p_loss")
    if p_gain + p_loss > 1.0 + 1e-12:
        raise ValueError(f"p_gain + p_loss must be at most 1 (got {p_gain + p_loss})")
    _check_alpha(alpha)
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    total = 0.0
    for a in range(k + 1):
        for b in range(k + 1 - a):
            if _sign_tail(a + b, a) < alpha:
                total += _trinomial(k, a, b, p_gain, min(p_loss, 1.0 - p_gain))
    return total


def mcnemar_p(gains: int, losses: int) -> float:
    """Two-sided exact McNemar p-value of a paired comparison with ``gains`` pairs won only by the
    new arm and ``losses`` won only by the old (concordant pairs dropped)::

        p = min(1, 2 · P(X ≤ min(gains, losses) | X ~ Binomial(gains + losses, 1/2)))

    No discordant pair → p = 1.
    """
    if gains < 0 or losses < 0:
        raise ValueError(f"counts must be >= 0 (got {gains}, {losses})")
    n = gains + losses
    if n == 0:
        return 1.0
    return min(1.0, 2 * _sign_tail(n, max(gains, losses)))


def paired_power(p_discordant_gain: float, p_discordant_loss: float, n_pairs: int, alpha: float) -> float:
    """Power of the exact McNemar (two-sided sign) test at level ``alpha`` over ``n_pairs`` pairs.

    Each pair independently is a gain (only the new arm succeeds) with probability p₊ =
    ``p_discordant_gain``, a loss with probability p₋ = ``p_discordant_loss``, concordant otherwise::

        power = Σ_{g+l ≤ N} N!/(g! l! (N−g−l)!) p₊^g p₋^l (1−p₊−p₋)^(N−g−l) · 1[mcnemar_p(g, l) ≤ α]

    A rejection in either direction counts (the two-sided test's power); with p₊ = p₋ this is the
    test's size, at most alpha.
    """
    _check_probability(p_discordant_gain, "p_discordant_gain")
    _check_probability(p_discordant_loss, "p_discordant_loss")
    if p_discordant_gain + p_discordant_loss > 1.0 + 1e-12:
        raise ValueError(
            f"p_discordant_gain + p_discordant_loss must be at most 1 (got {p_discordant_gain + p_discordant_loss})"
        )
    _check_alpha(alpha)
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0 (got {n_pairs})")
    total = 0.0
    for n in range(n_pairs + 1):  # n discordant pairs: reject when min(g, n − g) ≤ c_n
        c = _mcnemar_critical(n, alpha)
        for g in range(n + 1):
            if min(g, n - g) <= c:
                total += _log_trinomial(n_pairs, g, n - g, p_discordant_gain, p_discordant_loss)
    return min(1.0, total)


@cache
def _mcnemar_critical(n: int, alpha: float) -> int:
    """The largest c with mcnemar_p(c, n − c) ≤ alpha (−1 when none): the two-sided exact test over
    n discordant pairs rejects exactly when the smaller count is at most c. Exact (rational) arithmetic."""
    from fractions import Fraction

    bound = Fraction(alpha) * 2**n  # 2·Σ_{i≤c} C(n, i) ≤ α·2ⁿ
    cum, c = 0, -1
    for i in range(n // 2 + 1):
        cum += math.comb(n, i)
        if 2 * cum > bound:
            break
        c = i
    return c


def _log_trinomial(n: int, a: int, b: int, pa: float, pb: float) -> float:
    """:func:`_trinomial` through logarithms, for large ``n``."""
    c = n - a - b
    pc = max(0.0, 1.0 - pa - pb)
    log = math.lgamma(n + 1) - math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(c + 1)
    for p, m in ((pa, a), (pb, b), (pc, c)):
        if m:
            if p <= 0.0:
                return 0.0
            log += m * math.log(p)
    return math.exp(log)


def detectable_difference(
    per_game_rates: Sequence[float], episodes_per_game: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest success-rate improvement, in points (percent), that a paired per-game comparison
    detects with probability ``power`` at two-sided level ``alpha``.

    Model: both arms play each of the G games ``m = episodes_per_game`` times; game g's episodes are
    independent Bernoulli trials at rate r_g (``per_game_rates``, the old arm's) in the old arm and
    r_g + δ (capped at 1) in the new. The statistic is the mean over games of the per-game difference
    of success shares, D̄ = (1/G) Σ_g (p̂_g,new − p̂_g,old); pairing by game removes the spread between
    games, leaving the binomial variance within them::

        V(δ) = (1/G²) Σ_g [r_g(1 − r_g) + r'_g(1 − r'_g)] / m,   r'_g = min(1, r_g + δ)

    By the normal approximation the test rejects when |D̄| > z_{1−α/2}·√V(0), so
    power(δ) ≈ Φ((Δ(δ) − z_{1−α/2}·√V(0)) / √V(δ)), with Δ(δ) = (1/G) Σ_g (r'_g − r_g) the true mean
    difference (δ itself unless a game reaches rate 1) and the opposite tail neglected. Returns
    100·Δ(δ) for the smallest δ in [0, 1] with power(δ) ≥ ``power`` (bisection); ``inf`` when even a
    success rate of 1 in every game falls short. Games at rate 0 or 1 add no variance under the
    null, so the approximation is poor when most games sit there (every game at 0: any success
    "is detected"); :func:`paired_power` is exact for one episode per game and arm.
    """
    rates = list(per_game_rates)
    if not rates:
        raise ValueError("per_game_rates must name at least one game")
    for r in rates:
        _check_probability(r, "each per-game rate")
    if episodes_per_game < 1:
        raise ValueError(f"episodes_per_game must be >= 1 (got {episodes_per_game})")
    _check_alpha(alpha)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1) (got {power})")
    g, m = len(rates), episodes_per_game
    normal = NormalDist()
    z_alpha = normal.inv_cdf(1 - alpha / 2)

    def variance(delta: float) -> float:
        return sum(r * (1 - r) + min(1.0, r + delta) * (1 - min(1.0, r + delta)) for r in rates) / (g * g * m)

    def achieved(delta: float) -> float:
        shift = sum(min(1.0, r + delta) - r for r in rates) / g  # the true mean difference
        spread = math.sqrt(variance(delta))
        critical = z_alpha * math.sqrt(variance(0.0))
        if spread == 0.0:
            return 1.0 if shift > critical else 0.0
        return normal.cdf((shift - critical) / spread)

    if achieved(1.0) < power:
        return math.inf
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if achieved(mid) >= power:
            hi = mid
        else:
            lo = mid
    return 100.0 * sum(min(1.0, r + hi) - r for r in rates) / g
