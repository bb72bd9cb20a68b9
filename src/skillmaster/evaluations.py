"""Evaluations side by side: the experiment table of ``skillmaster compare --evals``.

An *evaluation folder* is what ``skillmaster eval --out DIR`` writes: ``episodes.parquet`` (one row
per episode: ``task_id``, ``family``, ``won``, ``length``, ``invalid_count``, ``condition`` …) and
``metrics.json``. The experiment keeps one folder per row and condition, e.g.
``results/experiment/<row>/skills`` and ``results/experiment/<row>/no-skills``; every row is
evaluated on the same games with the same seeds, so two rows can be compared game by game.

Per row and condition the table gives successes per family, overall success with its 95% Wilson
interval, the share of invalid actions, the mean steps of won episodes, and a paired test against
a reference row (same games; in the row's condition, or in the one ``ROW:CONDITION`` names): the exact McNemar test on the games one row won and
the other did not; and for a row evaluated both ways, the same test between its two conditions
(what showing the skills does for that policy). Everything here is a pure function of the episodes tables except
:func:`load_evaluations` (files) and :func:`family_bar_plot` (a PNG).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillmaster.errors import DataError

if TYPE_CHECKING:
    import polars as pl

ROW_ORDER = ("base", "sft", "grpo", "static-skills", "no-cf", "merged-adv", "skillmaster")
"""Rows of the experiment in the order of the paper's table; other names follow alphabetically."""
CONDITIONS = ("skills", "no-skills")


# --------------------------------------------------------------------------- statistics (pure)
def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (default 95%); ``(0, 1)`` when ``n`` is 0.

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = successes / n``.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denom = 1 + z2 / n
    # At 0 (or n) successes the bound is exactly 0 (or 1); computed, it is off by rounding (a 1e-18
    # lower bound above a rate of 0 gave a plot a negative error bar).
    low = 0.0 if successes == 0 else max(0.0, (centre - half) / denom)
    high = 1.0 if successes == n else min(1.0, (centre + half) / denom)
    return low, high


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: games only A won, games only B won.

    Under H0 each discordant game is A's with probability 1/2: ``p = min(1, 2·P(X ≤ min(b, c)))`` for
    ``X ~ Binomial(b + c, 1/2)``; 1.0 when no game is discordant.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts must be non-negative")
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Paired:
    """Game-by-game comparison of a row with the reference row (same condition)."""

    games: int
    only_row: int
    """Games the row won and the reference did not."""
    only_reference: int
    p_value: float


def _one_episode_per_game(row: pl.DataFrame, reference: pl.DataFrame) -> None:
    for name, df in (("row", row), ("reference", reference)):
        if df["task_id"].n_unique() != df.height:
            raise DataError(
                f"the {name} evaluation has a game more than once; a paired comparison needs one episode per game"
            )


def paired_comparison(row: pl.DataFrame, reference: pl.DataFrame) -> Paired:
    """McNemar on the games both evaluated (joined on ``task_id``); each game must appear once per side."""
    _one_episode_per_game(row, reference)
    joined = row.select("task_id", "won").join(
        reference.select("task_id", "won"), on="task_id", suffix="_ref"
    )
    only_row = int((joined["won"] & ~joined["won_ref"]).sum())
    only_ref = int((~joined["won"] & joined["won_ref"]).sum())
    return Paired(joined.height, only_row, only_ref, mcnemar_exact(only_row, only_ref))


@dataclass(frozen=True)
class ShownInChanged:
    """Whether the edited skills were in the prompts of the games that changed outcome."""

    games: int
    """Games both evaluations played."""
    shown: int
    """Of them, games whose row episode was shown at least one of the skills."""
    improved: int
    """Games the row won and the reference did not."""
    improved_shown: int
    worsened: int
    """Games the reference won and the row did not."""
    worsened_shown: int


def shown_in_changed(row: pl.DataFrame, reference: pl.DataFrame, skill_ids: Sequence[str]) -> ShownInChanged:
    """For the games that changed outcome between ``reference`` and ``row`` (joined on ``task_id``),
    how many of the row's episodes were shown one of ``skill_ids`` (column ``skills_shown``)."""
    import polars as pl

    if "skills_shown" not in row.columns:
        raise DataError("the row evaluation has no skills_shown column (evaluate it with skills shown)")
    _one_episode_per_game(row, reference)
    joined = (
        row.select(
            "task_id",
            "won",
            pl.col("skills_shown").list.eval(pl.element().is_in(list(skill_ids))).list.any().alias("shown"),
        )
        .join(reference.select("task_id", pl.col("won").alias("won_ref")), on="task_id")
        .with_columns(pl.col("shown").fill_null(False))
    )
    improved = joined.filter(pl.col("won") & ~pl.col("won_ref"))
    worsened = joined.filter(~pl.col("won") & pl.col("won_ref"))
    return ShownInChanged(
        games=joined.height,
        shown=int(joined["shown"].sum()),
        improved=improved.height,
        improved_shown=int(improved["shown"].sum()),
        worsened=worsened.height,
        worsened_shown=int(worsened["shown"].sum()),
    )


