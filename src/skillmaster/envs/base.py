"""The environment contract every benchmark implements (docs/ARCHITECTURE.md, "Environment").

A *suite* knows a benchmark's tasks and builds environments; an *environment* plays one task at
a time with text in and text out:

- ``reset(*, seed=None, options={"task_id": ...}) -> (observation, info)``
- ``step(action) -> (observation, reward, terminated, truncated, info)``

``info`` always carries the keys in :data:`INFO_KEYS`. A suite is a small picklable object, so a
worker process can rebuild environments from it. What an environment knows beyond its engine
(prompt wording, review rules, experts) is its profile (:mod:`skillmaster.envs.profile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

INFO_KEYS = ("admissible_actions", "won", "task_id", "task_family", "category", "task_text")
"""Keys every ``info`` dict carries. Optional extras: ``score`` (WebShop), ``error`` (pool)."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of a split: a stable id (same on every machine), its family and skill category."""

    task_id: str
    family: str
    category: str
    split: str


@runtime_checkable
class TextEnv(Protocol):
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict]: ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]: ...

    def close(self) -> None: ...


class EnvSuite(Protocol):
    """A benchmark: its tasks, skill categories and an environment factory."""

    name: str
    categories: tuple[str, ...]
    """Skill-bank categories of this benchmark (METHOD.md §2)."""

    def tasks(self, split: str) -> list[TaskSpec]:
        """Tasks of ``split`` in a stable order; a clear DataError when the split is missing."""
        ...

    def make_env(self) -> TextEnv:
        """A fresh environment (called inside worker processes)."""
        ...

    def walkthrough(self, task_id: str, split: str) -> list[str] | None:
        """The task's expert walkthrough (actions that win it), or None when the benchmark has none
        (WebShop). Where the profile says it has walkthroughs, a missing one is a DataError."""
        ...

    def skipped(self, split: str) -> list[dict[str, str]]:
        """Task folders of ``split`` left out of :meth:`tasks` as unusable (``{"folder", "reason"}``),
        for reports; empty when nothing was skipped."""
        ...
