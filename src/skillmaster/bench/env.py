"""``skillmaster bench env``: the environment layer against its baselines, measured in one run.

ALFWorld (:func:`bench_alfworld`):

(a) **Step latency.** Baseline: the bare textworld PDDL environment with alfworld's demangler
    (what ``AlfredTWEnv`` plays), ``load(game)`` + ``reset()`` then ``step(action)``. Against it:
    the project's :class:`~skillmaster.envs.alfworld.env.AlfworldEnv` with its engine caches (the
    default) and without them (the wrapper's own overhead). All three play the same games and the
    same walkthrough actions, interleaved game by game in one fresh process; their observations,
    admissible actions and wins are compared step by step (``identical_outputs``).
(b) **Pool throughput.** Environment steps per second of :class:`~skillmaster.envs.pool.EnvPool`
    at 1, 2 and 4 workers (baseline: 1 worker): the same environments, games and seeded
    admissible actions for each; the pools take turns in short blocks so that all meet the same
    background load; worker start-up and resets are not counted. ``cpu_parallel_ceiling`` is what
    two processes of plain Python gain over one on the machine at that moment (other load lowers
    it), the bound for the 2-worker speed-up.

``--env webshop`` dispatches to ``skillmaster.bench.env_webshop.bench_webshop``.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from skillmaster.config import EnvConfig
from skillmaster.errors import ConfigError

ENV_BENCHES: dict[str, str] = {
    "alfworld": "skillmaster.bench.env:bench_alfworld",
    "webshop": "skillmaster.bench.env_webshop:bench_webshop",
}
POOL_WORKERS = (1, 2, 4)
BENCH_SPLITS = ("valid_seen", "valid_train", "train")
MODES = ("bare", "wrapper_no_cache", "wrapper")


def run_env_bench(env: str, quick: bool = False, params: Path = Path("params.yaml")) -> dict[str, Any]:
    """Run the environment benchmark registered for ``env``."""
    if env not in ENV_BENCHES:
        raise ConfigError(f"no environment benchmark for '{env}'; choose one of: {', '.join(ENV_BENCHES)}")
    module, func = ENV_BENCHES[env].split(":")
    try:
        bench = getattr(importlib.import_module(module), func)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise ConfigError(
            f"the {env} environment benchmark is unavailable ({module} is not installed)"
        ) from None
    from skillmaster.envs.cli import env_config

    return bench(quick=quick, data_dir=env_config(params, env).data_dir)


def _median_ms(seconds: list[float]) -> float | None:
    return round(1000 * statistics.median(seconds), 3) if seconds else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# --------------------------------------------------------------------------- (a) latency
def _latency_run(data_dir: str, games: list[tuple[str, str]]) -> dict[str, Any]:
    """Inside a fresh process: the three modes of the module doc, interleaved game by game."""
    from skillmaster.envs.alfworld.engine import set_engine_caches, start_engine
    from skillmaster.envs.alfworld.suite import AlfworldSuite

    suite = AlfworldSuite(data_dir=data_dir, max_steps=1000)
    timings: dict[str, dict[str, list[float]]] = {
        m: {"step": [], "reset": [], "repeat_reset": []} for m in MODES
    }
    envs = {m: suite.make_env() for m in MODES if m != "bare"}
    bare = None
    identical = True
    for task_id, split in games:
        game, actions = suite.game_file(task_id, split), suite.walkthrough(task_id, split)
        outputs = {}
        for mode in MODES:
            set_engine_caches(mode == "wrapper")
            t = timings[mode]
            trace = []
            if mode == "bare":
                start = time.perf_counter()
                if bare is None:
                    bare = start_engine(game, suite.data_path)
                else:
                    bare.load(str(game))
                state = bare.reset()
                t["reset"].append(time.perf_counter() - start)
                for action in actions:
                    start = time.perf_counter()
                    state, _, _ = bare.step(action)
                    t["step"].append(time.perf_counter() - start)
                    trace.append(
                        (
                            state.feedback,
                            bool(state["won"]),
                            [a for a in state["admissible_commands"] if a != "help"],
                        )
                    )
                start = time.perf_counter()
                bare.reset()
                t["repeat_reset"].append(time.perf_counter() - start)
            else:
                env = envs[mode]
                for key in ("reset", "repeat_reset"):
                    start = time.perf_counter()
                    env.reset(options={"task_id": task_id, "split": split})
                    t[key].append(time.perf_counter() - start)
                    if key == "reset":
                        for action in actions:
                            start = time.perf_counter()
                            obs, _, _, _, info = env.step(action)
                            t["step"].append(time.perf_counter() - start)
                            trace.append((obs, info["won"], info["admissible_actions"]))
            outputs[mode] = trace
        identical = identical and outputs["bare"] == outputs["wrapper_no_cache"] == outputs["wrapper"]
    for env in envs.values():
        env.close()
    return {"timings": timings, "identical": identical}


def measure_latency(data_dir: str, games: list[tuple[str, str]]) -> dict[str, Any]:
    """(a) of the module doc, in a fresh spawned process (so no cache of this process leaks in)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        raw = ex.submit(_latency_run, data_dir, games).result()
    tm = raw["timings"]
    step = {m: _median_ms(tm[m]["step"]) for m in MODES}
    reset = {m: _median_ms(tm[m]["reset"]) for m in MODES}
    repeat = {m: _median_ms(tm[m]["repeat_reset"]) for m in MODES}
    return {
        "step_latency": {
            "wrapper_ms_median": step["wrapper"],
            "bare_ms_median": step["bare"],
            "overhead_ratio": _ratio(step["wrapper"], step["bare"]),
            "wrapper_no_cache_ms_median": step["wrapper_no_cache"],
            "no_cache_overhead_ratio": _ratio(step["wrapper_no_cache"], step["bare"]),
            "steps": len(tm["bare"]["step"]),
        },
        "reset_latency": {
            "wrapper_ms_median": reset["wrapper"],
            "bare_ms_median": reset["bare"],
            "ratio": _ratio(reset["wrapper"], reset["bare"]),
            "wrapper_no_cache_ms_median": reset["wrapper_no_cache"],
            "wrapper_repeat_ms_median": repeat["wrapper"],
            "bare_repeat_ms_median": repeat["bare"],
            "repeat_ratio": _ratio(repeat["wrapper"], repeat["bare"]),
        },
        "identical_outputs": raw["identical"],
    }


