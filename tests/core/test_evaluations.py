"""The experiment table (``skillmaster compare --evals``): intervals, paired tests, folders, plot."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from skillmaster.errors import DataError
from skillmaster.evaluations import (
    bar_heights,
    evaluation_table,
    family_bar_plot,
    format_evaluation_table,
    format_shown_effect,
    load_evaluations,
    mcnemar_exact,
    paired_comparison,
    shown_in_changed,
    summarize,
    wilson_interval,
)


def test_wilson_interval_by_hand():
    # 3/16: p = .1875, z² = 3.8415; centre = .1875 + 3.8415/32 = .30755;
    # half = 1.96·sqrt(.1875·.8125/16 + 3.8415/1024) = .22581; denominator 1 + 3.8415/16 = 1.24009
    lo, hi = wilson_interval(3, 16)
    assert lo == pytest.approx(0.0659, abs=5e-4) and hi == pytest.approx(0.4301, abs=5e-4)
    # 0/140: the upper bound is z²/(n + z²) = 3.8415/143.8415
    assert wilson_interval(0, 140) == pytest.approx((0.0, 0.026706), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # At the edges the bound is exact, not off by rounding (a plot's error bar must not go negative)
    assert [wilson_interval(0, n)[0] for n in (1, 7, 140, 1000)] == [0.0] * 4
    assert [wilson_interval(n, n)[1] for n in (1, 7, 140, 1000)] == [1.0] * 4
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # 2·P(X ≤ 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact(1, 3) == pytest.approx(2 * 5 / 16)  # 2·(1 + 4)/16
    assert mcnemar_exact(2, 2) == 1.0  # capped
    assert mcnemar_exact(0, 0) == 1.0


def episodes(row_wins: dict[str, bool], family="pick_and_place_simple", condition="eval_skills", length=5):
    return pl.DataFrame(
        {
            "task_id": list(row_wins),
            "family": [family] * len(row_wins),
            "won": list(row_wins.values()),
            "length": [length if w else 20 for w in row_wins.values()],
            "invalid_count": [1] * len(row_wins),
            "condition": [condition] * len(row_wins),
        }
    )


def test_paired_comparison_counts_discordant_games_only():
    ref = episodes({"g1": True, "g2": True, "g3": False, "g4": False})
    row = episodes({"g1": True, "g2": False, "g3": False, "g4": True, "g5": True})  # g5: not in ref
    p = paired_comparison(row, ref)
    assert (p.games, p.only_row, p.only_reference) == (4, 1, 1)
    assert p.p_value == 1.0
    with pytest.raises(DataError, match="more than once"):
        paired_comparison(pl.concat([row, row]), ref)


def test_summarize_counts_families_invalid_share_and_steps_of_wins():
    df = pl.concat(
        [
            episodes({"a": True, "b": False}),
            episodes({"c": True}, family="pick_heat_then_place_in_recep", length=9),
        ]
    )
    s = summarize(df)
    assert (s["successes"], s["episodes"]) == (2, 3)
    assert s["by_family"] == {"pick_and_place_simple": (1, 2), "pick_heat_then_place_in_recep": (1, 1)}
    assert s["invalid_share"] == pytest.approx(3 / (5 + 20 + 9))
    assert s["mean_steps_of_wins"] == pytest.approx(7.0)


def write(folder, df):
    folder.mkdir(parents=True)
    df.write_parquet(folder / "episodes.parquet")
    (folder / "metrics.json").write_text("{}")


@pytest.fixture
def experiment(tmp_path):
    root = tmp_path / "experiment"
    games = [f"g{i}" for i in range(8)]
    write(root / "skillmaster" / "skills", episodes(dict.fromkeys(games, True)))
    write(root / "grpo" / "skills", episodes({g: i < 2 for i, g in enumerate(games)}))
    write(
        root / "grpo" / "no-skills",
        episodes({g: i < 1 for i, g in enumerate(games)}, condition="eval_no_skills"),
    )
    write(root / "base", episodes(dict.fromkeys(games, False)))  # a row folder without a condition level
    return root


def test_folders_become_rows_in_the_papers_order_with_paired_tests(experiment):
    found = load_evaluations([experiment])
    assert set(found) == {
        ("skillmaster", "skills"),
        ("grpo", "skills"),
        ("grpo", "no-skills"),
        ("base", "skills"),
    }
    records = evaluation_table(found)
    assert [(r["row"], r["condition"]) for r in records] == [
        ("base", "skills"),
        ("grpo", "skills"),
        ("skillmaster", "skills"),
        ("grpo", "no-skills"),
    ]
    grpo = records[1]["paired"]
    assert (grpo.only_row, grpo.only_reference, grpo.p_value) == (0, 6, pytest.approx(2 / 64))
    assert records[2]["paired"] is None and records[3]["paired"] is None  # the reference; no reference there
    text = format_evaluation_table(records)
    assert "| grpo | skills | 2/8 | **2/8** (25.0%, 7.1-59.1) |" in text
    assert "0 / 6, p = 0.0312 (8 games)" in text
    # the same policy with the skills shown against hidden: g1 is won only when they are shown
    shown = records[1]["vs_no_skills"]
    assert (shown.games, shown.only_row, shown.only_reference, shown.p_value) == (8, 1, 0, 1.0)
    assert records[0]["vs_no_skills"] is None and records[3]["vs_no_skills"] is None
    assert format_shown_effect(records).splitlines()[2] == "| grpo | 2/8 | 1/8 | 1 / 0, p = 1 (8 games) |"
    assert format_shown_effect(records[:1]) == ""


def test_a_folder_without_evaluations_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"holds no episodes\.parquet"):
        load_evaluations([tmp_path / "empty"])
    with pytest.raises(DataError, match="not a folder"):
        load_evaluations([tmp_path / "missing"])


def test_compare_evals_prints_json_and_draws_success_by_family(experiment, tmp_path):
    from skillmaster.cli import app

    png = tmp_path / "families.png"
    result = CliRunner().invoke(app, ["compare", "--evals", str(experiment), "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["row"], r["condition"]): r["successes"] for r in rows}[("skillmaster", "skills")] == 8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = CliRunner().invoke(app, ["compare", "--evals", str(experiment), "--reference", "grpo"])
    assert text.exit_code == 0, text.output
    assert "vs grpo" in text.stdout and "6 / 0, p = 0.0312" in text.stdout
    assert "Showing the skills against hiding them" in text.stdout
    grpo = {(r["row"], r["condition"]): r for r in rows}[("grpo", "skills")]
    assert grpo["vs_no_skills"] == {"games": 8, "only_row": 1, "only_reference": 0, "p_value": 1.0}


def test_without_the_reference_row_there_is_no_paired_column(experiment):
    records = evaluation_table(load_evaluations([experiment / "grpo", experiment / "base"]))
    assert "McNemar" not in format_evaluation_table(records)


def test_shown_in_changed_counts_edited_skills_in_games_that_changed_outcome():
    row = pl.DataFrame(
        {
            "task_id": ["a", "b", "c", "d", "e"],
            "won": [True, True, False, False, True],
            "skills_shown": [["g1", "s9"], ["g2"], ["s9"], [], ["s9"]],
        }
    )
    ref = pl.DataFrame({"task_id": ["a", "b", "c", "d", "e"], "won": [False, False, True, True, True]})
    s = shown_in_changed(row, ref, ["s9", "zz"])
    # improved: a (shown s9), b (not); worsened: c (shown), d (not); shown overall: a, c, e
    assert (s.games, s.shown, s.improved, s.improved_shown, s.worsened, s.worsened_shown) == (
        5,
        3,
        2,
        1,
        2,
        1,
    )
    with pytest.raises(DataError, match="skills_shown"):
        shown_in_changed(ref, ref, ["s9"])


def test_family_plot_axis_holds_every_bar(tmp_path, monkeypatch):
    # Pick 12/35 = 0.343 is above the overall interval's top (0.145): the bar must not be cut off.
    record = {
        "row": "skillmaster",
        "condition": "skills",
        "by_family": {"pick_and_place_simple": (12, 35), "look_at_obj_in_light": (0, 105)},
        "success_rate": 12 / 140,
        "ci_low": 0.05,
        "ci_high": 0.145,
    }
    families = ["pick_and_place_simple", "look_at_obj_in_light"]
    assert bar_heights(record, families) == pytest.approx([12 / 35, 0.0, 12 / 140])
    assert bar_heights(record, [*families, "pick_two_obj_and_place"])[2] == 0.0  # no game: no bar
    import skillmaster.plots

    tops = []
    monkeypatch.setattr(
        skillmaster.plots, "save_png", lambda fig, path: tops.append(fig.axes[0].get_ylim()[1])
    )
    family_bar_plot(tmp_path / "f.png", [record])
    assert tops == [pytest.approx(12 / 35 * 1.1)]


def test_a_reference_with_a_condition_pairs_every_row_with_that_evaluation(experiment):
    records = evaluation_table(load_evaluations([experiment]), "skillmaster:skills")
    by = {(r["row"], r["condition"]): r["paired"] for r in records}
    # grpo without skills won g0 only; skillmaster with skills won all 8: 0 / 7, p = 2 / 2^7
    hidden = by[("grpo", "no-skills")]
    assert (hidden.only_row, hidden.only_reference, hidden.p_value) == (0, 7, pytest.approx(2 / 128))
    assert by[("skillmaster", "skills")] is None
    assert (
        "vs skillmaster (skills) (won only by row / only by skillmaster (skills)"
        in format_evaluation_table(records, "skillmaster:skills")
    )
    with pytest.raises(DataError, match="ROW:CONDITION"):
        evaluation_table(load_evaluations([experiment]), "skillmaster:hidden")
