"""ALFWorld's mistake and tactic detectors (envs.alfworld.evidence) on hand-built episodes and on real games.

Hand-built episodes pin each detector's rule (which step, what counts). Then every detector runs on
scripted episodes of real ALFWorld training games, one game per family: the cold start's
``MistakeExpert`` plays the walkthrough with one scripted mistake through the real engine, and the
detector must find that mistake at the step that shows it; the plain walkthrough of every game
must show no mistake at all and its family's procedure.
"""

from __future__ import annotations

import pytest

from skillmaster.agent.parsing import parse_action
from skillmaster.envs.alfworld import AlfworldSuite
from skillmaster.envs.alfworld.evidence import DETECTORS, MISTAKES, find_mistakes, find_tactics, target_of
from skillmaster.envs.alfworld.expert import MistakeExpert, mistakes_for
from skillmaster.envs.knowledge import Episode, Step
from skillmaster.stages.common import stratified_tasks

ROOM = "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 1, a drawer 1."


def ep(family: str, steps: list[tuple[str, bool, str]], won: bool = False, target: str = "apple") -> Episode:
    return Episode(family, won, ROOM, tuple(Step(a, v, o) for a, v, o in steps), target)


ARRIVE_APPLE = "You arrive at countertop 1. On the countertop 1, you see a apple 1, and a knife 1."
ARRIVE_EMPTY = "You arrive at cabinet 1. On the cabinet 1, you see nothing."
NOTHING = "Nothing happens."


# --------------------------------------------------------------------------- hand-built
def test_take_absent_and_repeated_invalid():
    e = ep(
        "pick_and_place_simple",
        [
            ("go to cabinet 1", True, ARRIVE_EMPTY),
            ("take apple 1 from cabinet 1", False, NOTHING),
            ("pick up the apple", False, NOTHING),
            ("pick up the apple", False, NOTHING),
        ],
    )
    assert [(f.kind, f.step, f.details) for f in DETECTORS["take_absent"](e)] == [
        ("take_absent", 1, {"object": "apple", "place": "cabinet"})
    ]
    assert [(f.kind, f.step) for f in DETECTORS["repeated_invalid"](e)] == [("repeated_invalid", 3)]


def test_revisit_counts_only_a_wasted_return():
    e = ep(
        "pick_and_place_simple",
        [
            ("go to cabinet 1", True, ARRIVE_EMPTY),
            ("go to countertop 1", True, ARRIVE_APPLE),
            ("take apple 1 from countertop 1", True, "You pick up the apple 1 from the countertop 1."),
            ("go to cabinet 1", True, ARRIVE_EMPTY),  # back, and then the move: not wasted
            ("move apple 1 to cabinet 1", True, "You move the apple 1 to the cabinet 1."),
            ("go to countertop 1", True, ARRIVE_EMPTY),  # back, and on without acting: wasted
            ("go to drawer 1", True, "You arrive at drawer 1. The drawer 1 is closed."),
        ],
    )
    assert [(f.step, f.details) for f in DETECTORS["revisit"](e)] == [(5, {"place": "countertop"})]
    # leaving the closed drawer is the last step: no step after it leaves, so no finding
    assert DETECTORS["closed_unopened"](e) == []


def test_closed_unopened_is_the_step_that_walks_away():
    closed = "You arrive at drawer 1. The drawer 1 is closed."
    e = ep(
        "pick_and_place_simple",
        [("go to drawer 1", True, closed), ("go to cabinet 1", True, ARRIVE_EMPTY)],
    )
    assert [(f.step, f.details) for f in DETECTORS["closed_unopened"](e)] == [(1, {"place": "drawer"})]
    opened = ep(
        "pick_and_place_simple",
        [
            ("go to drawer 1", True, closed),
            ("open drawer 1", True, "You open the drawer 1. The drawer 1 is open. In it, you see nothing."),
            ("go to cabinet 1", True, ARRIVE_EMPTY),
        ],
    )
    assert DETECTORS["closed_unopened"](opened) == []


def test_missed_visible_ignores_what_the_agent_put_down_itself():
    e = ep(
        "pick_two_obj_and_place",
        [
            ("go to countertop 1", True, ARRIVE_APPLE),
            ("go to cabinet 1", True, ARRIVE_EMPTY),  # walks past apple 1: missed
            ("go to countertop 1", True, ARRIVE_APPLE),
            ("take apple 1 from countertop 1", True, "You pick up the apple 1 from the countertop 1."),
            ("go to cabinet 1", True, ARRIVE_EMPTY),
            ("move apple 1 to cabinet 1", True, "You move the apple 1 to the cabinet 1."),
            ("go to drawer 1", True, "You arrive at drawer 1. On the drawer 1, you see nothing."),
        ],
        target="apple",
    )
    # step 6 leaves the cabinet holding apple 1, the one the agent placed: not a miss
    assert [(f.step, f.details) for f in DETECTORS["missed_visible"](e)] == [
        (1, {"object": "apple", "place": "countertop"})
    ]
    # Pick2 ended after one placement without a second take
    assert [(f.kind, f.step) for f in DETECTORS["stopped_after_one"](e)] == [("stopped_after_one", None)]


