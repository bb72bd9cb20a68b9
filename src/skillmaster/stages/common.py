"""Helpers the stages share: which policy and bank are in force, task sampling, metrics output."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import polars as pl

from skillmaster.envs.base import TaskSpec
from skillmaster.errors import DataError, EnvFailure
from skillmaster.io import atomic_dir, write_json
from skillmaster.paths import COMPLETE_MARKER
from skillmaster.seeding import derive_seed
from skillmaster.stages import StageContext
from skillmaster.tables import STEPS, TRAJECTORIES
from skillmaster.tracking import metric_names

POINTER = "pointer.json"
"""A policy folder holding only this file means "same policy as <target>" (no training happened)."""


# --------------------------------------------------------------------------- policies
def resolve_policy(folder: Path) -> Path | None:
    """The weights folder a policy folder stands for: itself, the target of its pointer, or None
    for the base model. Errors clearly on an incomplete checkpoint."""
    pointer = folder / POINTER
    if pointer.is_file():
        target = json.loads(pointer.read_text()).get("target")
        return None if target is None else resolve_policy(Path(target))
    if not (folder / COMPLETE_MARKER).is_file():
        raise DataError(
            f"{folder}: checkpoint is missing or incomplete (no {COMPLETE_MARKER} marker); "
            "rerun the stage that writes it"
        )
    return folder


def write_pointer(folder: Path, target: Path | None) -> None:
    """Record that ``folder`` is the same policy as ``target`` (None: the base model)."""
    with atomic_dir(folder) as tmp:
        write_json(tmp / POINTER, {"target": None if target is None else str(target)})


def policy_base(ctx: StageContext) -> Path:
    """The weights every iteration's LoRA adapter attaches to, and the KL reference: the merged SFT
    model when the cold start is on (as verl anchors to the SFT policy), else the base model.

    Never falls back silently: with ``sft.enabled`` a missing ``models/sft`` is an error, since an
    adapter trained on the SFT weights means nothing on the base weights."""
    from skillmaster.modeling import ensure_model_dir

    if not ctx.cfg.sft.enabled:
        return ctx.paths.base_model
    ensure_model_dir(ctx.paths.base_model)  # the first thing to prepare gets the first error
    sft = ctx.paths.sft_model
    if not ((sft / "config.json").is_file() and (sft / COMPLETE_MARKER).is_file()):
        raise DataError(
            f"{sft}: the SFT model is missing or incomplete while sft.enabled is true; run the sft stage "
            "first (or set sft.enabled: false to use the base model)"
        )
    return sft


def policy_dir_at(ctx: StageContext, iteration: int) -> Path | None:
    """Checkpoint in force after ``iteration`` (an adapter or full weights over :func:`policy_base`);
    None = :func:`policy_base` itself (iteration 0, or no training since)."""
    return None if iteration == 0 else resolve_policy(ctx.paths.policy(iteration))


def load_policy(ctx: StageContext, iteration: int):
    """The policy in force after ``iteration`` on the configured engine (``rollout.engine``), opened
    once per process (kept in ``ctx.resources``); a later call for other weights updates the engine
    in place where it can (vLLM) instead of starting a new one."""
    from skillmaster.agent.engines import open_policy

    adapter = policy_dir_at(ctx, iteration)
    base = policy_base(ctx)
    res = ctx.resources
    weights = (base, adapter, ctx.cfg.rollout.engine)
    if res.policy_weights != weights:
        res.policy = open_policy(ctx.cfg, base, adapter, ctx.root, current=res.policy)
        res.policy_weights = weights
    return res.policy


# --------------------------------------------------------------------------- banks and tasks
def load_bank_at(ctx: StageContext, iteration: int):
    """The skill bank in force after ``iteration`` (0 = the starting bank)."""
    from skillmaster.skills.store import load_bank

    return load_bank(ctx.paths.bank(iteration))


def suite_of(ctx: StageContext, max_steps: int | None = None):
    """The environment suite whose environments truncate at ``max_steps``: the step limit of the
    stage's episodes (:func:`~skillmaster.envs.limits.step_limit`; default: the ``collect`` one), so
    the environment never cuts a longer episode short."""
    from skillmaster.envs.limits import step_limit

    limit = max_steps or step_limit(ctx.cfg, "collect")
    if limit not in ctx.resources.suites:
        from skillmaster.envs.registry import make_suite

        ctx.resources.suites[limit] = make_suite(ctx.cfg.env.model_copy(update={"max_steps": limit}))
    return ctx.resources.suites[limit]


def sample_tasks(tasks: list[TaskSpec], n: int, seed: int, *salt: Any) -> list[TaskSpec]:
    """``n`` distinct tasks drawn deterministically from ``(seed, *salt)`` (all when fewer)."""
    if n >= len(tasks):
        return list(tasks)
    return random.Random(derive_seed(seed, *salt)).sample(list(tasks), n)


def stratified_tasks(tasks: list[TaskSpec], limit: int | None, seed: int) -> list[TaskSpec]:
    """Up to ``limit`` tasks spread evenly over families (round-robin), deterministic."""
    if limit is None or limit >= len(tasks):
        return list(tasks)
    by_family: dict[str, list[TaskSpec]] = {}
    for t in tasks:
        by_family.setdefault(t.family, []).append(t)
    rng = random.Random(derive_seed(seed, "stratified"))
    queues = [rng.sample(v, len(v)) for _, v in sorted(by_family.items())]
    out: list[TaskSpec] = []
    while len(out) < limit:
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop())
    return out


def retriever_of(ctx: StageContext):
    """The configured skill retriever (embedding models load once per process)."""
    if ctx.resources.retriever is None:
        from skillmaster.skills.retrieval import make_retriever

        ctx.resources.retriever = make_retriever(ctx.cfg.skills)
    return ctx.resources.retriever


def make_pool(ctx: StageContext, num_envs: int, max_steps: int | None = None):
    from skillmaster.envs.pool import EnvPool

    workers = max(1, min(ctx.cfg.rollout.num_workers, num_envs))
    return EnvPool(suite_of(ctx, max_steps), num_envs=num_envs, num_workers=workers)


# --------------------------------------------------------------------------- input and output checks
MAX_ENV_ERROR_SHARE = 0.5
"""A stage fails, before writing anything, when more than this share of its episodes ended in an
environment error (``end_reason == "error"``: a reset or step failed, a worker died)."""


def check_env_errors(trajs: pl.DataFrame, what: str) -> None:
    """Raise :class:`EnvFailure` when most of ``trajs`` ended in an environment error (see
    :data:`MAX_ENV_ERROR_SHARE`), so that a broken environment never yields a "successful" stage."""
    errors = trajs.filter(pl.col("end_reason") == "error")
    if trajs.height and errors.height > MAX_ENV_ERROR_SHARE * trajs.height:
        first = (errors["error"][0] or "no message").strip().splitlines()[0][:240]
        raise EnvFailure(
            f"{what}: {errors.height} of {trajs.height} episodes ended in an environment error "
            f"(first: {first}); nothing was written, fix the cause (disk space, games, workers) and rerun"
        )


def kept_episodes(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The steps and trajectories of a piece of a stage's episodes (a collect shard, a chunk of
    probes) that a killed run finished and kept in ``folder``; None when it did not finish."""
    if not (folder / COMPLETE_MARKER).is_file():
        return None
    return STEPS.read(folder / "steps.parquet"), TRAJECTORIES.read(folder / "trajectories.parquet")


