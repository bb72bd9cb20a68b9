"""Sharded collection: rollout shards on a Dask cluster give the dataset one process gives.

The ``collect`` stage runs twice on the same tiny settings in two work folders: once in-process
(``task_runner: sequential``, one shard) and once as two shards on a local Dask cluster (two
worker threads, ``processes=False``) reached through ``orchestration.address``. Both datasets
are compared row for row after sorting by ids. The two shards load the policy at the same time in
two threads of this process (``modeling.load_model`` serialises loads for that).

Sampled episodes are identical too: every reply samples from its own (seed, traj_id, step)
stream (``agent.policy.RowSeededSampler``), so neither batch composition nor the shard count
changes a token, and concurrent shards share no RNG.
"""

from __future__ import annotations

import polars as pl
import pytest
from tiny_project import seed_workdir, tiny_config

from skillmaster.orchestration.runners import shard_runner
from skillmaster.stages import run_stage
from skillmaster.tables import STEPS, TRAJECTORIES

pytestmark = [pytest.mark.model, pytest.mark.alfworld, pytest.mark.server]


@pytest.fixture(scope="module")
def dask_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster


def executed(cluster) -> int:
    """Tasks the cluster's workers have run so far."""
    return sum(w.state.executed_count for w in cluster.workers.values())


def collect(root, base_model_dir, temperature: float, runner: str, shards: int, address: str | None = None):
    """Run the collect stage of iteration 1 in ``root``; returns (steps, trajectories) sorted by ids."""
    cfg = tiny_config(
        {
            "rollout": {"temperature": temperature},
            "orchestration": {"task_runner": runner, "shards": shards, "address": address},
        }
    )
    paths = seed_workdir(root, base_model_dir, cfg)
    metrics = run_stage("collect", cfg, 1, root=root, run_shards=shard_runner(cfg))  # as `skillmaster stage`
    assert metrics["episodes"] == cfg.rollout.num_tasks * cfg.rollout.group_size
    assert not paths.stage_state("collect", 1).exists()  # shard scratch is gone once the stage is done
    steps = STEPS.read(paths.steps(1)).sort("traj_id", "step")
    trajs = TRAJECTORIES.read(paths.trajectories(1)).sort("traj_id")
    return steps, trajs


def assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns and a.height == b.height
    differ = [c for c in a.columns if not a[c].equals(b[c])]
    assert not differ, f"columns that differ: {differ}"
    assert a.equals(b)


@pytest.mark.slow
def test_dask_shards_give_the_single_process_dataset_greedy(
    tmp_path, base_model_dir, alfworld_data, prefect_api, dask_cluster
):
    one_steps, one_trajs = collect(tmp_path / "one", base_model_dir, 0.0, "sequential", 1)
    before = executed(dask_cluster)
    two_steps, two_trajs = collect(
        tmp_path / "two", base_model_dir, 0.0, "dask", 2, dask_cluster.scheduler_address
    )
    assert executed(dask_cluster) == before + 2  # the two shards ran on the cluster
    assert one_trajs["traj_id"].to_list() == ["001-0000-00", "001-0000-01", "001-0001-00", "001-0001-01"]
    assert one_steps.height >= one_trajs.height  # every episode took at least one step
    assert_same(one_trajs, two_trajs)
    assert_same(one_steps, two_steps)


@pytest.mark.slow  # the worker-process cluster runs in test_cluster_runners.py
def test_dask_shards_give_the_single_process_dataset_sampling(
    tmp_path, base_model_dir, alfworld_data, prefect_api, dask_cluster
):
    one_steps, one_trajs = collect(tmp_path / "one", base_model_dir, 1.0, "sequential", 1)
    before = executed(dask_cluster)
    two_steps, two_trajs = collect(
        tmp_path / "two", base_model_dir, 1.0, "dask", 2, dask_cluster.scheduler_address
    )
    assert executed(dask_cluster) == before + 2  # the two shards ran on the cluster
    assert one_steps["response"].n_unique() > 1  # sampled, not one repeated reply
    assert_same(one_steps, two_steps)
    assert_same(one_trajs, two_trajs)
