"""ALFWorld on the real engine: discovery, the environment protocol, engine caches, game data."""

from __future__ import annotations

import json
import pickle
import random
import shutil
import tarfile
from pathlib import Path

import pytest

from skillmaster.config import EnvConfig
from skillmaster.envs import alfworld as alf
from skillmaster.envs.alfworld import AlfworldSuite, ensure_data, set_engine_caches
from skillmaster.envs.base import INFO_KEYS
from skillmaster.envs.registry import make_suite
from skillmaster.errors import ConfigError, DataError

pytestmark = pytest.mark.alfworld


@pytest.fixture(scope="module")
def suite(alfworld_data) -> AlfworldSuite:
    return AlfworldSuite(data_dir=str(alfworld_data), max_steps=50)


@pytest.fixture(scope="module")
def first_of_family(suite) -> dict[str, alf.TaskSpec]:
    out: dict[str, alf.TaskSpec] = {}
    for t in suite.tasks("valid_seen"):
        out.setdefault(t.family, t)
    return out


def copy_game(
    src_root: Path, task, dst_root: Path, split: str = "valid_seen", folder: str | None = None
) -> Path:
    """Copy one real game into ``dst_root`` (optionally under another family folder name)."""
    family_dir, trial = task.task_id.split("/")
    dst = dst_root / "json_2.1.1" / split / (folder or family_dir) / trial
    dst.mkdir(parents=True)
    shutil.copy(src_root / "json_2.1.1" / task.split / task.task_id / "game.tw-pddl", dst / "game.tw-pddl")
    return dst


def edit_game(game_dir: Path, **changes) -> None:
    path = game_dir / "game.tw-pddl"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------- discovery
def test_discovers_all_valid_seen_games_in_six_families(suite):
    tasks = suite.tasks("valid_seen")
    assert len(tasks) == 140
    assert {t.family for t in tasks} == set(alf.FAMILY_CATEGORY)
    assert [t.task_id for t in tasks] == sorted(t.task_id for t in tasks)
    assert all(t.task_id.count("/") == 1 and t.task_id.split("/")[1].startswith("trial_") for t in tasks)
    two = next(t for t in tasks if t.family == "pick_two_obj_and_place")
    assert two.category == "pick_and_place" and two.split == "valid_seen"
    assert set(suite.categories) >= {t.category for t in tasks}


def test_task_ids_do_not_depend_on_the_data_folder(suite, first_of_family, tmp_path, alfworld_data):
    for task in first_of_family.values():
        copy_game(alfworld_data, task, tmp_path)
    moved = AlfworldSuite(data_dir=str(tmp_path)).tasks("valid_seen")
    assert [t.task_id for t in moved] == sorted(t.task_id for t in first_of_family.values())
    assert [t.family for t in moved] == [first_of_family[t.family].family for t in moved]


def test_family_from_traj_data_when_present_else_from_the_folder(first_of_family, tmp_path, alfworld_data):
    plain = copy_game(alfworld_data, first_of_family["pick_and_place_simple"], tmp_path)
    with_traj = copy_game(alfworld_data, first_of_family["look_at_obj_in_light"], tmp_path)
    # the official download has traj_data.json; its task_type wins over the folder name
    (with_traj / "traj_data.json").write_text(json.dumps({"task_type": "pick_two_obj_and_place"}))
    by_id = {t.task_id: t for t in AlfworldSuite(data_dir=str(tmp_path)).tasks("valid_seen")}
    assert by_id[f"{plain.parent.name}/{plain.name}"].family == "pick_and_place_simple"
    traj_task = by_id[f"{with_traj.parent.name}/{with_traj.name}"]
    assert (traj_task.family, traj_task.category) == ("pick_two_obj_and_place", "pick_and_place")


def test_unsolvable_unflagged_movable_and_sliced_games_are_skipped(first_of_family, tmp_path, alfworld_data):
    task = first_of_family["pick_and_place_simple"]
    keep = copy_game(alfworld_data, task, tmp_path)
    edit_game(
        copy_game(alfworld_data, task, tmp_path, folder="pick_and_place_simple-A-None-B-1"), solvable=False
    )
    edit_game(
        copy_game(alfworld_data, task, tmp_path, folder="pick_and_place_simple-C-None-D-2"), solvable=None
    )
    copy_game(alfworld_data, task, tmp_path, folder="pick_and_place_simple-Pen-None-movable-Desk-3")
    copy_game(alfworld_data, task, tmp_path, folder="pick_heat_then_place_in_recep-AppleSliced-None-Fridge-4")
    tasks = AlfworldSuite(data_dir=str(tmp_path)).tasks("valid_seen")
    assert [t.task_id for t in tasks] == [f"{keep.parent.name}/{keep.name}"]


