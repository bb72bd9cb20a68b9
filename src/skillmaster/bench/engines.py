"""``skillmaster bench engines``: what starting a generation engine per stage costs a whole run.

Two fresh projects (:mod:`skillmaster.orchestration.project`; ``--side`` runs one of them alone, and
then no ratio is printed) get the same settings (the default
profile as ``make run`` has it, or ``--quick``: every stage of two iterations at minimal sizes) and
the same prepared base model, and each runs the whole pipeline from scratch:

- **dvc repro** (the baseline, what ``make run`` does): each stage is its own process, so every
  generating stage starts its own engine.
- **flow** (``skillmaster loop``): the same stages in one process sharing one engine, which loads
  each new policy's weights in place.

Both run the same work with the same seeds, on vLLM (the bench refuses a run that started none) and
the sequential task runner (a Dask or Ray shard's engine writes no stage metrics), without Prefect
retries. Reported: each side's engine starts and their seconds (read from the stages'
``generation`` metrics: one engine has one start time, so distinct start times count engines),
wall time, and the flow / dvc repro wall ratio. The start seconds are the measured part of the
difference in wall time; the rest (per-process start-up, model loads, machine noise) is not
broken down.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from skillmaster.config import deep_merge
from skillmaster.errors import ModelError
from skillmaster.orchestration.project import make_project, run_tool
from skillmaster.paths import Paths

QUICK = {
    "model": {"dtype": "float32", "device": "cpu"},
    "env": {"max_steps": 3},
    "rollout": {"engine": "vllm", "num_tasks": 1, "group_size": 2, "max_new_tokens": 16, "num_workers": 1},
    "review": {"max_new_tokens": 24},
    "counterfactual": {"probes_per_edit": 1, "max_edits": 1},
    "train": {"max_samples": 4},
    "sft": {"enabled": True, "num_games": 1, "epochs": 1, "search_detours": 0, "reviews_per_episode": 1},
    "eval": {"limit": 2},
    "loop": {"iterations": 2},
}
SIDES = {
    "dvc repro": [["skillmaster", "pipeline", "write"], ["dvc", "repro"]],
    "flow": [["skillmaster", "loop"]],
}


def engine_starts(metrics_dir: Path) -> tuple[int, float]:
    """Engines started over a run and their seconds, from every stage's ``generation`` counters.
    The counters are an engine's whole life (in the flow one engine spans several stages), so an
    engine is counted once by its start time."""
    starts: dict[float, int] = {}
    for path in sorted(metrics_dir.rglob("*.json")):
        gen = json.loads(path.read_text()).get("generation")
        if isinstance(gen, dict) and gen.get("engine_starts"):
            starts[round(float(gen["engine_start_seconds"]), 6)] = int(gen["engine_starts"])
    return sum(starts.values()), sum(starts)


def run_side(
    root: Path, commands: list[list[str]], timeout: float, keep: Path | None = None
) -> dict[str, Any]:
    start = time.perf_counter()
    for cmd in commands:
        run_tool(cmd, root, timeout=timeout)
    wall = time.perf_counter() - start
    metrics = Paths(root).summary.parent
    starts, seconds = engine_starts(metrics)
    if keep is not None:
        shutil.copytree(metrics, keep, dirs_exist_ok=True)
    return {
        "wall_seconds": round(wall, 1),
        "engine_starts": starts,
        "engine_start_seconds": round(seconds, 1),
    }


def run_engines_bench(
    quick: bool,
    source: Path,
    model_dir: Path,
    overrides: dict[str, Any],
    timeout: float = 6 * 3600,
    sides: tuple[str, ...] = tuple(SIDES),
    keep: Path | None = None,
) -> dict[str, Any]:
    """Run the chosen sides (both by default), one after the other, on fresh projects under a
    temporary folder; ``keep`` receives each side's metrics folder (``keep/<side>``)."""
    fixed = {"rollout": {"engine": "vllm"}, "orchestration": {"task_runner": "sequential", "retries": 0}}
    settings = deep_merge(deep_merge(QUICK if quick else {}, overrides), fixed)
    measured = {}
    with tempfile.TemporaryDirectory(prefix="skillmaster-bench-engines-") as tmp:
        for i, name in enumerate(sides):
            root = Path(tmp) / f"side{i}"
            make_project(root, source, model_dir, settings)
            dest = None if keep is None else keep / name.replace(" ", "-")
            measured[name] = run_side(root, SIDES[name], timeout, dest)
    if not all(s["engine_starts"] for s in measured.values()):
        raise ModelError("bench engines: a run started no vLLM engine; install vLLM (make install) and rerun")
    report: dict[str, Any] = {
        "profile": "quick (every stage, 2 iterations, minimal sizes)"
        if quick
        else "params.yaml as make run uses it",
        "overrides": overrides,
        "sides": measured,
    }
    if len(measured) == len(SIDES):
        base, flow = measured["dvc repro"], measured["flow"]
        report |= {
            "wall_ratio": round(flow["wall_seconds"] / base["wall_seconds"], 4),
            "start_seconds_saved": round(base["engine_start_seconds"] - flow["engine_start_seconds"], 1),
            "start_share_of_dvc_repro": round(base["engine_start_seconds"] / base["wall_seconds"], 4),
        }
    return report


def format_engines_report(r: dict[str, Any]) -> str:
    lines = [f"bench engines ({r['profile']})"]
    for name, s in r["sides"].items():
        label = "dvc repro (baseline)" if name == "dvc repro" else "flow, one engine"
        lines.append(
            f"  {label:22s} {s['wall_seconds']:8.1f} s wall   {s['engine_starts']:3d} engine starts "
            f"({s['engine_start_seconds']:.1f} s)"
        )
    if "wall_ratio" not in r:
        lines.append("  one side ran: no ratio (compare only with a run on the same machine and code)")
        return "\n".join(lines)
    lines.append(
        f"  wall ratio flow / dvc repro {r['wall_ratio']:.3f}; engine starts were "
        f"{r['start_share_of_dvc_repro']:.1%} of the dvc repro run ({r['start_seconds_saved']:.1f} s saved by one engine)"
    )
    return "\n".join(lines)
