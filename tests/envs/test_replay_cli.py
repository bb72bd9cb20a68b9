"""``skillmaster env replay|data`` and ``skillmaster bench env`` on the real games."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skillmaster.bench.env import run_env_bench
from skillmaster.envs.base import TaskSpec
from skillmaster.envs.cli import GameRecord, percentile, round_robin, summarize_replay
from skillmaster.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, data: Path | str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALFWORLD_DATA": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "skillmaster.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# --------------------------------------------------------------------------- pure helpers
def spec(task_id: str, family: str) -> TaskSpec:
    return TaskSpec(task_id, family, family, "valid_seen")


def test_round_robin_covers_every_family_first():
    tasks = [spec(f"{f}-{i}", f) for f in ("b", "a", "c") for i in range(3)]
    assert [t.task_id for t in round_robin(tasks, 4)] == ["a-0", "b-0", "c-0", "a-1"]
    assert round_robin(tasks, None) == tasks and round_robin(tasks, 99) == tasks


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0]
    assert percentile(values, 90) == 9.0 and percentile(values, 50) == 5.0 and percentile(values, 100) == 10.0
    assert percentile([3.0], 90) == 3.0


def test_summarize_replay_by_family():
    records = [
        GameRecord(spec("x/1", "heat"), won=True, steps=3),
        GameRecord(spec("x/2", "heat"), won=False, steps=2, error="boom"),
        GameRecord(spec("y/1", "cool"), won=True, steps=1),
    ]
    out = summarize_replay("valid_seen", records, [0.001, 0.003, 0.002], [0.5, 0.7], wall_s=1.234)
    assert (out["games"], out["wins"], out["steps"]) == (3, 2, 3)
    assert out["by_family"] == {"cool": {"games": 1, "wins": 1}, "heat": {"games": 2, "wins": 1}}
    assert (out["ms_per_step_median"], out["ms_per_step_p90"], out["ms_per_reset_median"]) == (
        2.0,
        3.0,
        600.0,
    )
    assert out["not_won"] == [{"task_id": "x/2", "steps": 2, "error": "boom"}]


def test_replay_lists_every_game_not_won_and_says_when_the_table_cuts(capsys):
    """Issue #21: the list was cut at 20 without a word."""
    from skillmaster.envs.cli import NOT_WON_SHOWN, _print_replay

    records = [GameRecord(spec(f"x/{i:02d}", "heat"), won=False, steps=1) for i in range(25)]
    report = summarize_replay("valid_seen", records, [0.001], [0.5], wall_s=1.0)
    assert len(report["not_won"]) == 25  # --json: all of them
    report["skipped"] = [{"folder": "/d/x/3", "reason": "/d/x/3: no game.tw-pddl in this game folder"}]
    _print_replay(report)
    out = capsys.readouterr().out
    assert out.count("  not won: ") == NOT_WON_SHOWN == 20
    assert "… and 5 more games not won (--json lists all 25)" in out
    assert "skipped (unusable): /d/x/3: no game.tw-pddl in this game folder" in out


# --------------------------------------------------------------------------- the commands
@pytest.mark.alfworld
def test_replay_wins_a_game_of_every_family(alfworld_data, tmp_path):
    out = cli(
        "env", "replay", "--split", "valid_seen", "--limit", "6", "--json", data=alfworld_data, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["games"], report["wins"], len(report["by_family"])) == (6, 6, 6)
    assert all(row == {"games": 1, "wins": 1} for row in report["by_family"].values())
    assert report["steps"] > 6 and report["ms_per_step_median"] > 0 and report["not_won"] == []
    assert "replay valid_seen" in out.stderr  # the progress bar


@pytest.mark.alfworld
def test_replay_of_a_missing_split_is_one_sentence(alfworld_data, tmp_path):
    out = cli("env", "replay", "--split", "valid_unseen", data=alfworld_data, cwd=tmp_path)
    assert out.returncode == 2
    assert (
        str(Path(alfworld_data) / "json_2.1.1" / "valid_unseen") in out.stderr and "make data" in out.stderr
    )
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0


@pytest.mark.alfworld
def test_data_command_is_a_no_op_when_games_are_present(alfworld_data, tmp_path):
    before = sorted(p.name for p in Path(alfworld_data).iterdir())
    out = cli("env", "data", data=alfworld_data, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "ALFWorld games present" in out.stdout and "valid_seen 140" in out.stdout
    assert sorted(p.name for p in Path(alfworld_data).iterdir()) == before


@pytest.mark.alfworld
def test_bench_env_quick(alfworld_data, tmp_path):
    out = cli("bench", "env", "--quick", "--json", data=alfworld_data, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    lat, pool = report["step_latency"], report["pool"]
    assert report["identical_outputs"] is True  # bare engine, wrapper, cached wrapper: same text
    assert lat["bare_ms_median"] > 0 and lat["overhead_ratio"] == round(
        lat["wrapper_ms_median"] / lat["bare_ms_median"], 3
    )
    assert {"1", "2", "4", "speedup_2_vs_1"} <= set(pool) and all(pool[w] > 0 for w in ("1", "2", "4"))


def test_bench_env_unknown_environment():
    with pytest.raises(ConfigError, match="no environment benchmark for 'nethack'"):
        run_env_bench("nethack", quick=True)
