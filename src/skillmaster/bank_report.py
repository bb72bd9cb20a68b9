"""The statistics of ``skillmaster bank-experiment`` (:mod:`skillmaster.bank_experiment`): per-game
success counts, the paired per-game test of two banks, Holm's correction, per-game success rates
for planning, the design's power, and the report as JSON-ready records and Markdown. Pure functions
of episode tables and numbers (no files, no model).

**The paired per-game test** (the primary contrast's, pre-registered): every arm plays each game
``M`` times with the same sampling seeds (episode ids), so for game g the statistic is
d_g = (successes of arm A) − (successes of arm B) over its M episodes, an integer in [−M, M].
Under H0 (the two banks are exchangeable on every game) the sign of each d_g is + or − with
probability 1/2, independently across games. :func:`paired_permutation_p` is the exact two-sided
sign-flip permutation test of S = Σ_g d_g: p = P(|S*| ≥ |S|) over the 2^n equally likely sign
flips of the n nonzero d_g, counted exactly by convolution on integers (no sampling). It uses the
size of each game's difference, which the sign test of the games' signs (reported beside it,
:func:`~skillmaster.evaluations.mcnemar_exact` on the counts of games A won more and B won more)
throws away, and its power is the one :func:`~skillmaster.skills.power.detectable_difference`
plans with (the mean per-game difference against its spread).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from skillmaster.errors import DataError
from skillmaster.evaluations import mcnemar_exact, wilson_interval

if TYPE_CHECKING:
    import polars as pl

PRIMARY = ("gated", "ungated")
"""The pre-registered primary contrast: gated against ungated."""
SECONDARY = (("gated", "seed"), ("ungated", "seed"), ("gated", "random"))
"""The other contrasts, Holm-corrected together (those whose arms were evaluated)."""


# --------------------------------------------------------------------------- tests
def paired_permutation_p(diffs: Sequence[int]) -> float:
    """Exact two-sided paired permutation (sign-flip) p-value of per-game differences ``diffs``.

    With S = Σ d_g and the n nonzero d_g: p = #{signs ε ∈ {±1}^n : |Σ ε_g·|d_g|| ≥ |S|} / 2^n.
    Games with d_g = 0 change no sum (including them doubles both counts). No nonzero difference →
    p = 1. The differences must be integers (success counts), so the count is exact.
    """
    values = [int(d) for d in diffs]
    if any(v != d for v, d in zip(values, diffs, strict=True)):
        raise ValueError("per-game differences must be integers (differences of success counts)")
    sizes = [abs(v) for v in values if v]
    if not sizes:
        return 1.0
    observed = abs(sum(values))
    counts = {0: 1}  # sum of the flipped differences -> number of sign assignments giving it
    for a in sizes:
        nxt: dict[int, int] = {}
        for s, c in counts.items():
            nxt[s + a] = nxt.get(s + a, 0) + c
            nxt[s - a] = nxt.get(s - a, 0) + c
        counts = nxt
    extreme = sum(c for s, c in counts.items() if abs(s) >= observed)
    return extreme / 2 ** len(sizes)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: with the m p-values sorted ascending p_(1) ≤ … ≤ p_(m)
    (ties by name), adj_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)). Rejecting adj < α controls
    the family-wise error rate at α."""
    order = sorted(pvalues, key=lambda k: (pvalues[k], k))
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        out[key] = running
    return out