def test_unusable_game_folders_are_skipped_with_a_warning_and_reported(
    first_of_family, tmp_path, alfworld_data, caplog
):
    """Issue #21: one unreadable game file used to stop the whole split; a folder without a game
    file was skipped without a word."""
    task = first_of_family["pick_and_place_simple"]
    keep = copy_game(alfworld_data, task, tmp_path)
    bad_json = copy_game(alfworld_data, task, tmp_path, folder="pick_and_place_simple-A-None-B-1")
    (bad_json / "game.tw-pddl").write_text('{"solvable": true, "pddl_domain": ')  # cut short
    bad_traj = copy_game(alfworld_data, task, tmp_path, folder="pick_and_place_simple-C-None-D-2")
    (bad_traj / "traj_data.json").write_bytes(b"\xff\xfe")
    empty = tmp_path / "json_2.1.1" / "valid_seen" / "pick_and_place_simple-E-None-F-3" / "trial_T1"
    empty.mkdir(parents=True)
    with caplog.at_level("WARNING", logger="skillmaster.envs.alfworld"):
        tasks = AlfworldSuite(data_dir=str(tmp_path)).tasks("valid_seen")
    assert [t.task_id for t in tasks] == [f"{keep.parent.name}/{keep.name}"]
    skipped = alf.skipped_games(tmp_path, "valid_seen")
    assert [s["folder"] for s in skipped] == [str(bad_json), str(bad_traj), str(empty)]
    assert "not a valid ALFWorld game file" in skipped[0]["reason"]
    assert "traj_data.json" in skipped[1]["reason"]
    assert "no game.tw-pddl in this game folder" in skipped[2]["reason"]
    warned = [r.getMessage() for r in caplog.records]
    assert all(any(s["folder"] in w for w in warned) for s in skipped)


