"""Skill-bank analytics (METHOD.md §9) on a scripted iteration: report plots and `skills history`.

One iteration is written by hand the way the stages write it: a collection of three episodes,
their reviews (a proposal, an update, a keep), the counterfactual stage's edits (both scored, the
proposal committed with U = 0.45, the update below the threshold), one placebo edit, the banks
before and after, and the stage metrics built with the stages' own functions. The ``report`` stage
must turn them into the skill_reviews / skill_edits plot data (CSV for ``dvc plots``, PNG), and
``skillmaster skills history`` must show the committed edit's lineage: iteration, source episode,
evidence, probes, scores, U and the text before and after.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillmaster.cli import app
from skillmaster.config import Config
from skillmaster.io import write_json
from skillmaster.paths import Paths
from skillmaster.skills.bank import Edit, Skill, apply_edit, empty_bank
from skillmaster.skills.commit import ScoredEdit, commit_edits, commit_stats
from skillmaster.skills.diff import bank_stats
from skillmaster.skills.store import save_bank
from skillmaster.skills.tools import review_shares, review_stats
from skillmaster.stages import run_stage
from skillmaster.stages.counterfactual import utility_stats
from skillmaster.tables import EDITS, PLACEBOS, REVIEWS, TRAJECTORIES

IT = 1
PROPOSAL = Edit(
    kind="propose",
    category="general",
    skill_id="dyn_001",
    title="Take only what is listed",
    principle="Take an object only when the observation at your current place lists it.",
    when_to_apply="Before any take action.",
)
UPDATE = Edit(
    kind="update",
    category="clean",
    skill_id="c1",
    title="Clean at the sink",
    principle="Clean the object at a sinkbasin. Clean it before moving it to the destination.",
    when_to_apply="Tasks that ask for a clean object.",
)


def bank0():
    bank = empty_bank(["clean", "pick_and_place"])
    cats = {
        "clean": (
            Skill(skill_id="c1", title="Clean at the sink", principle="Clean the object at a sinkbasin."),
        )
    }
    return bank.model_copy(update={"task_specific_skills": {**bank.task_specific_skills, **cats}})


def traj(i: int, won: bool, family: str, category: str) -> dict:
    return {
        "iteration": IT, "task_id": f"task-{i}", "group_id": i, "traj_id": f"001-000{i}-00", "split": "train",
        "family": family, "category": category, "task_text": "put a clean apple in fridge.", "won": won,
        "score": float(won), "episode_reward": 10.0 * won, "penalty_total": 0.0, "length": 5,
        "invalid_count": 0, "end_reason": "won" if won else "step_limit", "error": "", "skills_shown": [],
        "skills_block": "", "initial_observation": "", "final_observation": "", "condition": "train",
        "probe_of": "", "probe": -1, "temperature": 1.0,
    }  # fmt: skip


def review(t: dict, tool: str, status: str, args: dict, edit: Edit | None) -> dict:
    return {
        "iteration": IT, "task_id": t["task_id"], "group_id": t["group_id"], "traj_id": t["traj_id"],
        "family": t["family"], "category": t["category"], "prompt": "p", "prefix_chars": 0, "response": "r",
        "response_ids": [1], "prompt_tokens": 1, "response_tokens": 1, "temperature": 1.0, "top_p": 1.0,
        "tool": tool, "arguments": json.dumps(args),
        "status": status, "shaping": 0.1, "shaping_flags": [], "skill_id": edit.skill_id if edit else "",
        "edit": edit.model_dump_json() if edit else "",
    }  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("analytics")
    p = Paths(root)
    cfg = Config.model_validate({"loop": {"iterations": 1}, "tracking": {"enabled": False}})
    start = bank0()
    save_bank(start, p.bank(0))
    trajs = [
        traj(0, False, "pick_and_place_simple", "pick_and_place"),
        traj(1, True, "pick_clean_then_place_in_recep", "clean"),
        traj(2, True, "pick_clean_then_place_in_recep", "clean"),
    ]
    evidence = "Step 3 tried to take an apple from a drawer whose observation did not list one."
    reviews = [
        review(trajs[0], "propose_skill", "added", {"evidence": evidence}, PROPOSAL),
        review(trajs[1], "update_skill", "updated", {"reason": "The skill missed the order."}, UPDATE),
        review(trajs[2], "keep_skill", "kept", {"reason": "Covered."}, None),
    ]
    TRAJECTORIES.write(TRAJECTORIES.from_rows(trajs), p.trajectories(IT))
    REVIEWS.write(REVIEWS.from_rows(reviews), p.reviews(IT))
    # the counterfactual stage's decisions on two scored edits, with the stage's own functions
    scored = [ScoredEdit(trajs[0]["traj_id"], PROPOSAL, 0.45), ScoredEdit(trajs[1]["traj_id"], UPDATE, 0.0)]
    after, decisions = commit_edits(start, scored, "threshold", 0.0)
    probes = {0: (["p-a", "p-b"], [0.0, 0.25], [0.5, 0.25]), 1: (["p-c", "p-d"], [0.0, 0.0], [0.0, 0.0])}
    edits = []
    for e, (s, d) in enumerate(zip(scored, decisions, strict=True)):
        ids, before, after_scores = probes[e]
        edits.append(
            {
                "iteration": IT, "task_id": trajs[e]["task_id"], "group_id": e, "traj_id": s.key,
                "family": trajs[e]["family"], "status": reviews[e]["status"], "skill_id": s.edit.skill_id,
                "edit": s.edit.model_dump_json(), "scored": True, "probe_task_ids": ids, "scores_before": before,
                "scores_after": after_scores, "utility": s.utility, "committed": d.committed,
                "commit_reason": d.reason, "committed_id": d.skill_id, "control": "none", "control_edit": "",
                "p_value": 1.0,
            }
        )  # fmt: skip
    EDITS.write(EDITS.from_rows(edits), p.edits(IT))
    placebo = {"iteration": IT, "traj_id": trajs[2]["traj_id"], "family": trajs[2]["family"],
               "probe_task_ids": ["p-e"], "scores_before": [0.25], "scores_after": [0.25], "kind": "neutral",
               "utility": 0.0, "would_commit": False, "p_value": 1.0}  # fmt: skip
    PLACEBOS.write(PLACEBOS.from_rows([placebo]), p.placebos(IT))
    save_bank(after, p.bank(IT))
    statuses = [r["status"] for r in reviews]
    write_json(
        p.metrics(IT, "review"),
        {"enabled": True, **review_stats(statuses), **review_shares([r["tool"] for r in reviews], statuses)},
    )
    write_json(
        p.metrics(IT, "counterfactual"),
        {
            **commit_stats(scored, decisions),
            **utility_stats([s.utility for s in scored]),
            "placebo_scored": 1,
            "placebo_commits": 0,
            "placebo_commit_rate": 0.0,
            **bank_stats(after),
        },
    )
    run_stage("report", cfg, 0, root=root)
    return root


def read_csv(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_report_writes_the_skill_plots(project):
    plots = Paths(project).plots_dir
    [reviews] = read_csv(plots / "skill_reviews.csv")
    assert reviews == {
        "iteration": "1", "added": "1", "updated": "1", "kept": "1", "invalid": "0", "parse_error": "0",
        "valid_edit_share": str(round(2 / 3, 4)), "parse_error_share": "0.0",
    }  # fmt: skip
    [edits] = read_csv(plots / "skill_edits.csv")
    assert edits == {
        "iteration": "1", "candidates": "2", "scored": "2", "committed": "1", "placebo_scored": "1",
        "placebo_commits": "0", "mean_utility_committed": "0.45", "utility_nonzero_share": "0.5",
        "placebo_commit_rate": "0.0",
    }  # fmt: skip
    for name in ("skill_reviews.png", "skill_edits.png", "bank_size.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bank_rows = read_csv(plots / "bank_size.csv")
    assert [r["total"] for r in bank_rows] == ["1", "2"]  # the committed proposal grew the bank


def test_skills_history_shows_the_lineage_of_the_committed_edit(project):
    out = CliRunner().invoke(app, ["skills", "history", "--root", str(project)])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "iteration 1: 1 committed edits (iter_000 → iter_001)" in text
    assert "+ added dyn_001 [general]: committed" in text
    assert "from episode 001-0000-00 (pick_and_place_simple, failed): task-0" in text
    assert "evidence: Step 3 tried to take an apple from a drawer whose observation did not list one." in text
    assert "probes: p-a, p-b" in text and "s(B) = [0.00, 0.25]  s(B') = [0.50, 0.25]  U = 0.4500" in text
    assert "principle: Take an object only when the observation at your current place lists it." in text
    assert "Clean at the sink" not in text  # the update was not committed


def test_skills_history_all_shows_the_rejected_update_with_before_and_after(project):
    out = CliRunner().invoke(app, ["skills", "history", "--all", "--root", str(project)])
    assert out.exit_code == 0, out.output
    assert "~ updated c1 [clean]: below_threshold" in out.output
    assert (
        "      - Clean the object at a sinkbasin.\n      + Clean the object at a sinkbasin. Clean it before"
        in out.output
    )
    data = json.loads(
        CliRunner().invoke(app, ["skills", "history", "--all", "--json", "--root", str(project)]).output
    )
    assert [(e["skill_id"], e["committed"], e["utility"]) for e in data] == [
        ("dyn_001", True, 0.45),
        ("c1", False, 0.0),
    ]
    assert data[1]["before"]["principle"] == "Clean the object at a sinkbasin."


def test_history_before_any_iteration(tmp_path):
    out = CliRunner().invoke(app, ["skills", "history", "--root", str(tmp_path)])
    assert out.exit_code == 0 and "no committed edits yet" in out.output
    assert apply_edit(bank0(), PROPOSAL)[1] == "added"


def test_skills_shown_counts_the_committed_skill_in_games_that_changed_outcome(project, tmp_path):
    import polars as pl

    row, ref = tmp_path / "row", tmp_path / "ref"
    row.mkdir()
    ref.mkdir()
    pl.DataFrame(
        {
            "task_id": ["g1", "g2", "g3"],
            "won": [True, True, False],
            "skills_shown": [["dyn_001"], ["c1"], ["dyn_001"]],
        }
    ).write_parquet(row / "episodes.parquet")
    pl.DataFrame({"task_id": ["g1", "g2", "g3"], "won": [False, False, True]}).write_parquet(
        ref / "episodes.parquet"
    )
    out = CliRunner().invoke(
        app, ["skills", "shown", str(row), "--reference", str(ref), "--root", str(project)]
    )
    assert out.exit_code == 0, out.output
    assert "committed skills: dyn_001" in out.output
    assert "improved (won only by the row): 2, of which shown an edited skill: 1" in out.output
    assert "worsened (won only by the reference): 1, of which shown an edited skill: 1" in out.output
    assert "per skill" not in out.output and "every game" not in out.output  # one committed skill, not in g2
    pl.DataFrame(
        {"task_id": ["g1", "g2", "g3"], "won": [True, True, False], "skills_shown": [["dyn_001"]] * 3}
    ).write_parquet(row / "episodes.parquet")
    everywhere = CliRunner().invoke(
        app, ["skills", "shown", str(row), "--reference", str(ref), "--root", str(project)]
    )
    assert "shown in every game, so being shown cannot tell improved games" in everywhere.output
    missing = CliRunner().invoke(app, ["skills", "shown", str(tmp_path / "nope"), "--reference", str(ref), "--root", str(project)])  # fmt: skip
    assert missing.exit_code != 0
