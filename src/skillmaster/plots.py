"""Plots people would rather look at than read: success by family and bank size over iterations.

Each plot is written twice: as a CSV that ``dvc plots show`` renders (x = iteration) and as a PNG
(matplotlib, headless) that MLflow stores with the run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from skillmaster.io import atomic_write_bytes, atomic_write_text

FAMILY_LABELS = {
    "pick_and_place_simple": "Pick",
    "look_at_obj_in_light": "Look",
    "pick_clean_then_place_in_recep": "Clean",
    "pick_heat_then_place_in_recep": "Heat",
    "pick_cool_then_place_in_recep": "Cool",
    "pick_two_obj_and_place": "Pick2",
}
"""ALFWorld family → the column names the paper's tables use (METHOD.md §9)."""


def label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def line_plot(
    path: Path,
    rows: Sequence[dict],
    columns: Sequence[str],
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """One line per column over ``row["iteration"]``; saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    xs = [r["iteration"] for r in rows]
    for col in columns:
        ys = [r.get(col) for r in rows]
        if any(y not in (None, "") for y in ys):
            style = (
                {"linewidth": 2.6, "color": "black"} if col in ("overall", "total") else {"linewidth": 1.4}
            )
            ax.plot(xs, [float("nan") if y in (None, "") else y for y in ys], marker="o", label=col, **style)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(xs)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