def keep_episodes(folder: Path, steps: pl.DataFrame, trajs: pl.DataFrame) -> None:
    """Keep a finished piece in ``folder`` (atomically, then its completion marker) for a resume;
    not when most of its episodes ended in an environment error (the stage fails on them,
    :func:`check_env_errors`)."""
    if trajs.height and (trajs["end_reason"] == "error").sum() > MAX_ENV_ERROR_SHARE * trajs.height:
        return
    with atomic_dir(folder) as tmp:
        STEPS.write(steps, tmp / "steps.parquet")
        TRAJECTORIES.write(trajs, tmp / "trajectories.parquet")
        (tmp / COMPLETE_MARKER).write_text("ok\n")


def check_collection(trajs: pl.DataFrame, steps: pl.DataFrame, source: Path) -> None:
    """The STEPS and TRAJECTORIES tables of ``source`` belong together: trajectories exist and are
    unique, and every trajectory has exactly ``length`` step rows (no step points at an unknown
    trajectory). Checked before a stage loads the model."""
    if trajs.height == 0:
        raise DataError(f"{source}: the trajectories table is empty; rerun the collect stage")
    dup = trajs["traj_id"].is_duplicated()
    if dup.any():
        raise DataError(
            f"{source}: trajectory {trajs['traj_id'].filter(dup)[0]!r} appears twice; rerun the collect stage"
        )
    counts = dict(steps.group_by("traj_id").len().iter_rows())
    for tid, length in trajs.select("traj_id", "length").iter_rows():
        rows = counts.pop(tid, 0)
        if rows != length:
            raise DataError(
                f"{source}: trajectory {tid!r} has {length} steps but the steps table holds {rows} rows "
                "for it; rerun the collect stage"
            )
    if counts:
        raise DataError(
            f"{source}: the steps table holds rows of trajectories that do not exist ({sorted(counts)[0]!r}); "
            "rerun the collect stage"
        )


# --------------------------------------------------------------------------- metrics
def write_metrics(ctx: StageContext, stage: str, metrics: dict[str, Any]) -> Path:
    """Write ``metrics/iter_NNN/<stage>.json`` (DVC metrics) and log the numbers to MLflow under
    their one name each (:func:`~skillmaster.tracking.metric_names`). A stage
    that generated also records its engine's counters (``generation``: engine, starts and their
    seconds, weight updates, tokens, prefix-cache hit rate; cumulative over the engine's life, which
    spans several stages in a flow)."""
    policy = ctx.resources.policy
    if policy is not None:
        metrics["generation"] = {"engine": policy.engine, **policy.stats.as_dict()}
    path = ctx.paths.metrics(ctx.iteration, stage)
    write_json(path, metrics)
    ctx.tracker.log_metrics(metric_names(stage, metrics, ctx.headline_split), step=ctx.iteration)
    return path


def shard_slices(n_items: int, shards: int) -> list[range]:
    """Contiguous, near-equal ranges of ``n_items`` indices, one per shard (at least one)."""
    shards = max(1, min(shards, n_items))
    bounds = [round(i * n_items / shards) for i in range(shards + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(shards)]


def chunk_slices(n_items: int, chunk: int | None) -> list[range]:
    """Near-equal ranges of at most ``chunk`` items each (None: one range of all)."""
    return shard_slices(n_items, -(-n_items // chunk) if chunk else 1)
