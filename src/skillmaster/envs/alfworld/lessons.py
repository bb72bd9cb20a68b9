"""ALFWorld's household lessons: what each finding of :mod:`.evidence` teaches, and how the
evidence is worded in a review target (METHOD.md §5, §8). The generic machinery that turns a
lesson into a propose / update / keep target is :mod:`skillmaster.skills.lessons`."""

from __future__ import annotations

import functools
import random

from skillmaster.envs.alfworld.evidence import TACTICS
from skillmaster.envs.knowledge import Finding, Lesson, LessonBook

_TRANSFORM = {
    "clean": ("clean", "Clean", "sinkbasin", "cleaned"),
    "heat": ("heat", "Heat", "microwave", "heated"),
    "cool": ("cool", "Cool", "fridge", "cooled"),
}
_TAKE_SUBGOAL = r"\b(take|taking|pick|grab|acqui)"
_SEARCH_SUBGOAL = r"search|explor|hunt|sweep|look for|\bfind|visit|unseen|places"
_PLACE_SUBGOAL = r"plac|\bput\b|destination|deliver"


def fill(template: str, verb: str = "") -> str:
    """``template`` with ``{verb}``, ``{Verb}`` and ``{appliance}`` filled for the transformation
    of a Clean/Heat/Cool task (empty for any other ``verb``)."""
    v, big, appliance, _ = _TRANSFORM.get(verb, ("", "", "", ""))
    return template.replace("{verb}", v).replace("{Verb}", big).replace("{appliance}", appliance)


_lesson = functools.partial(Lesson, fill=fill)

