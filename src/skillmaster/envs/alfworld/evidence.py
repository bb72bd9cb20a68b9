"""What an ALFWorld episode shows: mistakes and working tactics read from its steps. Pure functions.

The cold start's review examples (:mod:`skillmaster.skills.lessons`, with :mod:`.lessons`) are
derived from this evidence, never from a teacher model. Each detector reads the steps of one
:class:`~skillmaster.envs.knowledge.Episode` (the action sent, whether it was admissible, the
observation that followed) and returns :class:`~skillmaster.envs.knowledge.Finding`s, each at the
step that shows it:

mistakes
    ``take_absent``: a ``take`` of an object the current place does not hold ("Nothing happens.");
    ``revisit``: going back to a place already visited and leaving it without doing anything;
    ``closed_unopened``: arriving at a closed receptacle and leaving without opening it;
    ``missed_visible``: leaving a place whose observation lists the object sought, without taking it;
    ``place_before_transform``: putting the object down before cleaning/heating/cooling it
    (Clean, Heat, Cool tasks);
    ``lamp_empty_handed``: turning on the lamp while holding nothing (Look tasks);
    ``stopped_after_one``: the episode ended after placing one object of a Pick2 task;
    ``repeated_invalid``: sending the same inadmissible action again.
tactics (what worked)
    ``searched_then_found``: the object was found after other places had been searched;
    ``opened_and_found``: the object was found inside a receptacle that had to be opened;
    ``procedure``: the task family's whole procedure was carried out (a won episode).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from skillmaster.envs.alfworld.milestones import kind
from skillmaster.envs.knowledge import Episode, Finding

MISTAKES = (
    "take_absent",
    "revisit",
    "closed_unopened",
    "missed_visible",
    "place_before_transform",
    "lamp_empty_handed",
    "stopped_after_one",
    "repeated_invalid",
)
TACTICS = ("searched_then_found", "opened_and_found", "procedure")
TRANSFORM_FAMILIES = {
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
}

_GO = re.compile(r"^go to (?P<r>.+)$")
_TAKE = re.compile(r"^take (?P<o>.+?) from (?P<r>.+)$")
_MOVE = re.compile(r"^move (?P<o>.+?) to (?P<r>.+)$")
_TRANSFORM = re.compile(r"^(?P<v>clean|heat|cool) (?P<o>.+?) with (?P<r>.+)$")
_USE = re.compile(r"^use (?P<o>.+)$")
_OPEN = re.compile(r"^open (?P<r>.+)$")


def target_of(walkthrough: Sequence[str]) -> str | None:
    """The kind of object a task is about: the first ``take`` of its walkthrough."""
    for action in walkthrough:
        if m := _TAKE.match(action.strip()):
            return kind(m.group("o"))
    return None


def _listed(observation: str, obj: str) -> set[str]:
    """Instances of ``obj`` an observation lists ("you see a apple 1, …" → {"apple 1"})."""
    return set(re.findall(rf"\b(?:a|an) ({re.escape(obj)} \d+)\b", observation))


@dataclass
class _Trace:
    """Before each step: where the agent is, what it holds, what it saw there (the observation of
    its arrival or of opening the place), and the instances it has put down so far."""

    place: list[str | None] = field(default_factory=list)
    holding: list[str | None] = field(default_factory=list)
    here: list[str] = field(default_factory=list)
    placed: list[frozenset[str]] = field(default_factory=list)


def _trace(episode: Episode) -> _Trace:
    t = _Trace()
    place, holding, here, placed = None, None, "", frozenset()
    for s in episode.steps:
        t.place.append(place)
        t.holding.append(holding)
        t.here.append(here)
        t.placed.append(placed)
        a = s.action.strip()
        if s.valid:
            if m := _GO.match(a):
                place, here = m.group("r"), s.observation
            elif _OPEN.match(a):
                here = s.observation
            elif m := _TAKE.match(a):
                holding = m.group("o")
            elif m := _MOVE.match(a):
                holding, placed = None, placed | {m.group("o")}
    return t


def _next_action(episode: Episode, i: int) -> str | None:
    return episode.steps[i + 1].action.strip() if i + 1 < len(episode.steps) else None


def _interacts(action: str | None) -> bool:
    """A step that does something at the current place (not moving on, not the end)."""
    return action is not None and not _GO.match(action)


# --------------------------------------------------------------------------- mistakes
def take_absent(episode: Episode) -> list[Finding]:
    t = _trace(episode)
    out = []
    for i, s in enumerate(episode.steps):
        m = _TAKE.match(s.action.strip())
        if m and not s.valid:
            where = t.place[i] or m.group("r")
            out.append(Finding("take_absent", i, {"object": kind(m.group("o")), "place": kind(where)}))
    return out


def revisit(episode: Episode) -> list[Finding]:
    out, visited = [], set()
    for i, s in enumerate(episode.steps):
        m = _GO.match(s.action.strip())
        if not (m and s.valid):
            continue
        place = m.group("r")
        if place in visited and not _interacts(_next_action(episode, i)):
            out.append(Finding("revisit", i, {"place": kind(place)}))
        visited.add(place)
    return out


def closed_unopened(episode: Episode) -> list[Finding]:
    out = []
    for i, s in enumerate(episode.steps):
        m = _GO.match(s.action.strip())
        if not (m and s.valid):
            continue
        place = m.group("r")
        if f"the {place} is closed" in s.observation.lower():
            nxt = _next_action(episode, i)
            if nxt is not None and _GO.match(nxt):
                out.append(Finding("closed_unopened", i + 1, {"place": kind(place)}))
    return out


def missed_visible(episode: Episode) -> list[Finding]:
    if episode.target is None:
        return []
    t = _trace(episode)
    out = []
    for i, s in enumerate(episode.steps):
        if not _GO.match(s.action.strip()) or t.place[i] is None or t.holding[i] is not None:
            continue
        if _listed(t.here[i], episode.target) - t.placed[i]:
            out.append(Finding("missed_visible", i, {"object": episode.target, "place": kind(t.place[i])}))
    return out


def place_before_transform(episode: Episode) -> list[Finding]:
    verb = TRANSFORM_FAMILIES.get(episode.family)
    if verb is None:
        return []
    done: set[str] = set()
    for i, s in enumerate(episode.steps):
        if not s.valid:
            continue
        a = s.action.strip()
        if (m := _TRANSFORM.match(a)) and m.group("v") == verb:
            done.add(m.group("o"))
        elif (
            (m := _MOVE.match(a))
            and m.group("o") not in done
            and (episode.target is None or kind(m.group("o")) == episode.target)
        ):
            details = {"object": kind(m.group("o")), "place": kind(m.group("r")), "verb": verb}
            return [Finding("place_before_transform", i, details)]
    return []


def lamp_empty_handed(episode: Episode) -> list[Finding]:
    if episode.family != "look_at_obj_in_light":
        return []
    t = _trace(episode)
    for i, s in enumerate(episode.steps):
        m = _USE.match(s.action.strip())
        if m and s.valid and t.holding[i] is None:
            return [Finding("lamp_empty_handed", i, {"object": kind(m.group("o"))})]
    return []


def stopped_after_one(episode: Episode) -> list[Finding]:
    if episode.family != "pick_two_obj_and_place" or episode.won:
        return []
    moves = [i for i, s in enumerate(episode.steps) if s.valid and _MOVE.match(s.action.strip())]
    if len(moves) != 1:
        return []
    obj = kind(_MOVE.match(episode.steps[moves[0]].action.strip()).group("o"))
    later_takes = [
        s
        for s in episode.steps[moves[0] + 1 :]
        if s.valid and (m := _TAKE.match(s.action.strip())) and kind(m.group("o")) == obj
    ]
    if later_takes:
        return []
    return [Finding("stopped_after_one", None, {"object": obj})]


def repeated_invalid(episode: Episode) -> list[Finding]:
    out, seen = [], set()
    for i, s in enumerate(episode.steps):
        if s.valid:
            continue
        key = " ".join(s.action.lower().split())
        if key in seen:
            out.append(Finding("repeated_invalid", i, {}))
        seen.add(key)
    return out


# --------------------------------------------------------------------------- tactics
def searched_then_found(episode: Episode) -> list[Finding]:
    """The first valid take of the target came after at least one place visited in vain, every
    place visited once."""
    if episode.target is None:
        return []
    places: list[str] = []
    for i, s in enumerate(episode.steps):
        a = s.action.strip()
        if not s.valid:
            continue
        if m := _GO.match(a):
            places.append(m.group("r"))
        elif (m := _TAKE.match(a)) and kind(m.group("o")) == episode.target:
            visits = len(places)
            if visits >= 2 and len(set(places)) == visits:  # each place once
                return [Finding("searched_then_found", i, {"object": episode.target, "count": str(visits)})]
            return []
    return []


def opened_and_found(episode: Episode) -> list[Finding]:
    if episode.target is None:
        return []
    opened: set[str] = set()
    for i, s in enumerate(episode.steps):
        a = s.action.strip()
        if not s.valid:
            continue
        if m := _OPEN.match(a):
            opened.add(m.group("r"))
        elif (m := _TAKE.match(a)) and kind(m.group("o")) == episode.target:
            if m.group("r") in opened:
                return [
                    Finding("opened_and_found", i, {"object": episode.target, "place": kind(m.group("r"))})
                ]
            return []
    return []


def procedure(episode: Episode) -> list[Finding]:
    if not episode.won:
        return []
    details = {"object": episode.target or "object"}
    if verb := TRANSFORM_FAMILIES.get(episode.family):
        details["verb"] = verb
    return [Finding("procedure", None, details)]


DETECTORS = {
    "take_absent": take_absent,
    "revisit": revisit,
    "closed_unopened": closed_unopened,
    "missed_visible": missed_visible,
    "place_before_transform": place_before_transform,
    "lamp_empty_handed": lamp_empty_handed,
    "stopped_after_one": stopped_after_one,
    "repeated_invalid": repeated_invalid,
    "searched_then_found": searched_then_found,
    "opened_and_found": opened_and_found,
    "procedure": procedure,
}
"""Finding kind → its detector."""


def find_mistakes(episode: Episode) -> list[Finding]:
    """Every mistake of the episode, by step (episode-wide ones last)."""
    found = [f for name in MISTAKES for f in DETECTORS[name](episode)]
    return sorted(found, key=lambda f: (f.step is None, f.step or 0, MISTAKES.index(f.kind)))


def find_tactics(episode: Episode) -> list[Finding]:
    """What worked in the episode (wins' procedures, searches that paid off)."""
    return [f for name in TACTICS for f in DETECTORS[name](episode)]