# --------------------------------------------------------------------------- episodes
def per_game(episodes: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """``{task_id: (successes, episodes)}`` of an evaluation."""
    out: dict[str, tuple[int, int]] = {}
    for task, won in episodes.select("task_id", "won").iter_rows():
        k, n = out.get(task, (0, 0))
        out[task] = (k + bool(won), n + 1)
    return out


def check_paired(arms: Mapping[str, pl.DataFrame]) -> None:
    """Every arm played the same episodes (ids, hence games and seeds); else a :class:`DataError`."""
    reference = None
    for name, episodes in arms.items():
        ids = sorted(episodes["traj_id"].to_list())
        if len(set(ids)) != len(ids):
            raise DataError(f"the {name} arm's evaluation holds an episode twice")
        if reference is None:
            reference = (name, ids)
        elif ids != reference[1]:
            raise DataError(
                f"the {name} and {reference[0]} arms were not evaluated on the same episodes; "
                "remove their evaluations from the work folder and rerun"
            )


def arm_summary(episodes: pl.DataFrame) -> dict[str, Any]:
    """Successes overall (with the 95% Wilson interval) and per family."""
    n, k = episodes.height, int(episodes["won"].sum())
    lo, hi = wilson_interval(k, n)
    families: dict[str, dict[str, int]] = {}
    for family, won in episodes.select("family", "won").iter_rows():
        f = families.setdefault(family, {"successes": 0, "episodes": 0})
        f["successes"] += bool(won)
        f["episodes"] += 1
    return {
        "episodes": n,
        "successes": k,
        "success_rate": k / n if n else 0.0,
        "ci_low": lo,
        "ci_high": hi,
        "games": episodes["task_id"].n_unique(),
        "by_family": dict(sorted(families.items())),
    }


def contrast(a: pl.DataFrame, b: pl.DataFrame, z: float = 1.959963984540054) -> dict[str, Any]:
    """Arm ``a`` against arm ``b`` on the same episodes: the per-game differences d_g of success
    counts, their exact paired permutation p (:func:`paired_permutation_p`, the test of record),
    the sign test over games and the episode-level McNemar test (both two-sided, exact), and the
    mean difference in points with a normal-approximation 95% interval (spread of the d_g)."""
    ga, gb = per_game(a), per_game(b)
    if ga.keys() != gb.keys():
        raise DataError("the two arms were not evaluated on the same games")
    games = sorted(ga)
    diffs = [ga[g][0] - gb[g][0] for g in games]
    episodes = sum(n for _, n in ga.values())
    g = len(games)
    m = episodes / g if g else 0.0
    mean = sum(diffs) / g if g else 0.0
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (g - 1)) if g > 1 else 0.0
    half = z * sd / math.sqrt(g) if g else 0.0
    won_a = dict(a.select("traj_id", "won").iter_rows())
    won_b = dict(b.select("traj_id", "won").iter_rows())
    only_a = sum(bool(won_a[t]) and not won_b[t] for t in won_a)
    only_b = sum(bool(won_b[t]) and not won_a[t] for t in won_a)
    better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {
        "games": g,
        "episodes_per_game": m,
        "successes_a": sum(k for k, _ in ga.values()),
        "successes_b": sum(k for k, _ in gb.values()),
        "difference_points": 100 * sum(diffs) / episodes if episodes else 0.0,
        "difference_ci_points": [100 * (mean - half) / m, 100 * (mean + half) / m] if m else [0.0, 0.0],
        "games_a_better": better,
        "games_b_better": worse,
        "games_tied": g - better - worse,
        "p_value": paired_permutation_p(diffs),
        "test": "exact paired permutation (sign-flip) test of the per-game success-count differences, two-sided",
        "sign_test_p": mcnemar_exact(better, worse),
        "episodes_only_a": only_a,
        "episodes_only_b": only_b,
        "mcnemar_p": mcnemar_exact(only_a, only_b),
        "per_game_differences": dict(zip(games, diffs, strict=True)),
    }


