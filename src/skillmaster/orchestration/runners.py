"""Prefect task runners for rollout fan-out (registry :data:`TASK_RUNNERS`).

Rollout shards go to an existing engine through a Prefect task runner: ``sequential``
(in-process), ``dask`` (prefect-dask: a local cluster, or the scheduler at
``orchestration.address``), ``ray`` (prefect-ray, when installed).

Process model: a shard starts child processes of its own (the environment pool's workers, vLLM's
engine core and worker), so it must run in a process that may have children.

- Dask: a worker that a nanny starts is a *daemonic* multiprocessing process by default, and
  ``multiprocessing`` refuses children there (``daemonic processes are not allowed to have
  children``). The local cluster's nannies therefore start their workers with Dask's
  ``distributed.worker.daemon: False`` (set while the shards' flow runs, which creates and closes
  the cluster: a nanny reads it when it starts or restarts its worker). The nanny still ends its
  worker on close. For a cluster of your own (``orchestration.address``) start the workers the same
  way:
  ``DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker tcp://host:8786 --nthreads 1``.
- Ray: workers are plain processes (children allowed). Ray gives a task only the GPUs it asks for
  (it sets the task's ``CUDA_VISIBLE_DEVICES``; a task asking for none gets ``''`` on older releases
  and is placed with no regard to GPUs on 2.60), so each shard asks for
  ``orchestration.gpus_per_shard`` GPUs. The local instance gets ``orchestration.workers`` CPUs,
  no dashboard, and listens on 127.0.0.1.

A shard opens its own engine and environment pool in the worker and closes both when it is done
(:func:`skillmaster.stages.collect.run_collect_shard`), so a long-lived worker holds no engine
between shards.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from skillmaster.config import Config, OrchestrationConfig
from skillmaster.errors import ConfigError

log = logging.getLogger(__name__)

LOCAL_HOST = "127.0.0.1"
"""Where the local Dask cluster and Ray instance listen (nothing outside this machine reaches them)."""

NON_DAEMONIC_WORKERS = {"distributed.worker.daemon": False}
"""Dask setting under which a nanny starts its worker as a non-daemonic process (module doc)."""


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
            "host": LOCAL_HOST,
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
    if cfg.address:
        return RayTaskRunner(address=cfg.address)
    return RayTaskRunner(
        init_kwargs={"num_cpus": cfg.workers, "include_dashboard": False, "_node_ip_address": LOCAL_HOST}
    )


TASK_RUNNERS: dict[str, Callable[[OrchestrationConfig], Any]] = {
    "sequential": _sequential,
    "dask": _dask,
    "ray": _ray,
}


def make_task_runner(cfg: OrchestrationConfig):
    return TASK_RUNNERS[cfg.task_runner](cfg)


RAY_STATE_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_USAGE_STATS_ENABLED")


@functools.cache
def _process_ray_token() -> str:
    """This process's token for the local Ray instances it starts: one per process, since Ray's
    driver keeps the first token it loaded for every later instance."""
    import secrets

    return secrets.token_hex(32)


@contextmanager
def local_ray_environment() -> Iterator[None]:
    """The environment a local Ray instance starts in: usage statistics off and, unless an
    authentication setting is given, this process's token in ``RAY_AUTH_TOKEN`` (Ray otherwise
    writes one to ``~/.ray/auth_token``: tool state stays out of $HOME). The variables (Ray sets
    ``RAY_AUTH_MODE`` itself) are restored afterwards."""
    before = {k: os.environ.get(k) for k in RAY_STATE_VARIABLES}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not any(before[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = _process_ray_token()
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def runner_settings(cfg: OrchestrationConfig):
    """The context the shards' flow runs in: on Dask, :data:`NON_DAEMONIC_WORKERS`; for a local Ray
    instance, :func:`local_ray_environment`."""
    if cfg.task_runner == "dask":
        import dask

        return dask.config.set(NON_DAEMONIC_WORKERS)
    if cfg.task_runner == "ray" and not cfg.address:
        return local_ray_environment()
    return nullcontext()


def shard_options(cfg: OrchestrationConfig):
    """The context a shard is submitted in: on Ray, the GPUs it asks for (``gpus_per_shard``)."""
    if cfg.task_runner == "ray" and cfg.gpus_per_shard > 0:
        from prefect_ray.context import remote_options

        return remote_options(num_gpus=cfg.gpus_per_shard)
    return nullcontext()


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
        with shard_options(cfg.orchestration):
            futures = [
                shard_task.with_options(task_run_name=f"shard-{i}").submit(*args)
                for i, args in enumerate(arg_tuples)
            ]
        return [f.result() for f in futures]

    with runner_settings(cfg.orchestration):
        return rollout_shards()


def shard_runner(cfg: Config):
    """The shard runner stages get (:data:`skillmaster.stages.ShardRunner`): shards as tasks on the
    configured task runner (the ``collect`` stage runs them in its own process when the runner is
    ``sequential``)."""

    def run(fn: Callable[..., Any], arg_tuples: list[tuple]) -> list:
        return map_shards(cfg, fn, arg_tuples)

    return run