def test_place_before_transform_and_lamp_empty_handed():
    e = ep(
        "pick_heat_then_place_in_recep",
        [
            ("go to countertop 1", True, ARRIVE_APPLE),
            ("take apple 1 from countertop 1", True, "You pick up the apple 1 from the countertop 1."),
            ("go to cabinet 1", True, ARRIVE_EMPTY),
            ("move apple 1 to cabinet 1", True, "You move the apple 1 to the cabinet 1."),
        ],
    )
    assert [(f.step, f.details) for f in DETECTORS["place_before_transform"](e)] == [
        (3, {"object": "apple", "place": "cabinet", "verb": "heat"})
    ]
    heated_first = ep(
        "pick_heat_then_place_in_recep",
        [
            ("take apple 1 from countertop 1", True, "You pick up the apple 1."),
            ("heat apple 1 with microwave 1", True, "You heat the apple 1 using the microwave 1."),
            ("move apple 1 to cabinet 1", True, "You move the apple 1 to the cabinet 1."),
        ],
    )
    assert DETECTORS["place_before_transform"](heated_first) == []
    lamp = ep(
        "look_at_obj_in_light",
        [("go to desk 1", True, "On the desk 1, you see a desklamp 1."), ("use desklamp 1", True, "You turn on the desklamp 1.")],
    )  # fmt: skip
    assert [(f.step, f.details) for f in DETECTORS["lamp_empty_handed"](lamp)] == [
        (1, {"object": "desklamp"})
    ]


def test_tactics_of_a_clean_search():
    e = ep(
        "pick_and_place_simple",
        [
            ("go to cabinet 1", True, ARRIVE_EMPTY),
            ("go to drawer 1", True, "You arrive at drawer 1. The drawer 1 is closed."),
            ("open drawer 1", True, "You open the drawer 1. The drawer 1 is open. In it, you see a apple 2."),
            ("take apple 2 from drawer 1", True, "You pick up the apple 2 from the drawer 1."),
            ("go to countertop 1", True, ARRIVE_EMPTY),
            ("move apple 2 to countertop 1", True, "You move the apple 2 to the countertop 1."),
        ],
        won=True,
    )
    assert find_mistakes(e) == []
    assert [(f.kind, f.step, f.details) for f in find_tactics(e)] == [
        ("searched_then_found", 3, {"object": "apple", "count": "2"}),
        ("opened_and_found", 3, {"object": "apple", "place": "drawer"}),
        ("procedure", None, {"object": "apple"}),
    ]


def test_target_of_a_walkthrough():
    assert target_of(["go to shelf 1", "take key chain 2 from shelf 1"]) == "key chain"
    assert target_of(["go to shelf 1"]) is None


# --------------------------------------------------------------------------- real games
@pytest.fixture(scope="module")
def games(alfworld_data):
    suite = AlfworldSuite(data_dir=str(alfworld_data), max_steps=60)
    tasks = stratified_tasks(suite.tasks("train"), 6, 0)  # one game per family
    assert len({t.family for t in tasks}) == 6
    return suite, tasks


def play(suite: AlfworldSuite, env, task, reply) -> Episode:
    """Play ``reply(observation, admissible) -> str | None`` on the real engine until it stops or wins."""
    obs, info = env.reset(options={"task_id": task.task_id, "split": task.split})
    first, steps = obs, []
    for _ in range(40):
        text = reply(obs, info["admissible_actions"])
        if text is None:
            break
        parsed = parse_action(text, info["admissible_actions"])
        obs, _, _, _, info = env.step(parsed.action)
        steps.append(Step(parsed.action, parsed.valid, obs))
        if info["won"]:
            break
    return Episode(
        task.family, info["won"], first, tuple(steps), target_of(suite.walkthrough(task.task_id, task.split))
    )


def shows(mistake: str, e: Episode, step: int) -> bool:
    """Whether ``e``'s actions around ``step`` are that mistake (read from the actions, not the detector)."""
    actions = [s.action for s in e.steps]
    a = actions[step] if step is not None else ""
    before = e.steps[step - 1].observation if step else ""
    checks = {
        "take_absent": lambda: a.startswith("take ") and not e.steps[step].valid,
        "revisit": lambda: a.startswith("go to ") and a in actions[:step],
        "closed_unopened": lambda: a.startswith("go to ") and "is closed" in before,
        "missed_visible": lambda: (
            a.startswith("go to ") and e.target in " ".join(s.observation for s in e.steps[:step])
        ),
        "place_before_transform": lambda: a.startswith("move "),
        "lamp_empty_handed": lambda: a.startswith("use "),
        "stopped_after_one": lambda: sum(x.startswith("move ") for x in actions) == 1 and not e.won,
        "repeated_invalid": lambda: not e.steps[step].valid and a in actions[:step],
    }
    return checks[mistake]()


def test_each_detector_finds_its_scripted_mistake_on_real_games(games):
    suite, tasks = games
    env = suite.make_env()
    detected: set[str] = set()
    for task in tasks:
        walkthrough = suite.walkthrough(task.task_id, task.split)
        for mistake in mistakes_for(task.family):
            for give_up in (False, True):
                expert = MistakeExpert(walkthrough, mistake, give_up=give_up, seed=1)
                e = play(suite, env, task, expert.reply)
                found = [f for f in find_mistakes(e) if f.kind == mistake]
                for f in found:
                    assert shows(mistake, e, f.step), (task.family, mistake, f, [s.action for s in e.steps])
                if found:
                    detected.add(mistake)
                if mistake in ("place_before_transform", "stopped_after_one") or give_up:
                    assert not e.won, (task.family, mistake)  # the expert stopped: a failure
    assert detected == set(MISTAKES)  # every detector fired on at least one real game


def test_plain_walkthroughs_show_no_mistake_and_their_procedure(games):
    suite, tasks = games
    env = suite.make_env()
    for task in tasks:
        walkthrough = suite.walkthrough(task.task_id, task.split)
        actions = iter(walkthrough)

        def reply(obs, admissible, actions=actions):
            a = next(actions, None)
            return None if a is None else f"<think>go</think><action>{a}</action>"

        e = play(suite, env, task, reply)
        assert e.won, task.task_id
        assert find_mistakes(e) == [], (task.family, find_mistakes(e))
        assert "procedure" in [f.kind for f in find_tactics(e)]
