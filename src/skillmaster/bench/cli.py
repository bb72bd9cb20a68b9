"""``skillmaster bench``: one command per benchmark; each prints its ratios against its baseline.

This module only dispatches; the measurements live next to it (``bench/env.py``, …).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(
    help="Benchmarks: ratios against a named baseline, measured in the same run.", no_args_is_help=True
)

QuickOpt = Annotated[bool, typer.Option("--quick", help="A short run (seconds), as the tests use.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ModelDirOpt = Annotated[
    Path | None, typer.Option("--model-dir", help="Prepared base model (default models/base).")
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="torch CPU threads (default: torch's).")]


@bench_app.command("env")
def bench_env(
    env: Annotated[str, typer.Option("--env", help="Environment: alfworld or webshop.")] = "alfworld",
    quick: QuickOpt = False,
    json_: JsonOpt = False,
    params: Annotated[Path, typer.Option("--params", "-p", help="Settings file (for env.data_dir).")] = Path(
        "params.yaml"
    ),
) -> None:
    """Environment step latency against the bare engine, and pool steps/s at 1, 2 and 4 workers."""
    from skillmaster.bench.env import format_env_report, run_env_bench

    report = run_env_bench(env, quick=quick, params=params)
    typer.echo(json.dumps(report, indent=2) if json_ else format_env_report(report))


@bench_app.command("train")
def bench_train_cmd(
    quick: QuickOpt = False,
    json_: JsonOpt = False,
    model_dir: ModelDirOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """DualAdv-GRPO update tokens/s and peak memory against its bare parts, and the padding share."""
    from skillmaster.bench.train import bench_train, format_train_report

    report = bench_train(quick=quick, model_dir=model_dir, threads=threads)
    typer.echo(json.dumps(report, indent=2) if json_ else format_train_report(report))


@bench_app.command("rollout")
def bench_rollout_cmd(
    quick: QuickOpt = False,
    json_: JsonOpt = False,
    model_dir: ModelDirOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Collector steps/s on vLLM vs the transformers engine vs a naive loop; each engine vs its bare
    generate call; prefix-cache hit rate."""
    from skillmaster.bench.rollout import bench_rollout, format_rollout_report

    report = bench_rollout(quick=quick, model_dir=model_dir, threads=threads)
    typer.echo(json.dumps(report, indent=2) if json_ else format_rollout_report(report))


@bench_app.command("orchestration")
def bench_orchestration_cmd(
    quick: QuickOpt = False,
    json_: JsonOpt = False,
    model_dir: ModelDirOpt = None,
) -> None:
    """Time Prefect, DVC and MLflow add to an iteration, against the same stages run bare."""
    from skillmaster.bench.orchestration import format_orchestration_report, run_orchestration_bench
    from skillmaster.errors import ModelError
    from skillmaster.runtime import project_root

    root = project_root()
    model_dir = model_dir or root / "models" / "base"
    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"{model_dir} holds no prepared model; run `skillmaster model prepare` or pass --model-dir"
        )
    report = run_orchestration_bench(quick, root, model_dir)
    typer.echo(json.dumps(report, indent=2) if json_ else format_orchestration_report(report))


@bench_app.command("engines")
def bench_engines_cmd(
    quick: QuickOpt = False,
    json_: JsonOpt = False,
    model_dir: ModelDirOpt = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-S", help="Setting of both runs: KEY=VALUE (YAML value).")
    ] = None,
    side: Annotated[
        list[str] | None,
        typer.Option(
            "--side", help="Run only this side ('dvc repro' or 'flow'); repeat for both (the default)."
        ),
    ] = None,
    keep: Annotated[
        Path | None, typer.Option("--keep", help="Copy each side's metrics folder to KEEP/<side>.")
    ] = None,
) -> None:
    """Engine starts and wall time of a whole run under dvc repro (an engine per stage) against the
    Prefect flow (one engine per run), on two fresh projects with the same settings."""
    from skillmaster.bench.engines import SIDES, format_engines_report, run_engines_bench
    from skillmaster.config import sets_to_dict
    from skillmaster.errors import ModelError
    from skillmaster.runtime import configure_environment, project_root

    sides = tuple(side) if side else tuple(SIDES)
    if any(name not in SIDES for name in sides):
        raise typer.BadParameter(f"--side takes {' or '.join(map(repr, SIDES))}, got {list(sides)}")
    root = project_root()
    configure_environment(root)
    model_dir = model_dir or root / "models" / "base"
    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"{model_dir} holds no prepared model; run `skillmaster model prepare` or pass --model-dir"
        )
    report = run_engines_bench(quick, root, model_dir, sets_to_dict(set_ or []), sides=sides, keep=keep)
    typer.echo(json.dumps(report, indent=2) if json_ else format_engines_report(report))
