"""Stage ``counterfactual``: score each skill edit on probe tasks and build bank N (METHOD.md §6).

For every review whose status is added or updated (at most ``counterfactual.max_edits``, in
trajectory order), K probe tasks of the same family are drawn from the training split; the
current policy plays each probe once with bank B and once with B' (B plus the edit). All probe
episodes of all edits run in one lock-step batch. U follows METHOD.md §6; edits with U above the
threshold are committed to the next bank (or none, with ``commit: off``).
"""

from __future__ import annotations

import polars as pl

from skillmaster.errors import DataError
from skillmaster.io import atomic_dir
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes
from skillmaster.seeding import derive_seed
from skillmaster.stages import StageContext, register
from skillmaster.stages.common import (
    check_env_errors,
    load_bank_at,
    load_policy,
    make_pool,
    retriever_of,
    suite_of,
    write_metrics,
)
from skillmaster.tables import EDITS, REVIEWS, TRAJECTORIES

EDIT_STATUSES = ("added", "updated")


def probe_plan(ctx: StageContext, edits: pl.DataFrame, bank) -> list[tuple[dict, list[str], object]]:
    """For each edit to score: its row, its probe task ids and the bank B' with the edit applied."""
    from skillmaster.skills.bank import Edit, apply_edit
    from skillmaster.skills.probes import draw_probes

    cfg = ctx.cfg
    tasks = suite_of(ctx).tasks(cfg.env.train_split)
    match = "category" if cfg.env.name == "webshop" else "family"
    plan = []
    for row in edits.iter_rows(named=True):
        key = row["category"] if match == "category" else row["family"]
        probes = draw_probes(
            row["task_id"], key, tasks, cfg.counterfactual.probes_per_edit, cfg.seed, match=match
        )
        after, _ = apply_edit(bank, Edit.model_validate_json(row["edit"]))
        plan.append((row, probes, after))
    return plan


def run_probes(ctx: StageContext, plan, bank) -> pl.DataFrame:
    """Play every probe of every edit with B and with B' in one batch; returns the trajectories."""
    cfg, it = ctx.cfg, ctx.iteration
    by_id = {t.task_id: t for t in suite_of(ctx).tasks(cfg.env.train_split)}
    episodes = []
    for e, (row, probes, after) in enumerate(plan):
        for k, task_id in enumerate(probes):
            for tag, b in (("before", bank), ("after", after)):
                episodes.append(
                    EpisodeSpec(
                        f"{it:03d}-p{e:03d}-{k:02d}-{tag}",
                        by_id[task_id],
                        row["group_id"],
                        it,
                        bank=b,
                        condition=f"probe_{tag}",
                    )
                )
    if not episodes:
        return TRAJECTORIES.empty()
    settings = RolloutSettings.from_config(
        cfg,
        max_steps=cfg.counterfactual.max_steps,
        seed=derive_seed(cfg.seed, cfg.counterfactual.probe_seed_offset, it),
    )
    policy = load_policy(ctx, it - 1)
    with make_pool(ctx, len(episodes), settings.max_steps) as pool:
        _, trajs = collect_episodes(
            policy, pool, episodes, settings, retriever_of(ctx), desc=f"probes it{it}"
        )
    check_env_errors(trajs, f"counterfactual probes (iteration {it})")
    return trajs


def check_reviews(ctx: StageContext, reviews: pl.DataFrame) -> None:
    """The reviews table is one the review stage wrote: not empty when reviews are on, and every
    added/updated row carries a readable edit (checked before any model loads)."""
    from pydantic import ValidationError

    from skillmaster.skills.bank import Edit

    source = ctx.paths.reviews(ctx.iteration)
    if ctx.cfg.review.enabled and reviews.height == 0:
        raise DataError(
            f"{source}: the reviews table is empty while review.enabled is true; rerun the review stage"
        )
    for row in reviews.filter(pl.col("status").is_in(EDIT_STATUSES)).iter_rows(named=True):
        try:
            Edit.model_validate_json(row["edit"])
        except ValidationError:
            raise DataError(
                f"{source}: review {row['traj_id']!r} has status {row['status']} but no readable edit; "
                "rerun the review stage"
            ) from None


@register("counterfactual")
def counterfactual_stage(ctx: StageContext) -> dict:
    from skillmaster.skills.bank import Edit, bank_size, bank_stats, save_bank
    from skillmaster.skills.commit import ScoredEdit, commit_edits, commit_stats
    from skillmaster.skills.utility import probe_score, utility

    cfg, it, cf = ctx.cfg, ctx.iteration, ctx.cfg.counterfactual
    bank = load_bank_at(ctx, it - 1)
    reviews = REVIEWS.read(ctx.paths.reviews(it))
    check_reviews(ctx, reviews)
    candidates = reviews.filter(pl.col("status").is_in(EDIT_STATUSES)).sort("traj_id")
    n_scored = 0 if not cf.enabled else min(candidates.height, cf.max_edits or candidates.height)
    plan = probe_plan(ctx, candidates.head(n_scored), bank)
    probes = run_probes(ctx, plan, bank)
    runs = {r["traj_id"]: r for r in probes.iter_rows(named=True)}
    t_max = cf.max_steps or cfg.env.max_steps
    size_before = bank_size(bank).total

    rows, scored_edits = [], []
    for e, row in enumerate(candidates.iter_rows(named=True)):
        before, after, probe_ids, u = [], [], [], 0.0
        if e < n_scored:
            _, probe_ids, bank_after = plan[e]
            for k in range(len(probe_ids)):
                b, a = runs[f"{it:03d}-p{e:03d}-{k:02d}-before"], runs[f"{it:03d}-p{e:03d}-{k:02d}-after"]
                before.append(probe_score(b["won"], b["length"], t_max))
                after.append(probe_score(a["won"], a["length"], t_max))
            u = utility(
                before, after, cf.gamma, cf.clip, cf.size_penalty, size_before, bank_size(bank_after).total
            )
        edit = Edit.model_validate_json(row["edit"])
        scored_edits.append(ScoredEdit(row["traj_id"], edit, u, scored=e < n_scored))
        rows.append(
            {
                "iteration": it,
                "task_id": row["task_id"],
                "group_id": row["group_id"],
                "traj_id": row["traj_id"],
                "family": row["family"],
                "status": row["status"],
                "skill_id": row["skill_id"],
                "edit": row["edit"],
                "scored": e < n_scored,
                "probe_task_ids": probe_ids,
                "scores_before": before,
                "scores_after": after,
                "utility": u,
                "committed": False,
            }
        )
    new_bank, decisions = commit_edits(bank, scored_edits, cf.commit, cf.commit_threshold)
    for r, d in zip(rows, decisions, strict=True):
        r["committed"] = d.committed
    edits = EDITS.from_rows(rows)
    folder = ctx.paths.counterfactual_dir(it)
    with atomic_dir(folder) as tmp:  # both tables or neither
        EDITS.write(edits, tmp / ctx.paths.edits(it).relative_to(folder))
        TRAJECTORIES.write(probes, tmp / ctx.paths.probe_steps(it).relative_to(folder))
    save_bank(new_bank, ctx.paths.bank(it))  # atomic; the bank it replaces is kept (.prev.json)
    metrics = {
        **commit_stats(scored_edits, decisions),
        "probe_episodes": probes.height,
        "probe_episodes_per_scored_edit": probes.height / n_scored if n_scored else 0.0,
        "probe_success_rate": float(probes["won"].mean()) if probes.height else 0.0,
        **bank_stats(new_bank),
    }
    write_metrics(ctx, "counterfactual", metrics)
    return metrics
