"""Stage ``counterfactual``: score each skill edit on probe tasks and build bank N (METHOD.md §6).

For every review whose status is added or updated (at most ``counterfactual.max_edits``, a seeded
random subset), K probe tasks of the same family are drawn from the training split; the current
policy plays each probe once with bank B and once with B' (B plus the edit). With
``counterfactual.paired`` the two runs of a probe share their sampling stream, so their difference
comes from the edit. Each run is scored by ``counterfactual.score`` (``success``: METHOD.md §6;
``progress``: walkthrough milestones for non-won probes). U follows METHOD.md §6; edits with U above
the threshold are committed to the next bank (or none, with ``commit: off``).

``counterfactual.placebo_edits`` placebo edits without content (``placebo_kind``: B' = B, or B plus
a skill that gives no advice), on the probes of randomly drawn reviews, are scored in the same
batch: how often the commit rule fires on them is the chance commit rate.
All probe episodes of all edits and placebos run in one lock-step batch.
"""

from __future__ import annotations

import random
from typing import Any

import polars as pl

from skillmaster.errors import DataError
from skillmaster.io import atomic_dir
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes
from skillmaster.seeding import derive_seed
from skillmaster.skills.tools import EDIT_STATUSES
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
from skillmaster.stages.contract import StageContract, section
from skillmaster.tables import EDITS, PLACEBOS, REVIEWS, STEPS, TRAJECTORIES

NEUTRAL_SKILL = {
    "title": "Placebo note",
    "principle": "This note is a placebo and gives no advice about the task.",
    "when_to_apply": "Never.",
}
"""The skill a ``neutral`` placebo edit adds: it changes the prompt, not the knowledge."""


def placebo_bank(bank, kind: str):
    """B′ of a placebo edit: B itself (``identical``) or B plus :data:`NEUTRAL_SKILL` (``neutral``)."""
    from skillmaster.skills.bank import GENERAL, Edit, apply_edit

    if kind == "identical":
        return bank
    return apply_edit(bank, Edit(kind="propose", category=GENERAL, **NEUTRAL_SKILL))[0]


def probe_ids(ctx: StageContext, row: dict) -> list[str]:
    """The K probe tasks of the review ``row`` (METHOD.md §6 step 1)."""
    from skillmaster.envs.registry import profile
    from skillmaster.skills.probes import draw_probes

    cfg = ctx.cfg
    tasks = suite_of(ctx).tasks(cfg.env.train_split)
    match = profile(cfg.env.name).probe_match  # the task family, or the category (WebShop)
    return draw_probes(
        row["task_id"], row[match], tasks, cfg.counterfactual.probes_per_edit, cfg.seed, match=match
    )


def probe_plan(ctx: StageContext, edits: list[dict], bank) -> list[tuple[dict, list[str], object]]:
    """For each review row of an edit to score: the row, its probe task ids and the bank B' with
    the edit applied."""
    from skillmaster.skills.bank import Edit, apply_edit

    return [
        (row, probe_ids(ctx, row), apply_edit(bank, Edit.model_validate_json(row["edit"]))[0])
        for row in edits
    ]


def edit_stem(iteration: int, e: int, placebo: bool = False) -> str:
    """Id stem of the probes of candidate edit ``e`` (placebo ``e``): probe ``k``'s runs are
    ``{stem}-{k:02d}-before`` and ``{stem}-{k:02d}-after``."""
    return f"{iteration:03d}-{'q' if placebo else 'p'}{e:03d}"


def run_probes(ctx: StageContext, plan: list[tuple[str, dict, list[str], object]], bank):
    """Play every probe of every planned edit with B and with B' in one batch.

    ``plan``: (id stem, review row, probe task ids, B') per edit (stems of placebo edits start with
    ``q``); probe ``k`` of an edit is played as ``{stem}-{k:02d}-before`` and ``-after`` (sharing the
    sampling stream ``{stem}-{k:02d}`` when ``counterfactual.paired``). Each run records what it
    scores in its own columns: ``condition`` (probe or placebo, before or after), ``probe_of`` (the
    review's traj_id) and ``probe`` (k). Returns (steps, trajectories).
    """
    cfg, it = ctx.cfg, ctx.iteration
    by_id = {t.task_id: t for t in suite_of(ctx).tasks(cfg.env.train_split)}
    episodes = []
    for stem, row, probes, after in plan:
        kind = "placebo" if stem.split("-")[-1].startswith("q") else "probe"
        for k, task_id in enumerate(probes):
            key = f"{stem}-{k:02d}"
            for tag, b in (("before", bank), ("after", after)):
                episodes.append(
                    EpisodeSpec(
                        f"{key}-{tag}",
                        by_id[task_id],
                        row["group_id"],
                        it,
                        bank=b,
                        condition=f"{kind}_{tag}",
                        probe_of=row["traj_id"],
                        probe=k,
                        seed_key=key if cfg.counterfactual.paired else None,
                    )
                )
    if not episodes:
        return STEPS.empty(), TRAJECTORIES.empty()
    settings = RolloutSettings.from_config(
        cfg,
        stage="counterfactual",
        seed=derive_seed(cfg.seed, cfg.counterfactual.probe_seed_offset, it),
    )
    policy = load_policy(ctx, it - 1)
    with make_pool(ctx, len(episodes), settings.max_steps) as pool:
        steps, trajs = collect_episodes(
            policy, pool, episodes, settings, retriever_of(ctx), desc=f"probes it{it}"
        )
    check_env_errors(trajs, f"counterfactual probes (iteration {it})")
    return steps, trajs