LESSONS: dict[str, Lesson] = {
    lesson.key: lesson
    for lesson in (
        _lesson(
            "take_listed",
            "general",
            ("Take only what is listed", "Check the object is there before taking it"),
            (
                "Take an object only when the observation at your current place lists it; otherwise search another place.",
                "Before a take action, make sure the current observation lists the object; if it is not there, keep searching.",
            ),
            "Before any take action.",
            "Take an object only when the current observation lists it.",
            "take an object only when the observation lists it",
            r"(only|make sure|check)[^.]{0,60}(lists?|listed|visible|there)\b|not there",
            _TAKE_SUBGOAL,
            (
                "Pick up the target",
                "Pick up the target object and carry it where the task says.",
                "When the task names an object.",
            ),
        ),
        _lesson(
            "search_new_places",
            "general",
            ("Search each place once", "Go to places not searched yet"),
            (
                "Keep track of the places already searched and go to a new one until the object is found.",
                "While the object is missing, visit a place you have not searched yet instead of returning to one already checked.",
            ),
            "While the target object has not been found.",
            "Go to a place not searched yet instead of returning to one already checked.",
            "go to places not searched yet",
            r"not (yet )?(been )?(visited|searched|checked|looked)|unvisited|unseen|unexplored|already "
            r"(searched|checked|visited|inspected)|revisit|back and forth|same (two )?places?|exactly once|new (one|place)",
            _SEARCH_SUBGOAL,
            (
                "Look for the object",
                "Go from place to place until you see the object.",
                "While the target object has not been found.",
            ),
        ),
        _lesson(
            "open_closed",
            "general",
            ("Open closed receptacles", "Look inside closed places"),
            (
                "When a place you search is closed, open it and look inside before moving on.",
                "A closed drawer, cabinet or fridge may hold the object: open it and check before leaving.",
            ),
            "Arriving at a closed receptacle while searching.",
            "Open a closed receptacle and look inside before leaving it.",
            "open closed receptacles while searching",
            r"\bopen\b[^.]{0,60}(closed|inside|in it|contents|check|look)|closed[^.]{0,60}\bopen\b",
            _SEARCH_SUBGOAL,
            (
                "Check likely places",
                "Check the places where the object is likely to be.",
                "While the target object has not been found.",
            ),
        ),
        _lesson(
            "take_when_seen",
            "general",
            ("Take the object when you see it", "Do not walk past the object"),
            (
                "When the observation lists the object you need, take it before going anywhere else.",
                "As soon as the object the task needs is listed where you are, pick it up instead of moving on.",
            ),
            "Arriving at a place that holds the object the task needs.",
            "When the observation lists the object you need, take it before leaving.",
            "take the object as soon as it is listed",
            r"(as soon as|immediately|first sight|when (the|it|you)[^.]{0,30}(see|listed|lists|visible))"
            r"|(do not|don't|never) (leave|walk)",
            _TAKE_SUBGOAL,
            (
                "Pick up the target",
                "Pick up the target object and carry it where the task says.",
                "When the task names an object.",
            ),
        ),
        _lesson(
            "transform_first",
            "task",
            ("{Verb} before placing", "{Verb} the object first"),
            (
                "{Verb} the object with the {appliance} before you move it to the destination; placing it first does not finish the task.",
                "Take the object to the {appliance} and {verb} it there, and only then put it at the destination.",
            ),
            "Tasks that ask for a {verb}ed object.",
            "{Verb} it before moving it to the destination.",
            "{verb} the object before placing it",
            r"before (plac|mov|putting|any placement|the final|heading)|only then|until[^.]{0,40}{verb}",
            r"{verb}|{appliance}",
            (
                "{Verb} with the {appliance}",
                "Go to the {appliance} and {verb} the object there.",
                "Tasks that ask for a {verb}ed object.",
            ),
        ),
        _lesson(
            "lamp_in_hand",
            "task",
            ("Hold the object under the lamp", "Take the object before the lamp"),
            (
                "Take the object first and turn on the lamp while holding it; using the lamp empty-handed does not finish the task.",
                "Pick up the object, carry it to a lamp and use the lamp while you hold it.",
            ),
            "Tasks that ask to look at an object under a lamp.",
            "Use the lamp only while holding the object.",
            "hold the object when using the lamp",
            r"(while|when|after)[^.]{0,30}(holding|hold|in hand|taken)|empty.handed|carry[^.]{0,30}(lamp|light)"
            r"|(take|pick)[^.]{0,40}(first|before)[^.]{0,40}(lamp|use)",
            r"lamp|light",
            (
                "Turn on the lamp",
                "Go to the desklamp and turn it on with 'use'.",
                "Tasks that ask to look at an object under a lamp.",
            ),
        ),
        _lesson(
            "two_objects",
            "task",
            ("Place two objects one at a time", "Count the objects placed"),
            (
                "After placing the first object, search for a second one of the same type and place it too.",
                "When the task asks for two objects, keep searching after the first is placed until both are there.",
            ),
            "Tasks that ask to put two objects somewhere.",
            "When the task asks for two objects, place a second one after the first.",
            "place a second object after the first",
            r"\b(two (objects|of)|second (one|object)|both objects|counts?|tally|multiple|how many)\b",
            _PLACE_SUBGOAL,
            (
                "Place at the destination",
                "Carry the object to the destination and move it there.",
                "Put or place tasks.",
            ),
        ),
        _lesson(
            "no_repeat",
            "general",
            ("Do not repeat a failed action", "Change an action that had no effect"),
            (
                "If an action gets 'Nothing happens.', do not send it again; choose another admissible action.",
                "An action that had no effect will not work the second time: pick another one from the admissible list.",
            ),
            "After an action that had no effect.",
            "Do not send an action again after it had no effect.",
            "avoid repeating an action that had no effect",
            r"(do not|don't|never|not)[^.]{0,20}(repeat|again|retry)|nothing happens|no effect|rejected"
            r"|action loops?|repeated identical",
            r"admissib|\bactions?\b|copy",
            (
                "Copy actions exactly",
                "Copy one action exactly as written in the admissible actions.",
                "Every step.",
            ),
        ),
        _lesson(
            "find_take_place",
            "task",
            ("Find, take, then place", "Carry the object to the destination"),
            (
                "Search until the object is listed, take it, go to the destination and move it there.",
                "Take the object where you find it, then go to the receptacle the task names and move it there.",
            ),
            "Tasks that ask to put an object in or on a receptacle.",
            "Take the object first, then go to the destination and move it there.",
            "take the object and then place it at the destination",
            r"(tak\w*|pick)[^.]{0,60}(then|and)[^.]{0,20}(go|carry|navigate|move)|after taking",
            _PLACE_SUBGOAL,
            (
                "Place at the destination",
                "Carry the object to the destination and move it there.",
                "Put or place tasks.",
            ),
        ),
    )
}
"""Every lesson the cold start teaches, by key."""

