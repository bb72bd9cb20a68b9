"""The counterfactual gate of issue #39 through the real ``counterfactual`` stage, with a scripted
scorer instead of the model and the games.

The stage runs as in the pipeline (reviews table in, edits/placebos tables, next bank and metrics
out); only the episode player is replaced: a fake ``collect_episodes`` records the episodes it is
given and scores them by a script in which the two arms of a probe are exchangeable (per paired
probe, with probability ``P_NONZERO`` one arm wins and the other fails, which arm by a coin drawn
from the probe's shared sampling key, never from the bank). So every contrast, real edit or placebo,
is a null contrast, and the measured commit rates must match the exact null rates of
:mod:`skillmaster.skills.power`. The task suite is a list of synthetic training tasks (no games).
"""

from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path

import polars as pl
import pytest

from skillmaster.config import Config, deep_merge, read_yaml
from skillmaster.envs.base import TaskSpec
from skillmaster.paths import Paths
from skillmaster.skills.bank import Bank, Edit, Mistake, Skill
from skillmaster.skills.power import false_pass_rate_sign_test, false_pass_rate_u_positive
from skillmaster.skills.probes import probe_pools
from skillmaster.skills.retrieval import render_skill_block, select_template
from skillmaster.skills.store import save_bank
from skillmaster.skills.utility import sign_test_p
from skillmaster.stages import counterfactual as cf_stage
from skillmaster.stages import run_stage
from skillmaster.stages.common import stratified_tasks
from skillmaster.stages.resources import Resources
from skillmaster.tables import EDITS, PLACEBOS, REVIEWS, STEPS, TRAJECTORIES

REPO = Path(__file__).resolve().parents[2]
IT = 1
K = 8
ALPHA = 0.1
P_NONZERO = 0.5
N_REVIEWS = 400  # every review is a placebo's host: N_REVIEWS placebo contrasts
POOL = 10
SFT_GAMES = 12
TEMPERATURE = 0.3
FAMILIES = {
    "pick_and_place_simple": "pick_and_place",
    "pick_heat_then_place_in_recep": "heat",
    "pick_clean_then_place_in_recep": "clean",
}
TASKS = [
    TaskSpec(f"train/{fam}-{i:02d}/trial_0", fam, cat, "train")
    for fam, cat in FAMILIES.items()
    for i in range(30)
]
SETTINGS = {
    "seed": 0,
    "env": {"max_steps": 4},
    "sft": {"enabled": True, "num_games": SFT_GAMES},
    "tracking": {"enabled": False},
    "counterfactual": {
        "probes_per_edit": K,
        "max_edits": None,
        "paired": True,
        "score": "success",
        "control": "placebo",
        "commit": "test",
        "alpha": ALPHA,
        "placebo_edits": N_REVIEWS,
        "probe_temperature": TEMPERATURE,
        "probe_pool": POOL,
    },
}
BANK = Bank(
    general_skills=(Skill(skill_id="g1", title="Go before you act", principle="Move to a place first."),),
    task_specific_skills={
        "heat": (Skill(skill_id="h1", title="Use the microwave", principle="Heat the object in it."),),
        "clean": (),
        "pick_and_place": (),
    },
    common_mistakes=(Mistake(mistake_id="m1", description="Paraphrasing actions.", how_to_avoid="Copy."),),
)
EDITS_BY_TRAJ = {  # the reviews with an edit; every other review keeps the bank
    "001-0000-00": Edit(
        kind="propose",
        category="heat",
        title="Check the microwave first",
        principle="Open the microwave before putting anything in it.",
        when_to_apply="When a heat task starts.",
    ),
    "001-0001-00": Edit(
        kind="update",
        skill_id="h1",
        title="Use the microwave",
        principle="Heat the object in the microwave, then take it out before moving on.",
    ),
    "001-0002-00": Edit(
        kind="propose", category="general", title="Read the goal", principle="Say the goal before acting."
    ),
    "001-0003-00": Edit(kind="propose", category="clean", title="Sink", principle="Clean at the sinkbasin."),
}


