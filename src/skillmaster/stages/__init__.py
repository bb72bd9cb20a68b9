"""Pipeline stages: each is one plain function ``fn(ctx) -> metrics`` registered by name.

``skillmaster stage <name> --iteration N`` (what dvc.yaml calls) and the Prefect flow both go
through :func:`run_stage`, so there is exactly one implementation of every stage.
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

log = logging.getLogger(__name__)

# stage name -> module under skillmaster.stages that registers it
STAGE_MODULES: dict[str, str] = {
    "model": "model",
    "bank-init": "bank",
    "sft-data": "sft",
    "sft": "sft",
    "collect": "collect",
    "review": "review",
    "counterfactual": "counterfactual",
    "train": "train",
    "evaluate": "evaluate",
    "report": "report",
}
ITERATION_STAGES = ("collect", "review", "counterfactual", "train", "evaluate")
UNTRACKED_STAGES = ("model", "bank-init", "sft-data")
"""Stages that log nothing to MLflow; every other stage opens the tracker before its work, so an
unusable MLflow store fails the stage at once, not after the model has loaded and played."""

StageFn = Callable[["StageContext"], dict[str, Any]]
_REGISTRY: dict[str, StageFn] = {}


@dataclass
class StageContext:
    """What a stage gets: settings, the iteration, where files live, and the tracker."""

    cfg: Config
    iteration: int
    paths: Paths
    root: Path
    _tracker: Any = field(default=None, repr=False)
    shared: dict[str, Any] = field(default_factory=dict, repr=False)
    """Objects a caller may pass in to avoid reloading them (e.g. a loaded policy, in flows)."""

    @property
    def tracker(self):
        if self._tracker is None:
            from skillmaster.tracking import open_tracker

            self._tracker = open_tracker(self.cfg, self.root)
        return self._tracker


def register(name: str) -> Callable[[StageFn], StageFn]:
    def deco(fn: StageFn) -> StageFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def get_stage(name: str) -> StageFn:
    if name not in STAGE_MODULES:
        raise ConfigError(f"unknown stage '{name}'; choose one of: {', '.join(STAGE_MODULES)}")
    importlib.import_module(f"skillmaster.stages.{STAGE_MODULES[name]}")
    return _REGISTRY[name]


def stage_outputs(name: str, cfg: Config, iteration: int, root: Path) -> list[Path]:
    """The files and folders stage ``name`` of ``iteration`` writes (outs and metrics of its DVC stage)."""
    # through importlib: where outputs go is not a code dependency of the stages (dvc.yaml's deps
    # follow import statements, and the plan's module would make every stage depend on it)
    stage_plan = importlib.import_module("skillmaster.pipeline").stage_plan
    try:
        plan = stage_plan(cfg, root)
    except ConfigError:  # e.g. a missing accelerate config: reported where it matters
        return []
    return [
        root / out
        for spec in plan
        if spec.stage == name and spec.iteration == iteration
        for out in (*spec.outs, *spec.metrics)
    ]


def run_stage(
    name: str,
    cfg: Config,
    iteration: int = 0,
    root: Path | None = None,
    tracker: Any = None,
    shared: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run stage ``name`` for ``iteration`` and return its metrics."""
    from skillmaster.runtime import configure_environment, project_root

    root = root or project_root()
    configure_environment(root)
    lowest = 0 if name == "evaluate" else 1
    if name in ITERATION_STAGES and not lowest <= iteration <= cfg.loop.iterations:
        raise ConfigError(
            f"stage {name} needs --iteration between {lowest} and loop.iterations ({cfg.loop.iterations}); "
            f"got {iteration}"
        )
    fn = get_stage(name)
    check_writable(stage_outputs(name, cfg, iteration, root))
    owned = shared is None  # a caller that passes `shared` keeps what the stage opens (flows)
    ctx = StageContext(
        cfg=cfg,
        iteration=iteration,
        paths=Paths(root),
        root=root,
        _tracker=tracker,
        shared={} if owned else shared,
    )
    from skillmaster.tracking import tracking_seconds

    start, tracked = time.perf_counter(), tracking_seconds()
    if name not in UNTRACKED_STAGES:
        ctx.tracker  # noqa: B018  (opens the MLflow run now: fail early)
    try:
        metrics = fn(ctx) or {}
    finally:
        if owned:  # the generation engine's processes end with the stage, on success or error
            from skillmaster.stages.common import close_policy

            close_policy(ctx.shared)
    elapsed = time.perf_counter() - start
    # wall time of the stage, and the part of it spent in MLflow calls (bench orchestration)
    metrics["stage_seconds"] = round(elapsed, 3)
    metrics["tracking_seconds"] = round(tracking_seconds() - tracked, 3)
    metrics.setdefault("seconds", round(elapsed, 2))
    log.info("stage %s (iteration %d) finished in %.1fs", name, iteration, elapsed)
    return metrics
