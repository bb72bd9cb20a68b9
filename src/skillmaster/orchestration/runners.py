"""Prefect task runners for rollout fan-out (registry :data:`TASK_RUNNERS`).

Rollout shards go to an existing engine through a Prefect task runner: ``sequential``
(in-process), ``dask`` (prefect-dask: a local cluster, or the scheduler at
``orchestration.address``), ``ray`` (prefect-ray, when installed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from skillmaster.config import Config, OrchestrationConfig
from skillmaster.errors import ConfigError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- task runners
def _sequential(cfg: OrchestrationConfig):
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)


def _dask(cfg: OrchestrationConfig):
    from prefect_dask import DaskTaskRunner

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


def _ray(cfg: OrchestrationConfig):
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise ConfigError(
            "orchestration.task_runner is ray but prefect-ray is not installed: "
            "`pip install -e '.[ray]'`, or use task_runner: dask"
        ) from None
    return RayTaskRunner(address=cfg.address) if cfg.address else RayTaskRunner()


TASK_RUNNERS: dict[str, Callable[[OrchestrationConfig], Any]] = {
    "sequential": _sequential,
    "dask": _dask,
    "ray": _ray,
}


def make_task_runner(cfg: OrchestrationConfig):
    return TASK_RUNNERS[cfg.task_runner](cfg)


def map_shards(cfg: Config, fn: Callable[..., Any], arg_tuples: list[tuple]) -> list:
    """Run ``fn(*args)`` for every shard on the configured task runner, results in shard order.

    The shards run as tasks of a ``rollout-shards`` Prefect flow (a subflow when called from a
    flow), so they show up in the UI and retry like any task.
    """
    from prefect import flow, task

    shard_task = task(
        fn,
        name="rollout-shard",
        retries=cfg.orchestration.retries,
        retry_delay_seconds=cfg.orchestration.retry_delay_s,
    )

    @flow(name="rollout-shards", task_runner=make_task_runner(cfg.orchestration), log_prints=True)
    def rollout_shards() -> list:
        futures = [
            shard_task.with_options(task_run_name=f"shard-{i}").submit(*args)
            for i, args in enumerate(arg_tuples)
        ]
        return [f.result() for f in futures]

    return rollout_shards()


def shard_runner(cfg: Config):
    """The shard runner stages get (:data:`skillmaster.stages.ShardRunner`): shards as tasks on the
    configured task runner (the ``collect`` stage runs them in its own process when the runner is
    ``sequential``)."""

    def run(fn: Callable[..., Any], arg_tuples: list[tuple]) -> list:
        return map_shards(cfg, fn, arg_tuples)

    return run
