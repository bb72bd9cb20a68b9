"""ALFWorld's expert replies for the cold start (METHOD.md §8): walkthrough actions in the agent's format.

The ``<think>`` text is generated from the step itself (the action's verb and arguments and what
the walkthrough does next), never copied from anywhere. Review-turn examples are derived from the
evidence of replayed episodes (:mod:`.evidence`, :mod:`.lessons`).

A walkthrough goes straight to where the object lies, which the agent cannot know; imitating it
alone teaches a policy to guess one place and then to "take" an object that is not there.
:class:`SearchingExpert` replays the walkthrough with *search detours*: before each place the
walkthrough visits to find something (an object to take, a lamp to use) it first checks up to
``max_detours`` other places, chosen at random from the admissible ``go to`` actions (opening
closed ones), and takes what it looks for when a detour finds it. The think text of a detour is
the same as that of the walkthrough's own visit, so the policy learns "not here: try elsewhere".

:class:`MistakeExpert` plays the walkthrough with one scripted mistake (taking what is not there,
revisiting a place, leaving a closed receptacle unopened, walking past the object, repeating an
invalid action, placing before cleaning/heating/cooling, using the lamp empty-handed, stopping
after one object of a Pick2 task), and sometimes gives up after it: the failed and flawed
episodes whose reviews teach the policy to edit its bank. Its action rows are never SFT targets.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^take (?P<o>.+) from (?P<r>.+)$"), "I can see the {o} here, so I pick it up."),
    (
        re.compile(r"^move (?P<o>.+) to (?P<r>.+)$"),
        "I am holding the {o}; I put it at the {r} as the task asks.",
    ),
    (
        re.compile(r"^clean (?P<o>.+) with (?P<r>.+)$"),
        "The {o} must be clean first, so I wash it in the {r}.",
    ),
    (re.compile(r"^heat (?P<o>.+) with (?P<r>.+)$"), "The {o} must be hot first, so I heat it with the {r}."),
    (
        re.compile(r"^cool (?P<o>.+) with (?P<r>.+)$"),
        "The {o} must be cool first, so I chill it with the {r}.",
    ),
    (re.compile(r"^use (?P<r>.+)$"), "I turn on the {r} to look at the object in its light."),
    (re.compile(r"^open (?P<r>.+)$"), "The {r} is closed; I open it to see what is inside."),
    (re.compile(r"^close (?P<r>.+)$"), "Nothing needed is in the {r}, so I close it."),
    (re.compile(r"^examine (?P<o>.+)$"), "I examine the {o} closely."),
]


def expert_thought(action: str, upcoming: Sequence[str] = ()) -> str:
    """One or two short sentences of subgoal reasoning for ``action``; ``upcoming`` are the
    walkthrough's next actions (they tell why a place is visited)."""
    action = action.strip()
    go = re.match(r"^go to (?P<r>.+)$", action)
    if go:
        place = go.group("r")
        sought = search_target(upcoming)
        if sought is not None:
            return search_thought(sought[1], place)
        nxt = upcoming[0] if upcoming else ""
        verb = nxt.split(" ", 1)[0] if nxt else ""
        reasons = {
            "move": "to put down what I am holding",
            "clean": "to clean the object",
            "heat": "to heat the object",
            "cool": "to cool the object",
            "use": "to use the lamp there",
            "open": "to look inside it",
        }
        return f"I go to the {place} {reasons.get(verb, 'to look for what the task needs')}."
    for pattern, template in _PATTERNS:
        m = pattern.match(action)
        if m:
            return template.format(**m.groupdict())
    return f"The next step towards the goal is to {action}."


def expert_reply(action: str, upcoming: Sequence[str] = (), thought: str | None = None) -> str:
    """``<think>…</think><action>…</action>`` for one walkthrough step."""
    return f"<think>{thought or expert_thought(action, upcoming)}</think><action>{action}</action>"


_TAKE = re.compile(r"^take (?P<o>.+?) from (?P<r>.+)$")
_USE = re.compile(r"^use (?P<o>.+)$")


