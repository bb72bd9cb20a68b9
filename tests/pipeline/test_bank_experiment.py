"""``skillmaster bank-experiment`` (issue #39, items 3 and 4): the report's statistics on hand-computed
cases, the four banks built from one set of candidates, and a tiny end-to-end run on real games with
the real 135M model that is stopped, resumed and rerun.

The end-to-end run freezes the prepared base model as the policy (``--policy``), plays 2 training
episodes of Pick and Look (2 steps), stops after the review (``until="review"``), and, since the
135M model's 16-token reviews hold no valid edit, writes a proposal into each review (scored by the
project's ``score_review``, as the review stage would) before resuming: 1 of the 2 edits is scored
with K = 2 probes (alpha 0.3, the smallest that K = 2 can pass), 1 placebo-vs-placebo contrast, and
the arms are evaluated on 2 valid_seen games x 2 episodes in chunks of 2 episodes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
from tiny_project import REPO, tiny_config

from skillmaster.bank_experiment import (
    ARMS,
    BankExperiment,
    Options,
    build_banks,
    check_design,
    check_options,
    design_in_force,
    phases_of,
    resolve_arms,
    resolve_families,
)
from skillmaster.bank_report import (
    approx_power,
    arm_summary,
    contrast,
    contrasts,
    format_markdown,
    game_rates,
    holm,
    paired_permutation_p,
    power_plan,
    rates_for,
)
from skillmaster.errors import ConfigError, DataError
from skillmaster.skills.bank import Edit, iter_skills
from skillmaster.skills.power import detectable_difference
from skillmaster.skills.store import load_bank

SEED_BANK = REPO / "src/skillmaster/resources/seed_bank_alfworld_small.json"


# --------------------------------------------------------------------------- the paired per-game test
@pytest.mark.parametrize(
    ("diffs", "expected"),
    [
        # sizes (2, 1, 1), S = 2: the 8 sums ±2±1±1 are 4, 2, 2, 0, 0, −2, −2, −4; six have |s| ≥ 2
        ([2, 1, -1, 0], 6 / 8),
        ([2, 1, 1], 2 / 8),  # S = 4: only all-plus and all-minus reach |s| ≥ 4
        ([1, 1, 1, 1, 1], 2 / 32),  # five games all won more by A
        ([3, 1], 2 / 4),  # sums 4, 2, −2, −4; |s| ≥ 4 twice
        ([3, -3], 1.0),  # S = 0: every assignment is as extreme
        ([0, 0, 0], 1.0),  # no nonzero difference
        ([], 1.0),
        ([-4] * 3, 2 / 8),  # symmetric: the sign of S does not matter (two-sided)
    ],
)
def test_paired_permutation_p_by_hand(diffs, expected):
    assert paired_permutation_p(diffs) == pytest.approx(expected, abs=1e-15)


def test_paired_permutation_p_matches_brute_force():
    """Against enumerating every sign assignment of the nonzero differences."""
    import itertools
    import random

    rng = random.Random(3)
    for _ in range(30):
        diffs = [rng.randint(-3, 3) for _ in range(rng.randint(1, 9))]
        sizes = [abs(d) for d in diffs if d]
        total = abs(sum(diffs))
        flips = list(itertools.product((1, -1), repeat=len(sizes)))
        brute = sum(abs(sum(e * a for e, a in zip(f, sizes, strict=True))) >= total for f in flips) / len(
            flips
        )
        assert paired_permutation_p(diffs) == pytest.approx(brute if sizes else 1.0, abs=1e-15)


def test_paired_permutation_p_needs_counts():
    with pytest.raises(ValueError, match="integers"):
        paired_permutation_p([0.5, 1])


def test_holm_by_hand():
    # sorted: a 0.01 (x3 = 0.03), c 0.03 (x2 = 0.06), b 0.04 (x1 = 0.04, raised to the running 0.06)
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    # capped at 1 and monotone: y 0.5 x2 = 1.0, then x max(1.0, 0.6)
    assert holm({"x": 0.6, "y": 0.5}) == pytest.approx({"x": 1.0, "y": 1.0})
    assert holm({"only": 0.02}) == {"only": 0.02}
    assert holm({}) == {}


def episodes(wins: dict[str, list[bool]], family: str = "pick_and_place_simple") -> pl.DataFrame:
    """An evaluation's episodes: game ``g``'s repeat ``r`` won as ``wins[g][r]``."""
    rows = [
        {
            "traj_id": f"valid_seen-eval_skills-{g}-r{r:02d}",
            "task_id": g,
            "family": family,
            "won": w,
            "length": 5,
        }
        for g, ws in wins.items()
        for r, w in enumerate(ws)
    ]
    return pl.DataFrame(rows)


def test_contrast_by_hand():
    # 3 games x 2 episodes. A wins (2, 2, 1), B wins (0, 1, 0): d = (2, 1, 1), S = 4 of 6 episodes
    a = episodes({"g1": [True, True], "g2": [True, True], "g3": [True, False]})
    b = episodes({"g1": [False, False], "g2": [True, False], "g3": [False, False]})
    c = contrast(a, b)
    assert c["per_game_differences"] == {"g1": 2, "g2": 1, "g3": 1}
    assert c["difference_points"] == pytest.approx(100 * 4 / 6)
    assert c["p_value"] == pytest.approx(2 / 8)  # exact permutation, as in the table above
    assert (c["games_a_better"], c["games_b_better"], c["games_tied"]) == (3, 0, 0)
    assert c["sign_test_p"] == pytest.approx(2 / 8)  # 3 games all favour A: 2 * (1/2)^3
    # episodes: g1 r0, g1 r1, g2 r1, g3 r0 won only by A; none only by B -> McNemar 2 * (1/2)^4
    assert (c["episodes_only_a"], c["episodes_only_b"]) == (4, 0)
    assert c["mcnemar_p"] == pytest.approx(2 / 16)
    # mean d 4/3, sd of (2, 1, 1) = sqrt(1/3); interval in points per episode (m = 2)
    half = 1.959963984540054 * math.sqrt(1 / 3) / math.sqrt(3)
    assert c["difference_ci_points"] == pytest.approx([100 * (4 / 3 - half) / 2, 100 * (4 / 3 + half) / 2])


def test_contrasts_primary_uncorrected_secondary_holm():
    a = {"g1": [True, True], "g2": [True, False], "g3": [False, False]}
    arms = {
        "seed": episodes({"g1": [False, False], "g2": [False, False], "g3": [False, False]}),
        "gated": episodes(a),
        "ungated": episodes({"g1": [True, False], "g2": [False, False], "g3": [False, False]}),
        "random": episodes(a),
    }
    out = contrasts(arms)
    assert out["primary"]["name"] == "gated vs ungated"
    assert "p_holm" not in out["primary"]
    names = [c["name"] for c in out["secondary"]]
    assert names == ["gated vs seed", "ungated vs seed", "gated vs random"]
    p = {c["name"]: c["p_value"] for c in out["secondary"]}
    # gated vs seed: d = (2, 1, 0) -> sums ±2±1: |s| >= 3 in 2 of 4; ungated vs seed: d = (1) -> 1;
    # gated vs random: identical -> 1
    assert p == pytest.approx({"gated vs seed": 0.5, "ungated vs seed": 1.0, "gated vs random": 1.0})
    assert {c["name"]: c["p_holm"] for c in out["secondary"]} == pytest.approx(
        {"gated vs seed": 1.0, "ungated vs seed": 1.0, "gated vs random": 1.0}
    )
    # without the random arm the family has two contrasts
    del arms["random"]
    assert len(contrasts(arms)["secondary"]) == 2


def test_contrasts_refuse_unpaired_arms():
    arms = {
        "gated": episodes({"g1": [True, True]}),
        "ungated": episodes({"g1": [True]}),
    }
    with pytest.raises(DataError, match="same episodes"):
        contrasts(arms)


def test_report_says_when_gated_is_the_seed_bank():
    # the gate committed nothing: gated shares the seed arm's evaluation, and the primary contrast
    # "gated vs ungated" is then seed vs ungated; the report says so in words
    seed = episodes({"g1": [True, False], "g2": [False, False]})
    arms = {"seed": seed, "gated": seed, "ungated": episodes({"g1": [True, True], "g2": [True, False]})}
    summary = {name: {**arm_summary(eps), "edits": 0, "bank_size": 10, "reused_from": None} for name, eps in arms.items()}  # fmt: skip
    summary["gated"]["reused_from"] = "seed"
    summary["ungated"]["edits"] = 3
    gate = {"valid_edits": 3, "reviews": 4, "scored": 2, "probes": 16, "committed": 0, "alpha": 0.1,
            "placebos": 2, "placebo_commits": 0, "false_commit_rate": 0.0, "false_commit_ci": [0.0, 0.66]}  # fmt: skip
    report = {"design_hash": "abc", "summary": "s", "arms": summary, "contrasts": contrasts(arms), "gate": gate, "edits": []}  # fmt: skip
    md = format_markdown(report)
    assert "| gated (same bank as seed) | 0 |" in md
    assert '"gated vs ungated" reads as "seed vs ungated"' in md
    assert "| ungated | 3 |" in md and "**3/4** (75.0%" in md  # g1 2/2 + g2 1/2
    # nothing is said when every arm has its own bank
    summary["gated"]["reused_from"] = None
    assert "reads as" not in format_markdown(report)


# --------------------------------------------------------------------------- rates and power
def test_game_rates_family_pooled_and_per_game():
    e = pl.concat(
        [
            episodes({"p1": [True], "p2": [False], "p3": [False], "p4": [True]}),
            episodes({"l1": [False, False], "l2": [True, False]}, family="look_at_obj_in_light"),
        ]
    )
    pooled = game_rates(e)
    assert {g: r["rate"] for g, r in pooled.items()} == {"l1": 0.25, "l2": 0.25, "p1": 0.5, "p2": 0.5, "p3": 0.5, "p4": 0.5}  # fmt: skip
    own = game_rates(e, pool="game")
    assert own["l2"]["rate"] == 0.5 and own["p2"]["rate"] == 0.0
    games = [("p1", "pick_and_place_simple"), ("p9", "pick_and_place_simple"), ("x1", "heat")]
    rates, filled = rates_for(games, {"p1": {"rate": 0.4}, "p2": 0.2, "zz": 0.9})
    # p9: the mean of the design's known Pick games (p1 only); x1: the mean of all known design games
    assert rates == pytest.approx([0.4, 0.4, 0.4]) and filled == 2
    with pytest.raises(DataError, match="none of the design"):
        rates_for(games, {"zz": 0.3})


def test_power_plan_agrees_with_the_planning_helper():
    rates = [10 / 35] * 35 + [2 / 13] * 13 + [5 / 16] * 16 + [3 / 25] * 25
    plan = power_plan(rates, 4, draws=50)
    assert plan["detectable_points"] == pytest.approx(detectable_difference(rates, 4, 0.05, 0.8))
    # at the detectable difference the approximate power is the requested 80%
    assert approx_power(rates, 4, plan["detectable_points"] / 100) == pytest.approx(0.8, abs=1e-6)
    assert 0.0 <= plan["simulated_power_at_effect"] <= 1.0


# --------------------------------------------------------------------------- arguments and design
def test_families_and_arms():
    assert resolve_families("Pick, look,heat,COOL") == (
        "pick_and_place_simple",
        "look_at_obj_in_light",
        "pick_heat_then_place_in_recep",
        "pick_cool_then_place_in_recep",
    )
    assert resolve_families("pick_two_obj_and_place") == ("pick_two_obj_and_place",)
    with pytest.raises(ConfigError, match="unknown task family 'pickk'"):
        resolve_families("pickk")
    assert resolve_arms("ungated,gated,seed") == ("seed", "gated", "ungated")
    with pytest.raises(ConfigError, match="must include gated and ungated"):
        resolve_arms("seed,gated")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probes": 2, "alpha": 0.2}, "can never commit"),
        ({"probes": 16, "probe_pool": 16}, "must exceed --probes"),
        ({"episodes_per_game": 0}, "--episodes-per-game must be at least 1"),
        ({"alpha": 1.0}, "--alpha must lie strictly between 0 and 1"),
        ({"policy": Path("/nonexistent")}, "not a complete merged model folder"),
    ],
)
def test_bad_options_one_sentence(change, message):
    with pytest.raises(ConfigError, match=message):
        check_options(Options(families=("pick_and_place_simple",), **change))


def test_changed_design_is_refused(tmp_path):
    design = {"probes": 16, "settings": {"seed": 0, "env.max_steps": 30}}
    check_design(tmp_path, design, "--work")
    check_design(tmp_path, dict(design), "--work")  # the same design resumes
    # a setting the code gained after the run started (at its default) resumes the same run
    grown = {"probes": 16, "settings": {"seed": 0, "env.max_steps": 30, "train.keep_states": 1}}
    check_design(tmp_path, grown, "--work")
    # ... but set away from its default it measures something else
    set_away = {"probes": 16, "settings": {"seed": 0, "env.max_steps": 30, "train.keep_states": 2}}
    with pytest.raises(ConfigError, match=r"another design \(train.keep_states differ\)"):
        check_design(tmp_path, set_away, "--work")
    assert design_in_force(tmp_path, set_away) == set_away
    changed = {"probes": 32, "settings": {"seed": 0, "env.max_steps": 50}}
    with pytest.raises(ConfigError, match=r"another design \(probes, env.max_steps differ\)"):
        check_design(tmp_path, changed, "--work")
    # the run goes on under its stored design (and hash): kept chunks stay valid as the code grows
    assert design_in_force(tmp_path, grown) == design
    assert design_in_force(tmp_path, changed) == changed
    assert design_in_force(tmp_path / "new", grown) == grown


def test_adding_an_arm_keeps_the_design(tmp_path):
    """The random arm may wait: the arms are not part of the design, so adding one later resumes
    the same run instead of being refused as a different design."""
    from skillmaster.bank_experiment import design_hash, design_of
    from skillmaster.config import load_config

    cfg = load_config(REPO / "params.yaml", run_overrides=False)
    three = design_of(Options(arms=("seed", "gated", "ungated")), cfg, REPO)
    four = design_of(Options(arms=ARMS), cfg, REPO)
    assert "arms" not in three and design_hash(three) == design_hash(four)
    assert design_hash(design_of(Options(probes=32), cfg, REPO)) != design_hash(four)


# --------------------------------------------------------------------------- the banks
def proposal(title: str, category: str = "general") -> Edit:
    return Edit(kind="propose", category=category, title=title, principle=f"{title}: do it this way.", when_to_apply="Always.")  # fmt: skip


def edit_rows(edits: list[tuple[str, Edit, bool, str]]) -> list[dict]:
    return [
        {
            "traj_id": k,
            "edit": e.model_dump_json(),
            "committed": c,
            "commit_reason": "committed" if c else "not_significant",
            "committed_id": i,
        }
        for k, e, c, i in edits
    ]


def test_build_banks_from_the_same_candidates():
    from skillmaster.skills.commit import ScoredEdit, commit_edits

    seed = load_bank(SEED_BANK)
    update_a = Edit(kind="update", skill_id="sm_gen_001", title="Go first", principle="Walk to it first.", when_to_apply="Always.")  # fmt: skip
    update_b = Edit(kind="update", skill_id="sm_gen_001", title="Go there", principle="Walk there first.", when_to_apply="Always.")  # fmt: skip
    new_a, dup_a = proposal("Open closed places"), proposal("Open closed places")
    new_b = proposal("Put it down last", "pick_and_place")
    # the gate committed update_a (key t2) and new_b (key t4)
    gated, decisions = commit_edits(seed, [ScoredEdit("t2", update_a, 0.5, p_value=0.01), ScoredEdit("t4", new_b, 0.5, p_value=0.02)], "test", alpha=0.1)  # fmt: skip
    ids = {d.key: d.skill_id for d in decisions}
    rows = edit_rows([("t1", update_b, False, ""), ("t2", update_a, True, ids["t2"]), ("t3", new_a, False, ""),
                      ("t4", new_b, True, ids["t4"]), ("t5", dup_a, False, "")])  # fmt: skip
    banks = build_banks(seed, gated, rows, rng_seed=7)
    committed = {arm: [d["key"] for d in dec if d["committed"]] for arm, (_, dec) in banks.items()}
    reasons = {d["key"]: d["reason"] for d in banks["ungated"][1]}
    assert committed["gated"] == ["t2", "t4"]
    # ungated: the gated edits first, then the others by key: t1 conflicts with t2 (same skill, t2
    # tried first), t3 is added, t5 duplicates t3
    assert committed["ungated"] == ["t2", "t4", "t3"]
    assert (reasons["t1"], reasons["t5"]) == ("conflict", "duplicate")
    assert set(committed["gated"]) <= set(committed["ungated"])
    assert len(committed["random"]) == len(committed["gated"])
    assert banks["seed"][0] == seed and banks["gated"][0] == gated
    seed_ids = {s.skill_id for _, s in iter_skills(seed)}
    for bank, _ in banks.values():
        assert seed_ids <= {s.skill_id for _, s in iter_skills(bank)}
    # every skill of the gated bank is in the ungated bank, as it is
    gated_skills = {s for _, s in iter_skills(banks["gated"][0])}
    assert gated_skills <= {s for _, s in iter_skills(banks["ungated"][0])}
    # seeded: the same random bank every time
    assert build_banks(seed, gated, rows, rng_seed=7)["random"][0] == banks["random"][0]


def test_progress_lists_the_finished_phases_in_the_results_folder(tmp_path):
    """A long run's progress goes beside its results (kept in git), phase by phase."""
    from skillmaster.bank_experiment import phases_of

    exp = BankExperiment.__new__(BankExperiment)  # the bookkeeping alone: no config, games or model
    exp.o, exp.work, exp.out, exp.hash = Options(), tmp_path / "work", tmp_path / "results", "abc123"
    exp.finish("seed-bank", {"seconds": 1.5})
    exp.finish("sft-data", {"seconds": 2.0, "samples": 10})
    progress = json.loads((tmp_path / "results" / "progress.json").read_text())
    assert progress == {
        "design": "abc123",
        "phases": {"seed-bank": {"seconds": 1.5}, "sft-data": {"seconds": 2.0, "samples": 10}},
        "pending": phases_of(exp.o)[2:],
    }