def contrasts(arms: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    """The primary contrast (:data:`PRIMARY`, uncorrected) and the secondary ones (:data:`SECONDARY`
    whose arms are in ``arms``), the latter with Holm-adjusted p-values (``p_holm``)."""
    check_paired(arms)
    a, b = PRIMARY
    primary = {"name": f"{a} vs {b}", "a": a, "b": b, **contrast(arms[a], arms[b])}
    secondary = [
        {"name": f"{x} vs {y}", "a": x, "b": y, **contrast(arms[x], arms[y])}
        for x, y in SECONDARY
        if x in arms and y in arms
    ]
    adjusted = holm({c["name"]: c["p_value"] for c in secondary})
    for c in secondary:
        c["p_holm"] = adjusted[c["name"]]
    return {"primary": primary, "secondary": secondary}


# --------------------------------------------------------------------------- rates and power
def game_rates(episodes: pl.DataFrame, pool: str = "family") -> dict[str, dict[str, Any]]:
    """Per-game success rates from an evaluation's episodes (``skillmaster eval --out``'s
    ``episodes.parquet``, or an arm of this experiment): ``{task_id: {family, successes, episodes,
    rate}}``.

    ``pool="family"`` (default) gives every game its family's pooled rate: with one or a few
    episodes per game a game's own share is 0 or 1 and shows no binomial variance at all, while
    equal rates within a family give the largest variance the family's mean allows (r(1 − r) is
    concave), so the planned detectable difference is conservative. ``pool="game"``: each game's
    own share.
    """
    if pool not in ("family", "game"):
        raise ValueError(f"pool must be 'family' or 'game' (got {pool!r})")
    games: dict[str, dict[str, Any]] = {}
    for task, family, won in episodes.select("task_id", "family", "won").iter_rows():
        g = games.setdefault(task, {"family": family, "successes": 0, "episodes": 0})
        g["successes"] += bool(won)
        g["episodes"] += 1
    families: dict[str, list[int]] = {}
    for g in games.values():
        f = families.setdefault(g["family"], [0, 0])
        f[0] += g["successes"]
        f[1] += g["episodes"]
    for g in games.values():
        k, n = families[g["family"]] if pool == "family" else (g["successes"], g["episodes"])
        g["rate"] = k / n
    return dict(sorted(games.items()))


def rates_for(
    games: Sequence[tuple[str, str]], known: Mapping[str, Mapping[str, Any] | float]
) -> tuple[list[float], int]:
    """Rates of the design's ``games`` (``(task_id, family)`` pairs) from ``known`` (task id → rate,
    or → a record with ``rate``); a game without a rate gets the mean of the known games of its
    family, else of all known games of the design. Returns (rates, how many were filled in)."""

    def value(v: Mapping[str, Any] | float) -> float:
        r = float(v["rate"] if isinstance(v, Mapping) else v)
        if not 0.0 <= r <= 1.0:
            raise DataError(f"a per-game success rate must lie in [0, 1] (got {r})")
        return r

    have = {t: value(known[t]) for t, _ in games if t in known}
    if not have:
        raise DataError("the rates name none of the design's evaluation games (task ids of the split)")
    by_family: dict[str, list[float]] = {}
    for t, f in games:
        if t in have:
            by_family.setdefault(f, []).append(have[t])
    overall = sum(have.values()) / len(have)
    rates, filled = [], 0
    for t, f in games:
        if t in have:
            rates.append(have[t])
        else:
            filled += 1
            fam = by_family.get(f)
            rates.append(sum(fam) / len(fam) if fam else overall)
    return rates, filled


def approx_power(rates: Sequence[float], m: int, delta: float, alpha: float = 0.05) -> float:
    """Power of the paired per-game comparison against an improvement of ``delta`` (a share, e.g.
    0.08) in every game, by the normal approximation of
    :func:`~skillmaster.skills.power.detectable_difference` (same model: binomial episodes, m per
    game and arm, independent arms)."""
    g = len(rates)
    normal = NormalDist()

    def variance(d: float) -> float:
        return sum(r * (1 - r) + min(1.0, r + d) * (1 - min(1.0, r + d)) for r in rates) / (g * g * m)

    shift = sum(min(1.0, r + delta) - r for r in rates) / g
    critical = normal.inv_cdf(1 - alpha / 2) * math.sqrt(variance(0.0))
    spread = math.sqrt(variance(delta))
    if spread == 0.0:
        return 1.0 if shift > critical else 0.0
    return normal.cdf((shift - critical) / spread)


def simulated_power(
    rates: Sequence[float], m: int, delta: float, alpha: float = 0.05, draws: int = 400, seed: int = 0
) -> float:
    """Power of the test of record itself (:func:`paired_permutation_p`, two-sided, rejecting in
    the direction of the improvement) against ``delta`` in every game, by ``draws`` seeded
    simulations of the design: game g's episodes succeed with r_g in one arm and min(1, r_g + δ) in
    the other, independently."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(draws):
        diffs = []
        for r in rates:
            new = sum(rng.random() < min(1.0, r + delta) for _ in range(m))
            old = sum(rng.random() < r for _ in range(m))
            diffs.append(new - old)
        if sum(diffs) > 0 and _permutation_p_float(diffs) <= alpha:
            hits += 1
    return hits / draws if draws else 0.0


def _permutation_p_float(diffs: Sequence[int]) -> float:
    """:func:`paired_permutation_p` in floating point (numpy convolution), for simulations."""
    import numpy as np

    sizes = [abs(int(d)) for d in diffs if d]
    if not sizes:
        return 1.0
    total = sum(sizes)
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0  # index total + s holds P(sum = s)
    for a in sizes:
        dist = 0.5 * (np.roll(dist, a) + np.roll(dist, -a))  # no wrap-around: |sum| <= total
    sums = np.arange(-total, total + 1)
    return float(dist[np.abs(sums) >= abs(sum(diffs)) - 1e-9].sum())


def power_plan(
    rates: Sequence[float],
    m: int,
    alpha: float = 0.05,
    power: float = 0.8,
    effect_points: float = 8.0,
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """What the primary contrast can detect: the smallest improvement found with ``power`` at
    two-sided ``alpha`` (:func:`~skillmaster.skills.power.detectable_difference`), and the power
    against ``effect_points`` (normal approximation, and simulated with the exact test)."""
    from skillmaster.skills.power import detectable_difference

    rates = list(rates)
    return {
        "games": len(rates),
        "episodes_per_game": m,
        "mean_rate": sum(rates) / len(rates),
        "alpha": alpha,
        "power": power,
        "detectable_points": detectable_difference(rates, m, alpha, power),
        "effect_points": effect_points,
        "power_at_effect": approx_power(rates, m, effect_points / 100, alpha),
        "simulated_power_at_effect": simulated_power(rates, m, effect_points / 100, alpha, draws, seed),
        "simulation_draws": draws,
    }


def gate_plan(k: int, alpha: float) -> dict[str, Any]:
    """The sign-test gate with K probes at ``alpha``: the chance a content-free edit passes when a
    share p of its probe deltas is nonzero (at most alpha whatever p), and the chance an edit that
    wins a quarter of its probes and never loses one passes."""
    from skillmaster.skills.power import false_pass_rate_sign_test, sign_test_power

    return {
        "probes": k,
        "alpha": alpha,
        "false_pass_rate": {str(p): false_pass_rate_sign_test(p, k, alpha) for p in (0.25, 0.5, 1.0)},
        "pass_rate_wins_quarter": sign_test_power(0.25, 0.0, k, alpha),
    }


# --------------------------------------------------------------------------- formatting
def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _p(x: float) -> str:
    return f"{x:.3g}"


def format_power(plan: Mapping[str, Any], source: str) -> str:
    return (
        f"power of the primary contrast ({source}; {plan['games']} games x {plan['episodes_per_game']} "
        f"episodes, mean success {_pct(plan['mean_rate'])}, two-sided alpha {plan['alpha']:g}): detects "
        f"+{plan['detectable_points']:.1f} points with {plan['power']:.0%} power; power against "
        f"+{plan['effect_points']:g} points {plan['power_at_effect']:.2f} (normal approximation), "
        f"{plan['simulated_power_at_effect']:.2f} (exact test, {plan['simulation_draws']} simulated designs)"
    )


def format_gate(plan: Mapping[str, Any]) -> str:
    rates = ", ".join(f"{v:.3f} at p_nonzero {k}" for k, v in plan["false_pass_rate"].items())
    return (
        f"gate: sign test over K = {plan['probes']} probes at alpha {plan['alpha']:g}: a content-free edit "
        f"passes {rates} (never above alpha); an edit that wins 1 probe in 4 and never loses passes "
        f"{plan['pass_rate_wins_quarter']:.2f}"
    )


def _same_bank_notes(arms: Mapping[str, Any], primary: str) -> list[str]:
    """A paragraph per arm that shares another arm's bank: its contrasts are that arm's contrasts."""
    notes = []
    for name, a in arms.items():
        if source := a.get("reused_from"):
            note = f"The {name} bank is the {source} bank, so each contrast with {name} is that contrast with {source}"
            words = primary.split(" vs ")
            if name in words:
                note += f': "{primary}" reads as "{" vs ".join(source if w == name else w for w in words)}"'
            notes += ["", note + "."]
    return notes


def format_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: the arms, the contrasts, the gate and the committed edits."""
    from skillmaster.plots import label

    arms = report["arms"]
    families = sorted({f for a in arms.values() for f in a["by_family"]})
    lines = [
        "# Bank experiment: do counterfactually gated edits help a fixed policy more than ungated ones?",
        "",
        f"Design `{report['design_hash']}`: {report['summary']}",
        "",
        "## Success per bank (95% Wilson intervals)",
        "",
        "| bank | skills added/updated | " + " | ".join(label(f) for f in families) + " | all |",
        "|" + " --- |" * (len(families) + 3),
    ]
    for name, a in arms.items():
        cells = [f"{a['by_family'].get(f, {}).get('successes', 0)}/{a['by_family'].get(f, {}).get('episodes', 0)}" for f in families]  # fmt: skip
        overall = f"**{a['successes']}/{a['episodes']}** ({_pct(a['success_rate'])}, {_pct(a['ci_low'])}-{_pct(a['ci_high'])})"  # fmt: skip
        reused = f" (same bank as {a['reused_from']})" if a.get("reused_from") else ""
        lines.append(f"| {name}{reused} | {a['edits']} | " + " | ".join(cells) + f" | {overall} |")
    c = report["contrasts"]
    lines += [
        "",
        "## Contrasts (paired per game: same games, same seeds)",
        "",
        "Test of record: exact two-sided paired permutation (sign-flip) test of the per-game success-count "
        "differences. Primary contrast pre-registered, uncorrected; the others Holm-corrected together.",
        *_same_bank_notes(arms, report["contrasts"]["primary"]["name"]),
        "",
        "| contrast | difference (points, 95% CI) | games better / worse / tied | p | Holm p | sign test p | episodes only A / only B, McNemar p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row, kind in [(c["primary"], "primary"), *((s, "") for s in c["secondary"])]:
        lo, hi = row["difference_ci_points"]
        name = f"**{row['name']}** (primary)" if kind else row["name"]
        holm_p = "–" if kind else _p(row["p_holm"])
        lines.append(
            f"| {name} | {row['difference_points']:+.1f} ({lo:+.1f} to {hi:+.1f}) | "
            f"{row['games_a_better']} / {row['games_b_better']} / {row['games_tied']} | {_p(row['p_value'])} | "
            f"{holm_p} | {_p(row['sign_test_p'])} | {row['episodes_only_a']} / {row['episodes_only_b']}, "
            f"{_p(row['mcnemar_p'])} |"
        )
    g = report["gate"]
    lines += [
        "",
        "## The gate",
        "",
        f"{g['valid_edits']} valid edits from {g['reviews']} reviews; {g['scored']} scored (K = {g['probes']} probes "
        f"each, control placebo); {g['committed']} committed by the sign test at alpha {g['alpha']:g}. "
        f"False-commit rate measured on {g['placebos']} placebo-vs-placebo contrasts: "
        f"{g['placebo_commits']}/{g['placebos']} = {g['false_commit_rate']:.2f} "
        f"(95% CI {g['false_commit_ci'][0]:.2f}-{g['false_commit_ci'][1]:.2f}) beside alpha {g['alpha']:g}.",
        "",
    ]
    if report.get("power"):
        lines += ["## Power", ""] + [f"- {line}" for line in report["power"]["lines"]] + [""]
    lines += ["## Scored edits", ""]
    if not report["edits"]:
        lines.append("No edit was scored.")
    for e in report["edits"]:
        state = "committed" if e["committed"] else f"not committed ({e['commit_reason']})"
        deltas = ", ".join(f"{d:+.2f}" for d in e["deltas"])
        lines += [
            f"### {e['traj_id']} ({e['family']}): {e['kind']} {e['title']!r}, {state}",
            "",
            f"- principle: {e['principle']}",
            f"- when to apply: {e['when_to_apply']}",
            f"- evidence: {e['evidence'] or '–'}",
            f"- probe deltas (edit − placebo): [{deltas}]; U = {e['utility']:.3f}, sign-test p = {_p(e['p_value'])}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"