def _kind(instance: str) -> str:
    """``"apple 2"`` -> ``"apple"``."""
    return re.sub(r"\s+\d+$", "", instance.strip())


def search_target(upcoming: Sequence[str]) -> tuple[str, str] | None:
    """When a ``go to`` is a visit to *find* something, (verb, object kind) of what it finds:
    the next action that is not an ``open`` is a ``take`` or a ``use``; else None."""
    for action in upcoming:
        if action.startswith("open "):
            continue
        if m := _TAKE.match(action):
            return "take", _kind(m.group("o"))
        if m := _USE.match(action):
            return "use", _kind(m.group("o"))
        return None
    return None


def search_thought(kind: str, place: str, failed: bool = False) -> str:
    """The think text of a visit made to look for ``kind`` (a detour or the walkthrough's own)."""
    if failed:
        return f"There is no {kind} here, so I look for one at the {place}."
    article = "an" if kind[:1] in "aeiou" else "a"
    return f"I need {article} {kind}, so I look for one at the {place}."


def _places(plan: Sequence[str]) -> set[str]:
    out = set()
    for action in plan:
        for m in re.finditer(r"(?:go to|open|close|from|to|with|in|on) ([a-z]+ \d+)", action):
            out.add(m.group(1))
    return out


@dataclass
class SearchingExpert:
    """The walkthrough ``plan`` played with search detours (see the module text).

    Call :meth:`reply` with each step's observation and admissible actions; it returns the
    expert's reply (``<think>…</think><action>…</action>``). ``max_detours`` = 0 replays the
    walkthrough exactly. Deterministic for a given ``seed`` and sequence of observations.
    """

    plan: list[str]
    max_detours: int = 0
    seed: int = 0
    _pos: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _budget: dict[int, int] = field(default_factory=dict, repr=False)
    _visited: set[str] = field(default_factory=set, repr=False)
    _at: str | None = None  # the detour place the agent stands at, not yet searched
    _failed: bool = False  # the last detour found nothing

    def __post_init__(self) -> None:
        self.plan = list(self.plan)
        self._rng = random.Random(self.seed)
        self._avoid = _places(self.plan)

    def reply(self, observation: str, admissible: Sequence[str]) -> str:
        action, thought = self._next(admissible)
        return expert_reply(action, self.plan[self._pos :], thought)

    def _next(self, admissible: Sequence[str]) -> tuple[str, str | None]:
        if self._at is not None:
            found = self._search_here(self._at, admissible)
            if found is not None:
                return found
        if self._pos >= len(self.plan):
            return "look", None
        action = self.plan[self._pos]
        sought = search_target(self.plan[self._pos + 1 :]) if action.startswith("go to ") else None
        if sought is not None:
            place = action.removeprefix("go to ")
            budget = self._budget.setdefault(self._pos, self._rng.randint(0, self.max_detours))
            options = sorted(
                a.removeprefix("go to ")
                for a in admissible
                if a.startswith("go to ")
                and a.removeprefix("go to ") not in self._avoid | self._visited | {place}
            )
            if budget > 0 and options:
                self._budget[self._pos] = budget - 1
                detour = self._rng.choice(options)
                self._visited.add(detour)
                self._at = detour
                thought = search_thought(sought[1], detour, self._failed)
                return f"go to {detour}", thought
            thought = search_thought(sought[1], place, self._failed)
            self._failed = False
            self._pos += 1
            return action, thought
        self._pos += 1
        return action, None

    def _search_here(self, place: str, admissible: Sequence[str]) -> tuple[str, str | None] | None:
        """At a detour place: open it when closed, take/use what the walkthrough looks for when it
        is here (the rest of the plan then uses that instance), else move on (None)."""
        if f"open {place}" in admissible:
            return f"open {place}", None
        self._at = None
        sought = search_target(self.plan[self._pos + 1 :])
        if sought is None:
            return None
        verb, kind = sought
        segment_end = self._pos + 1
        while segment_end < len(self.plan) and self.plan[segment_end].startswith("open "):
            segment_end += 1
        original = self.plan[segment_end]
        later = " ".join(self.plan[segment_end + 1 :])
        for a in sorted(admissible):
            m = _TAKE.match(a) if verb == "take" else _USE.match(a)
            if not m or _kind(m.group("o")) != kind or (verb == "take" and m.group("r") != place):
                continue
            mine, theirs = m.group("o"), (_TAKE.match(original) or _USE.match(original)).group("o")
            if mine != theirs and re.search(rf"\b{re.escape(mine)}\b", later):
                continue  # that one is the walkthrough's next object (two-object tasks)
            rest = [re.sub(rf"\b{re.escape(theirs)}\b", mine, x) for x in self.plan[segment_end + 1 :]]
            for opened in self.plan[self._pos + 1 : segment_end]:  # skipped opens: at the next visit
                visit = f"go to {opened.removeprefix('open ')}"
                if visit in rest:
                    rest.insert(rest.index(visit) + 1, opened)
            self.plan = self.plan[: self._pos] + [a] + rest
            self._pos += 1
            self._failed = False
            return a, None
        self._failed = True
        return None