def review_rows() -> list[dict]:
    rng = random.Random(1)
    rows = []
    for i in range(N_REVIEWS):
        traj = f"001-{i:04d}-00"
        edit = EDITS_BY_TRAJ.get(traj)
        shown_in = (
            {"heat", "clean"} & {edit.category, "heat" if edit.kind == "update" else ""} if edit else set()
        )
        task = rng.choice([t for t in TASKS if not shown_in or t.category in shown_in])  # where it shows
        status = "" if edit is None else ("added" if edit.kind == "propose" else "updated")
        rows.append(
            {
                "iteration": IT, "task_id": task.task_id, "group_id": i, "traj_id": traj,
                "family": task.family, "category": task.category, "prompt": "p", "prefix_chars": 0,
                "response": "r", "response_ids": [1], "prompt_tokens": 1, "response_tokens": 1,
                "temperature": 1.0, "top_p": 1.0, "tool": "keep_skill" if edit is None else "propose_skill",
                "arguments": "{}", "status": status or "kept", "shaping": 0.1, "shaping_flags": [],
                "skill_id": "" if edit is None else (edit.skill_id or "dyn_001"),
                "edit": "" if edit is None else edit.model_dump_json(),
            }
        )  # fmt: skip
    return rows


class FakeSuite:
    def tasks(self, split: str) -> list[TaskSpec]:
        return [t for t in TASKS if t.split == split]


class EverySuite(dict):
    """``resources.suites`` that holds the fake suite under every step limit."""

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key) -> FakeSuite:
        return FakeSuite()


def scripted_outcome(seed_key: str, arm: str) -> bool:
    """Whether ``arm`` wins its probe: one shared coin per paired probe, blind to the bank."""
    rng = random.Random(seed_key)
    if rng.random() >= P_NONZERO:
        return False  # a tie: both arms fail
    return rng.choice(["before", "after"]) == arm


def trajectory_row(ep, won: bool) -> dict:
    return {
        "iteration": ep.iteration, "task_id": ep.task.task_id, "group_id": ep.group_id,
        "traj_id": ep.traj_id, "split": ep.task.split, "family": ep.task.family,
        "category": ep.task.category, "task_text": "", "won": won, "score": float(won),
        "episode_reward": 10.0 * won, "penalty_total": 0.0, "length": 1, "invalid_count": 0,
        "end_reason": "won" if won else "step_limit", "error": "", "skills_shown": [],
        "skills_block": "", "initial_observation": "", "final_observation": "",
        "condition": ep.condition, "probe_of": ep.probe_of, "probe": ep.probe, "temperature": 0.3,
    }  # fmt: skip


def scripted_collect(policy, pool, episodes, settings, retriever=None, **kwargs):
    rows = [
        trajectory_row(ep, scripted_outcome(ep.seed_key, ep.traj_id.rsplit("-", 1)[1])) for ep in episodes
    ]
    return STEPS.empty(), TRAJECTORIES.from_rows(rows)


def run_gate(root: Path, settings: dict, collect) -> tuple[Config, Paths, dict]:
    """The real counterfactual stage on the synthetic reviews, episodes played by ``collect``."""
    cfg = Config.model_validate(deep_merge(read_yaml(REPO / "params.yaml"), settings))
    paths = Paths(root)
    if not paths.bank(0).is_file():
        save_bank(BANK, paths.bank(0))
        REVIEWS.write(REVIEWS.from_rows(review_rows()), paths.reviews(IT))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cf_stage, "collect_episodes", collect)
        mp.setattr(cf_stage, "load_policy", lambda ctx, it: None)
        mp.setattr(cf_stage, "make_pool", lambda *a, **k: contextlib.nullcontext())
        res = Resources()
        res.suites = EverySuite()
        metrics = run_stage("counterfactual", cfg, IT, root=root, resources=res)
    return cfg, paths, metrics


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    seen: dict = {}

    def fake_collect(policy, pool, episodes, settings, retriever=None, **kwargs):
        seen["episodes"], seen["settings"] = list(episodes), settings
        return scripted_collect(policy, pool, episodes, settings)

    cfg, paths, metrics = run_gate(tmp_path_factory.mktemp("gate"), SETTINGS, fake_collect)
    return cfg, paths, metrics, seen


def _block(bank: Bank, category: str) -> str:
    return render_skill_block(select_template(bank, "", category))[0]


