"""Counterfactual utility of a bank edit (METHOD.md §6) and the sign test of its probe deltas (the
``counterfactual.commit: test`` gate). Pure arithmetic, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence


def probe_score(won: bool, length: int, t_max: int) -> float:
    """Score of one probe run, METHOD.md §6 step 3: ``s = 1[success]·(1 + (T_max − L)/T_max)``.

    In [0, 2): a win in fewer steps scores higher; a failure scores 0.
    """
    if t_max < 1:
        raise ValueError(f"t_max must be >= 1 (got {t_max})")
    if not 0 <= length <= t_max:
        raise ValueError(f"episode length must be in [0, t_max={t_max}] (got {length})")
    return (1.0 + (t_max - length) / t_max) if won else 0.0


def utility(
    before: Sequence[float],
    after: Sequence[float],
    gamma: float,
    clip: bool = True,
    size_penalty: float = 0.0,
    size_before: int = 0,
    size_after: int = 0,
) -> float:
    """U of one edit, METHOD.md §6 step 4.

    With ``Δ_k = after_k − before_k`` over the K paired probes and
    ``net = (#{Δ_k > 0} − #{Δ_k < 0}) / K``::

        clip on  (released code): U = max(0, mean Δ + γ·net) − c·max(0, |B′| − |B|)
        clip off (paper):         U =        mean Δ + γ·net  − c·max(0, |B′| − |B|)

    ``size_before``/``size_after`` are |B| and |B′| (``bank_size(...).total``). No probes → U = 0
    (released code).
    """
    deltas = probe_deltas(before, after)
    k = len(deltas)
    if k == 0:
        return 0.0
    net = (sum(d > 0 for d in deltas) - sum(d < 0 for d in deltas)) / k
    gain = sum(deltas) / k + gamma * net
    if clip:
        gain = max(0.0, gain)
    return float(gain - size_penalty * max(0, size_after - size_before))


def probe_deltas(before: Sequence[float], after: Sequence[float]) -> list[float]:
    """``Δ_k = after_k − before_k`` over the K paired probes (METHOD.md §6 step 3).

    Identical scores give exactly 0.0 (no rounding), so identical prompts under paired probes give
    U = 0 and a sign-test p of 1.
    """
    if len(before) != len(after):
        raise ValueError(f"before and after must pair up per probe (got {len(before)} and {len(after)})")
    return [a - b for a, b in zip(after, before, strict=True)]


def sign_test_p(deltas: Sequence[float]) -> float:
    """One-sided exact sign test of paired probe deltas (H1: the edit's arm scores higher).

    Ties (Δ = 0) are dropped. With ``n₊ = #{Δ > 0}``, ``n₋ = #{Δ < 0}`` and ``n = n₊ + n₋``::

        p = P(X ≥ n₊ | X ~ Binomial(n, 1/2)) = Σ_{i=n₊..n} C(n, i) / 2ⁿ

    No nonzero delta (n = 0) → p = 1. Computed on integers and rounded once, so e.g. three wins
    and a tie give exactly 1/8, four wins and a loss 6/32, ten wins 1/1024.
    """
    n_pos = sum(d > 0 for d in deltas)
    n = n_pos + sum(d < 0 for d in deltas)
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(n_pos, n + 1)) / 2**n
