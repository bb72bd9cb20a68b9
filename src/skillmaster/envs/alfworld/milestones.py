"""Walkthrough milestones: how far an ALFWorld episode got towards its goal. Pure functions.

The progress score and dense reward (:mod:`skillmaster.rollout.progress`; not in the paper) read
these. A game's milestones come from its expert walkthrough (the ``walkthrough`` field of the game
file): every action that changes the state towards the goal, with instance numbers dropped,
because the agent may find another apple or use another countertop than the walkthrough did:

- ``take O from R`` → (take, O) — where the object is found does not matter;
- ``clean/heat/cool O with R`` → (clean/heat/cool, O, R);
- ``use L`` → (use, L);
- ``move O to R`` → (move, O, R) — putting it down at the goal receptacle;
- ``open R`` → (open, R), only when the next state-changing step is not a ``take`` (opening the
  destination before a ``move``); an open made to *search* a place depends on where the object
  happened to be, like the ``go to``'s, which are never milestones.

An episode reaches them in order: a valid (admissible) action reaches the next pending milestone
when it has the same verb and kinds. A pending ``open`` is passed when the step reaches the
milestone after it (the receptacle was already open).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple


class Milestone(NamedTuple):
    verb: str
    obj: str = ""
    place: str = ""


def kind(instance: str) -> str:
    """``"apple 2"`` → ``"apple"`` (the instance number dropped)."""
    return re.sub(r"\s+\d+$", "", instance.strip())


_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^take (?P<o>.+?) from (?P<r>.+)$"), "take"),
    (re.compile(r"^(?P<v>clean|heat|cool) (?P<o>.+?) with (?P<r>.+)$"), ""),
    (re.compile(r"^use (?P<o>.+)$"), "use"),
    (re.compile(r"^move (?P<o>.+?) to (?P<r>.+)$"), "move"),
    (re.compile(r"^open (?P<r>.+)$"), "open"),
)


def milestone_of(action: str) -> Milestone | None:
    """The milestone an action reaches when it succeeds, or None (``go to``, ``look``, …)."""
    action = " ".join(action.strip().lower().split())
    for pattern, verb in _RULES:
        m = pattern.match(action)
        if m is None:
            continue
        parts = m.groupdict()
        verb = verb or parts["v"]
        if verb == "take":
            return Milestone("take", kind(parts["o"]))
        if verb == "use":
            return Milestone("use", kind(parts["o"]))
        if verb == "open":
            return Milestone("open", "", kind(parts["r"]))
        return Milestone(verb, kind(parts["o"]), kind(parts["r"]))
    return None


def milestones(walkthrough: Sequence[str]) -> tuple[Milestone, ...]:
    """The milestones of a walkthrough, in order (module text)."""
    found = [m for m in (milestone_of(a) for a in walkthrough) if m is not None]
    out = []
    for i, m in enumerate(found):
        if m.verb == "open":
            following = next((n for n in found[i + 1 :] if n.verb != "open"), None)
            if following is None or following.verb == "take":
                continue
        out.append(m)
    return tuple(out)


def milestone_hits(goal: Sequence[Milestone], steps: Sequence[tuple[str, bool]]) -> list[int]:
    """For each step ``(action, valid)``, how many milestones of ``goal`` it reached (0, 1, or 2
    when it also passed a pending ``open``)."""
    pending, hits = 0, []
    for action, valid in steps:
        reached = milestone_of(action) if valid else None
        n = 0
        if reached is not None and pending < len(goal):
            if reached == goal[pending]:
                n = 1
            elif goal[pending].verb == "open" and pending + 1 < len(goal) and reached == goal[pending + 1]:
                n = 2
        pending += n
        hits.append(n)
    return hits


def progress(goal: Sequence[Milestone], steps: Sequence[tuple[str, bool]]) -> float:
    """Share of ``goal`` reached in order by ``steps`` (1.0 for a goal without milestones)."""
    if not goal:
        return 1.0
    return sum(milestone_hits(goal, steps)) / len(goal)
