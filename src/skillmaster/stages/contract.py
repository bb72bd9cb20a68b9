"""What a stage declares about itself, next to its code: the settings and files it reads, what it
writes, its metrics and plots.

Each stage module defines one :class:`StageContract` and registers its function with it
(``@register(CONTRACT)``). The settings are the stage's view (:mod:`skillmaster.stages.views`): the
one typed object the stage reads them from, resolved once; its DVC params are derived from the
view's fields. The orchestration renders ``dvc.yaml`` from these declarations alone, so what DVC
reruns is what the stage reads; ``tests/pipeline/test_flow_loop.py`` runs every stage with its
settings recorded and fails when a stage reads a setting its view does not hold.

Files are declared as functions of :class:`Where` (the settings, the iteration and the project's
paths), because they depend on both: the policy in force is ``models/sft`` only when the cold start
is on, the report reads every iteration's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skillmaster.config import Config
from skillmaster.paths import Paths
from skillmaster.stages.views import EXECUTION_SETTINGS, StageView, section

__all__ = ["EXECUTION_SETTINGS", "Files", "Plot", "StageContract", "Where", "section"]


@dataclass(frozen=True)
class Where:
    """The place a stage runs in: its settings, its iteration and where files live."""

    cfg: Config
    iteration: int
    paths: Paths

    def policy(self, iteration: int) -> list[Path]:
        """The weights in force after ``iteration``: the policy base (``models/sft`` with the cold
        start, else ``models/base``) plus that iteration's checkpoint (none at iteration 0)."""
        p = self.paths
        base = p.sft_model if self.cfg.sft.enabled else p.base_model
        return [base] + ([p.policy(iteration)] if iteration > 0 else [])


Files = Callable[[Where], Sequence[Path]]


def _none(_: Where) -> list[Path]:
    return []


@dataclass(frozen=True)
class Plot:
    """A plot a stage writes: ``plots/<name>.csv`` (for ``dvc plots``) and ``plots/<name>.png``."""

    name: str
    title: str
    y_label: str
    columns: Callable[[Config], list[str]]
    """The CSV's y columns (x is ``iteration``)."""


@dataclass(frozen=True)
class StageContract:
    name: str
    """The stage's registry name (``skillmaster stage <name>``)."""
    view: type[StageView]
    """The stage's settings view: every setting it reads (see :attr:`settings`)."""
    reads: Files = _none
    """Files and folders the stage reads (besides its code)."""
    writes: Files = _none
    """Its outputs (DVC caches and restores them)."""
    metrics: Files = _none
    """Its metrics files (JSON, kept in git rather than DVC's cache)."""
    plots: tuple[Plot, ...] = ()
    iterated: bool = False
    """Takes ``--iteration N`` (one DVC stage per iteration)."""
    env_code: bool = False
    """The configured environment's code is part of the stage's code (it plays episodes)."""
    code: tuple[str, ...] = field(default=())
    """Modules beyond the stage's own that the stage runs through a name (none are found by the import
    walk otherwise); the stage's module and everything it imports are found automatically."""

    @property
    def settings(self) -> tuple[str, ...]:
        """The stage's DVC params, derived from its view: dotted keys of params.yaml (a section stands
        for all its keys), execution settings left out. DVC reruns the stage when one changes."""
        return self.view.params()
