"""The review and counterfactual stages on a real collection (METHOD.md §5 and §6).

One module run: bank-init, then ``collect``, ``review`` and ``counterfactual`` of iteration 1 with
the real 135M model on train games (2 tasks x group 2, 2 steps), K = 2 one-step probes per edit,
at most 1 scored edit (a seeded random one) and 1 placebo edit, with params.yaml's paired probes
and progress score. The review table is checked against the shaping rules of METHOD.md §5
written out by hand.

The 135M base model rarely writes a valid tool call, so when the stage's reviews hold no edit the
run swaps in a cold-start proposal (``skills.lessons.review_example``: the family's procedure as a
new skill, scored by the stage's own ``score_review``) for every review before the counterfactual
stage reads the table. Either way the edits are then scored on real probe episodes, and the test
recomputes every probe score (walkthrough milestones by hand), every utility and the next bank from
the tables; the placebo edit (B' = B) must give identical paired episodes and U = 0.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from tiny_project import seed_workdir, tiny_config

from skillmaster.agent.tokens import encode_response
from skillmaster.config import Config
from skillmaster.envs.alfworld.evidence import TRANSFORM_FAMILIES
from skillmaster.envs.alfworld.lessons import BOOK
from skillmaster.envs.alfworld.milestones import milestone_hits, milestones
from skillmaster.envs.knowledge import Finding
from skillmaster.envs.registry import make_suite
from skillmaster.modeling import load_tokenizer
from skillmaster.paths import Paths
from skillmaster.seeding import derive_seed
from skillmaster.skills.bank import Bank, Edit, apply_edit, empty_bank
from skillmaster.skills.commit import ScoredEdit, commit_edits
from skillmaster.skills.diff import bank_size
from skillmaster.skills.lessons import review_example
from skillmaster.skills.probes import choose_edits
from skillmaster.skills.store import load_bank
from skillmaster.skills.tools import INFO_FLAGS, score_review
from skillmaster.skills.utility import utility
from skillmaster.stages import run_stage
from skillmaster.stages.resources import Resources
from skillmaster.tables import EDITS, PLACEBOS, REVIEWS, STEPS, TRAJECTORIES

pytestmark = [pytest.mark.model, pytest.mark.alfworld]

K = 2
MAX_EDITS = 1
PLACEBOS_N = 1
IT = 1
SETTINGS = {
    "counterfactual": {
        "probes_per_edit": K,
        "max_edits": MAX_EDITS,
        "commit": "threshold",
        "commit_threshold": 0.0,
        "max_steps": 1,  # probe episodes: T_max = 1 (the utility's step limit is this one, not env.max_steps)
        "placebo_edits": PLACEBOS_N,
        "placebo_kind": "identical",
        "paired": True,
        "score": "progress",
    }
}
EDIT_STATUSES = ("added", "updated")

# METHOD.md §5, written out by hand: base reward by status (every other status: a valid call) ...
SHAPING_BASE = {"parse_error": -2.0, "invalid_arguments": -1.0, "unknown_tool": -1.5}
VALID_CALL = 0.1
# ... plus these stacking penalties
SHAPING_PENALTY = {
    "missing_think": -0.5,
    "missing_tool_call_tags": -0.5,
    "env_action": -3.0,
    "placeholder": -1.5,
    "duplicate": -0.5,
}
# the columns a review reply determines (the rest comes from the trajectory and the prompt)
REPLY_COLUMNS = ("response", "response_ids", "response_tokens", "tool", "arguments", "status", "shaping",
                 "shaping_flags", "skill_id", "edit")  # fmt: skip


@dataclass
class Run:
    paths: Paths
    cfg: Config
    bank0: Bank
    stage_reviews: pl.DataFrame
    """The review table as the review stage wrote it."""
    reviews: pl.DataFrame
    """The review table the counterfactual stage read (expert reviews when the stage had no edit)."""
    expert: bool
    metrics: dict[str, dict]


def proposal(family: str, category: str) -> str:
    """The cold start's proposal of the family's procedure (made on an empty bank)."""
    verb = TRANSFORM_FAMILIES.get(family)
    finding = Finding("procedure", None, {"object": "object", **({"verb": verb} if verb else {})})
    bank = empty_bank([category])
    return review_example(
        "propose", finding, book=BOOK, bank=bank, category=category, family=family, won=True,
        select=lambda b: ((*b.general_skills, *b.task_specific_skills.get(category, ())), b.common_mistakes),
        rng=random.Random(0),
    ).reply  # fmt: skip


def expert_reviews(reviews: pl.DataFrame, bank: Bank, cfg: Config, model_dir: Path) -> pl.DataFrame:
    """``reviews`` with every reply replaced by the cold start's proposal, scored like the stage does."""
    tokenizer = load_tokenizer(model_dir)
    rows = []
    for row in reviews.iter_rows(named=True):
        reply = proposal(row["family"], row["category"])
        out = score_review(reply, bank, row["category"], cfg.review.shaping)
        ids = encode_response(tokenizer, reply)
        rows.append(row | {
            "response": reply, "response_ids": ids, "response_tokens": len(ids), "tool": out.tool,
            "arguments": out.arguments_json(), "status": out.status, "shaping": out.shaping,
            "shaping_flags": out.flags, "skill_id": out.skill_id, "edit": out.edit_json(),
        })  # fmt: skip
    return REVIEWS.from_rows(rows)


