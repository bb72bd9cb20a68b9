"""Expert replies for the cold start (METHOD.md §8): walkthrough actions in the agent's format.

The ``<think>`` text is generated from the step itself (the action's verb and arguments and what
the walkthrough does next), never copied from anywhere. Review-turn examples teach the tool-call
format: a skill proposal when the shown bank has nothing for the task's category, else a keep.
Pure functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

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
        nxt = upcoming[0] if upcoming else ""
        take = re.match(rf"^take (?P<o>.+) from {re.escape(place)}$", nxt)
        if take:
            return f"The {take.group('o')} should be at the {place}, so I go there."
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


def expert_reply(action: str, upcoming: Sequence[str] = ()) -> str:
    """``<think>…</think><action>…</action>`` for one walkthrough step."""
    return f"<think>{expert_thought(action, upcoming)}</think><action>{action}</action>"


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
