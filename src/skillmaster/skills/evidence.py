"""What an episode shows, as the cold start's review targets read it: the types an environment's
detectors take and return. Pure data.

An environment with expert walkthroughs reads an :class:`Episode` for mistakes and working tactics
(its :class:`~skillmaster.envs.profile.WalkthroughKit`'s ``findings``; ALFWorld's detectors:
:mod:`skillmaster.envs.alfworld.evidence`); each :class:`Finding` becomes a lesson
(:mod:`skillmaster.skills.lessons`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One step of an episode: the action sent, whether it was admissible, the observation after."""

    action: str
    valid: bool
    observation: str


@dataclass(frozen=True)
class Episode:
    """An episode as the detectors see it. ``target``: the kind of object the task needs (ALFWorld:
    the walkthrough's first ``take``), None when unknown."""

    family: str
    won: bool
    initial_observation: str
    steps: tuple[Step, ...]
    target: str | None = None


@dataclass(frozen=True)
class Finding:
    """One mistake or tactic at ``step`` (0-based; None: the episode as a whole). ``details``: the
    kinds involved (``object``, ``place``, ``verb``, ``count``), never instance ids."""

    kind: str
    step: int | None
    details: dict[str, str] = field(default_factory=dict)