@pytest.fixture(scope="module")
def run(tmp_path_factory, base_model_dir, alfworld_data) -> Run:
    root = tmp_path_factory.mktemp("review_cf")
    cfg = tiny_config(SETTINGS)
    paths = seed_workdir(root, base_model_dir, cfg)
    res = Resources()  # one policy load for the three stages
    metrics = {name: run_stage(name, cfg, IT, root=root, resources=res) for name in ("collect", "review")}
    bank0 = load_bank(paths.bank(0))
    stage_reviews = REVIEWS.read(paths.reviews(IT))
    reviews, expert = stage_reviews, not stage_reviews["status"].is_in(EDIT_STATUSES).any()
    if expert:
        reviews = expert_reviews(stage_reviews, bank0, cfg, paths.base_model)
        REVIEWS.write(reviews, paths.reviews(IT))
    metrics["counterfactual"] = run_stage("counterfactual", cfg, IT, root=root, resources=res)
    res.close()
    return Run(paths, cfg, bank0, stage_reviews, reviews, expert, metrics)


def check_review_rows(reviews: pl.DataFrame, bank0: Bank, cfg: Config) -> None:
    """Every row's shaping is what its status and flags give by METHOD.md §5, and re-scoring its
    reply against the bank it reviewed gives the same outcome."""
    for r in reviews.iter_rows(named=True):
        flags = r["shaping_flags"]
        assert set(flags) <= set(SHAPING_PENALTY) | set(INFO_FLAGS), r["traj_id"]
        want = SHAPING_BASE.get(r["status"], VALID_CALL) + sum(SHAPING_PENALTY.get(f, 0.0) for f in flags)
        assert r["shaping"] == pytest.approx(want), r["traj_id"]
        assert r["tool"] != "" or r["status"] == "parse_error", r["traj_id"]  # no tool read: a parse error
        assert (r["status"] == "duplicate") == ("duplicate" in flags), r["traj_id"]
        is_edit = r["status"] in EDIT_STATUSES
        assert (r["edit"] != "") == is_edit and (r["skill_id"] != "") == is_edit, r["traj_id"]
        again = score_review(r["response"], bank0, r["category"], cfg.review.shaping)
        assert (again.tool, again.status, again.shaping, again.flags, again.skill_id, again.edit_json()) == (
            r["tool"], r["status"], r["shaping"], flags, r["skill_id"], r["edit"]
        ), r["traj_id"]  # fmt: skip


# --------------------------------------------------------------------------- review
def test_review_table_matches_the_collection_and_shaping(run):
    trajs = TRAJECTORIES.read(run.paths.trajectories(IT))
    reviews = REVIEWS.validate(run.stage_reviews)
    assert reviews["traj_id"].to_list() == trajs["traj_id"].to_list()  # one review per trajectory, in order
    assert reviews.select("task_id", "group_id", "family", "category").equals(
        trajs.select("task_id", "group_id", "family", "category")
    )
    assert (reviews["iteration"] == IT).all()
    assert reviews["response_tokens"].max() <= run.cfg.review.max_new_tokens
    assert (reviews["response_ids"].list.len() == reviews["response_tokens"]).all()
    assert (reviews["prefix_chars"] < reviews["prompt"].str.len_chars()).all()
    check_review_rows(reviews, run.bank0, run.cfg)
    m = run.metrics["review"]
    counts = reviews["status"].value_counts()
    for status, n in counts.iter_rows():
        assert m[f"reviews_{status}"] == n
    assert m["reviews_total"] == reviews.height
    assert m["mean_shaping"] == pytest.approx(float(reviews["shaping"].mean()))
    from skillmaster.agent.generation import xgrammar_installed

    assert m["constrained"] is (run.cfg.review.constrained and xgrammar_installed())


