"""Stage ``report``: the run at a glance, after the last iteration.

Reads every iteration's metrics and banks, writes ``metrics/summary.json``, the DVC plot data
(``plots/*.csv``) and PNGs, and records all of it in the MLflow parent run: per-iteration metrics
with ``step=iteration``, and per-iteration artifacts (bank JSON and its diff, eval episodes, the
checkpoint), so a run is complete in MLflow even when DVC skipped unchanged stages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from skillmaster.config import Config, EvalConfig
from skillmaster.io import read_json, write_json
from skillmaster.plots import label, line_plot, write_csv
from skillmaster.stages import StageContext, register
from skillmaster.stages.contract import Plot, StageContract, Where
from skillmaster.stages.views import Execution, From, StageView
from skillmaster.tracking import metric_names

STAGE_FILES = ("collect", "review", "counterfactual", "train", "eval")
INVALID_STATUSES = ("duplicate", "not_found", "invalid_arguments", "unknown_tool")
REVIEW_PLOT_COLUMNS = ("added", "updated", "kept", "invalid", "parse_error")
EDIT_PLOT_COLUMNS = ("scored", "committed", "placebo_scored", "placebo_commits")
BANK_PLOT_COLUMNS = ("total", "general", "task_specific", "mistakes")


def _family_columns(cfg: Config) -> list[str]:
    """Columns of ``success_by_family``: overall, then the environment's family labels."""
    from skillmaster.plots import family_labels

    labels = family_labels(cfg.env.name)
    fams = cfg.env.families or list(labels)
    return ["overall", *sorted(labels.get(f, f) for f in fams)] if labels else ["overall"]


def _reads(w: Where) -> list[Path]:
    """Every iteration's metrics (of the stages the run has) and banks."""
    cfg, p = w.cfg, w.paths
    out = []
    for it in range(cfg.loop.iterations + 1):
        stages = (["eval"] if cfg.eval.enabled else []) + (list(STAGE_FILES[:4]) if it else [])
        out += [p.metrics(it, s) for s in stages] + [p.bank(it)]
    return out


class ReportView(StageView):
    method: Annotated[str, From("method")]
    iterations: Annotated[int, From("loop.iterations")]
    eval: Annotated[EvalConfig, From("eval")]
    env_name: Annotated[str, From("env.name")]
    """With ``env_families``: the columns of the ``success_by_family`` plot."""
    env_families: Annotated[list[str] | None, From("env.families")]
    log_checkpoints: Annotated[bool, Execution("tracking.log_checkpoints")]

    @property
    def headline_split(self) -> str | None:
        return self.eval.splits[0] if self.eval.splits else None


CONTRACT = StageContract(
    name="report",
    view=ReportView,
    reads=_reads,
    metrics=lambda w: [w.paths.summary],
    plots=(
        Plot("success_by_family", "Success by family", "success rate", _family_columns),
        Plot("bank_size", "Skill bank size", "skills", lambda cfg: list(BANK_PLOT_COLUMNS)),
        Plot("skill_reviews", "Reviews by outcome", "reviews", lambda cfg: list(REVIEW_PLOT_COLUMNS)),
        Plot("skill_edits", "Edits scored and committed", "edits", lambda cfg: list(EDIT_PLOT_COLUMNS)),
    ),
)


