"""``skillmaster env …``: fetch the games, replay walkthroughs through the environment.

- ``skillmaster env data``: makes sure ``$ALFWORLD_DATA`` holds ALFWorld games (unpacks
  ``$ALFWORLD_ARCHIVES/*.tar.xz``, else runs ``alfworld-download``).
- ``skillmaster env replay --env alfworld --split valid_seen [--limit N] [--json]``: plays every
  game's expert walkthrough through the environment pool and reports wins per family and the
  per-step latency measured inside the workers. Exits with code 1 when a game is not won.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from skillmaster.config import EnvConfig
from skillmaster.envs.base import TaskSpec
from skillmaster.errors import ConfigError

env_app = typer.Typer(help="Environments: fetch the games, replay walkthroughs.", no_args_is_help=True)

REPLAY_MAX_STEPS = 1000
"""Step limit while replaying: a walkthrough must never be cut by the rollout step limit."""


def env_config(params: Path, name: str, **overrides: Any) -> EnvConfig:
    """The ``env`` section of ``params`` (when the file exists and names the same environment),
    with ``name`` and ``overrides`` applied; defaults otherwise."""
    base = EnvConfig()
    if params.is_file():
        from skillmaster.config import load_config
        from skillmaster.runtime import configure_environment

        configure_environment()
        loaded = load_config(params).env
        if loaded.name == name:
            base = loaded
    return base.model_copy(update={"name": name, **overrides})


def round_robin(tasks: list[TaskSpec], limit: int | None) -> list[TaskSpec]:
    """The first ``limit`` tasks taken in turn from each family (families sorted), so that a small
    limit still covers every family; all tasks, in order, when ``limit`` is None."""
    if limit is None or limit >= len(tasks):
        return list(tasks)
    queues: dict[str, deque[TaskSpec]] = {}
    for t in tasks:
        queues.setdefault(t.family, deque()).append(t)
    out: list[TaskSpec] = []
    while len(out) < limit:
        for fam in sorted(queues):
            if queues[fam] and len(out) < limit:
                out.append(queues[fam].popleft())
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class GameRecord:
    task: TaskSpec
    won: bool = False
    steps: int = 0
    error: str = ""


def summarize_replay(
    split: str, records: list[GameRecord], step_s: list[float], reset_s: list[float], wall_s: float
) -> dict[str, Any]:
    """The replay report: games and wins overall and by family, latency in ms."""
    by_family: dict[str, dict[str, int]] = {}
    for r in records:
        fam = by_family.setdefault(r.task.family, {"games": 0, "wins": 0})
        fam["games"] += 1
        fam["wins"] += int(r.won)
    ms = [1000 * s for s in step_s]
    return {
        "split": split,
        "games": len(records),
        "wins": sum(r.won for r in records),
        "by_family": dict(sorted(by_family.items())),
        "steps": len(step_s),
        "ms_per_step_median": round(statistics.median(ms), 3) if ms else None,
        "ms_per_step_p90": round(percentile(ms, 90), 3) if ms else None,
        "ms_per_reset_median": round(1000 * statistics.median(reset_s), 3) if reset_s else None,
        "wall_s": round(wall_s, 2),
        "not_won": [
            {"task_id": r.task.task_id, "steps": r.steps, "error": r.error} for r in records if not r.won
        ],
    }


NOT_WON_SHOWN = 20
"""The table lists this many games that were not won (``--json`` lists them all)."""


@dataclass
class _Slot:
    task: TaskSpec
    actions: list[str]
    pos: int = 0


def replay_walkthroughs(
    suite, tasks: list[TaskSpec], *, num_workers: int = 2, progress: bool = True
) -> dict[str, Any]:
    """Play each task's walkthrough in a pool (two environments per worker, lock-step)."""
    from tqdm import tqdm

    from skillmaster.envs.pool import EnvPool

    if not tasks:
        raise ConfigError("nothing to replay: the split has no tasks")
    num_envs = min(len(tasks), 2 * num_workers)
    queue, slots = deque(tasks), {}
    records: list[GameRecord] = []
    step_s: list[float] = []
    reset_s: list[float] = []
    started = time.perf_counter()
    with (
        EnvPool(suite, num_envs, num_workers) as pool,
        tqdm(
            total=len(tasks),
            desc=f"replay {tasks[0].split}",
            unit="game",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
    ):

        def finish(record: GameRecord) -> None:
            records.append(record)
            bar.update(1)
            bar.set_postfix(wins=f"{sum(r.won for r in records)}/{len(records)}")

        while queue or slots:
            starts = []
            for i in range(num_envs):
                if i not in slots and queue:
                    task = queue.popleft()
                    try:
                        slots[i] = _Slot(task, suite.walkthrough(task.task_id, task.split))
                        starts.append(i)
                    except Exception as exc:  # a game without walkthrough is reported, not fatal
                        finish(GameRecord(task, error=str(exc)))
            if starts:
                resets = pool.reset_many(
                    [(i, {"task_id": slots[i].task.task_id, "split": slots[i].task.split}) for i in starts]
                )
                reset_s += [
                    t for (_, info), t in zip(resets, pool.last_timings, strict=True) if not info.get("error")
                ]
                for i, (_, info) in zip(starts, resets, strict=True):
                    if info.get("error"):
                        finish(GameRecord(slots.pop(i).task, error=str(info["error"])))
            if not slots:
                continue
            requests = [(i, s.actions[s.pos]) for i, s in slots.items()]
            results = pool.step_many(requests)
            for (i, _), (_, _, terminated, truncated, info), t in zip(
                requests, results, pool.last_timings, strict=True
            ):
                slot = slots[i]
                slot.pos += 1
                if not info.get("error"):
                    step_s.append(t)
                if terminated or truncated or info.get("error") or slot.pos >= len(slot.actions):
                    finish(
                        GameRecord(
                            slot.task,
                            won=bool(info.get("won")),
                            steps=slot.pos,
                            error=str(info.get("error", "")),
                        )
                    )
                    del slots[i]
    records.sort(key=lambda r: r.task.task_id)
    return summarize_replay(tasks[0].split, records, step_s, reset_s, time.perf_counter() - started)


def _print_replay(report: dict[str, Any]) -> None:
    typer.echo(f"{report['split']}: {report['wins']}/{report['games']} games won")
    for fam, row in report["by_family"].items():
        typer.echo(f"  {fam:<32} {row['wins']:>4}/{row['games']:<4}")
    typer.echo(
        f"{report['steps']} steps: {report['ms_per_step_median']} ms median, {report['ms_per_step_p90']} ms p90; "
        f"reset {report['ms_per_reset_median']} ms median; {report['wall_s']} s in all"
    )
    for miss in report["not_won"][:NOT_WON_SHOWN]:
        typer.echo(f"  not won: {miss['task_id']} after {miss['steps']} steps {miss['error']}".rstrip())
    if len(report["not_won"]) > NOT_WON_SHOWN:
        more = len(report["not_won"]) - NOT_WON_SHOWN
        typer.echo(f"  … and {more} more games not won (--json lists all {len(report['not_won'])})")
    for skip in report.get("skipped", []):
        typer.echo(f"  skipped (unusable): {skip['reason']}")


@env_app.command("replay")
def replay(
    env: Annotated[
        str, typer.Option("--env", help="Environment name (walkthroughs exist for alfworld).")
    ] = "alfworld",
    split: Annotated[str, typer.Option("--split", help="Split to replay.")] = "valid_seen",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most N games, spread over families.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 2,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    params: Annotated[Path, typer.Option("--params", "-p", help="Settings file (for env.data_dir).")] = Path(
        "params.yaml"
    ),
) -> None:
    """Play each game's expert walkthrough through the environment; wins per family, ms per step."""
    from skillmaster.envs.registry import make_suite, profile, profiles

    cfg = env_config(params, env, max_steps=REPLAY_MAX_STEPS, families=None)
    suite = make_suite(cfg)
    if not profile(env).has_walkthroughs:
        with_walks = ", ".join(p.name for p in profiles() if p.has_walkthroughs)
        raise ConfigError(f"env '{env}' has no expert walkthroughs to replay; replay works with {with_walks}")
    tasks = round_robin(suite.tasks(split), limit)
    report = replay_walkthroughs(suite, tasks, num_workers=workers, progress=True)
    report["skipped"] = suite.skipped(split)
    if json_:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_replay(report)
    if report["wins"] < report["games"]:
        raise typer.Exit(1)


@env_app.command("data")
def data(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Games folder (default: env.data_dir, else $ALFWORLD_DATA, else ~/.cache/alfworld).",
        ),
    ] = None,
    archives: Annotated[
        Path | None,
        typer.Option(
            "--archives", envvar="ALFWORLD_ARCHIVES", help="Folder of *.tar.xz game archives to unpack."
        ),
    ] = None,
    params: Annotated[Path, typer.Option("--params", "-p", help="Settings file (for env.data_dir).")] = Path(
        "params.yaml"
    ),
) -> None:
    """Make sure the ALFWorld games are there: unpack $ALFWORLD_ARCHIVES, else run alfworld-download."""
    from skillmaster.envs.alfworld.data import ensure_data
    from skillmaster.envs.alfworld.games import resolve_data_dir

    root = resolve_data_dir(data_dir or env_config(params, "alfworld").data_dir)
    typer.echo(ensure_data(root, archives))
