"""The worker pool on the real ALFWorld engine: lock-step order, failures, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from skillmaster.envs.alfworld import AlfworldSuite
from skillmaster.envs.pool import EnvPool

pytestmark = pytest.mark.alfworld


@pytest.fixture(scope="module")
def suite(alfworld_data) -> AlfworldSuite:
    return AlfworldSuite(data_dir=str(alfworld_data), max_steps=50)


@pytest.fixture(scope="module")
def games(suite) -> list:
    """One game of each of four families (small rooms first keeps resets short)."""
    out = {}
    for t in suite.tasks("valid_seen"):
        out.setdefault(t.family, t)
    return [
        out[f]
        for f in (
            "look_at_obj_in_light",
            "pick_and_place_simple",
            "pick_two_obj_and_place",
            "pick_cool_then_place_in_recep",
        )
    ]


def options(task) -> dict:
    return {"task_id": task.task_id, "split": task.split}


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_lockstep_results_come_back_in_request_order(suite, games):
    with EnvPool(suite, num_envs=3, num_workers=2) as pool:
        resets = pool.reset_many([(2, options(games[2])), (0, options(games[0])), (1, options(games[1]))])
        assert [info["task_id"] for _, info in resets] == [
            games[2].task_id,
            games[0].task_id,
            games[1].task_id,
        ]
        assert len(pool.last_timings) == 3 and all(t > 0 for t in pool.last_timings)
        results = pool.step_many([(1, "inventory"), (2, "look"), (0, "dance")])
        assert results[0][0] == "You are not carrying anything."
        assert results[1][0].startswith("You are in the middle of a room.")
        assert results[2][0] == "Nothing happens." and results[2][4]["valid"] is False
        assert [r[4]["step"] for r in results] == [1, 1, 1]
        with pytest.raises(ValueError, match="distinct"):
            pool.step_many([(0, "look"), (0, "look")])


def test_a_killed_worker_is_replaced_and_the_pool_keeps_stepping(suite, games):
    with EnvPool(suite, num_envs=4, num_workers=2) as pool:  # worker 0: envs 0, 2; worker 1: envs 1, 3
        pool.reset_many([(i, options(g)) for i, g in enumerate(games)])
        pool.step_many([(i, "look") for i in range(4)])
        old = pool.worker_pids()
        os.kill(old[0], signal.SIGKILL)  # mid-episode
        results = pool.step_many([(i, "inventory") for i in range(4)])
        for i in (0, 2):
            _, reward, terminated, _, info = results[i]
            assert "died" in info["error"] and "signal 9" in info["error"]
            assert terminated and reward == 0.0 and not info["won"] and info["task_id"] == games[i].task_id
        for i in (1, 3):
            assert "error" not in results[i][4] and results[i][4]["step"] == 2
        new = pool.worker_pids()
        assert new[0] != old[0] and new[1] == old[1] and alive(new[0])
        again = pool.step_many([(0, "look"), (1, "look")])
        assert "must be reset" in again[0][4]["error"] and again[1][4]["step"] == 3
        _, info = pool.reset_many([(0, options(games[0]))])[0]
        assert "error" not in info and info["step"] == 0
        assert "error" not in pool.step_many([(0, "look"), (3, "look")])[0][4]


def test_an_exception_in_one_env_ends_only_its_episode(suite, games):
    task = games[0]
    walk = suite.walkthrough(task.task_id, task.split)
    with EnvPool(suite, num_envs=2, num_workers=1) as pool:
        pool.reset_many([(0, options(task)), (1, options(games[1]))])
        for action in walk:
            result = pool.step_many([(0, action), (1, "look")])
        assert result[0][2] and result[0][4]["won"]
        # stepping a finished episode raises inside the worker: that env reports it and is rebuilt
        result = pool.step_many([(0, "look"), (1, "look")])
        assert "RuntimeError" in result[0][4]["error"] and result[0][2]
        assert "error" not in result[1][4] and result[1][4]["step"] == len(walk) + 1
        obs, info = pool.reset_many([(0, options(task))])[0]
        assert "error" not in info and obs.startswith("-= Welcome")


def test_close_is_idempotent_and_stops_every_worker(suite):
    pool = EnvPool(suite, num_envs=2, num_workers=2)
    pids = pool.worker_pids()
    assert all(alive(p) for p in pids)
    pool.close()
    pool.close()
    assert pool.closed and not any(alive(p) for p in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.step_many([(0, "look")])


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from skillmaster.envs.alfworld import AlfworldSuite
    from skillmaster.envs.pool import EnvPool

    if __name__ == "__main__":
        with EnvPool(AlfworldSuite(sys.argv[1]), num_envs=2, num_workers=2) as pool:
            print(" ".join(map(str, pool.worker_pids())), flush=True)
            while True:
                time.sleep(0.05)
    """
)


@pytest.mark.parametrize("how", ["ctrl-c", "parent-killed"])
def test_no_orphans_after_ctrl_c_or_a_dead_parent(alfworld_data, tmp_path, how):
    script = tmp_path / "hold_pool.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(alfworld_data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids), proc.stderr.read() if proc.poll() else ""
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # the terminal sends it to the whole process group
            assert proc.wait(timeout=30) != 0
            assert "KeyboardInterrupt" in proc.stderr.read()
        else:
            proc.kill()
            proc.wait(timeout=30)
        assert wait_gone(pids), f"workers {pids} still running after {how}"
    finally:
        if proc.poll() is None:
            proc.kill()


SLOW_START = textwrap.dedent(
    """
    import sys, time
    from skillmaster.envs.pool import EnvPool

    class SlowSuite:
        name, categories = "slow", ()

        def make_env(self):
            time.sleep(float(sys.argv[1]))  # like importing textworld and loading a game: seconds
            raise SystemExit("never ready")

    if __name__ == "__main__":
        print("start", flush=True)
        EnvPool(SlowSuite(), num_envs=2, num_workers=2)
    """
)


def workers_of(pid: int) -> list[int]:
    """Spawned worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    out = []
    for child in path.read_text().split() if path.is_file() else []:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
        except OSError:
            continue
    return out


def test_workers_of_a_killed_stage_go_at_once_and_silently(tmp_path):
    """Issue #21: SIGKILL of a stage while its workers are busy (here: starting, which takes seconds)
    used to leave them running until their work ended, then die with BrokenPipeError tracebacks."""
    script = tmp_path / "slow_pool.py"
    script.write_text(SLOW_START)
    busy_s = 20.0
    proc = subprocess.Popen(
        [sys.executable, str(script), str(busy_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "start"
        deadline = time.monotonic() + 30
        while len(pids := workers_of(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pids) == 2
        time.sleep(1.0)  # the workers are inside make_env now
        proc.kill()
        proc.wait(timeout=10)
        killed = time.monotonic()
        assert wait_gone(pids, timeout=5.0), f"workers {pids} outlived their parent"
        assert time.monotonic() - killed < 5.0 < busy_s
        err = proc.stderr.read()  # EOF only once every worker holding the pipe has exited
        assert "Traceback" not in err and "BrokenPipeError" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
