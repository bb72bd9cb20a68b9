"""Pipeline stages: each is one plain function ``fn(ctx) -> metrics`` registered with its contract.

A stage module declares a :class:`~skillmaster.stages.contract.StageContract` (the settings and
files it reads, what it writes, its metrics and plots) and registers its function with it.
``skillmaster stage <name> --iteration N`` (what dvc.yaml calls) and the Prefect flow both go
through :func:`run_stage`, so there is exactly one implementation of every stage. A stage gets
everything through its :class:`StageContext`: settings, paths, the tracker, the process's
:class:`~skillmaster.stages.resources.Resources` (engine, suites, retriever) and the shard runner the
caller chose; nothing here imports the orchestration.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmaster.config import Config
from skillmaster.errors import ConfigError
from skillmaster.io import check_writable
from skillmaster.paths import Paths
from skillmaster.stages.contract import StageContract, Where
from skillmaster.stages.resources import Resources

log = logging.getLogger(__name__)

# stage name -> module under skillmaster.stages that registers it
STAGE_MODULES: dict[str, str] = {
    "model": "model",
    "bank-init": "bank",
    "sft-data": "sft_data",
    "sft": "sft",
    "collect": "collect",
    "review": "review",
    "counterfactual": "counterfactual",
    "train": "train",
    "evaluate": "evaluate",
    "report": "report",
}
UNTRACKED_STAGES = ("model", "bank-init", "sft-data")
"""Stages that log nothing to MLflow; every other stage opens the tracker before its work, so an
unusable MLflow store fails the stage at once, not after the model has loaded and played."""

StageFn = Callable[["StageContext"], dict[str, Any]]
ShardRunner = Callable[[Callable[..., Any], list[tuple]], list]
"""Runs ``fn(*args)`` for each args tuple (one per rollout shard), results in order: in this process,
or as tasks on a Prefect task runner (the orchestration supplies it)."""


def run_here(fn: Callable[..., Any], arg_tuples: list[tuple]) -> list:
    """The shard runner without a task runner: every shard in this process, in order."""
    return [fn(*args) for args in arg_tuples]


@dataclass(frozen=True)
class Stage:
    contract: StageContract
    fn: StageFn


_REGISTRY: dict[str, Stage] = {}


@dataclass
class StageContext:
    """What a stage gets: its settings view, the iteration, where files live, the tracker, the
    process's resources and a shard runner. ``cfg`` is the whole configuration, for the framework
    (the tracker, metric names) and for library code a stage hands it to; the stage reads its
    settings from :attr:`view`."""

    cfg: Config
    iteration: int
    paths: Paths
    root: Path
    _tracker: Any = field(default=None, repr=False)
    resources: Resources = field(default_factory=Resources, repr=False)
    """Engine, environment suites and retriever, kept between the stages of one process (a flow)."""
    run_shards: ShardRunner = run_here
    stage: str | None = None
    """The stage's registry name: which view :attr:`view` is."""
    _view: Any = field(default=None, repr=False)
    headline_split: str | None = field(default=None, init=False, repr=False)
    """The evaluation split whose success is the headline metric (names MLflow metrics, no output)."""

    def __post_init__(self) -> None:
        self.headline_split = self.cfg.eval.splits[0] if self.cfg.eval.splits else None

    @property
    def view(self):
        """The stage's settings view (:mod:`skillmaster.stages.views`), resolved once."""
        if self._view is None:
            if self.stage is None:
                raise RuntimeError("this StageContext names no stage, so it has no settings view")
            self._view = contract_of(self.stage).view.resolve(self.cfg, self.root)
        return self._view

    @property
    def tracker(self):
        if self._tracker is None:
            from skillmaster.tracking import open_tracker

            self._tracker = open_tracker(self.cfg, self.root)
        return self._tracker

    @property
    def where(self) -> Where:
        return Where(self.cfg, self.iteration, self.paths)


def register(contract: StageContract) -> Callable[[StageFn], StageFn]:
    def deco(fn: StageFn) -> StageFn:
        _REGISTRY[contract.name] = Stage(contract, fn)
        return fn

    return deco


def get_stage(name: str) -> Stage:
    if name not in STAGE_MODULES:
        raise ConfigError(f"unknown stage '{name}'; choose one of: {', '.join(STAGE_MODULES)}")
    importlib.import_module(f"skillmaster.stages.{STAGE_MODULES[name]}")
    return _REGISTRY[name]


def contract_of(name: str) -> StageContract:
    return get_stage(name).contract


def stage_outputs(name: str, cfg: Config, iteration: int, root: Path) -> list[Path]:
    """The files and folders stage ``name`` of ``iteration`` writes (its outputs and metrics)."""
    c = contract_of(name)
    where = Where(cfg, iteration, Paths(root))
    return [*c.writes(where), *c.metrics(where)]


def run_stage(
    name: str,
    cfg: Config,
    iteration: int = 0,
    root: Path | None = None,
    tracker: Any = None,
    resources: Resources | None = None,
    run_shards: ShardRunner = run_here,
) -> dict[str, Any]:
    """Run stage ``name`` for ``iteration`` and return its metrics.

    ``resources`` held by the caller (a flow) stay open afterwards; without them the stage opens its
    own and closes them (the generation engine's processes end with the stage, on success or error).
    """
    from skillmaster.runtime import configure_environment, project_root

    root = root or project_root()
    configure_environment(root)
    stage = get_stage(name)
    lowest = 0 if name == "evaluate" else 1
    if stage.contract.iterated and not lowest <= iteration <= cfg.loop.iterations:
        raise ConfigError(
            f"stage {name} needs --iteration between {lowest} and loop.iterations ({cfg.loop.iterations}); "
            f"got {iteration}"
        )
    check_writable(stage_outputs(name, cfg, iteration, root))
    owned = resources is None
    ctx = StageContext(
        cfg=cfg,
        iteration=iteration,
        paths=Paths(root),
        root=root,
        _tracker=tracker,
        resources=Resources() if owned else resources,
        run_shards=run_shards,
        stage=name,
    )
    from skillmaster.tracking import tracking_seconds

    start, tracked = time.perf_counter(), tracking_seconds()
    if name not in UNTRACKED_STAGES:
        ctx.tracker  # noqa: B018  (opens the MLflow run now: fail early)
    try:
        metrics = stage.fn(ctx) or {}
    finally:
        if owned:
            ctx.resources.close()
    elapsed = time.perf_counter() - start
    # wall time of the stage, and the part of it spent in MLflow calls (bench orchestration)
    metrics["stage_seconds"] = round(elapsed, 3)
    metrics["tracking_seconds"] = round(tracking_seconds() - tracked, 3)
    metrics.setdefault("seconds", round(elapsed, 2))
    log.info("stage %s (iteration %d) finished in %.1fs", name, iteration, elapsed)
    return metrics