_PROCEDURE = {
    "pick_and_place_simple": "find_take_place",
    "pick_two_obj_and_place": "two_objects",
    "look_at_obj_in_light": "lamp_in_hand",
    "pick_clean_then_place_in_recep": "transform_first",
    "pick_heat_then_place_in_recep": "transform_first",
    "pick_cool_then_place_in_recep": "transform_first",
}
LESSON_OF_FINDING = {
    "take_absent": "take_listed",
    "revisit": "search_new_places",
    "closed_unopened": "open_closed",
    "missed_visible": "take_when_seen",
    "place_before_transform": "transform_first",
    "lamp_empty_handed": "lamp_in_hand",
    "stopped_after_one": "two_objects",
    "repeated_invalid": "no_repeat",
    "searched_then_found": "search_new_places",
    "opened_and_found": "open_closed",
}
"""Finding kind → the lesson it teaches (``procedure`` depends on the family: :func:`lesson_for`)."""


def lesson_for(finding: Finding, family: str) -> Lesson:
    key = _PROCEDURE[family] if finding.kind == "procedure" else LESSON_OF_FINDING[finding.kind]
    return LESSONS[key]


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(n, f"{n}th")


def evidence_sentence(finding: Finding, family: str, rng: random.Random) -> str:
    """One sentence of what the episode shows (kinds only, never ids; step numbers 1-based as the
    review prompt shows them)."""
    d = {"object": "object", "place": "place", **finding.details}
    n = (finding.step or 0) + 1
    verb = d.get("verb", "")
    past = _TRANSFORM.get(verb, ("", "", "", "changed"))[3]
    options = {
        "take_absent": [
            f"At step {n} the agent tried to take a {d['object']} that the {d['place']} did not hold, and nothing happened.",
            f"Step {n} tried to take a {d['object']} from a {d['place']} whose observation did not list one.",
        ],
        "revisit": [
            f"At step {n} the agent went back to a {d['place']} it had already searched and left without doing anything.",
            f"Step {n} returned to an already searched {d['place']} for nothing.",
        ],
        "closed_unopened": [
            f"At step {n} the agent left a closed {d['place']} without opening it.",
            f"Step {n} walked away from a closed {d['place']} without looking inside.",
        ],
        "missed_visible": [
            f"At step {n} the agent left a {d['place']} that held a {d['object']} without taking it.",
            f"Step {n} walked past a {d['object']} that the {d['place']} showed.",
        ],
        "place_before_transform": [
            f"At step {n} the agent put the {d['object']} at the {d['place']} before it was {past}.",
            f"Step {n} placed the {d['object']} without having {past} it first.",
        ],
        "lamp_empty_handed": [
            f"At step {n} the agent turned on the {d['object']} while holding nothing.",
            f"Step {n} used the {d['object']} before taking the object.",
        ],
        "stopped_after_one": [
            f"Only one {d['object']} was placed; the episode ended before a second one was found.",
            f"The agent placed one {d['object']} and stopped without looking for the second.",
        ],
        "repeated_invalid": [
            f"At step {n} the agent sent the same action again after it had no effect.",
            f"Step {n} repeated an action that had already failed.",
        ],
        "searched_then_found": [
            f"The agent found the {d['object']} at the {_ordinal(int(d.get('count', 2)))} place it visited, trying one new place at a time.",
            f"The {d['object']} turned up after several places were checked once each.",
        ],
        "opened_and_found": [
            f"The {d['object']} was inside a closed {d['place']} that the agent opened.",
            f"Opening a closed {d['place']} revealed the {d['object']}.",
        ],
    }
    if finding.kind == "procedure":
        key = _PROCEDURE[family]
        obj = d["object"]
        options["procedure"] = {
            "find_take_place": [
                f"The agent found the {obj}, took it and moved it to the destination.",
                f"Taking the {obj} first and then carrying it to the destination solved the task.",
            ],
            "two_objects": [
                f"The agent placed one {obj}, then searched for a second one and placed it too.",
                f"Both {obj}s were placed one after the other.",
            ],
            "lamp_in_hand": [
                f"The agent took the {obj} first and turned on the lamp while holding it.",
                f"Holding the {obj} while using the lamp solved the task.",
            ],
            "transform_first": [
                f"The agent {past} the {obj} before moving it to the destination.",
                f"The {obj} was {past} first and only then placed.",
            ],
        }[key]
    return rng.choice(options[finding.kind])


BOOK = LessonBook(
    lesson_for=lesson_for,
    evidence_sentence=evidence_sentence,
    tactics=frozenset(TACTICS),
)
"""ALFWorld's lessons, as :func:`skillmaster.skills.lessons.review_example` reads them."""
