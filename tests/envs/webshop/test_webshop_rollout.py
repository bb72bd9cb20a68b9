"""One SkillMaster iteration on WebShop: collect, review, counterfactual and train with the real model.

The stages run on the fixture catalog (``env.name: webshop``, ``env.data_dir`` = the fixture) with
the real 135M model: 2 training goals x group 2, 2 steps, then the review, the counterfactual
stage (it writes the edits table training reads) and a LoRA update on 4 action samples. The
starting bank is the empty bank with WebShop's categories (``skills.seed_bank: null``): the
project's seed bank is ALFWorld's. Rewards are checked against METHOD.md §4 for WebShop: 10 when
the final score is 1, else 0 (the score in [0, 1] recorded beside it), per-step penalties apart.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import polars as pl
import pytest

from skillmaster.envs.webshop.categories import CATEGORIES
from skillmaster.paths import COMPLETE_MARKER
from skillmaster.skills.diff import bank_size
from skillmaster.skills.store import load_bank
from skillmaster.stages import run_stage
from skillmaster.stages.common import resolve_policy
from skillmaster.stages.resources import Resources
from skillmaster.tables import EDITS, REVIEWS, STEPS, TRAJECTORIES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipeline"))
from tiny_project import seed_workdir, tiny_config  # the pipeline tests' tiny settings

pytestmark = pytest.mark.model

IT = 1
TASKS, GROUP = 2, 2
SUCCESS_REWARD = 10.0  # METHOD.md §4: WebShop gives 10 when the final score is 1, else 0
MALFORMED = -1.0  # METHOD.md §4: malformed output ends the episode with a -1 penalty


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread (tiny batches on a busy 2-core machine); the previous value is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory, base_model_dir, webshop_dir):
    """(paths, cfg, metrics by stage) after bank-init and collect → review → counterfactual → train."""
    root = tmp_path_factory.mktemp("webshop_iteration")
    cfg = tiny_config({
        "env": {"name": "webshop", "data_dir": str(webshop_dir), "max_steps": 2},
        "rollout": {"num_tasks": TASKS, "group_size": GROUP, "success_reward": SUCCESS_REWARD},
        "skills": {"seed_bank": None, "top_k_general": 6},
        # LoRA on 4 action samples (+ the 4 review samples); no reference pass and short micro-batches
        # (little padding) keep the one CPU update to seconds
        "train": {"max_samples": 4, "lora": {"enabled": True}, "kl_coef": 0.0, "micro_batch_tokens": 1024},
    })  # fmt: skip
    paths = seed_workdir(root, base_model_dir, cfg)
    res = Resources()  # one policy load for the stages that generate
    metrics = {
        name: run_stage(name, cfg, IT, root=root, resources=res)
        for name in ("collect", "review", "counterfactual", "train")
    }
    res.close()
    return paths, cfg, metrics


def test_collection_tables_and_rewards_follow_method_4(run):
    paths, cfg, _ = run
    steps = STEPS.validate(STEPS.read(paths.steps(IT)))
    trajs = TRAJECTORIES.validate(TRAJECTORIES.read(paths.trajectories(IT)))
    assert trajs.height == TASKS * GROUP
    groups = trajs.group_by("group_id").agg(pl.len(), pl.col("task_id").n_unique().alias("tasks"))
    assert groups.height == TASKS and (groups["len"] == GROUP).all() and (groups["tasks"] == 1).all()
    train_goals = {f"goal_{i}" for i in range(500, 568)}  # the fixture's train split (conftest)
    assert set(trajs["task_id"]) <= train_goals and (trajs["split"] == "train").all()
    assert (trajs["family"] == trajs["category"]).all() and set(trajs["category"]) <= set(CATEGORIES)
    assert (trajs["condition"] == "train").all() and (trajs["error"] == "").all()

    for t in trajs.iter_rows(named=True):
        mine = steps.filter(pl.col("traj_id") == t["traj_id"]).sort("step")
        assert mine["step"].to_list() == list(range(t["length"])) and 1 <= t["length"] <= cfg.env.max_steps
        assert 0.0 <= t["score"] <= 1.0 and t["won"] == (t["score"] >= 1.0)
        # the episode reward is success_reward when the score is 1, else 0 (plus the malformed penalty)
        env_part = t["episode_reward"] - (MALFORMED if t["end_reason"] == "malformed" else 0.0)
        assert 0.0 <= env_part <= SUCCESS_REWARD and env_part == SUCCESS_REWARD * t["won"]
        assert t["penalty_total"] == pytest.approx(float(mine["penalty"].sum()))
        assert t["initial_observation"] and t["task_text"] and t["task_text"] in mine["prompt"][0]
    # step rewards: the environment pays success_reward only on the buying step of a perfect purchase
    assert steps["env_reward"].is_in([0.0, SUCCESS_REWARD]).all()
    assert (steps["penalty"] <= 0).all() and (steps["response_tokens"] <= cfg.rollout.max_new_tokens).all()


def test_review_table_is_written_with_webshop_prompts(run):
    paths, cfg, metrics = run
    trajs = TRAJECTORIES.read(paths.trajectories(IT))
    reviews = REVIEWS.validate(REVIEWS.read(paths.reviews(IT)))
    assert reviews["traj_id"].to_list() == trajs["traj_id"].to_list()
    assert reviews["category"].to_list() == trajs["category"].to_list()
    assert reviews["prompt"].str.contains("Write shopping rules, not instances").all()  # WebShop's rules
    assert (reviews["response_tokens"] <= cfg.review.max_new_tokens).all()
    assert metrics["review"]["reviews_total"] == reviews.height == TASKS * GROUP

    edits = EDITS.read(paths.edits(IT))  # what training reads beside the reviews
    assert edits.height == int(reviews["status"].is_in(["added", "updated"]).sum())
    bank = load_bank(paths.bank(IT))
    assert set(bank.task_specific_skills) == set(CATEGORIES)
    assert bank_size(bank).total == int(edits["committed"].sum())  # grown from the empty bank


def test_train_writes_a_complete_checkpoint_and_finite_losses(run):
    paths, _, metrics = run
    policy = paths.policy(IT)
    assert (policy / COMPLETE_MARKER).is_file() and resolve_policy(policy) == policy
    assert (policy / "adapter_config.json").is_file() and (policy / "adapter_model.safetensors").is_file()

    from safetensors.torch import load_file

    weights = load_file(policy / "adapter_model.safetensors")
    assert weights and all(bool(w.isfinite().all()) for w in weights.values())
    written = json.loads(paths.metrics(IT, "train").read_text())
    assert written["steps"] >= 1 and written["tokens"] > 0
    for key in ("loss", "loss_first", "loss_last"):
        assert math.isfinite(written[key]), key
    assert metrics["train"]["train/loss"] == written["loss"]