def run_scores(ctx: StageContext, steps: pl.DataFrame, trajs: pl.DataFrame) -> dict[str, float]:
    """The probe score s of every run (``counterfactual.score``), by trajectory id."""
    from skillmaster.envs.limits import step_limit
    from skillmaster.envs.registry import profile
    from skillmaster.rollout.progress import episode_progress, progress_score
    from skillmaster.skills.utility import probe_score

    cf = ctx.cfg.counterfactual
    t_max = step_limit(ctx.cfg, "counterfactual")
    if cf.score == "success":
        return {r["traj_id"]: probe_score(r["won"], r["length"], t_max) for r in trajs.iter_rows(named=True)}
    # walkthrough milestones; without walkthroughs (WebShop) the episode's own [0, 1] score
    kit = profile(ctx.cfg.env.name).walkthrough_kit
    shares, _ = episode_progress(steps, trajs, suite_of(ctx).walkthrough, kit)
    return {
        r["traj_id"]: progress_score(r["won"], r["length"], t_max, min(1.0, max(0.0, shares[r["traj_id"]])))
        for r in trajs.iter_rows(named=True)
    }


def utility_stats(utilities: list[float], prefix: str = "utility_") -> dict[str, float]:
    """The distribution of U over scored edits: how many are non-zero, positive, and the range."""
    n = len(utilities)
    return {
        f"{prefix}nonzero_share": sum(u != 0 for u in utilities) / n if n else 0.0,
        f"{prefix}positive_share": sum(u > 0 for u in utilities) / n if n else 0.0,
        f"{prefix}min": min(utilities, default=0.0),
        f"{prefix}max": max(utilities, default=0.0),
    }


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


CONTRACT = StageContract(
    name="counterfactual",
    settings=(
        "seed",
        "env",
        "model",
        *section("rollout"),
        "skills",
        "review.enabled",
        "counterfactual",
        "sft.enabled",
    ),
    reads=lambda w: [
        *w.policy(w.iteration - 1),
        w.paths.bank(w.iteration - 1),
        w.paths.reviews(w.iteration).parent,
    ],
    writes=lambda w: [w.paths.counterfactual_dir(w.iteration), w.paths.bank(w.iteration)],
    metrics=lambda w: [w.paths.metrics(w.iteration, "counterfactual")],
    iterated=True,
    env_code=True,
)


