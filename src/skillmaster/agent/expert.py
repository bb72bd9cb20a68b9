"""Expert replies for the cold start (METHOD.md §8): walkthrough actions in the agent's format.

The ``<think>`` text is generated from the step itself (the action's verb and arguments and what
the walkthrough does next), never copied from anywhere. Review-turn examples teach the tool-call
format: a skill proposal when the shown bank has nothing for the task's category, else a keep.

A walkthrough goes straight to where the object lies, which the agent cannot know; imitating it
alone teaches a policy to guess one place and then to "take" an object that is not there.
:class:`SearchingExpert` replays the walkthrough with *search detours*: before each place the
walkthrough visits to find something (an object to take, a lamp to use) it first checks up to
``max_detours`` other places, chosen at random from the admissible ``go to`` actions (opening
closed ones), and takes what it looks for when a detour finds it. The think text of a detour is
the same as that of the walkthrough's own visit, so the policy learns "not here: try elsewhere".
"""

from __future__ import annotations

import json
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


FAMILY_LESSONS: dict[str, tuple[str, str, str]] = {
    "pick_and_place_simple": (
        "Find, take, then place",
        "Search receptacles until the target object is visible, take it, go to the destination and move it there.",
        "Tasks that ask to put an object in or on a receptacle.",
    ),
    "pick_two_obj_and_place": (
        "Place two objects one at a time",
        "Place the first object, then search again for a second object of the same type and place it too.",
        "Tasks that ask to put two objects somewhere.",
    ),
    "look_at_obj_in_light": (
        "Hold the object under a lamp",
        "Take the object first, then go to a lamp and turn it on while holding the object.",
        "Tasks that ask to look at or examine an object under a lamp.",
    ),
    "pick_clean_then_place_in_recep": (
        "Clean before placing",
        "Take the object to the sinkbasin and clean it there before moving it to the destination.",
        "Tasks that ask for a clean object.",
    ),
    "pick_heat_then_place_in_recep": (
        "Heat before placing",
        "Take the object to the microwave and heat it there before moving it to the destination.",
        "Tasks that ask for a hot object.",
    ),
    "pick_cool_then_place_in_recep": (
        "Cool before placing",
        "Take the object to the fridge and cool it there before moving it to the destination.",
        "Tasks that ask for a cool object.",
    ),
}


def expert_review(family: str, category: str, category_has_skills: bool) -> str:
    """A well-formed review reply: propose the family's lesson when the category has no skill yet,
    otherwise keep (the shown skills already cover a successful expert episode)."""
    lesson = FAMILY_LESSONS.get(family)
    if lesson is None or category_has_skills:
        think = "The episode succeeded and the shown skills already describe what worked."
        call = {"name": "keep_skill", "arguments": {"reason": "The shown skills already cover this pattern."}}
    else:
        title, principle, when = lesson
        think = "The episode succeeded with a procedure that no shown skill describes."
        call = {
            "name": "propose_skill",
            "arguments": {
                "category": category,
                "title": title,
                "principle": principle,
                "when_to_apply": when,
                "evidence": "The successful episode followed exactly this order.",
            },
        }
    return f"<think>{think}</think><tool_call>{json.dumps(call)}</tool_call>"