def test_edit_and_placebo_arms_are_paired(run):
    """Each probe's two runs share the task and the sampling key; under control placebo the control
    bank shows a placebo of the edit's size in the edit's place."""
    _, _, _, seen = run
    episodes = {ep.traj_id: ep for ep in seen["episodes"]}
    keys = {tid.rsplit("-", 1)[0] for tid in episodes}
    assert len(episodes) == 2 * len(keys) == 2 * K * (len(EDITS_BY_TRAJ) + N_REVIEWS)
    for key in keys:
        before, after = episodes[f"{key}-before"], episodes[f"{key}-after"]
        assert before.task == after.task and before.seed_key == after.seed_key == key
        assert (before.probe_of, before.probe) == (after.probe_of, after.probe)
        assert before.condition.endswith("_before") and after.condition.endswith("_after")
        a, b = _block(before.bank, before.task.category), _block(after.bank, after.task.category)
        assert len(a) == len(b) and a != b  # same size, other content
    assert seen["settings"].temperature == TEMPERATURE


def test_the_placebo_is_in_the_edits_place(run):
    _, _, _, seen = run
    episodes = [ep for ep in seen["episodes"] if ep.condition == "probe_before" and ep.probe == 0]
    by_review = {ep.probe_of: ep for ep in episodes}
    heat_new = by_review["001-0000-00"].bank.task_specific_skills["heat"][-1]  # a proposal to heat
    assert heat_new.title.startswith("Placebo note") and len(heat_new.title) == len(
        "Check the microwave first"
    )
    updated = by_review["001-0001-00"].bank.task_specific_skills["heat"][0]  # the update of h1
    assert updated.skill_id == "h1" and updated.title == "Use the microwave"
    assert updated.principle.startswith("Heat the object in it. ")  # S's content kept, padded
    general = by_review["001-0002-00"].bank.general_skills
    assert len(general) == 2 and len(general[1].principle) == len("Say the goal before acting.")


def test_probes_come_from_fixed_pools_without_the_sft_games(run):
    cfg, paths, _, _ = run
    sft = {t.task_id for t in stratified_tasks(TASKS, SFT_GAMES, cfg.seed)}
    pools = probe_pools(TASKS, POOL, cfg.seed, sft)
    assert all(len(ids) == POOL and not set(ids) & sft for ids in pools.values())
    pooled = {t for ids in pools.values() for t in ids}
    tables = [EDITS.read(paths.edits(IT)), PLACEBOS.read(paths.placebos(IT))]
    drawn = {t for df in tables for ids in df["probe_task_ids"].to_list() for t in ids}
    assert drawn and drawn <= pooled
    assert all(len(ids) == K for df in tables for ids in df["probe_task_ids"].to_list())


def test_tables_record_p_and_the_commit_follows_the_test(run):
    _, paths, metrics, _ = run
    edits = EDITS.read(paths.edits(IT))
    assert edits.height == len(EDITS_BY_TRAJ) and edits["scored"].all()
    for row in edits.iter_rows(named=True):
        deltas = [a - b for a, b in zip(row["scores_after"], row["scores_before"], strict=True)]
        assert row["p_value"] == sign_test_p(deltas)
        assert row["committed"] == (row["p_value"] < ALPHA)
        assert row["commit_reason"] == ("committed" if row["committed"] else "not_significant")
        assert row["control"] == "placebo" and Edit.model_validate_json(row["control_edit"])
    assert metrics["p_values"] == edits["p_value"].to_list()
    assert metrics["edits_significant"] == int((edits["p_value"] < ALPHA).sum())
    assert (metrics["alpha"], metrics["control"], metrics["commit"]) == (ALPHA, "placebo", "test")
    placebos = PLACEBOS.read(paths.placebos(IT))
    assert placebos.height == N_REVIEWS and (placebos["kind"] == "placebo_vs_placebo").all()
    assert placebos["would_commit"].to_list() == [p < ALPHA for p in placebos["p_value"].to_list()]
    assert metrics["false_commit_rate"] == metrics["placebo_commit_rate"] == placebos["would_commit"].mean()