@register(CONTRACT)
def counterfactual_stage(ctx: StageContext) -> dict:
    from skillmaster.skills.bank import Edit
    from skillmaster.skills.commit import COMMIT_POLICIES, ScoredEdit, commit_edits, commit_stats
    from skillmaster.skills.diff import bank_size, bank_stats
    from skillmaster.skills.probes import choose_edits
    from skillmaster.skills.store import save_bank
    from skillmaster.skills.utility import utility

    cfg, it, cf = ctx.cfg, ctx.iteration, ctx.cfg.counterfactual
    bank = load_bank_at(ctx, it - 1)
    reviews = REVIEWS.read(ctx.paths.reviews(it))
    check_reviews(ctx, reviews)
    candidates = reviews.filter(pl.col("status").is_in(EDIT_STATUSES)).sort("traj_id")
    chosen = (
        choose_edits(candidates["traj_id"].to_list(), cf.max_edits, derive_seed(cfg.seed, "edits", it))
        if cf.enabled
        else []
    )
    rows_by_e = list(candidates.iter_rows(named=True))
    plan = [
        (edit_stem(it, e), row, ids, after)
        for e, (row, ids, after) in zip(
            chosen, probe_plan(ctx, [rows_by_e[e] for e in chosen], bank), strict=True
        )
    ]
    planned = {e: p for e, p in zip(chosen, plan, strict=True)}
    placebo_rows = []
    if cf.enabled and cf.placebo_edits and reviews.height:
        rng = random.Random(derive_seed(cfg.seed, "placebo", it))
        pool = list(reviews.sort("traj_id").iter_rows(named=True))
        for q, row in enumerate(rng.sample(pool, min(cf.placebo_edits, len(pool)))):
            placebo_rows.append(row)
            plan.append(
                (
                    edit_stem(it, q, placebo=True),
                    row,
                    probe_ids(ctx, row),
                    placebo_bank(bank, cf.placebo_kind),
                )
            )
    steps, probes = run_probes(ctx, plan, bank)
    by_traj = run_scores(ctx, steps, probes)
    scores = {  # (condition, review, k) -> s, joined on the runs' own columns
        (r["condition"], r["probe_of"], r["probe"]): by_traj[r["traj_id"]]
        for r in probes.select("traj_id", "condition", "probe_of", "probe").iter_rows(named=True)
    }
    size_before = bank_size(bank).total

    def paired_scores(kind: str, review: str, n: int) -> tuple[list[float], list[float]]:
        return (
            [scores[(f"{kind}_before", review, k)] for k in range(n)],
            [scores[(f"{kind}_after", review, k)] for k in range(n)],
        )

    rows, scored_edits = [], []
    for e, row in enumerate(rows_by_e):
        before, after, ids, u = [], [], [], 0.0
        if e in planned:
            _, _, ids, bank_after = planned[e]
            before, after = paired_scores("probe", row["traj_id"], len(ids))
            u = utility(
                before, after, cf.gamma, cf.clip, cf.size_penalty, size_before, bank_size(bank_after).total
            )
        edit = Edit.model_validate_json(row["edit"])
        scored_edits.append(ScoredEdit(row["traj_id"], edit, u, scored=e in planned))
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
                "scored": e in planned,
                "probe_task_ids": ids,
                "scores_before": before,
                "scores_after": after,
                "utility": u,
                "committed": False,
                "commit_reason": "",
                "committed_id": "",
            }
        )
    new_bank, decisions = commit_edits(bank, scored_edits, cf.commit, cf.commit_threshold)
    for r, d in zip(rows, decisions, strict=True):
        r.update(committed=d.committed, commit_reason=d.reason, committed_id=d.skill_id)

    eligible = COMMIT_POLICIES[cf.commit]
    placebos = []
    for (_, _, ids, after_bank), row in zip(plan[len(chosen) :], placebo_rows, strict=True):
        before, after = paired_scores("placebo", row["traj_id"], len(ids))
        u = utility(
            before, after, cf.gamma, cf.clip, cf.size_penalty, size_before, bank_size(after_bank).total
        )
        null = ScoredEdit(row["traj_id"], Edit(kind="keep"), u)
        fires = eligible is not None and eligible(null, cf.commit_threshold)
        placebos.append(
            {
                "iteration": it,
                "traj_id": row["traj_id"],
                "family": row["family"],
                "probe_task_ids": ids,
                "scores_before": before,
                "scores_after": after,
                "kind": cf.placebo_kind,
                "utility": u,
                "would_commit": bool(fires),
            }
        )

    edits = EDITS.from_rows(rows)
    folder = ctx.paths.counterfactual_dir(it)
    with atomic_dir(folder) as tmp:  # every table or none
        EDITS.write(edits, tmp / ctx.paths.edits(it).relative_to(folder))
        PLACEBOS.write(PLACEBOS.from_rows(placebos), tmp / ctx.paths.placebos(it).relative_to(folder))
        # the edits' and the placebos' probes
        TRAJECTORIES.write(probes, tmp / ctx.paths.probe_steps(it).relative_to(folder))
        STEPS.write(steps, tmp / ctx.paths.probe_actions(it).relative_to(folder))
    save_bank(new_bank, ctx.paths.bank(it))  # atomic; the bank it replaces is kept (.prev.json)
    real = probes.filter(pl.col("condition").str.starts_with("probe_"))
    scored_u = [e.utility for e in scored_edits if e.scored]
    placebo_u = [p["utility"] for p in placebos]
    metrics: dict[str, Any] = {
        **commit_stats(scored_edits, decisions),
        **utility_stats(scored_u),
        **{
            f"edits_committed_{status}": sum(
                d.committed and r["status"] == status for r, d in zip(rows, decisions, strict=True)
            )
            for status in EDIT_STATUSES
        },
        "probe_episodes": real.height,
        "probe_episodes_per_scored_edit": real.height / len(chosen) if chosen else 0.0,
        "probe_success_rate": float(real["won"].mean()) if real.height else 0.0,
        "probe_mean_score": sum(by_traj[t] for t in real["traj_id"]) / real.height if real.height else 0.0,
        "placebo_scored": len(placebos),
        "placebo_commits": sum(p["would_commit"] for p in placebos),
        "placebo_commit_rate": sum(p["would_commit"] for p in placebos) / len(placebos) if placebos else 0.0,
        **utility_stats(placebo_u, "placebo_utility_"),
        **bank_stats(new_bank),
    }
    write_metrics(ctx, "counterfactual", metrics)
    return metrics
