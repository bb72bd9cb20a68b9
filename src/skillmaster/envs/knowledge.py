"""The vocabulary an environment's knowledge is written in, for the cold start's review targets.

An environment with expert walkthroughs reads an :class:`Episode` for mistakes and working tactics
(its :class:`~skillmaster.envs.profile.WalkthroughKit`'s ``findings``; ALFWorld's detectors:
:mod:`skillmaster.envs.alfworld.evidence`); each :class:`Finding` maps to a :class:`Lesson` of the
environment's :class:`LessonBook` (ALFWorld's household lessons: :mod:`skillmaster.envs.alfworld.lessons`),
which :mod:`skillmaster.skills.lessons` turns into propose / update / keep examples. Pure data.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
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


def as_written(template: str, verb: str = "") -> str:
    """A lesson text without placeholders: the template itself."""
    return template


@dataclass(frozen=True)
class Lesson:
    """One reusable lesson. Texts may hold placeholders that depend on a finding's ``verb``
    (ALFWorld: ``{verb}``, ``{Verb}``, ``{appliance}`` of Clean/Heat/Cool tasks), filled by
    :meth:`text` with :attr:`fill`."""

    key: str
    scope: str
    """``general`` (proposed as a general skill) or ``task`` (the task's own category)."""
    titles: tuple[str, ...]
    principles: tuple[str, ...]
    when: str
    clause: str
    """The sentence an update adds to a same-subgoal skill."""
    gist: str
    """What the lesson says, after "says to …"."""
    covers: str
    """Regex (case-insensitive): a skill or mistake whose text matches states the lesson."""
    subgoal: str
    """Regex: a skill whose *title* matches is about the same subgoal (titles name subgoals; a
    principle mentions many things in passing)."""
    weak: tuple[str, str, str]
    """(title, principle, when_to_apply) of a same-subgoal skill without the clause."""
    fill: Callable[[str, str], str] = as_written
    """(template, verb) → the text with its placeholders filled."""

    def text(self, template: str, verb: str = "") -> str:
        return self.fill(template, verb)

    def covers_text(self, text: str, verb: str = "") -> bool:
        return re.search(self.text(self.covers, verb), text, re.IGNORECASE) is not None

    def subgoal_text(self, text: str, verb: str = "") -> bool:
        return re.search(self.text(self.subgoal, verb), text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class LessonBook:
    """An environment's lessons, as :func:`review_example` reads them."""

    lesson_for: Callable[[Finding, str], Lesson]
    """(finding, task family) → the lesson the finding teaches."""
    evidence_sentence: Callable[[Finding, str, random.Random], str]
    """(finding, task family, rng) → one sentence of what the episode shows (kinds, never ids;
    step numbers 1-based as the review prompt shows them)."""
    tactics: frozenset[str]
    """Finding kinds that are working tactics (what went right), not mistakes."""