def test_phases():
    assert phases_of(Options(policy=Path("x"))) == ["seed-bank", "cold-start", "play", "review", "score", "banks", *(f"eval-{a}" for a in ARMS)]  # fmt: skip
    assert phases_of(Options(arms=("gated", "ungated")))[:3] == ["seed-bank", "sft-data", "cold-start"]


# --------------------------------------------------------------------------- end to end
def write_proposals(work: Path) -> int:
    """Replace every review of the work folder with a valid proposal (distinct titles), scored by
    ``score_review`` against the seed bank as the review stage scores a reply."""
    from skillmaster.config import ShapingConfig
    from skillmaster.skills.tools import score_review
    from skillmaster.tables import REVIEWS

    path = work / "data" / "iter_001" / "review" / "reviews.parquet"
    reviews = REVIEWS.read(path)
    bank = load_bank(work / "data" / "banks" / "iter_000.json")
    rows = []
    for i, row in enumerate(reviews.sort("traj_id").iter_rows(named=True)):
        args = {
            "category": row["category"],
            "title": f"Lesson {'ABCDEFGH'[i]} of this task",
            "principle": f"Check the places you have not seen before acting, variant {'ABCDEFGH'[i]}.",
            "when_to_apply": "When the object is not in sight.",
            "evidence": f"Evidence {'ABCDEFGH'[i]}: the episode searched the same place twice.",
        }
        reply = f'<think>A reusable lesson.</think><tool_call>{{"name": "propose_skill", "arguments": {json.dumps(args)}}}</tool_call>'  # fmt: skip
        out = score_review(reply, bank, row["category"], ShapingConfig())
        assert out.status == "added", out
        rows.append(row | {
            "response": reply, "response_ids": [], "response_tokens": 0, "tool": out.tool,
            "arguments": out.arguments_json(), "status": out.status, "shaping": out.shaping,
            "shaping_flags": out.flags, "skill_id": out.skill_id, "edit": out.edit_json(),
        })  # fmt: skip
    REVIEWS.write(REVIEWS.from_rows(rows), path)
    return len(rows)