# --------------------------------------------------------------------------- the table (pure)
def summarize(episodes: pl.DataFrame) -> dict[str, Any]:
    """Counts of one evaluation: per family and overall successes, invalid-action share, mean steps of wins."""
    import polars as pl

    n, wins = episodes.height, int(episodes["won"].sum())
    lo, hi = wilson_interval(wins, n)
    steps = int(episodes["length"].sum())
    won_lengths = episodes.filter(pl.col("won"))["length"]
    families = {
        fam: (int(g["won"].sum()), g.height)
        for (fam,), g in sorted(episodes.group_by("family"), key=lambda kv: str(kv[0][0]))
    }
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "ci_low": lo,
        "ci_high": hi,
        "by_family": families,
        "invalid_actions": int(episodes["invalid_count"].sum()),
        "steps": steps,
        "invalid_share": int(episodes["invalid_count"].sum()) / steps if steps else 0.0,
        "mean_steps_of_wins": float(won_lengths.mean()) if len(won_lengths) else None,
    }


def row_sort_key(name: str) -> tuple[int, str]:
    return (ROW_ORDER.index(name), "") if name in ROW_ORDER else (len(ROW_ORDER), name)


def parse_reference(reference: str) -> tuple[str, str | None]:
    """``ROW`` (paired with each record's own condition) or ``ROW:CONDITION`` (every record paired
    with that one evaluation, e.g. ``skillmaster:skills`` for each row in its own condition)."""
    row, sep, condition = reference.partition(":")
    if not sep:
        return row, None
    if not row or condition not in CONDITIONS:
        raise DataError(
            f"reference '{reference}' is not ROW or ROW:CONDITION with CONDITION one of {', '.join(CONDITIONS)}"
        )
    return row, condition


def evaluation_table(
    evaluations: Mapping[tuple[str, str], pl.DataFrame], reference: str | None = "skillmaster"
) -> list[dict[str, Any]]:
    """One record per (row, condition): :func:`summarize` plus, against ``reference`` (same
    condition, or the one ``ROW:CONDITION`` names; when evaluated), the :class:`Paired` test as
    ``paired``; a ``skills`` record whose row was also evaluated without skills gets, as
    ``vs_no_skills``, the same policy's paired test with the skills shown against hidden
    (``only_row``: games won only with them)."""
    ref_row, ref_condition = parse_reference(reference) if reference else (None, None)
    records = []
    for row, condition in sorted(
        evaluations, key=lambda k: (CONDITIONS.index(k[1]) if k[1] in CONDITIONS else 9, row_sort_key(k[0]))
    ):
        episodes = evaluations[(row, condition)]
        record = {"row": row, "condition": condition, **summarize(episodes)}
        key = (ref_row, ref_condition or condition)
        ref = evaluations.get(key) if ref_row else None
        record["paired"] = (
            None if ref is None or (row, condition) == key else paired_comparison(episodes, ref)
        )
        hidden = evaluations.get((row, "no-skills")) if condition == "skills" else None
        record["vs_no_skills"] = None if hidden is None else paired_comparison(episodes, hidden)
        records.append(record)
    return records