def primary_eval(ctx: StageContext, eval_metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Metrics of the first eval split, with skills when evaluated, else without."""
    split = ctx.headline_split
    per_split = eval_metrics.get(split) if split else None
    if not per_split:
        return None
    return per_split.get("eval_skills") or per_split.get("eval_no_skills")


def iteration_summary(ctx: StageContext, it: int) -> dict[str, Any]:
    from skillmaster.skills.diff import bank_stats
    from skillmaster.skills.store import load_bank

    row: dict[str, Any] = {"iteration": it}
    for stage in STAGE_FILES:
        path = ctx.paths.metrics(it, stage)
        if path.is_file():
            row[stage] = read_json(path, f"{stage} metrics")
    bank_path = ctx.paths.bank(it)
    if bank_path.is_file():
        row["bank"] = bank_stats(load_bank(bank_path), prefix="")
    return row


def skill_rows(summary: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Skill-bank analytics per iteration (METHOD.md §9): reviews by outcome, and edits scored,
    committed and their utility next to the placebo edits' chance commits."""
    reviews, edits = [], []
    for s in summary:
        r = s.get("review")
        if r and r.get("enabled", True):
            reviews.append(
                {
                    "iteration": s["iteration"],
                    "added": r.get("reviews_added", 0),
                    "updated": r.get("reviews_updated", 0),
                    "kept": r.get("reviews_kept", 0),
                    "invalid": sum(r.get(f"reviews_{k}", 0) for k in INVALID_STATUSES),
                    "parse_error": r.get("reviews_parse_error", 0),
                    "valid_edit_share": round(r.get("valid_edit_share", 0.0), 4),
                    "parse_error_share": round(r.get("parse_error_share", 0.0), 4),
                }
            )
        c = s.get("counterfactual")
        if c:
            edits.append(
                {
                    "iteration": s["iteration"],
                    "candidates": c.get("edits_total", 0),
                    "scored": c.get("edits_scored", 0),
                    "committed": c.get("edits_committed", 0),
                    "placebo_scored": c.get("placebo_scored", 0),
                    "placebo_commits": c.get("placebo_commits", 0),
                    "mean_utility_committed": round(c.get("mean_utility_committed", 0.0), 4),
                    "utility_nonzero_share": round(c.get("utility_nonzero_share", 0.0), 4),
                    "placebo_commit_rate": round(c.get("placebo_commit_rate", 0.0), 4),
                }
            )
    return reviews, edits


def plot_rows(ctx: StageContext, summary: list[dict[str, Any]]) -> tuple[list[dict], list[str], list[dict]]:
    success_rows, families, bank_rows = [], [], []
    for s in summary:
        ev = primary_eval(ctx, s.get("eval", {}))
        if ev and ev.get("episodes"):
            row = {"iteration": s["iteration"], "overall": round(ev["success_rate"], 4)}
            for fam, f in ev.get("by_family", {}).items():
                row[label(fam)] = round(f["success_rate"], 4)
                if label(fam) not in families:
                    families.append(label(fam))
            success_rows.append(row)
        if "bank" in s:
            b = s["bank"]
            bank_rows.append(
                {
                    "iteration": s["iteration"],
                    "total": b.get("total", 0),
                    "general": b.get("general", 0),
                    "task_specific": b.get("task_specific", 0),
                    "mistakes": b.get("mistakes", 0),
                }
            )
    return success_rows, sorted(families), bank_rows


@register(CONTRACT)
def report_stage(ctx: StageContext) -> dict:
    view, paths = ctx.view, ctx.paths
    summary = [iteration_summary(ctx, it) for it in range(view.iterations + 1)]
    success_rows, families, bank_rows = plot_rows(ctx, summary)
    review_rows, edit_rows = skill_rows(summary)
    plots = paths.plots_dir
    write_csv(plots / "success_by_family.csv", success_rows, ["iteration", "overall", *families])
    write_csv(
        plots / "bank_size.csv", bank_rows, ["iteration", "total", "general", "task_specific", "mistakes"]
    )
    write_csv(plots / "skill_reviews.csv", review_rows, ["iteration", *REVIEW_PLOT_COLUMNS,
              "valid_edit_share", "parse_error_share"])  # fmt: skip
    write_csv(plots / "skill_edits.csv", edit_rows, ["iteration", "candidates", *EDIT_PLOT_COLUMNS,
              "mean_utility_committed", "utility_nonzero_share", "placebo_commit_rate"])  # fmt: skip
    pngs = []
    if success_rows:
        pngs.append(
            line_plot(
                plots / "success_by_family.png",
                success_rows,
                ["overall", *families],
                f"Success on {view.headline_split} by family",
                "success rate",
                (-0.05, 1.05),
            )
        )
    if bank_rows:
        pngs.append(
            line_plot(
                plots / "bank_size.png",
                bank_rows,
                ["total", "general", "task_specific", "mistakes"],
                "Skill bank size",
                "skills",
            )
        )
    # written even when empty (review off): they are DVC outputs of this stage
    pngs.append(
        line_plot(
            plots / "skill_reviews.png",
            review_rows,
            list(REVIEW_PLOT_COLUMNS),
            "Reviews by outcome",
            "reviews",
        )
    )
    pngs.append(
        line_plot(
            plots / "skill_edits.png",
            edit_rows,
            ["candidates", *EDIT_PLOT_COLUMNS],
            "Edits: scored, committed, placebo commits",
            "edits",
        )
    )
    final = next((r for r in reversed(success_rows)), {})
    out = {"method": view.method, "iterations": summary, "final_success": final}
    write_json(paths.summary, out)
    log_run(ctx, summary, pngs)
    return {"final_success_rate": final.get("overall"), "iterations": view.iterations}


def log_run(ctx: StageContext, summary: list[dict[str, Any]], pngs: list[Path]) -> None:
    """Per-iteration metrics and artifacts into the MLflow parent run."""
    from skillmaster.skills.diff import diff_banks, format_diff
    from skillmaster.skills.store import load_bank

    tracker, paths = ctx.tracker, ctx.paths
    split = ctx.headline_split
    for s in summary:
        it = s["iteration"]
        numbers: dict[str, float] = {}
        for stage in (*STAGE_FILES, "bank"):
            numbers |= metric_names(stage, s.get(stage) or {}, split)
        tracker.log_new_metrics(numbers, step=it)  # what the stages logged stays logged once
        bank = paths.bank(it)
        if bank.is_file():
            tracker.log_artifact(bank, f"iter_{it:03d}")
            if it > 0 and paths.bank(it - 1).is_file():
                diff = format_diff(
                    diff_banks(load_bank(paths.bank(it - 1)), load_bank(bank)),
                    f"iter_{it - 1:03d}",
                    f"iter_{it:03d}",
                )
                tracker.log_text(diff, f"iter_{it:03d}/bank_diff.txt")
        episodes = paths.eval_dir(it) / "episodes.parquet"
        if episodes.is_file():
            tracker.log_artifact(episodes, f"iter_{it:03d}/eval")
        policy = paths.policy(it)
        if ctx.view.log_checkpoints and it > 0 and policy.is_dir():
            tracker.log_artifact(policy, f"iter_{it:03d}/policy")
    for png in pngs:
        tracker.log_artifact(png, "plots")
    tracker.log_artifact(paths.summary)
    if tracker.settings is not None:  # the run's every setting, as the tracker was opened with them
        tracker.log_text(json.dumps(tracker.settings, indent=2), "params.json")
    tracker.close("FINISHED")  # the report is the run's last stage; a rerun of a stage reopens it