def test_measured_false_commit_rate_matches_the_exact_null_rate(run):
    """Exchangeable arms: the placebos' commit rate under the sign test estimates
    false_pass_rate_sign_test, and their U > 0 rate false_pass_rate_u_positive (equal magnitudes:
    every win scores the same)."""
    _, paths, metrics, _ = run
    placebos = PLACEBOS.read(paths.placebos(IT))
    n = placebos.height
    exact_test = false_pass_rate_sign_test(P_NONZERO, K, ALPHA)
    exact_u = false_pass_rate_u_positive(P_NONZERO, K, gamma=0.2, clip=True)
    se_test, se_u = (math.sqrt(r * (1 - r) / n) for r in (exact_test, exact_u))
    assert abs(metrics["false_commit_rate"] - exact_test) <= 3.5 * se_test
    measured_u = float((placebos["utility"] > 0).mean())
    assert measured_u == metrics["placebo_utility_positive_share"]
    assert abs(measured_u - exact_u) <= 3.5 * se_u
    print(
        f"\nfalse commits: sign test {metrics['false_commit_rate']:.4f} (exact {exact_test:.4f}), U > 0 {measured_u:.4f} (exact {exact_u:.4f}), n = {n}"
    )
    assert exact_test <= ALPHA < exact_u  # the point of the gate


def test_identical_arms_score_u_zero_and_p_one():
    """Two identical banks under paired probes play the same episodes (here: score the same)."""
    cfg = Config.model_validate(deep_merge(read_yaml(REPO / "params.yaml"), SETTINGS)).counterfactual
    scores = [0.0, 1.75, 0.0, 1.5]
    u, p = cf_stage.contrast_stats(scores, list(scores), cfg, 5, 6)
    assert (u, p) == (0.0, 1.0) and not cf_stage.would_commit(cfg, u, p)


def test_placebo_edit_matches_lengths():
    tiny_bank_like = BANK
    propose = EDITS_BY_TRAJ["001-0000-00"]
    for variant in (0, 1):
        placebo = cf_stage.placebo_edit(tiny_bank_like, propose, variant)
        assert placebo.kind == "propose" and placebo.category == "heat"
        for field in ("title", "principle", "when_to_apply"):
            assert len(getattr(placebo, field)) == len(getattr(propose, field))
    a, b = (cf_stage.placebo_edit(tiny_bank_like, propose, v) for v in (0, 1))
    assert a != b  # two different placebos
    shorter = Edit(kind="update", skill_id="h1", title="Use the microwave", principle="Heat it.")
    assert cf_stage.placebo_edit(tiny_bank_like, shorter) is None  # the control is B itself
    assert cf_stage.placebo_edit(tiny_bank_like, Edit(kind="keep")) is None
    for n in (0, 1, 2, 7, 58, 59, 60, 200):
        text = cf_stage.filler("This note is a placebo.", n)
        assert len(text) == n and text == text.strip()


def test_frame_columns_are_the_schemas(run):
    _, paths, _, _ = run
    assert EDITS.read(paths.edits(IT)).columns == list(EDITS.columns)
    assert pl.read_parquet(paths.placebos(IT)).columns == list(PLACEBOS.columns)


def test_probe_chunks_play_each_episode_once_and_a_killed_stage_resumes(tmp_path, run):
    """``probe_chunk``: the probes are played in chunks; a stage killed after two chunks reruns
    only the others, and the tables equal those of the one-batch run."""
    _, paths, _, seen = run
    chunk, calls = 1000, []

    def killed_after_two(policy, pool, episodes, settings, retriever=None, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append([e.traj_id for e in episodes])
        return scripted_collect(policy, pool, episodes, settings)

    settings = deep_merge(SETTINGS, {"counterfactual": {"probe_chunk": chunk}})
    with pytest.raises(KeyboardInterrupt):
        run_gate(tmp_path, settings, killed_after_two)
    state = Paths(tmp_path).stage_state("counterfactual", IT)
    assert len(list(state.glob("chunk_*/COMPLETE"))) == 2

    def resumed(policy, pool, episodes, settings, retriever=None, **kwargs):
        calls.append([e.traj_id for e in episodes])
        return scripted_collect(policy, pool, episodes, settings)

    _, chunked, metrics = run_gate(tmp_path, settings, resumed)
    n = len(seen["episodes"])
    assert len(calls) == -(-n // chunk) and all(len(c) <= chunk for c in calls)
    assert [t for c in calls for t in c] == [e.traj_id for e in seen["episodes"]]  # each once, in order
    assert EDITS.read(chunked.edits(IT)).equals(EDITS.read(paths.edits(IT)))
    assert PLACEBOS.read(chunked.placebos(IT)).equals(PLACEBOS.read(paths.placebos(IT)))
    assert not state.exists()  # the kept chunks end with the stage
    assert metrics["edits_committed"] == run[2]["edits_committed"]