MISTAKES_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "pick_and_place_simple": (),
    "pick_two_obj_and_place": ("stopped_after_one",),
    "look_at_obj_in_light": ("lamp_empty_handed",),
    "pick_clean_then_place_in_recep": ("place_before_transform",),
    "pick_heat_then_place_in_recep": ("place_before_transform",),
    "pick_cool_then_place_in_recep": ("place_before_transform",),
}
"""Family-specific mistakes :class:`MistakeExpert` can make, besides :data:`COMMON_MISTAKES`."""
COMMON_MISTAKES = ("take_absent", "revisit", "closed_unopened", "missed_visible", "repeated_invalid")
FATAL_MISTAKES = ("place_before_transform", "stopped_after_one")
"""Mistakes after which the expert stops: the episode fails."""
_CLOSED_KINDS = ("drawer", "cabinet", "fridge", "microwave", "safe")


def mistakes_for(family: str) -> tuple[str, ...]:
    """The mistakes :class:`MistakeExpert` can make in a game of ``family``."""
    return COMMON_MISTAKES + MISTAKES_BY_FAMILY.get(family, ())


@dataclass
class MistakeExpert:
    """The walkthrough ``plan`` (no detours) played with one scripted ``mistake`` (module text).

    :meth:`reply` returns the next reply, or None when the expert stops (after a fatal mistake, or
    when ``give_up`` and it has searched ``wander`` more places after the mistake). The injected
    actions are chosen from the admissible ones at the time (a place the plan does not use), so
    the mistake is real in the engine; when it cannot be made (no such place) the episode simply
    has none. Deterministic for a given ``seed`` and sequence of observations.
    """

    plan: list[str]
    mistake: str
    give_up: bool = False
    seed: int = 0
    wander: int = 2

    def __post_init__(self) -> None:
        if self.mistake not in COMMON_MISTAKES + FATAL_MISTAKES + ("lamp_empty_handed",):
            raise ValueError(f"unknown mistake {self.mistake!r}")
        self._base = SearchingExpert(list(self.plan), 0, self.seed)
        self._rng = random.Random(self.seed)
        self._avoid = _places(self.plan)
        self._queue: list = []
        self._fired = False
        self._stop = False
        self._wandering: int | None = None
        self._visited: set[str] = set()
        self._detours: list[str] = []
        self._last = ""

    # ------------------------------------------------------------------ helpers
    def _target(self) -> str:
        """The kind of object the plan takes first."""
        takes = [_TAKE.match(a) for a in self.plan]
        return next((_kind(m.group("o")) for m in takes if m), "object")

    def _pick_place(self, admissible: Sequence[str], prefer_closed: bool = False) -> str | None:
        options = sorted(
            a.removeprefix("go to ")
            for a in admissible
            if a.startswith("go to ") and a.removeprefix("go to ") not in self._avoid | self._visited
        )
        if prefer_closed:
            closed = [o for o in options if _kind(o) in _CLOSED_KINDS]
            options = closed or options
        return self._rng.choice(options) if options else None

    def _go_somewhere(self, prefer_closed: bool = False):
        def step(admissible: Sequence[str]) -> str | None:
            place = self._pick_place(admissible, prefer_closed)
            if place is not None:
                self._detours.append(place)
            return None if place is None else f"go to {place}"

        return step

    def _go_back(self, index: int):
        return lambda admissible: f"go to {self._detours[index]}" if len(self._detours) > index else None

    @staticmethod
    def _open_if_closed(admissible: Sequence[str]) -> str | None:
        opens = [a for a in admissible if a.startswith("open ")]
        return opens[0] if len(opens) == 1 else None

    def _absent_take(self, admissible: Sequence[str]) -> str | None:
        kind = self._target()
        if not self._detours or any(
            (m := _TAKE.match(a)) and _kind(m.group("o")) == kind for a in admissible
        ):
            return None  # the object is here after all: no absent take
        return f"take {kind} 1 from {self._detours[-1]}"

    # ------------------------------------------------------------------ triggers
    def _trigger(self, admissible: Sequence[str]) -> list | None:
        """The injected actions when the plan reaches this mistake's moment, else None."""
        pos, plan = self._base._pos, self._base.plan
        nxt = plan[pos] if pos < len(plan) else ""
        searching = nxt.startswith("go to ") and search_target(plan[pos + 1 :]) is not None
        m = self.mistake
        if m == "take_absent" and searching:
            return [self._go_somewhere(), self._absent_take]
        if m == "revisit" and searching:
            return [
                self._go_somewhere(),
                self._open_if_closed,
                self._go_somewhere(),
                self._open_if_closed,
                self._go_back(0),
            ]
        if m == "closed_unopened" and searching:
            return [self._go_somewhere(prefer_closed=True)]
        if m == "repeated_invalid" and searching:
            kind = self._target()
            phrase = self._rng.choice([f"pick up the {kind}", f"search for the {kind}", f"find a {kind}"])
            return [phrase, phrase]
        if m == "missed_visible" and _TAKE.match(nxt):
            here = _TAKE.match(nxt).group("r")
            return [self._go_somewhere(), f"go to {here}"]
        if m == "place_before_transform" and nxt.startswith("go to "):
            following = [a for a in plan[pos + 1 :] if not a.startswith("open ")]
            if following and following[0].split(" ", 1)[0] in ("clean", "heat", "cool"):
                last_go = max(i for i, a in enumerate(plan) if a.startswith("go to "))
                self._stop = True
                return list(plan[last_go:])
        if m == "lamp_empty_handed" and pos == 0:
            uses = [i for i, a in enumerate(plan) if a.startswith("use ")]
            gos = [i for i in range(uses[0]) if plan[i].startswith("go to ")] if uses else []
            if gos:
                return [plan[gos[-1]], plan[uses[0]]]
        if m == "stopped_after_one" and self._last.startswith("move "):
            self._stop = True
            return []
        return None

    # ------------------------------------------------------------------ the reply
    def reply(self, observation: str, admissible: Sequence[str]) -> str | None:
        action = self._next(admissible)
        if action is None:
            return None
        self._last = action
        if action.startswith("go to "):
            self._visited.add(action.removeprefix("go to "))
        return expert_reply(action, (), None)

    def _next(self, admissible: Sequence[str]) -> str | None:
        while self._queue:
            item = self._queue.pop(0)
            action = item(admissible) if callable(item) else item
            if action is not None:
                return action
        if self._stop and self._fired:
            return None
        if self._fired and self.give_up and self._wandering is None:
            self._wandering = self.wander
        if self._wandering is not None:
            if self._wandering == 0:
                return None
            self._wandering -= 1
            place = self._pick_place(admissible)
            return None if place is None else f"go to {place}"
        if not self._fired:
            injected = self._trigger(admissible)
            if injected is not None:
                self._fired = True
                self._queue = list(injected)
                return self._next(admissible)
        if self._base._pos >= len(self._base.plan):
            return None
        return _ACTION.search(self._base.reply("", admissible)).group(1)


_ACTION = re.compile(r"<action>(.*)</action>", re.DOTALL)
