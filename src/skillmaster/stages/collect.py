"""Stage ``collect``: iteration N's training rollouts.

``collect`` draws B training tasks (seeded by the iteration), plays G episodes of each with the
policy and bank of iteration N-1, and writes the STEPS and TRAJECTORIES tables. The work is cut
into ``orchestration.shards`` shards of whole groups; every episode samples from its own
(seed, traj_id, step) stream, so the dataset is the same for any shard count, in this process or on
cluster workers (``orchestration.task_runner``: dask or ray).
A finished shard is kept under ``.skillmaster/resume/`` until the stage completes, so a killed
collection resumes at the first unfinished shard.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import polars as pl

from skillmaster.config import Config, EnvConfig, ModelConfig, RolloutConfig, SkillsConfig
from skillmaster.envs.base import TaskSpec
from skillmaster.io import atomic_dir
from skillmaster.paths import Paths
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes
from skillmaster.rollout.metrics import rollout_metrics
from skillmaster.seeding import derive_seed
from skillmaster.stages import StageContext, register
from skillmaster.stages.common import (
    check_env_errors,
    keep_episodes,
    kept_episodes,
    load_bank_at,
    load_policy,
    make_pool,
    retriever_of,
    sample_tasks,
    shard_slices,
    suite_of,
    write_metrics,
)
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import Computing, Execution, From, StageView
from skillmaster.tables import STEPS, TRAJECTORIES


# --------------------------------------------------------------------------- shards
class CollectView(StageView):
    seed: Annotated[int, From("seed")]
    env: Annotated[EnvConfig, From("env")]
    model: Annotated[ModelConfig, From("model")]
    rollout: Annotated[RolloutConfig, Computing("rollout")]
    skills: Annotated[SkillsConfig, From("skills")]
    sft_enabled: Annotated[bool, From("sft.enabled")]
    """The policy base is ``models/sft``."""
    shards: Annotated[int, Execution("orchestration.shards")]
    task_runner: Annotated[str, Execution("orchestration.task_runner")]


def group_tasks(view: CollectView, tasks: Sequence[TaskSpec], iteration: int) -> list[TaskSpec]:
    """The B tasks of iteration N (their list index is the group id)."""
    return sample_tasks(list(tasks), view.rollout.num_tasks, view.seed, "collect", iteration)


def traj_id(iteration: int, group: int, member: int) -> str:
    return f"{iteration:03d}-{group:04d}-{member:02d}"


def collect_shard(
    ctx: StageContext, groups: list[TaskSpec], shard: int, ids: range
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Play the groups ``ids`` of iteration ``ctx.iteration`` (shard number ``shard``)."""
    state = ctx.paths.stage_state("collect", ctx.iteration) / f"shard_{shard:03d}"
    if (kept := kept_episodes(state)) is not None:
        return kept
    view, it = ctx.view, ctx.iteration
    bank = load_bank_at(ctx, it - 1) if view.skills.enabled else None
    episodes = [
        EpisodeSpec(traj_id(it, g, m), groups[g], g, it, bank=bank)
        for g in ids
        for m in range(view.rollout.group_size)
    ]
    # one seed for every shard: each episode samples from its own (seed, traj_id, step) stream
    settings = RolloutSettings.from_config(ctx.cfg, seed=derive_seed(view.seed, "collect", it))
    retriever = retriever_of(ctx)
    policy = load_policy(ctx, it - 1)
    with make_pool(ctx, len(episodes)) as pool:
        steps, trajs = collect_episodes(
            policy, pool, episodes, settings, retriever, desc=f"collect it{it} shard {shard}"
        )
    keep_episodes(state, steps, trajs)
    return steps, trajs


def run_collect_shard(
    cfg_json: str, iteration: int, shard: int, root: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Entry point for a cluster worker: rebuild the context and play one shard. The shard's engine
    (and its processes) ends with it, on success or error, as its environment pool does: a cluster
    worker runs many shards and must not keep an engine between them."""
    from skillmaster.runtime import configure_environment

    cfg = Config.model_validate_json(cfg_json)
    configure_environment(Path(root))
    ctx = StageContext(
        cfg=cfg, iteration=iteration, paths=Paths(Path(root)), root=Path(root), stage="collect"
    )
    try:
        view = ctx.view
        groups = group_tasks(view, suite_of(ctx).tasks(view.env.train_split), iteration)
        ids = shard_slices(len(groups), view.shards)[shard]
        return collect_shard(ctx, groups, shard, ids)
    finally:
        ctx.resources.close()


# --------------------------------------------------------------------------- the stage
CONTRACT = StageContract(
    name="collect",
    view=CollectView,
    reads=lambda w: [*w.policy(w.iteration - 1), w.paths.bank(w.iteration - 1)],
    writes=lambda w: [w.paths.collect_dir(w.iteration)],
    metrics=lambda w: [w.paths.metrics(w.iteration, "collect")],
    iterated=True,
    env_code=True,
)


@register(CONTRACT)
def collect_stage(ctx: StageContext) -> dict:
    view, it = ctx.view, ctx.iteration
    groups = group_tasks(view, suite_of(ctx).tasks(view.env.train_split), it)
    slices = shard_slices(len(groups), view.shards)
    if view.task_runner == "sequential":
        parts = [collect_shard(ctx, groups, i, ids) for i, ids in enumerate(slices)]
    else:  # on the task runner the caller gave this stage (a cluster worker rebuilds the context)
        args = [(ctx.cfg.model_dump_json(), it, i, str(ctx.root)) for i in range(len(slices))]
        parts = ctx.run_shards(run_collect_shard, args)
    steps = pl.concat([p[0] for p in parts]) if parts else STEPS.empty()
    trajs = pl.concat([p[1] for p in parts]) if parts else TRAJECTORIES.empty()
    check_env_errors(trajs, f"collect (iteration {it})")
    out = ctx.paths.collect_dir(it)
    with atomic_dir(out) as tmp:  # both tables or neither: a failed write keeps the previous pair
        STEPS.write(steps, tmp / ctx.paths.steps(it).relative_to(out))
        TRAJECTORIES.write(trajs, tmp / ctx.paths.trajectories(it).relative_to(out))
    shutil.rmtree(ctx.paths.stage_state("collect", it), ignore_errors=True)
    metrics = rollout_metrics(trajs, steps)
    write_metrics(ctx, "collect", metrics)
    return metrics