class Recorder:
    """A tracker that keeps what it is given."""

    def __init__(self):
        self.metrics: dict[str, float] = {}
        self.artifacts: list[tuple[Path, str | None]] = []

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append((Path(path), artifact_path))


E2E = {"review": {"constrained": False}}  # 16-token replies: free text, no grammar compilation


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.alfworld
def test_end_to_end_resumes_and_reports(tmp_path, base_model_dir, alfworld_data):
    from skillmaster.tables import TRAJECTORIES

    cfg = tiny_config(E2E)
    options = Options(
        families=resolve_families("pick,look"),
        train_episodes=2,
        score=1,
        probes=2,
        placebos=1,
        alpha=0.3,
        episodes_per_game=2,
        eval_games=2,
        chunk=2,
        policy=base_model_dir,
    )
    work, out = tmp_path / "work", tmp_path / "results"
    lines: list[str] = []

    def experiment(o: Options = options) -> BankExperiment:
        return BankExperiment(
            o, cfg, root=REPO, work=work, out=out, base_model=base_model_dir, echo=lines.append
        )

    first = experiment().run(until="review")
    assert first["ran"] == ["seed-bank", "cold-start", "play", "review"]
    progress = json.loads((out / "progress.json").read_text())
    assert list(progress["phases"]) == first["ran"] and progress["pending"][0] == "score"
    assert any("power: no per-game rates" in line for line in lines)
    assert write_proposals(work) == 2

    second = experiment().run(rates=REPO / "results/cpu-experiment/sft/skills")
    assert second["ran"] == ["score", "banks", *(f"eval-{a}" for a in ARMS)]
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(second["report"]))

    # the four banks come from the same two candidates
    banks = json.loads((work / "banks" / "banks.json").read_text())
    gated, ungated, rand = (set(banks[a]["edits"]) for a in ("gated", "ungated", "random"))
    assert gated <= ungated and len(rand) == len(gated) and len(ungated) == 2
    assert report["gate"]["valid_edits"] == 2 and report["gate"]["scored"] == 1
    assert report["gate"]["committed"] == len(gated)
    seed_ids = {s.skill_id for _, s in iter_skills(load_bank(work / "banks" / "seed.json"))}
    for arm in ARMS:
        assert seed_ids <= {s.skill_id for _, s in iter_skills(load_bank(out / "banks" / f"{arm}.json"))}

    # every arm: the same 2 games x 2 episodes, the same episode ids (hence seeds)
    played = {a: TRAJECTORIES.read(work / "eval" / a / "episodes.parquet") for a in ARMS}
    ids = {a: sorted(e["traj_id"].to_list()) for a, e in played.items()}
    assert all(v == ids["seed"] for v in ids.values()) and len(ids["seed"]) == 4
    assert sum(t.endswith("-r01") for t in ids["seed"]) == 2
    assert played["seed"]["task_id"].n_unique() == 2
    assert set(played["seed"]["family"]) <= set(options.families)
    assert not (work / "eval" / "seed" / ".partial").exists()  # kept chunks go once the arm is done

    # the report: the primary contrast's p, Holm-corrected others, the gate, the scored edit
    primary = report["contrasts"]["primary"]
    assert primary["name"] == "gated vs ungated" and 0.0 <= primary["p_value"] <= 1.0
    assert [c["name"] for c in report["contrasts"]["secondary"]] == ["gated vs seed", "ungated vs seed", "gated vs random"]  # fmt: skip
    assert all(c["p_holm"] >= c["p_value"] for c in report["contrasts"]["secondary"])
    assert report["gate"]["placebos"] == 1 and report["gate"]["alpha"] == 0.3
    assert 0.0 <= report["gate"]["false_commit_rate"] <= 1.0
    (edit,) = report["edits"]
    assert edit["evidence"].startswith("Evidence ") and len(edit["deltas"]) == 2
    assert 0.0 < edit["p_value"] <= 1.0 and edit["committed"] == (edit["traj_id"] in gated)
    assert report["power"]["planned"]["games"] == 2 and report["power"]["measured"]["games"] == 2
    md = (out / "report.md").read_text()
    assert "gated vs ungated** (primary)" in md and edit["evidence"] in md
    assert (out / "episodes.csv").stat().st_size < 1_000_000
    assert not list(out.rglob("*.parquet"))

    # a rerun resumes: nothing is played again, the markers stay as they were
    markers = {p.name: p.stat().st_mtime_ns for p in (work / "phases").iterdir()}
    third = experiment().run()
    assert third["ran"] == []
    assert {p.name: p.stat().st_mtime_ns for p in (work / "phases").iterdir()} == markers
    assert third["report"]["contrasts"] == second["report"]["contrasts"]
    assert third["report"]["power"]["planned"] == second["report"]["power"]["planned"]  # kept from --rates

    # the MLflow run gets the report's numbers as bank_experiment/... and the results folder
    recorder = Recorder()
    experiment().log(recorder, third["report"])
    for name in ("primary/p_value", "arm/gated/success_rate", "arm/seed/ci_low", "contrast/gated_vs_seed/p_holm",
                 "gate/false_commit_rate", "gate/alpha", "power/measured/detectable_points"):  # fmt: skip
        assert f"bank_experiment/{name}" in recorder.metrics, name
    assert recorder.metrics["bank_experiment/primary/p_value"] == primary["p_value"]
    assert recorder.artifacts == [(out, "bank-experiment")]

    # another design into the same folder is refused before anything runs
    with pytest.raises(ConfigError, match=r"another design \(episodes_per_game differ\)"):
        experiment(Options(**{**options.__dict__, "episodes_per_game": 3})).run()
    assert {p.name: p.stat().st_mtime_ns for p in (work / "phases").iterdir()} == markers
