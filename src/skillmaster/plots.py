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


def family_labels(env: str | None = None) -> dict[str, str]:
    """Task family → the column name the paper's tables use (METHOD.md §9): environment ``env``'s
    (its profile's ``family_labels``), or every environment's when ``env`` is None."""
    from skillmaster.envs.registry import profile, profiles

    chosen = profiles() if env is None else [profile(env)]
    return {family: name for p in chosen for family, name in p.family_labels.items()}


FAMILY_LABELS = family_labels()
"""Every environment's family labels (ALFWorld: Pick, Look, Clean, Heat, Cool, Pick2)."""


def label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def save_png(fig, path: Path) -> Path:
    """Lay out, write atomically as PNG, and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


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
    return save_png(fig, path)
