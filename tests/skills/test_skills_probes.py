"""Probe draw: deterministic, same family, never the source task (METHOD.md §6 step 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skillmaster.envs.base import TaskSpec
from skillmaster.skills.probes import draw_probes

FAMILIES = ["pick_and_place_simple", "pick_heat_then_place_in_recep", "look_at_obj_in_light"]
TASKS = [
    TaskSpec(f"train/{f}-{i:02d}/trial_0", f, f.split("_")[1], "train") for f in FAMILIES for i in range(12)
]
FAM = {t.task_id: t.family for t in TASKS}


def test_draw_is_same_family_excludes_source_and_has_k_distinct():
    src = TASKS[14]  # a heat task
    got = draw_probes(src.task_id, src.family, TASKS, k=4, seed=0)
    assert len(got) == 4 == len(set(got))
    assert src.task_id not in got
    assert all(FAM[t] == src.family for t in got)


def test_draw_is_deterministic_and_independent_of_candidate_order():
    src = TASKS[3]
    a = draw_probes(src.task_id, src.family, TASKS, k=4, seed=7)
    assert draw_probes(src.task_id, src.family, list(reversed(TASKS)), k=4, seed=7) == a
    assert draw_probes(src.task_id, src.family, iter(TASKS), k=4, seed=7) == a  # any iterable
    others = {tuple(draw_probes(src.task_id, src.family, TASKS, k=4, seed=s)) for s in range(8)}
    assert len(others) > 1  # the seed matters
    per_task = {tuple(draw_probes(t.task_id, t.family, TASKS, k=4, seed=7)) for t in TASKS[:12]}
    assert len(per_task) > 1  # the source task matters


def test_draw_is_stable_across_processes():
    """Seeded by sha256, not Python's salted hash(): another process with another hash seed agrees."""
    src = TASKS[30]
    here = draw_probes(src.task_id, src.family, TASKS, k=4, seed=3)
    code = (
        "from skillmaster.envs.base import TaskSpec; from skillmaster.skills.probes import draw_probes\n"
        f"FAMILIES = {FAMILIES!r}\n"
        "TASKS = [TaskSpec(f'train/{f}-{i:02d}/trial_0', f, f.split('_')[1], 'train') for f in FAMILIES for i in range(12)]\n"
        f"print(draw_probes({src.task_id!r}, {src.family!r}, TASKS, k=4, seed=3))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert out.stdout.strip() == repr(here)


def test_pinned_draw():
    """Changing the draw changes every experiment's probes: do it on purpose only."""
    src = TASKS[0]
    assert draw_probes(src.task_id, src.family, TASKS, k=3, seed=0) == PINNED


def test_small_pools_and_edge_cases():
    few = [
        TaskSpec("a", "f", "c", "train"),
        TaskSpec("b", "f", "c", "train"),
        TaskSpec("z", "g", "c", "train"),
    ]
    assert sorted(draw_probes("a", "f", few, k=4, seed=0)) == ["b"]  # fewer than k: all of them
    assert draw_probes("a", "f", few[:1], k=4, seed=0) == []
    assert draw_probes("a", "f", few, k=0, seed=0) == []
    assert draw_probes("a", "f", few + few, k=4, seed=0) == ["b"]  # duplicates in the list count once
    with pytest.raises(ValueError):
        draw_probes("a", "f", few, k=-1, seed=0)


def test_webshop_matches_on_category():
    goals = [TaskSpec(str(i), "webshop", "apparel" if i % 2 else "footwear", "train") for i in range(20)]
    got = draw_probes("3", "apparel", goals, k=4, seed=0, match="category")
    assert len(got) == 4 and "3" not in got and all(int(g) % 2 == 1 for g in got)


@pytest.mark.alfworld
def test_draw_on_the_real_training_games(alfworld_data: Path):
    """Task ids and families of the real train split (folder name prefix = family)."""
    games = sorted((alfworld_data / "json_2.1.1" / "train").glob("*/*/game.tw-pddl"))
    if not games:
        pytest.skip("no train split unpacked")
    tasks = [
        TaskSpec(str(g.parent.relative_to(alfworld_data)), g.parent.parent.name.split("-")[0], "", "train")
        for g in games
    ]
    src = next(t for t in tasks if t.family == "pick_two_obj_and_place")
    got = draw_probes(src.task_id, src.family, tasks, k=4, seed=0)
    assert len(got) == 4 and src.task_id not in got
    assert all(Path(t).parts[-2].startswith("pick_two_obj_and_place-") for t in got)
    assert draw_probes(src.task_id, src.family, list(reversed(tasks)), k=4, seed=0) == got


PINNED = [
    "train/pick_and_place_simple-05/trial_0",
    "train/pick_and_place_simple-01/trial_0",
    "train/pick_and_place_simple-02/trial_0",
]


def test_choose_edits_is_a_seeded_random_subset_not_the_first_ones():
    from skillmaster.skills.probes import choose_edits

    keys = [f"001-{i:04d}-00" for i in range(10)]
    assert choose_edits(keys, None, 0) == list(range(10)) and choose_edits(keys[:3], 5, 0) == [0, 1, 2]
    picks = {tuple(choose_edits(keys, 2, seed)) for seed in range(20)}
    assert all(len(p) == 2 and list(p) == sorted(p) for p in picks)
    assert choose_edits(keys, 2, 7) == choose_edits(keys, 2, 7)  # deterministic
    assert len(picks) > 5 and any(p != (0, 1) for p in picks)  # spread over the batch


def test_a_neutral_placebo_adds_one_skill_without_advice(tiny_bank):
    from skillmaster.skills.diff import bank_size, diff_banks
    from skillmaster.stages.counterfactual import NEUTRAL_SKILL, placebo_bank

    assert placebo_bank(tiny_bank, "identical") is tiny_bank
    neutral = placebo_bank(tiny_bank, "neutral")
    [change] = diff_banks(tiny_bank, neutral)
    assert change.kind == "added" and change.section == "general"
    assert {k: change.after[k] for k in NEUTRAL_SKILL} == NEUTRAL_SKILL
    assert bank_size(neutral).total == bank_size(tiny_bank).total + 1


# --------------------------------------------------------------------------- fixed probe pools (issue #39)
def test_probe_pools_are_fixed_per_family_and_leave_out_excluded_games():
    from skillmaster.skills.probes import probe_pools

    sft = {t.task_id for t in TASKS[:3]} | {TASKS[13].task_id}
    pools = probe_pools(TASKS, 5, seed=0, exclude=sft)
    assert set(pools) == set(FAMILIES)
    for family, ids in pools.items():
        assert len(ids) == 5 == len(set(ids)) and ids == sorted(ids)
        assert all(FAM[t] == family for t in ids) and not set(ids) & sft
    # deterministic, whatever the order; another seed gives other pools
    assert probe_pools(list(reversed(TASKS)), 5, seed=0, exclude=sorted(sft)) == pools
    assert probe_pools(TASKS, 5, seed=1, exclude=sft) != pools
    # one family's pool does not depend on the others'
    heat = [t for t in TASKS if t.family == FAMILIES[1]]
    assert probe_pools(heat, 5, seed=0, exclude=sft)[FAMILIES[1]] == pools[FAMILIES[1]]
    # a family with too few eligible games pools them all; probes drawn from a pool stay in it
    assert probe_pools(TASKS, 50, seed=0, exclude=sft)[FAMILIES[0]] == sorted(
        t.task_id for t in TASKS if t.family == FAMILIES[0] and t.task_id not in sft
    )
    pooled = [t for t in TASKS if t.task_id in pools[FAMILIES[0]]]
    src = TASKS[5]
    got = draw_probes(src.task_id, src.family, pooled, k=4, seed=0)
    assert len(got) == 4 and set(got) <= set(pools[FAMILIES[0]]) and src.task_id not in got
    with pytest.raises(ValueError):
        probe_pools(TASKS, 0, seed=0)


def test_webshop_pools_by_category():
    from skillmaster.skills.probes import probe_pools

    goals = [TaskSpec(str(i), "webshop", "apparel" if i % 2 else "footwear", "train") for i in range(20)]
    pools = probe_pools(goals, 3, seed=0, match="category")
    assert set(pools) == {"apparel", "footwear"}
    assert all(int(g) % 2 == 1 for g in pools["apparel"]) and all(len(v) == 3 for v in pools.values())