# --------------------------------------------------------------------------- (b) pool
class _PoolDriver:
    """One pool playing seeded admissible actions on fixed games; an episode that ends is reset."""

    def __init__(self, pool, tasks, seed: int = 0):
        self.pool, n = pool, pool.num_envs
        self.rngs = [random.Random(seed * 1000 + i) for i in range(n)]
        self.options = [
            {"task_id": t.task_id, "split": t.split} for t in (tasks[i % len(tasks)] for i in range(n))
        ]
        self.infos = [info for _, info in pool.reset_many(list(enumerate(self.options)))]
        self.steps, self.busy = 0, 0.0

    def rounds(self, count: int, timed: bool = True) -> None:
        n = self.pool.num_envs
        for _ in range(count):
            requests = [
                (i, self.rngs[i].choice(self.infos[i]["admissible_actions"] or ["look"])) for i in range(n)
            ]
            start = time.perf_counter()
            results = self.pool.step_many(requests)
            if timed:
                self.busy += time.perf_counter() - start
                self.steps += n
            ended = []
            for i, (_, _, terminated, truncated, info) in enumerate(results):
                self.infos[i] = info
                if terminated or truncated or info.get("error"):
                    ended.append(i)
            for i, (_, info) in zip(
                ended, self.pool.reset_many([(i, self.options[i]) for i in ended]), strict=True
            ):
                self.infos[i] = info


def measure_pools(
    suite, tasks, num_envs: int, blocks: int, rounds_per_block: int
) -> dict[str, dict[str, Any]]:
    """Steps/s of a pool of ``num_envs`` environments at each of :data:`POOL_WORKERS` workers.

    All pools are started and reset first (untimed); then they take turns, ``rounds_per_block``
    lock-step rounds at a time (the order rotating), so that every worker count meets the same
    background load on the machine.
    """
    from skillmaster.envs.pool import EnvPool

    with contextlib.ExitStack() as stack:
        drivers = {
            w: _PoolDriver(stack.enter_context(EnvPool(suite, num_envs, w)), tasks) for w in POOL_WORKERS
        }
        for d in drivers.values():
            d.rounds(2, timed=False)  # warm-up
        order = list(POOL_WORKERS)
        for b in range(blocks):
            for w in order[b % len(order) :] + order[: b % len(order)]:
                drivers[w].rounds(rounds_per_block)
    return {
        str(w): {"steps": d.steps, "seconds": round(d.busy, 3), "steps_per_s": round(d.steps / d.busy, 2)}
        for w, d in drivers.items()
    }


def _count(n: int) -> int:
    return sum(i * i for i in range(n))


def measure_cpu_ceiling(seconds: float) -> float | None:
    """What two processes can gain over one on this machine right now: the same pure-Python work
    done twice one after another, then twice at once (other load on the machine lowers it)."""
    n = 200_000
    start = time.perf_counter()
    _count(n)
    n = max(n, int(n * seconds / max(time.perf_counter() - start, 1e-6)))
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_count, [1, 1])  # both workers up
        start = time.perf_counter()
        pool.apply(_count, (n,))
        pool.apply(_count, (n,))
        one = time.perf_counter() - start
        start = time.perf_counter()
        pool.map(_count, [n, n], chunksize=1)
        two = time.perf_counter() - start
    return _ratio(one, two)