def test_a_game_with_broken_pddl_is_reported_with_its_path(first_of_family, tmp_path, alfworld_data):
    task = first_of_family["look_at_obj_in_light"]
    game = copy_game(alfworld_data, task, tmp_path)
    data = json.loads((game / "game.tw-pddl").read_text())
    edit_game(game, pddl_problem=data["pddl_problem"][: len(data["pddl_problem"]) // 2])
    env = AlfworldSuite(data_dir=str(tmp_path)).make_env()
    with pytest.raises(DataError) as err:
        env.reset(options={"task_id": task.task_id, "split": "valid_seen"})
    assert str(err.value).startswith(f"{game / 'game.tw-pddl'}: the engine cannot load this ALFWorld game")
    assert "\n" not in str(err.value)


def test_missing_split_is_one_clear_data_error(suite, alfworld_data):
    with pytest.raises(DataError) as err:
        suite.tasks("valid_unseen")
    msg = str(err.value)
    assert str(alfworld_data / "json_2.1.1" / "valid_unseen") in msg
    assert "make data" in msg and "alfworld-download" in msg and "ALFWORLD_DATA" in msg
    assert "\n" not in msg


def test_unknown_split_family_and_task_are_clear_errors(suite, tmp_path):
    with pytest.raises(ConfigError, match="not an ALFWorld split"):
        suite.tasks("validation")
    with pytest.raises(ConfigError, match="not ALFWorld task families"):
        AlfworldSuite(data_dir=str(tmp_path), families=("pick_and_place",))
    with pytest.raises(DataError, match="not found"):
        suite.game_file("no-such-game/trial_1", "valid_seen")
    (tmp_path / "json_2.1.1" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no solvable ALFWorld games"):
        AlfworldSuite(data_dir=str(tmp_path)).tasks("train")


def test_families_filter_and_registry(alfworld_data):
    suite = make_suite(
        EnvConfig(name="alfworld", data_dir=str(alfworld_data), families=["pick_cool_then_place_in_recep"])
    )
    assert isinstance(suite, AlfworldSuite)
    tasks = suite.tasks("valid_seen")
    assert tasks and {t.category for t in tasks} == {"cool"}
    assert pickle.loads(pickle.dumps(suite)) == suite  # workers rebuild it from plain data


# --------------------------------------------------------------------------- the environment
def test_reset_gives_the_engine_text_and_the_info_keys(suite, first_of_family):
    task = first_of_family["pick_clean_then_place_in_recep"]
    env = suite.make_env()
    obs, info = env.reset(options={"task_id": task.task_id, "split": "valid_seen"})
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
    assert set(INFO_KEYS) <= set(info)
    assert info["task_text"] and obs.endswith(f"Your task is to: {info['task_text']}")
    assert (info["task_family"], info["category"], info["task_id"]) == (task.family, "clean", task.task_id)
    assert "help" not in info["admissible_actions"] and "look" in info["admissible_actions"]
    assert (info["won"], info["step"], info["valid"]) == (False, 0, True)
    env.close()


def test_invalid_action_gets_nothing_happens_and_counts_as_invalid(suite, first_of_family):
    task = first_of_family["look_at_obj_in_light"]
    env = suite.make_env()
    _, info0 = env.reset(options={"task_id": task.task_id, "split": "valid_seen"})
    obs, reward, terminated, truncated, info = env.step("dance with the desklamp")
    assert obs == "Nothing happens."
    assert (reward, terminated, truncated, info["valid"], info["step"]) == (0.0, False, False, False, 1)
    assert info["admissible_actions"] == info0["admissible_actions"]
    _, _, _, _, info = env.step(" look ")  # the engine strips the command; so does the validity check
    assert info["valid"] and info["step"] == 2
    env.close()


def test_step_limit_truncates_and_the_episode_ends(alfworld_data, first_of_family):
    suite = AlfworldSuite(data_dir=str(alfworld_data), max_steps=3)
    env = suite.make_env()
    env.reset(options={"task_id": first_of_family["pick_and_place_simple"].task_id, "split": "valid_seen"})
    flags = [env.step("look")[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("look")
    env.close()


def test_walkthrough_wins_one_game_per_family(suite, first_of_family):
    env = suite.make_env()  # one engine, reloaded game after game, as in a worker
    for family, task in sorted(first_of_family.items()):
        env.reset(options={"task_id": task.task_id, "split": "valid_seen"})
        actions = suite.walkthrough(task.task_id, "valid_seen")
        for n, action in enumerate(actions, 1):
            _, reward, terminated, truncated, info = env.step(action)
            assert info["valid"], (family, action)
            assert terminated == (n == len(actions)) and not truncated
        assert (reward, info["won"]) == (10.0, True), family
    env.close()


def play(env, task, actions: list[str]) -> list[tuple]:
    obs, info = env.reset(options={"task_id": task.task_id, "split": task.split})
    trace = [(obs, info["admissible_actions"], info["won"])]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs, info["admissible_actions"], info["won"], reward, terminated, truncated))
    return trace


def test_engine_caches_leave_the_engine_output_unchanged(suite, first_of_family):
    """Caches off vs on, same games, same actions (walkthrough, random admissible, invalid)."""
    was_on = set_engine_caches(False)
    try:
        plain = suite.make_env()
        set_engine_caches(False)
        scripts = {}
        for family in ("pick_heat_then_place_in_recep", "pick_two_obj_and_place"):
            task = first_of_family[family]
            _, info = plain.reset(options={"task_id": task.task_id, "split": "valid_seen"})
            rng, actions = random.Random(family), []
            for _ in range(6):  # random admissible actions
                action = rng.choice(info["admissible_actions"])
                actions.append(action)
                info = plain.step(action)[4]
            scripts[family] = [*actions, "xyzzy", *suite.walkthrough(task.task_id, "valid_seen")]
        bare = {f: play(plain, first_of_family[f], a) for f, a in scripts.items()}
        plain.close()
        assert set_engine_caches(True)
        cached_env = suite.make_env()
        cached = {f: play(cached_env, first_of_family[f], a) for f, a in scripts.items()}
        again = {f: play(cached_env, first_of_family[f], a) for f, a in scripts.items()}  # warm caches
        cached_env.close()
    finally:
        set_engine_caches(was_on or suite.engine_caches)
    assert cached == bare and again == bare
    assert any(step[0] == "Nothing happens." for trace in bare.values() for step in trace[1:])


# --------------------------------------------------------------------------- getting the games
def make_archive(tmp_path: Path, alfworld_data: Path, tasks) -> Path:
    staging = tmp_path / "staging"
    for task in tasks:
        copy_game(alfworld_data, task, staging)
    folder = tmp_path / "archives"
    folder.mkdir()
    with tarfile.open(folder / "valid_seen.tar.xz", "w:xz") as tar:
        tar.add(staging / "json_2.1.1", arcname="json_2.1.1")
    return folder


def test_data_unpacks_archives_once(tmp_path, alfworld_data, first_of_family):
    tasks = [first_of_family["pick_and_place_simple"], first_of_family["pick_cool_then_place_in_recep"]]
    archives = make_archive(tmp_path, alfworld_data, tasks)
    target = tmp_path / "data" / "alfworld"
    line = ensure_data(target, archives, progress=False)
    assert "valid_seen 2" in line
    assert [t.task_id for t in AlfworldSuite(data_dir=str(target)).tasks("valid_seen")] == sorted(
        t.task_id for t in tasks
    )
    assert not list(target.glob(".unpack-*"))
    (archives / "valid_seen.tar.xz").unlink()  # present → nothing to do, the archives are not read
    assert ensure_data(target, archives, progress=False) == line


def test_a_broken_archive_leaves_nothing_half_unpacked(tmp_path, alfworld_data, first_of_family):
    archives = make_archive(tmp_path, alfworld_data, [first_of_family["look_at_obj_in_light"]])
    blob = (archives / "valid_seen.tar.xz").read_bytes()
    (archives / "valid_seen.tar.xz").write_bytes(blob[: len(blob) // 2])
    target = tmp_path / "data"
    with pytest.raises(DataError, match="cannot unpack"):
        ensure_data(target, archives, progress=False)
    assert alf.count_games(target) == {} and not list(target.glob(".unpack-*"))


def test_offline_download_fails_with_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there: offline
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # alfworld-download stages its files in $TMPDIR
    target = tmp_path / "alfworld"
    with pytest.raises(DataError) as err:
        ensure_data(target, None, progress=False)
    msg = str(err.value)
    assert (
        f"no ALFWorld games in {target}" in msg and "alfworld-download" in msg and "ALFWORLD_ARCHIVES" in msg
    )