def format_shown_effect(records: Sequence[Mapping[str, Any]]) -> str:
    """Per row evaluated both ways, showing the skills against hiding them (the same policy and
    games) as a Markdown table; empty when no row has both conditions."""
    rows = [r for r in records if r.get("vs_no_skills") is not None]
    if not rows:
        return ""
    hidden = {r["row"]: r for r in records if r["condition"] == "no-skills"}
    lines = [
        "| row | skills shown | skills hidden | won only shown / only hidden, McNemar p |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        h, p = hidden[r["row"]], r["vs_no_skills"]
        lines.append(
            f"| {r['row']} | {r['successes']}/{r['episodes']} | {h['successes']}/{h['episodes']} | "
            f"{p.only_row} / {p.only_reference}, p = {p.p_value:.3g} ({p.games} games) |"
        )
    return "\n".join(lines)


def format_evaluation_table(
    records: Sequence[Mapping[str, Any]], reference: str | None = "skillmaster"
) -> str:
    """The records as a Markdown table (columns: families, overall with interval, invalid share,
    mean steps of wins, paired test against ``reference``)."""
    from skillmaster.plots import label

    families = sorted({f for r in records for f in r["by_family"]}, key=_family_key)
    ref_row, ref_condition = parse_reference(reference) if reference else (None, None)
    if not any(r["row"] == ref_row for r in records):
        reference = None  # no such row: no paired column
    elif ref_condition:
        reference = f"{ref_row} ({ref_condition})"
    head = [
        "row",
        "condition",
        *(label(f) for f in families),
        "all (95% CI)",
        "invalid actions",
        "steps of wins",
    ]
    if reference:
        head.append(f"vs {reference} (won only by row / only by {reference}, McNemar p)")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in records:
        cells = [r["row"], r["condition"]]
        for f in families:
            k, n = r["by_family"].get(f, (0, 0))
            cells.append(f"{k}/{n}" if n else "–")
        cells.append(
            f"**{r['successes']}/{r['episodes']}** ({100 * r['success_rate']:.1f}%, {100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f})"
        )
        cells.append(f"{100 * r['invalid_share']:.1f}%")
        cells.append("–" if r["mean_steps_of_wins"] is None else f"{r['mean_steps_of_wins']:.1f}")
        if reference:
            p = r["paired"]
            cells.append(
                "–"
                if p is None
                else f"{p.only_row} / {p.only_reference}, p = {p.p_value:.3g} ({p.games} games)"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _family_key(family: str) -> tuple[int, str]:
    from skillmaster.plots import FAMILY_LABELS

    order = list(FAMILY_LABELS)
    return (order.index(family), family) if family in order else (len(order), family)


def records_json(records: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for r in records:
        rec = dict(r)
        rec["by_family"] = {f: {"successes": k, "episodes": n} for f, (k, n) in r["by_family"].items()}
        for key in ("paired", "vs_no_skills"):
            p = rec.pop(key, None)
            rec[key] = None if p is None else p.__dict__
        out.append(rec)
    return json.dumps(out, indent=2)


# --------------------------------------------------------------------------- files and plot
def load_evaluations(folders: Sequence[Path]) -> dict[tuple[str, str], pl.DataFrame]:
    """Evaluation folders → ``{(row, condition): episodes}``.

    A folder named ``skills`` or ``no-skills`` is that condition of the row named by its parent;
    any other folder is a row, with its condition read from the episodes (``eval_skills`` →
    ``skills``); a folder holding no ``episodes.parquet`` but sub-folders that do is expanded.
    """
    import polars as pl

    found: dict[tuple[str, str], pl.DataFrame] = {}
    for folder in folders:
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not a folder of evaluations (expected episodes.parquet from `skillmaster eval --out`)"
            )
        if (folder / "episodes.parquet").exists():
            leaves = [folder]
        else:
            leaves = sorted(p.parent for p in folder.glob("**/episodes.parquet"))
            if not leaves:
                raise DataError(
                    f"{folder}: holds no episodes.parquet (write one with `skillmaster eval --out`)"
                )
        for leaf in leaves:
            episodes = pl.read_parquet(leaf / "episodes.parquet")
            missing = {"task_id", "family", "won", "length", "invalid_count", "condition"} - set(
                episodes.columns
            )
            if missing:
                raise DataError(f"{leaf / 'episodes.parquet'}: lacks column(s) {', '.join(sorted(missing))}")
            for (cond,), part in episodes.group_by("condition"):
                condition = "no-skills" if cond == "eval_no_skills" else "skills"
                row = leaf.parent.name if leaf.name in CONDITIONS else leaf.name
                if (row, condition) in found:
                    raise DataError(f"{leaf}: row '{row}' ({condition}) is evaluated twice")
                found[(row, condition)] = part
    return found


def bar_heights(record: Mapping[str, Any], families: Sequence[str]) -> list[float]:
    """One row's bars: its success rate per family (0 where it has no game of one), then overall."""
    rates = [(k / n if n else 0.0) for k, n in (record["by_family"].get(f, (0, 0)) for f in families)]
    return [*rates, record["success_rate"]]


def family_bar_plot(path: Path, records: Sequence[Mapping[str, Any]], condition: str = "skills") -> Path:
    """Success by family per row (grouped bars with the overall rate), for one condition; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skillmaster.plots import label, save_png

    rows = [r for r in records if r["condition"] == condition]
    if not rows:
        raise DataError(f"no evaluation with condition '{condition}' to plot")
    families = sorted({f for r in rows for f in r["by_family"]}, key=_family_key)
    groups = [label(f) for f in families] + ["all"]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(groups)), 4), dpi=110)
    heights = [bar_heights(r, families) for r in rows]
    for i, (r, rates) in enumerate(zip(rows, heights, strict=True)):
        xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, rates, width, label=r["row"])
        ax.errorbar(xs[-1], r["success_rate"], yerr=[[r["success_rate"] - r["ci_low"]], [r["ci_high"] - r["success_rate"]]], fmt="none", ecolor="black", capsize=3)  # fmt: skip
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("success rate")
    ax.set_title(f"Success by family ({condition}; 95% Wilson interval on 'all')")
    # The axis holds every bar and every interval: a family's rate can exceed the overall interval.
    top = max([0.05] + [h for hs in heights for h in hs] + [r["ci_high"] for r in rows])
    ax.set_ylim(0, min(1.05, top * 1.1))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return save_png(fig, path)