# --------------------------------------------------------------------------- the benchmark
def bench_alfworld(quick: bool = False, data_dir: str | None = None) -> dict[str, Any]:
    """(a) and (b) of the module doc on real games of the first split found (valid_seen first)."""
    from skillmaster.envs.alfworld import make_alfworld_suite
    from skillmaster.envs.cli import round_robin

    suite = make_alfworld_suite(EnvConfig(name="alfworld", data_dir=data_dir, max_steps=1000))
    tasks = bench_tasks(suite)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if quick:  # the smallest game: one engine translation per worker, the rest hit the cache
        smallest = min(tasks, key=lambda t: suite.game_file(t.task_id, t.split).stat().st_size)
        lat_games, pool_tasks, num_envs, blocks, rounds_per_block = [smallest], [smallest], 4, 2, 2
    else:
        lat_games, num_envs, blocks, rounds_per_block = round_robin(tasks, 18), 8, 12, 5
        pool_tasks = round_robin(tasks, num_envs)
    report: dict[str, Any] = {
        "env": "alfworld",
        "split": tasks[0].split,
        "quick": quick,
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_start": round(load, 2) if load is not None else None,
        "baseline": "bare textworld PDDL env + alfworld AlfredDemangler (as AlfredTWEnv), same games and walkthrough actions",
        "latency_games": len(lat_games),
    }
    report |= measure_latency(suite.data_dir, [(t.task_id, t.split) for t in lat_games])
    ceiling = measure_cpu_ceiling(0.1 if quick else 0.5)
    runs = measure_pools(suite, pool_tasks, num_envs, blocks, rounds_per_block)
    rate = {w: r["steps_per_s"] for w, r in runs.items()}
    report["pool"] = {
        **rate,
        "speedup_2_vs_1": _ratio(rate["2"], rate["1"]),
        "speedup_4_vs_1": _ratio(rate["4"], rate["1"]),
        "num_envs": num_envs,
        "steps_per_worker_count": runs["1"]["steps"],
        "cpu_parallel_ceiling": ceiling,
        "baseline": "the same pool with 1 worker",
    }
    report["checks"] = {
        "wrapper_overhead_within_10pct": (report["step_latency"]["no_cache_overhead_ratio"] or 9) <= 1.10,
        "wrapper_not_slower_than_bare": (report["step_latency"]["overhead_ratio"] or 9) <= 1.10,
        "pool_2_faster_than_1": (report["pool"]["speedup_2_vs_1"] or 0) > 1.0,
        "identical_outputs": report["identical_outputs"],
    }
    return report


def format_env_report(report: dict[str, Any]) -> str:
    """A few readable lines (``--json`` prints the whole report)."""
    if "step_latency" not in report or "pool" not in report:
        import json

        return json.dumps(report, indent=2)
    s, r, p = report["step_latency"], report["reset_latency"], report["pool"]
    return "\n".join(
        [
            f"{report['env']} ({report['split']}, {report['latency_games']} games, {s['steps']} steps; "
            f"baseline: {report['baseline']})",
            f"step  ms median: wrapper {s['wrapper_ms_median']} | bare {s['bare_ms_median']} "
            f"(ratio {s['overhead_ratio']}) | wrapper without caches {s['wrapper_no_cache_ms_median']} "
            f"(ratio {s['no_cache_overhead_ratio']})",
            f"reset ms median: wrapper {r['wrapper_ms_median']} | bare {r['bare_ms_median']} (ratio {r['ratio']}); "
            f"same game again: wrapper {r['wrapper_repeat_ms_median']} | bare {r['bare_repeat_ms_median']}",
            f"pool steps/s: 1 worker {p['1']} | 2 workers {p['2']} | 4 workers {p['4']} "
            f"(x{p['speedup_2_vs_1']} and x{p['speedup_4_vs_1']} vs 1; two processes of plain Python "
            f"gain x{p['cpu_parallel_ceiling']} on this machine now, load {report['load_avg_1m_at_start']})",
            f"outputs identical to the bare engine: {report['identical_outputs']}; checks: "
            + ", ".join(f"{k}={v}" for k, v in report["checks"].items()),
        ]
    )


def bench_tasks(suite) -> list:
    """The tasks of the first of BENCH_SPLITS the suite has (the DataError of the first split if none)."""
    from skillmaster.errors import DataError

    errors = []
    for split in BENCH_SPLITS:
        try:
            return suite.tasks(split)
        except DataError as exc:
            errors.append(str(exc))
    raise DataError(errors[0])
