"""Walkthrough milestones: how far an ALFWorld episode got towards its goal. Pure functions.

Not in the paper: METHOD.md §6 scores a probe only by its win, and METHOD.md §7 rewards only the
win. At CPU scale almost nothing is won, so every probe scores 0 and every action sample shares
the same reward; these milestones give a non-won episode a graded value. Two settings use them,
both off in the paper overlays: ``counterfactual.score: progress`` (:func:`progress_score`) and
``train.progress_reward`` (:func:`progress_to_go`).

A game's milestones come from its expert walkthrough (the ``walkthrough`` field of the game file):
every action that changes the state towards the goal, with instance numbers dropped, because the
agent may find another apple or use another countertop than the walkthrough did:

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
from collections.abc import Callable, Sequence
from typing import NamedTuple

import polars as pl

PROGRESS_WEIGHT = 0.5
"""Score of a non-won probe with every milestone reached: a win scores at least 1
(METHOD.md §6: 1 + (T_max − L)/T_max), so any win outranks any non-win."""


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


def progress_score(
    won: bool, length: int, t_max: int, share: float, weight: float = PROGRESS_WEIGHT
) -> float:
    """Probe score of ``counterfactual.score: progress``: METHOD.md §6's s for a win
    (1 + (T_max − L)/T_max ≥ 1), else ``weight`` × the share of milestones reached (< 1), so a win
    always outranks a non-win and a non-win that got further outranks one that did not."""
    from skillmaster.skills.utility import probe_score

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"progress share must be in [0, 1] (got {share})")
    if not 0.0 < weight < 1.0:
        raise ValueError(f"progress weight must be in (0, 1) so a win outranks a non-win (got {weight})")
    if won:
        return probe_score(True, length, t_max)
    probe_score(False, length, t_max)  # the same checks of length and t_max
    return weight * share


def progress_to_go(hits: Sequence[int], total: int) -> list[float]:
    """Dense progress reward of each step (``train.progress_reward`` scales it): the share of the
    ``total`` milestones reached at this step or later in the episode (a return-to-go, so the steps
    that led to a milestone share its credit)."""
    if total <= 0:
        return [0.0] * len(hits)
    out, rest = [], 0
    for n in reversed(hits):
        rest += n
        out.append(rest / total)
    return out[::-1]


def episode_progress(
    steps: pl.DataFrame, trajectories: pl.DataFrame, walkthrough: Callable[[str, str], Sequence[str]]
) -> tuple[dict[str, float], pl.DataFrame]:
    """Milestone progress of every episode of a STEPS/TRAJECTORIES pair: per trajectory the share
    reached, and per step (``traj_id``, ``step``, ``progress_to_go``) the dense value of
    :func:`progress_to_go`. ``walkthrough(task_id, split)`` gives a game's walkthrough."""
    by_traj = {key[0]: frame.sort("step") for key, frame in steps.group_by("traj_id")}
    goals: dict[tuple[str, str], tuple[Milestone, ...]] = {}
    shares: dict[str, float] = {}
    rows: list[dict] = []
    for t in trajectories.iter_rows(named=True):
        key = (t["task_id"], t["split"])
        if key not in goals:
            goals[key] = milestones(walkthrough(*key))
        goal = goals[key]
        frame = by_traj.get(t["traj_id"])
        taken = [] if frame is None else list(zip(frame["action"], frame["valid"], strict=True))
        hits = milestone_hits(goal, taken)
        shares[t["traj_id"]] = sum(hits) / len(goal) if goal else 1.0
        to_go = progress_to_go(hits, len(goal))
        if frame is not None:
            rows += [
                {"traj_id": t["traj_id"], "step": s, "progress_to_go": v}
                for s, v in zip(frame["step"], to_go, strict=True)
            ]
    schema = {"traj_id": pl.Utf8, "step": pl.Int32, "progress_to_go": pl.Float64}
    return shares, pl.DataFrame(rows, schema=schema)
