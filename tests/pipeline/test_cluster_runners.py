"""Sharded collection on real cluster workers: the local Dask cluster and the local Ray instance the
task runners start themselves (``orchestration.address`` unset), with worker *processes*.

A rollout shard starts child processes of its own (the environment pool's workers; vLLM's engine
core), which a daemonic worker process may not have (``daemonic processes are not allowed to have
children``). Each test runs the ``collect`` stage of iteration 1 on the tiny settings twice, once
in this process (``task_runner: sequential``) and once as two shards on the cluster, and compares the
tables row for row (every episode samples from its own stream, so they are identical). The Dask test
also watches this process's descendants to see the shards' environment workers start under the
cluster's worker processes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import polars as pl
import psutil
import pytest
from tiny_project import seed_workdir, tiny_config

from skillmaster.orchestration.runners import local_ray_environment, map_shards, shard_runner
from skillmaster.stages import run_stage
from skillmaster.tables import STEPS, TRAJECTORIES

pytestmark = [pytest.mark.model, pytest.mark.alfworld, pytest.mark.server, pytest.mark.timeout(900)]


def collect(root: Path, base_model_dir: Path, runner: str, shards: int, **orchestration):
    """Run the collect stage of iteration 1 in ``root``; returns (steps, trajectories) sorted by ids."""
    cfg = tiny_config(
        {
            "rollout": {"temperature": 1.0},
            "orchestration": {"task_runner": runner, "shards": shards, "workers": 2, **orchestration},
        }
    )
    paths = seed_workdir(root, base_model_dir, cfg)
    metrics = run_stage("collect", cfg, 1, root=root, run_shards=shard_runner(cfg))  # as `skillmaster stage`
    assert metrics["episodes"] == cfg.rollout.num_tasks * cfg.rollout.group_size
    assert metrics["end_reasons"].get("error", 0) == 0, metrics["end_reasons"]
    assert not paths.stage_state("collect", 1).exists()
    steps = STEPS.read(paths.steps(1)).sort("traj_id", "step")
    trajs = TRAJECTORIES.read(paths.trajectories(1)).sort("traj_id")
    return steps, trajs


def assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns and a.height == b.height
    differ = [c for c in a.columns if not a[c].equals(b[c])]
    assert not differ, f"columns that differ: {differ}"


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


class Descendants:
    """Polls this process's descendants in a thread; ``under_dask_workers`` are the processes that
    multiprocessing spawned under a Dask worker process (titled ``dask worker [address]``) of this
    process's cluster: the shards' environment workers."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.under_dask_workers = every_s, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.every_s):
            workers = {c.pid for c in me.children() if _cmdline(c).startswith("dask worker")}
            for p in me.children(recursive=True):
                try:
                    if p.ppid() in workers and "spawn_main" in _cmdline(p):
                        self.under_dask_workers.add(p.pid)
                except psutil.Error:
                    pass

    def __enter__(self) -> Descendants:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_dask_worker_processes_run_collect_shards(tmp_path, base_model_dir, alfworld_data, prefect_api):
    """The runner's own LocalCluster (2 worker processes, 1 thread each, on 127.0.0.1)."""
    one_steps, one_trajs = collect(tmp_path / "one", base_model_dir, "sequential", 1)
    with Descendants() as seen:
        two_steps, two_trajs = collect(tmp_path / "two", base_model_dir, "dask", 2)
    # each shard's environment pool (rollout.num_workers: 1) started under a cluster worker process
    assert len(seen.under_dask_workers) >= 2, seen.under_dask_workers
    assert_same(one_trajs, two_trajs)
    assert_same(one_steps, two_steps)


def test_ray_workers_run_collect_shards(tmp_path, base_model_dir, alfworld_data, prefect_api):
    """The runner's own local Ray instance (2 CPUs, no dashboard, on 127.0.0.1), ended with the flow."""
    pytest.importorskip("prefect_ray", reason="the ray extra is not installed (`pip install -e '.[ray]'`)")
    import ray

    one_steps, one_trajs = collect(tmp_path / "one", base_model_dir, "sequential", 1)
    two_steps, two_trajs = collect(tmp_path / "two", base_model_dir, "ray", 2)
    assert not ray.is_initialized()  # the runner started the instance and shut it down
    assert_same(one_trajs, two_trajs)
    assert_same(one_steps, two_steps)


def test_ray_shards_ask_for_the_configured_gpus(prefect_api):
    """A shard gets the GPUs it asks for: Ray sets its ``CUDA_VISIBLE_DEVICES`` to them. A local
    instance declaring one GPU (no device is needed to declare one) serves two shards of 0.5 GPU; a
    shard asking for none is given none (older Ray releases set ``CUDA_VISIBLE_DEVICES=''`` then; 2.60
    leaves the variable as the driver has it: unset here)."""
    pytest.importorskip("prefect_ray", reason="the ray extra is not installed (`pip install -e '.[ray]'`)")
    import ray

    with local_ray_environment():  # no token file in $HOME
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
        try:  # the runner uses the instance that is already up

            def visible(gpus: float) -> list[str | None]:
                cfg = tiny_config({"orchestration": {"task_runner": "ray", "gpus_per_shard": gpus}})
                return map_shards(cfg, os.getenv, [("CUDA_VISIBLE_DEVICES",)] * 2)

            assert visible(0.5) == ["0", "0"]
            assert os.getenv("CUDA_VISIBLE_DEVICES") is None
            assert visible(0.0) in (["", ""], [None, None])
            assert ray.is_initialized()
        finally:
            ray.shutdown()
