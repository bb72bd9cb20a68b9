"""Walkthrough milestones (ALFWorld's) and the progress score / dense reward built on them, computed by hand.

Not in the paper (METHOD.md §6 scores wins only): ``counterfactual.score: progress`` and
``train.progress_reward``. The walkthroughs below are real ones (ALFWorld train games) copied in.
"""

from __future__ import annotations

import polars as pl
import pytest

from skillmaster.envs.alfworld.milestones import Milestone, milestone_hits, milestone_of, milestones, progress
from skillmaster.envs.alfworld.profile import PROFILE
from skillmaster.rollout.progress import episode_progress, progress_score, progress_to_go

CLEAN = [  # pick_clean_then_place_in_recep-Lettuce-None-Fridge-13
    "go to garbagecan 1",
    "take lettuce 3 from garbagecan 1",
    "go to sinkbasin 1",
    "clean lettuce 3 with sinkbasin 1",
    "go to fridge 1",
    "open fridge 1",
    "move lettuce 3 to fridge 1",
]
PICK = [  # pick_and_place_simple-Tomato-None-DiningTable-26: the open is a search open
    "go to fridge 1",
    "open fridge 1",
    "take tomato 2 from fridge 1",
    "go to diningtable 2",
    "move tomato 2 to diningtable 2",
]
PICK2 = [  # pick_two_obj_and_place-CreditCard-None-ArmChair-209
    "go to dresser 1",
    "take creditcard 2 from dresser 1",
    "go to armchair 1",
    "move creditcard 2 to armchair 1",
    "go to sofa 1",
    "take creditcard 1 from sofa 1",
    "go to armchair 1",
    "move creditcard 1 to armchair 1",
]


def test_milestones_drop_instances_go_tos_and_search_opens():
    assert milestones(CLEAN) == (
        Milestone("take", "lettuce"),
        Milestone("clean", "lettuce", "sinkbasin"),
        Milestone("open", "", "fridge"),  # the destination is opened before the move: kept
        Milestone("move", "lettuce", "fridge"),
    )
    assert milestones(PICK) == (Milestone("take", "tomato"), Milestone("move", "tomato", "diningtable"))
    assert milestones(PICK2) == (
        Milestone("take", "creditcard"),
        Milestone("move", "creditcard", "armchair"),
        Milestone("take", "creditcard"),
        Milestone("move", "creditcard", "armchair"),
    )
    assert milestones(
        ["go to shelf 2", "take box 1 from shelf 2", "go to sidetable 1", "use desklamp 1"]
    ) == (
        Milestone("take", "box"),
        Milestone("use", "desklamp"),
    )
    assert milestone_of("go to desk 1") is None and milestone_of("look") is None
    assert milestone_of("take key chain 3 from drawer 2") == Milestone("take", "key chain")


def test_hits_are_in_order_valid_only_and_pass_an_open_already_done():
    goal = milestones(CLEAN)
    steps = [
        ("go to countertop 1", True),
        ("take lettuce 1 from countertop 1", True),  # another lettuce than the walkthrough's: counts
        ("move lettuce 1 to fridge 1", False),  # invalid: nothing reached
        ("clean lettuce 1 with sinkbasin 1", True),
        ("move lettuce 1 to fridge 1", True),  # the fridge was open already: passes the open too
    ]
    assert milestone_hits(goal, steps) == [0, 1, 0, 1, 2]
    assert progress(goal, steps) == 1.0
    # out of order: cleaning before taking reaches nothing until the take
    assert milestone_hits(
        goal, [("clean lettuce 1 with sinkbasin 1", True), ("take lettuce 1 from x 1", True)]
    ) == [
        0,
        1,
    ]
    assert progress(goal, [("take lettuce 2 from garbagecan 1", True)]) == 0.25
    assert progress((), [("look", True)]) == 1.0


def test_progress_score_ranks_any_win_above_any_non_win():
    # a win: METHOD.md §6, s = 1 + (T_max − L)/T_max
    assert progress_score(True, 10, 10, 0.0) == 1.0
    assert progress_score(True, 5, 10, 1.0) == 1.5
    # a non-win: 0.5 × share
    assert progress_score(False, 10, 10, 0.5) == 0.25
    assert progress_score(False, 10, 10, 1.0) == 0.5 < progress_score(True, 10, 10, 0.0)
    assert progress_score(False, 3, 10, 0.0) == 0.0
    with pytest.raises(ValueError, match="share"):
        progress_score(False, 3, 10, 1.5)
    with pytest.raises(ValueError, match="length"):
        progress_score(False, 11, 10, 0.5)
    with pytest.raises(ValueError, match="weight"):
        progress_score(False, 3, 10, 0.5, weight=1.0)


def test_progress_to_go_is_the_share_reached_from_each_step_on():
    assert progress_to_go([0, 1, 0, 1, 2], 4) == [1.0, 1.0, 0.75, 0.75, 0.5]
    assert progress_to_go([0, 0], 4) == [0.0, 0.0]
    assert progress_to_go([1], 0) == [0.0]


def test_episode_progress_reads_the_tables():
    steps = pl.DataFrame(
        {
            "traj_id": ["a", "a", "a", "b"],
            "step": [0, 1, 2, 0],
            "action": ["go to fridge 1", "take tomato 1 from fridge 1", "look", "look"],
            "valid": [True, True, True, True],
        },
        schema_overrides={"step": pl.Int32},
    )
    trajs = pl.DataFrame({"traj_id": ["a", "b"], "task_id": ["t", "t"], "split": ["train", "train"]})
    shares, per_step = episode_progress(steps, trajs, lambda task_id, split: PICK, PROFILE.walkthrough_kit)
    assert shares == {"a": 0.5, "b": 0.0}
    assert per_step.sort("traj_id", "step")["progress_to_go"].to_list() == [0.5, 0.5, 0.0, 0.0]


def test_without_walkthroughs_the_episode_score_is_the_progress():
    """WebShop (no walkthrough kit): the share is the episode's score (callers clip it), and every
    step's value is that score clipped to [0, 1]."""
    steps = pl.DataFrame({"traj_id": ["a", "a", "b"], "step": [0, 1, 0]}, schema_overrides={"step": pl.Int32})
    trajs = pl.DataFrame({"traj_id": ["a", "b"], "score": [0.75, 1.5]})
    shares, per_step = episode_progress(steps, trajs, lambda task_id, split: None, None)
    assert shares == {"a": 0.75, "b": 1.5}
    assert per_step.sort("traj_id", "step")["progress_to_go"].to_list() == [0.75, 0.75, 1.0]