def test_reviews_the_counterfactual_read_hold_an_edit(run):
    reviews = REVIEWS.read(run.paths.reviews(IT))
    assert reviews.equals(run.reviews)
    assert reviews["status"].is_in(EDIT_STATUSES).any()
    check_review_rows(reviews, run.bank0, run.cfg)
    if run.expert:  # only the replies changed
        keep = [c for c in reviews.columns if c not in REPLY_COLUMNS]
        assert reviews.select(keep).equals(run.stage_reviews.select(keep))
        assert (reviews["status"] == "added").all() and (reviews["shaping"] == VALID_CALL).all()


# --------------------------------------------------------------------------- counterfactual
def test_edits_get_k_probe_episodes_each(run):
    cfg, paths = run.cfg, run.paths
    edits = EDITS.read(paths.edits(IT))
    candidates = run.reviews.filter(pl.col("status").is_in(EDIT_STATUSES)).sort("traj_id")
    assert edits["traj_id"].to_list() == candidates["traj_id"].to_list()
    assert edits.select("status", "skill_id", "edit").equals(candidates.select("status", "skill_id", "edit"))
    n_scored = min(candidates.height, MAX_EDITS)
    chosen = choose_edits(candidates["traj_id"].to_list(), MAX_EDITS, derive_seed(cfg.seed, "edits", IT))
    assert edits["scored"].to_list() == [i in chosen for i in range(edits.height)] and len(chosen) == n_scored

    all_probes = TRAJECTORIES.read(paths.probe_trajectories(IT))
    probes = all_probes.filter(pl.col("condition").str.starts_with("probe_"))
    assert probes.height == 2 * K * n_scored == run.metrics["counterfactual"]["probe_episodes"]
    assert all_probes.height == probes.height + 2 * K * PLACEBOS_N
    by_id = {r["traj_id"]: r for r in probes.iter_rows(named=True)}
    train = {t.task_id: t for t in make_suite(cfg.env).tasks(cfg.env.train_split)}
    for e, row in enumerate(edits.iter_rows(named=True)):
        if not row["scored"]:
            assert row["probe_task_ids"] == [] and row["scores_before"] == [] and row["scores_after"] == []
            assert row["utility"] == 0.0
            continue
        ids = row["probe_task_ids"]
        assert len(ids) == K == len(set(ids)) and row["task_id"] not in ids
        assert all(train[t].family == row["family"] for t in ids)  # same family, from the training split
        for k, task_id in enumerate(ids):
            for tag in ("before", "after"):
                p = by_id[f"{IT:03d}-p{e:03d}-{k:02d}-{tag}"]
                assert (p["task_id"], p["family"], p["condition"]) == (task_id, row["family"], f"probe_{tag}")
                assert p["group_id"] == row["group_id"] and p["length"] == cfg.counterfactual.max_steps
    # the "after" run of a proposal shows the new skill, the "before" run does not
    for e, row in enumerate(edits.iter_rows(named=True)):
        if row["scored"] and row["status"] == "added":
            new = Edit.model_validate_json(row["edit"])
            for k in range(K):
                after, before = (by_id[f"{IT:03d}-p{e:03d}-{k:02d}-{tag}"] for tag in ("after", "before"))
                assert new.skill_id in after["skills_shown"] and new.title in after["skills_block"]
                assert new.skill_id not in before["skills_shown"] and new.title not in before["skills_block"]


def hand_score(run: Run, probe: dict, t_max: int) -> float:
    """``counterfactual.score: progress``: METHOD.md §6's s = 1 + (T_max − L)/T_max for a win, else
    0.5 × the share of the walkthrough's milestones the run reached in order."""
    if probe["won"]:
        return 1.0 + (t_max - probe["length"]) / t_max
    goal = milestones(make_suite(run.cfg.env).walkthrough(probe["task_id"], probe["split"]))
    steps = STEPS.read(run.paths.probe_steps(IT)).filter(pl.col("traj_id") == probe["traj_id"]).sort("step")
    reached = sum(milestone_hits(goal, list(zip(steps["action"], steps["valid"], strict=True))))
    return 0.5 * reached / len(goal)


