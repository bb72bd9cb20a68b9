"""The lock-step collector on real ALFWorld games: the dataset it writes and its rewards (METHOD.md §4).

Two collections of 2 tasks × group 2 on valid_seen games, sharing one worker pool:

- the real 135M policy (sampled, seeded, a few tokens per step): the STEPS and TRAJECTORIES
  tables must be consistent with each other and with the reward rules, whatever the model wrote;
- scripted replies (the collector's ``expert`` hook, same prompts and loop): each reward rule is
  hit on purpose and the figures are checked against values computed by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest

from skillmaster.config import Config, RolloutConfig
from skillmaster.envs.alfworld import AlfworldSuite
from skillmaster.envs.pool import EnvPool
from skillmaster.modeling import load_tokenizer
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes
from skillmaster.skills.retrieval import select_template
from skillmaster.skills.store import load_bank
from skillmaster.tables import STEPS, TRAJECTORIES

pytestmark = [pytest.mark.model, pytest.mark.alfworld]

SEED_BANK = "src/skillmaster/resources/seed_bank_alfworld_small.json"
SUCCESS = 10.0
MALFORMED = -1.0
STEP_PENALTY = {  # METHOD.md §4, written out by hand
    "invalid_action": -0.5,
    "truncated": -2.0,
    "missing_action_tag": -2.0,
    "missing_think_end": -1.0,
    "empty": -2.0,
    "repetitive": -0.5,
}


@pytest.fixture(scope="module")
def suite(alfworld_data) -> AlfworldSuite:
    return AlfworldSuite(data_dir=str(alfworld_data), max_steps=50)


@pytest.fixture(scope="module")
def tasks(suite) -> list:
    """The smallest valid_seen game of two families: few objects, so short prompts and quick resets."""
    out = []
    for family in ("look_at_obj_in_light", "pick_and_place_simple"):
        games = [t for t in suite.tasks("valid_seen") if t.family == family]
        out.append(min(games, key=lambda t: suite.game_file(t.task_id, t.split).stat().st_size))
    return out


@pytest.fixture(scope="module")
def pool(suite):
    with EnvPool(suite, num_envs=4, num_workers=1) as p:
        yield p


def settings(max_steps: int, max_new_tokens: int = 8) -> RolloutSettings:
    cfg = Config(rollout=RolloutConfig(max_new_tokens=max_new_tokens, temperature=1.0))
    return RolloutSettings.from_config(cfg, max_steps=max_steps, seed=3)


def episodes(tasks, bank=None) -> list[EpisodeSpec]:
    return [
        EpisodeSpec(f"t-{g}-{m}", task, group_id=g, iteration=1, bank=bank)
        for g, task in enumerate(tasks)
        for m in range(2)
    ]


def check_dataset(steps: pl.DataFrame, trajs: pl.DataFrame, specs: list[EpisodeSpec], max_steps: int) -> None:
    """Consistency of the two tables, and rewards recomputed from METHOD.md §4."""
    STEPS.validate(steps)
    TRAJECTORIES.validate(trajs)
    # one trajectory row per episode, in order, with its task and group
    assert trajs["traj_id"].to_list() == [s.traj_id for s in specs]
    assert trajs["task_id"].to_list() == [s.task.task_id for s in specs]
    groups = trajs.group_by("task_id").agg(pl.col("group_id").unique())
    assert all(len(g) == 1 for g in groups["group_id"])  # shared within a task
    assert trajs["group_id"].n_unique() == len({s.task.task_id for s in specs})  # distinct across tasks
    for traj in trajs.iter_rows(named=True):
        rows = steps.filter(pl.col("traj_id") == traj["traj_id"]).sort("step")
        # step count and step table agree; the last row, only it, is done
        assert traj["length"] == rows.height >= 1
        assert rows["step"].to_list() == list(range(rows.height))
        assert rows["done"].to_list() == [False] * (rows.height - 1) + [True]
        assert set(rows["group_id"]) == {traj["group_id"]} and set(rows["task_id"]) == {traj["task_id"]}
        assert rows.height <= max_steps
        if traj["end_reason"] == "step_limit":
            assert rows.height == max_steps
        # per-step penalties from the fault table; the malformed guard ends the episode
        for row in rows.iter_rows(named=True):
            assert row["penalty"] == pytest.approx(sum(STEP_PENALTY.get(f, 0.0) for f in row["faults"]))
            assert row["valid"] == ("invalid_action" not in row["faults"])
            assert ("malformed" in row["faults"]) == (traj["end_reason"] == "malformed" and row["done"])
            assert row["response_tokens"] == len(row["response_ids"])
            prefix = row["prompt"][: row["prefix_chars"]]
            assert row["prefix_chars"] > 0 and traj["task_text"] in prefix
            assert prefix == rows["prompt"][0][: rows["prefix_chars"][0]]  # constant within the episode
            if "malformed" not in row["faults"]:
                assert row["observation"]  # the environment was stepped
        assert traj["penalty_total"] == pytest.approx(rows["penalty"].sum())
        assert traj["invalid_count"] == (~rows["valid"]).sum()
        expected = SUCCESS * traj["won"] + (MALFORMED if traj["end_reason"] == "malformed" else 0.0)
        assert traj["episode_reward"] == pytest.approx(expected)
        assert traj["end_reason"] in {"won", "terminated", "step_limit", "malformed"}


def test_policy_collection_is_a_consistent_dataset(base_model_dir, model_cfg, repo_root, tasks, pool):
    from skillmaster.agent.policy import Policy

    policy = Policy.load(base_model_dir, model_cfg)
    bank = load_bank(repo_root / SEED_BANK)
    specs = episodes(tasks, bank)
    steps, trajs = collect_episodes(policy, pool, specs, settings(2), select_template, progress=False)
    check_dataset(steps, trajs, specs, max_steps=2)
    assert (steps["response_tokens"] <= 8).all()
    truncated = steps.filter(pl.col("faults").list.contains("truncated"))
    assert (truncated["response_tokens"] == 8).all()
    # skills were shown, and the prefix the policy cached holds them
    assert all(trajs["skills_shown"].list.len() > 0) and all(trajs["skills_block"].str.len_chars() > 0)
    assert all(
        b in p
        for b, p in zip(
            trajs["skills_block"],
            steps.group_by("traj_id", maintain_order=True).first()["prompt"],
            strict=True,
        )
    )
    assert policy.stats.prefilled_tokens < policy.stats.prompt_tokens  # the prefixes were reused


def test_scripted_replies_hit_each_reward_rule(base_model_dir, suite, tasks, pool):
    walk = suite.walkthrough(tasks[0].task_id, tasks[0].split)
    max_steps = len(walk) + 2
    replies = {
        "t-0-0": [f"<think>next</think><action>{a}</action>" for a in walk],  # the expert: wins
        "t-0-1": ["<think>hm</think><action>fly to the moon</action>", ""],  # invalid, then malformed
        "t-1-0": ["<think>look</think><action>look</action>"] * max_steps,  # valid until the limit
        "t-1-1": ["<think>no end <action>inventory</action>"] * max_steps,  # unclosed think each step
    }
    specs = episodes(tasks)
    policy = SimpleNamespace(tokenizer=load_tokenizer(base_model_dir))
    steps, trajs = collect_episodes(
        policy,
        pool,
        specs,
        settings(max_steps),
        expert=lambda spec, step, obs, admissible: replies[spec.traj_id][step],
        progress=False,
    )
    check_dataset(steps, trajs, specs, max_steps)
    by = {r["traj_id"]: r for r in trajs.iter_rows(named=True)}
    # hand-computed: (end_reason, length, won, episode_reward, penalty_total, invalid_count)
    assert [
        (
            by[t]["end_reason"],
            by[t]["length"],
            by[t]["won"],
            by[t]["episode_reward"],
            by[t]["penalty_total"],
            by[t]["invalid_count"],
        )
        for t in replies
    ] == [
        ("won", len(walk), True, 10.0, 0.0, 0),
        ("malformed", 2, False, -1.0, -0.5 + (-2.0 - 2.0 - 0.5), 2),
        ("step_limit", max_steps, False, 0.0, 0.0, 0),
        ("step_limit", max_steps, False, 0.0, -1.0 * max_steps, 0),
    ]
    last = steps.filter(pl.col("traj_id") == "t-0-1").sort("step")["faults"].to_list()
    assert last == [["invalid_action"], ["empty", "missing_action_tag", "invalid_action", "malformed"]]
    won = steps.filter(pl.col("traj_id") == "t-0-0").sort("step")
    assert won["env_reward"].to_list() == [0.0] * (len(walk) - 1) + [SUCCESS]


def test_an_expert_reply_of_none_stops_its_episode(base_model_dir, suite, tasks, pool):
    walk = suite.walkthrough(tasks[0].task_id, tasks[0].split)
    specs = episodes(tasks[:1])  # t-0-0 stops before its second step, t-0-1 before its first
    replies = {"t-0-0": [f"<think>go</think><action>{walk[0]}</action>", None], "t-0-1": [None]}
    policy = SimpleNamespace(tokenizer=load_tokenizer(base_model_dir))
    steps, trajs = collect_episodes(
        policy,
        pool,
        specs,
        settings(5),
        expert=lambda spec, step, obs, admissible: replies[spec.traj_id][step],
        progress=False,
    )
    by = {r["traj_id"]: r for r in trajs.iter_rows(named=True)}
    assert (by["t-0-0"]["end_reason"], by["t-0-0"]["length"], by["t-0-0"]["won"]) == ("stopped", 1, False)
    assert (by["t-0-1"]["end_reason"], by["t-0-1"]["length"]) == ("stopped", 0)
    assert steps["traj_id"].to_list() == ["t-0-0"] and steps["action"].to_list() == [walk[0]]


def test_episodes_with_one_seed_key_sample_the_same_stream(base_model_dir, model_cfg, repo_root, tasks, pool):
    """Paired probes: two runs of one task and bank with the same ``seed_key`` are the same episode
    (sampled at T=1), whatever their traj ids; another key samples another episode."""
    from skillmaster.agent.policy import Policy

    policy = Policy.load(base_model_dir, model_cfg)
    bank = load_bank(repo_root / SEED_BANK)
    task = tasks[1]
    specs = [
        EpisodeSpec("pair-before", task, 0, 1, bank=bank, seed_key="pair"),
        EpisodeSpec("pair-after", task, 0, 1, bank=bank, seed_key="pair"),
        EpisodeSpec("other-a", task, 0, 1, bank=bank),
        EpisodeSpec("other-b", task, 0, 1, bank=bank),
    ]
    steps, _ = collect_episodes(
        policy, pool, specs, settings(2, max_new_tokens=16), select_template, progress=False
    )
    ids = {t: steps.filter(pl.col("traj_id") == t).sort("step")["response_ids"].to_list() for t in ("pair-before", "pair-after", "other-a", "other-b")}  # fmt: skip
    assert ids["pair-before"] == ids["pair-after"] and ids["pair-before"]
    assert ids["other-a"] != ids["other-b"]  # unpaired runs: own streams (16 sampled tokens at T=1)
