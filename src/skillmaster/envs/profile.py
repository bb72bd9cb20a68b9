"""What an environment knows beyond its engine: the :class:`EnvProfile` generic code asks.

Prompts, the review, the shaping checks, probes, plots, the cold start and the progress score
never name an environment; they look its profile up by name
(:func:`skillmaster.envs.registry.profile`). Each environment defines its profile in its own
folder (``envs/<name>/profile.py``) and registers it with its suite factory.

A profile is plain data and imports nothing heavy. What only an environment with expert
walkthroughs has (experts, milestones, review evidence) sits behind a loader
(:attr:`EnvProfile.walkthrough_kit`), imported on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

OUTPUT_FORMAT = "<think>short reasoning</think><action>one admissible action</action>"
"""The reply format every agent prompt asks for (METHOD.md §3)."""


@dataclass(frozen=True)
class PromptStyle:
    """Environment-specific wording of the agent prompt (METHOD.md §3)."""

    system: str
    observation_cleaner: Callable[[str], str] = str.strip


@dataclass(frozen=True)
class ReviewRules:
    """The environment's wording of two rules of the review prompt (METHOD.md §5)."""

    no_ids: str
    """Write rules, not instances (which ids the environment has)."""
    no_env_actions: str
    """Do not answer with an environment action (which actions it has)."""


@dataclass(frozen=True)
class ActionForms:
    """What counts as an environment action (the ``env_action`` shaping flag, METHOD.md §5): exact
    words, prefixes and regular expressions, matched against a stripped, lower-cased name."""

    words: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    patterns: tuple[re.Pattern, ...] = ()

    def matches(self, name: str) -> bool:
        return (
            name in self.words or name.startswith(self.prefixes) or any(p.match(name) for p in self.patterns)
        )

    def __bool__(self) -> bool:
        return bool(self.words or self.prefixes or self.patterns)


class Expert(Protocol):
    """A scripted player of the cold start (METHOD.md §8): the next reply
    (``<think>…</think><action>…</action>``), or None when it stops."""

    def reply(self, observation: str, admissible: Sequence[str]) -> str | None: ...


@dataclass(frozen=True)
class WalkthroughKit:
    """What an environment whose suite has expert walkthroughs offers the generic code.

    ``milestones``/``milestone_hits``: the progress score and dense reward
    (:mod:`skillmaster.rollout.progress`); the rest: the cold start (``stages/sft_data.py``).
    """

    milestones: Callable[[Sequence[str]], Sequence[Any]]
    """A walkthrough → its milestones (the goal), in order."""
    milestone_hits: Callable[[Sequence[Any], Sequence[tuple[str, bool]]], list[int]]
    """(goal, each step's (action, valid)) → how many milestones each step reached."""
    searching_expert: Callable[[list[str], int, int], Expert]
    """(walkthrough, max search detours, seed) → the expert whose actions are SFT targets."""
    mistake_expert: Callable[[list[str], str, bool, int], Expert]
    """(walkthrough, mistake, give up after it, seed) → an expert making one scripted mistake."""
    mistakes_for: Callable[[str], tuple[str, ...]]
    """Task family → the mistakes :attr:`mistake_expert` can make in it."""
    target_of: Callable[[Sequence[str]], str | None]
    """A walkthrough → the kind of object its task is about (None: unknown)."""
    findings: Callable[[Any], list[Any]]
    """An :class:`~skillmaster.envs.knowledge.Episode` → its mistakes, then its working tactics
    (each a :class:`~skillmaster.envs.knowledge.Finding`)."""
    lessons: Any
    """The :class:`~skillmaster.envs.knowledge.LessonBook` of the review targets: finding → lesson,
    and the wording of the evidence. (Types of :mod:`skillmaster.skills` are named, not imported:
    a profile imports nothing a stage would then depend on.)"""


@dataclass(frozen=True)
class EnvProfile:
    """One environment's knowledge, as the generic code asks for it (module text)."""

    name: str
    """The registry name (``env.name``)."""
    prompt: PromptStyle
    """Agent prompt wording: system text and observation cleaner (``agent/prompts.py``)."""
    review_rules: ReviewRules
    """The "no ids" and "no environment actions" rules of the review prompt (``skills/review.py``)."""
    env_actions: ActionForms
    """The environment's actions, for the review's ``env_action`` flag (``skills/tools.py``)."""
    probe_match: Literal["family", "category"]
    """What a probe task shares with the episode of the edit it scores (METHOD.md §6)."""
    default_max_steps: int
    """METHOD.md §4's step limit (ALFWorld 50, WebShop 15): the default of suites and environments
    built without settings; in a run, ``env.max_steps`` decides (:func:`skillmaster.envs.limits.step_limit`)."""
    family_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Task family → column name of the paper's tables (plots, ``skillmaster compare``); empty:
    families are shown as they are."""
    walkthrough_kit_loader: Callable[[], WalkthroughKit] | None = None
    """Imports and returns the :class:`WalkthroughKit`; None when the suite has no walkthroughs."""

    @property
    def has_walkthroughs(self) -> bool:
        """Whether the suite's ``walkthrough`` gives expert walkthroughs (else it gives None)."""
        return self.walkthrough_kit_loader is not None

    @property
    def walkthrough_kit(self) -> WalkthroughKit | None:
        """Experts, milestones and review evidence (None without walkthroughs)."""
        return self.walkthrough_kit_loader() if self.walkthrough_kit_loader is not None else None


def labels(pairs: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy of ``pairs`` (profiles are immutable)."""
    return MappingProxyType(dict(pairs))