def test_utility_is_recomputed_from_the_probe_rewards(run):
    cf = run.cfg.counterfactual
    assert cf.clip and cf.score == "progress"  # as the formulas below
    t_max = cf.max_steps or run.cfg.env.max_steps
    edits = EDITS.read(run.paths.edits(IT))
    by_id = {
        r["traj_id"]: r for r in TRAJECTORIES.read(run.paths.probe_trajectories(IT)).iter_rows(named=True)
    }
    size0 = bank_size(run.bank0).total
    for e, row in enumerate(edits.iter_rows(named=True)):
        if not row["scored"]:
            continue
        runs = {
            tag: [by_id[f"{IT:03d}-p{e:03d}-{k:02d}-{tag}"] for k in range(K)] for tag in ("before", "after")
        }
        before = [hand_score(run, p, t_max) for p in runs["before"]]
        after = [hand_score(run, p, t_max) for p in runs["after"]]
        assert row["scores_before"] == pytest.approx(before) and row["scores_after"] == pytest.approx(after)
        # METHOD.md §6 step 4 with the clip on (the default), by hand
        deltas = [a - b for a, b in zip(after, before, strict=True)]
        net = (sum(d > 0 for d in deltas) - sum(d < 0 for d in deltas)) / K
        grown = max(
            0, bank_size(apply_edit(run.bank0, Edit.model_validate_json(row["edit"]))[0]).total - size0
        )
        u = max(0.0, sum(deltas) / K + cf.gamma * net) - cf.size_penalty * grown
        assert row["utility"] == pytest.approx(u)
        # the one-sided sign test over the nonzero deltas, by hand: P(X >= n+ | X ~ Bin(n, 1/2))
        n_pos, n = sum(d > 0 for d in deltas), sum(d != 0 for d in deltas)
        assert row["p_value"] == sum(math.comb(n, i) for i in range(n_pos, n + 1)) / 2**n
        assert (row["control"], row["control_edit"]) == ("none", "")
        assert row["utility"] == pytest.approx(utility(before, after, cf.gamma, cf.clip, cf.size_penalty, size0,
                                                       size0 + grown))  # fmt: skip


def test_commit_follows_the_threshold_and_the_next_bank_is_valid(run):
    cf, edits = run.cfg.counterfactual, EDITS.read(run.paths.edits(IT))
    assert cf.commit == "threshold" and cf.commit_threshold == 0.0
    for row in edits.iter_rows(named=True):
        if row["utility"] <= cf.commit_threshold:  # U must be strictly above the threshold
            assert not row["committed"], row["traj_id"]
        if row["committed"]:
            assert row["scored"] and row["utility"] > cf.commit_threshold, row["traj_id"]

    bank1 = load_bank(run.paths.bank(IT))  # validates the document
    scored = [ScoredEdit(r["traj_id"], Edit.model_validate_json(r["edit"]), r["utility"], r["scored"])
              for r in edits.iter_rows(named=True)]  # fmt: skip
    expected, decisions = commit_edits(run.bank0, scored, "threshold", 0.0)
    assert [d.committed for d in decisions] == edits["committed"].to_list()
    assert bank1 == expected
    committed = int(edits["committed"].sum())
    assert bank_size(bank1).total == bank_size(run.bank0).total + int(
        edits.filter(pl.col("committed") & (pl.col("status") == "added")).height
    )
    m = run.metrics["counterfactual"]
    assert m["edits_total"] == edits.height and m["edits_committed"] == committed
    assert m["edits_scored"] == int(edits["scored"].sum())
    for row, d in zip(edits.iter_rows(named=True), decisions, strict=True):
        assert (row["commit_reason"], row["committed_id"]) == (d.reason, d.skill_id)
    scored = edits.filter(pl.col("scored"))["utility"].to_list()
    assert m["utility_nonzero_share"] == pytest.approx(sum(u != 0 for u in scored) / len(scored))


def test_a_placebo_edit_plays_identical_paired_episodes_and_scores_zero(run):
    """B' = B with paired probes: the before and after run of each probe are the same episode."""
    placebos = PLACEBOS.read(run.paths.placebos(IT))
    assert placebos.height == PLACEBOS_N
    steps = STEPS.read(run.paths.probe_steps(IT))
    trajs = {
        r["traj_id"]: r for r in TRAJECTORIES.read(run.paths.probe_trajectories(IT)).iter_rows(named=True)
    }
    for q, row in enumerate(placebos.iter_rows(named=True)):
        assert len(row["probe_task_ids"]) == K
        for k, task_id in enumerate(row["probe_task_ids"]):
            ids = [f"{IT:03d}-q{q:03d}-{k:02d}-{tag}" for tag in ("before", "after")]
            before, after = (steps.filter(pl.col("traj_id") == i).sort("step") for i in ids)
            assert before.height >= 1 and trajs[ids[0]]["task_id"] == task_id
            assert before["response_ids"].to_list() == after["response_ids"].to_list()
            assert before["action"].to_list() == after["action"].to_list()
            assert (
                trajs[ids[0]]["condition"] == "placebo_before"
                and trajs[ids[1]]["condition"] == "placebo_after"
            )
        assert (
            row["scores_before"] == row["scores_after"] and row["utility"] == 0.0 and not row["would_commit"]
        )
        assert row["p_value"] == 1.0  # identical prompts: no nonzero delta
        assert row["kind"] == "identical"
    m = run.metrics["counterfactual"]
    assert (m["placebo_scored"], m["placebo_commits"], m["placebo_commit_rate"]) == (PLACEBOS_N, 0, 0.0)
