"""The one console script, ``skillmaster``, with its subcommands.

Heavy libraries (torch, transformers, textworld) are imported inside the commands, so
``skillmaster --help`` stays fast. A :class:`~skillmaster.errors.SkillMasterError` is printed as
one sentence with exit code 2, never as a traceback; so is an OS error that is the machine's state
(a read-only folder, a full disk). Ctrl-C exits 130 with a note that finished outputs are kept.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from skillmaster.errors import SkillMasterError

if sys.orig_argv[-1:] == ["--multiprocessing-fork"]:
    # A process spawned by multiprocessing from a stage (vLLM's CPU worker) imports the console
    # script, hence this module, as its __mp_main__: it ends when its parent does, even on SIGKILL.
    from skillmaster.runtime import die_with_parent

    die_with_parent()

app = typer.Typer(
    name="skillmaster",
    help="SkillMaster: train LLM agents that create, refine and select their own skills.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Prepare the base model.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect and check settings.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(config_app, name="config")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Settings file.")]
OverlayOpt = Annotated[
    list[Path] | None,
    typer.Option("--overlay", "-o", help="Overlay file(s) merged on top, e.g. configs/paper-alfworld.yaml."),
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-S", help="Override one setting: KEY=VALUE (YAML value).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def load(params: Path, overlay: list[Path] | None = None, sets: list[str] | None = None):
    from skillmaster.config import load_config
    from skillmaster.runtime import configure_environment

    configure_environment()
    return load_config(params, overlays=overlay or [], sets=sets or [])


def echo_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# --------------------------------------------------------------------------- config
@config_app.command("show")
def config_show(
    params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None, set_: SetOpt = None
) -> None:
    """Print the effective settings (params.yaml + overlays + --set) as YAML."""
    import yaml

    cfg = load(params, overlay, set_)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@config_app.command("check")
def config_check(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Settings files or overlays to validate, without a memory plan."),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
    set_: SetOpt = None,
    gpus: Annotated[
        int | None,
        typer.Option(min=1, help="GPUs of the run (default: the launcher's num_processes, else 1)."),
    ] = None,
    gpu_memory: Annotated[
        float | None,
        typer.Option(min=0.1, help="GiB per GPU (default: torch's cuda:0, else the paper's 80 GiB)."),
    ] = None,
    params_count: Annotated[
        float | None,
        typer.Option(min=1.0, help="The model's parameter count (e.g. 7.62e9), overriding its config."),
    ] = None,
    flow: Annotated[
        bool,
        typer.Option(
            "--flow", help="Plan for `skillmaster loop`: its vLLM engine stays on GPU 0 during train."
        ),
    ] = False,
) -> None:
    """Validate settings files (overlays merged on top of --params); without FILES, check that the
    effective settings' GPU memory plan (sft, train, generation) fits --gpus × --gpu-memory."""
    from skillmaster.config import load_config

    for f in files or []:
        if f.resolve() == params.resolve():
            load_config(f)
        else:
            load_config(params, overlays=[f])
        typer.echo(f"{f}: ok")
    if files and not (overlay or set_ or gpus or gpu_memory or params_count or flow):
        return
    from skillmaster.memory_plan import check_plan, format_plan, plan_for
    from skillmaster.runtime import project_root

    plan = plan_for(load(params, overlay, set_), project_root(), gpus, gpu_memory, params_count, flow)
    typer.echo(format_plan(plan))
    check_plan(plan)


@config_app.command("sets")
def config_sets(
    overlay: Annotated[Path, typer.Argument(help="Overlay file to turn into -S flags.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Print an overlay as `-S key=value` flags for `dvc exp run`."""
    import shlex

    from skillmaster.config import load_config
    from skillmaster.experiment import set_flags

    load_config(params, overlays=[overlay])  # validate first
    flags = set_flags([overlay])
    typer.echo(" ".join(f"-S {shlex.quote(value)}" for value in flags[1::2]))


@config_app.command("override")
def config_override(
    overlay: OverlayOpt = None, set_: SetOpt = None, params: ParamsOpt = Path("params.yaml")
) -> None:
    """Write the run overlay overrides.yaml (the overlays' values, then --set; nothing: empty it) and
    bring dvc.yaml in line, so the next `dvc repro` runs with them: the same file the Prefect flow
    and `skillmaster experiment` write. params.yaml is never changed."""
    from skillmaster.config import load_config
    from skillmaster.experiment import overlay_settings
    from skillmaster.orchestration.overrides import apply_run_overrides
    from skillmaster.runtime import project_root

    settings = [*overlay_settings(overlay or []), *(set_ or [])]
    load_config(params, sets=settings, run_overrides=False)  # validate before writing anything
    data = apply_run_overrides(params, settings, project_root())
    typer.echo(f"overrides.yaml: {', '.join(settings) if data else 'empty'}; dvc.yaml in line")


# --------------------------------------------------------------------------- model
@model_app.command("prepare")
def model_prepare(
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when models/base is up to date.")] = False,
    out: Annotated[Path | None, typer.Option(help="Output folder (default models/base).")] = None,
) -> None:
    """Build models/base (safetensors, tokenizer, chat template, manifest) from model.source."""
    from skillmaster.stages.model import run_prepare

    cfg = load(params, overlay, set_)
    manifest = run_prepare(cfg, out=out, force=force)
    typer.echo(
        f"models/base ready: {manifest['architecture']}, {manifest['parameters']:,} parameters, "
        f"CPU dtype {manifest['cpu_dtype']} (measured tokens/s: {manifest.get('cpu_generation_tokens_per_s')})"
    )


# --------------------------------------------------------------------------- stages
@app.command("stage")
def stage(
    name: Annotated[str, typer.Argument(help="Stage name (see `skillmaster stage --help`).")],
    iteration: Annotated[
        int, typer.Option("--iteration", "-i", help="Iteration number (1-based; 0 for set-up stages).")
    ] = 0,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run one pipeline stage (this is what dvc.yaml calls)."""
    from skillmaster.orchestration.plan import check_in_sync
    from skillmaster.orchestration.runners import shard_runner
    from skillmaster.runtime import project_root
    from skillmaster.stages import run_stage

    cfg = load(params, overlay, set_)
    root = project_root()
    if name == "report" and (root / "dvc.yaml").is_file():
        check_in_sync(cfg, root)  # the summary must cover the iterations dvc.yaml ran
    result = run_stage(name, cfg, iteration, root=root, run_shards=shard_runner(cfg))
    if result:
        typer.echo(json.dumps(result, default=str))


@app.command("eval")
def eval_cmd(
    split: Annotated[str, typer.Option(help="Split to evaluate (e.g. valid_seen).")] = "valid_seen",
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Policy folder (LoRA adapter or weights); default: the starting policy "
            "(models/sft when sft.enabled, else the base model)."
        ),
    ] = None,
    bank: Annotated[
        Path | None, typer.Option(help="Skill bank JSON; default: the newest data/banks/iter_*.json.")
    ] = None,
    no_skills: Annotated[bool, typer.Option("--no-skills", help="Show no skills.")] = False,
    limit: Annotated[
        int | None, typer.Option(help="Games (stratified over families); default eval.limit.")
    ] = None,
    all_games: Annotated[bool, typer.Option("--all", help="Every game of the split.")] = False,
    chunk: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --out: play this many games at a time and keep each finished chunk, so a "
            "killed evaluation resumes at its first unfinished chunk (0: all at once).",
        ),
    ] = 35,
    out: Annotated[
        Path | None, typer.Option(help="Also write episodes.parquet and metrics.json into this folder.")
    ] = None,
    json_: JsonOpt = False,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
    set_: SetOpt = None,
) -> None:
    """Evaluate a checkpoint: success per family on a split (METHOD.md §9)."""
    from skillmaster.runtime import project_root
    from skillmaster.stages.evaluate import evaluate_checkpoint

    cfg = load(params, overlay, set_)
    root = project_root()
    if out is not None:  # checked before the (long) evaluation, and never over an earlier result
        from skillmaster.errors import DataError

        if out.exists() and not out.is_dir():
            raise DataError(f"--out {out}: exists and is not a folder")
        if any((out / name).exists() for name in ("episodes.parquet", "metrics.json")):
            raise DataError(f"--out {out}: already holds an evaluation; pick another folder or remove it")
        from skillmaster.io import check_writable

        check_writable([out / "metrics.json"])  # a read-only folder fails now, not after the evaluation
    if bank is None and not no_skills:
        banks = sorted((root / "data" / "banks").glob("iter_[0-9][0-9][0-9].json"))
        from skillmaster.paths import project_file

        bank = banks[-1] if banks else project_file(cfg.skills.seed_bank, root)
    metrics = evaluate_checkpoint(
        cfg,
        root,
        split,
        checkpoint,
        bank,
        no_skills or bank is None,
        None if all_games else (limit or cfg.eval.limit),
        out,
        chunk or None,
    )
    if json_:
        echo_json(metrics)
        return
    for cond, m in metrics[split].items():
        typer.echo(f"{split} [{cond}]: {m['successes']}/{m['episodes']} = {m['success_rate']:.1%}")
        for fam, f in m.get("by_family", {}).items():
            typer.echo(f"  {fam:32s} {f['successes']}/{f['episodes']}")


@app.command("loop")
def loop_cmd(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Run the configured iterations as a Prefect flow (ephemeral; no server needed).

    Stages DVC has up to date are skipped; finished stages are recorded in DVC (dvc status stays
    clean). --set values go to the run overlay overrides.yaml (params.yaml is never rewritten) and
    replace the last run's overrides.
    """
    from skillmaster.runtime import configure_environment, project_root

    root = project_root()
    configure_environment(root)
    from skillmaster.orchestration.flow import skillmaster_loop

    results = skillmaster_loop(params=str(root / params), overrides=set_ or [])
    report = results.get("report", {})
    typer.echo(f"loop finished: {len(results)} stages; final success rate {report.get('final_success_rate')}")


# Sub-command groups defined next to their code (each module imports heavy libraries lazily).
# <register sub-apps here>
from skillmaster.bench.cli import bench_app  # noqa: E402
from skillmaster.envs.cli import env_app  # noqa: E402

app.add_typer(env_app, name="env")
app.add_typer(bench_app, name="bench")
from skillmaster.skills.cli import skills_app  # noqa: E402

app.add_typer(skills_app, name="skills")
from skillmaster.orchestration.cli import pipeline_app  # noqa: E402

app.add_typer(pipeline_app, name="pipeline")
from skillmaster.compare import compare_cmd  # noqa: E402

app.command("compare")(compare_cmd)
from skillmaster.experiment import experiment_cmd  # noqa: E402

app.command("experiment")(experiment_cmd)
from skillmaster.bank_experiment import bank_experiment_cmd  # noqa: E402

app.command("bank-experiment")(bank_experiment_cmd)


@app.command("doctor")
def doctor_cmd(
    gpu: Annotated[
        bool | None,
        typer.Option("--gpu/--cpu", help="Check cuda, or the CPU mode (default: cuda if visible)."),
    ] = None,
    steps: Annotated[int, typer.Option(min=2, help="Training steps per check.")] = 4,
    out: Annotated[Path, typer.Option(help="Folder for gpu-check.json.")] = Path("gpu-check"),
) -> None:
    """Check this machine for training on a tiny random Llama (src/skillmaster/gpu_check.py,
    scripts/gpu-check.sh): bf16 steps in-process and under a 1-process `accelerate launch`, peak
    memory beside the memory plan, an Accelerate save_state/load_state round trip."""
    from skillmaster.gpu_check import main as gpu_check

    device = "auto" if gpu is None else ("cuda" if gpu else "cpu")
    raise typer.Exit(gpu_check(["--device", device, "--steps", str(steps), "--out", str(out)]))


def _terminate(signum, frame) -> None:
    """SIGTERM (e.g. from `dvc`, Prefect or `kill`) unwinds like Ctrl-C, so the stage's clean-up runs:
    the generation engine's processes end, finished outputs stay."""
    raise KeyboardInterrupt


_IO_HINTS = {
    errno.EACCES: "check that the folder is writable by you",
    errno.EPERM: "check that the folder is writable by you",
    errno.EROFS: "the file system is read-only; write the outputs elsewhere",
    errno.ENOSPC: "free some disk space and rerun",
    errno.EDQUOT: "free some space (disk quota exceeded) and rerun",
    errno.EFBIG: "the file size limit was reached (ulimit -f); raise it and rerun",
}
"""OS errors that are the machine's state, not a bug: one sentence instead of a traceback."""
INTERRUPTED = "interrupted; finished outputs are kept, rerun to resume"


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` (typer turns Ctrl-C into ``Exit(130)``) comes from a KeyboardInterrupt."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def io_error_message(exc: OSError) -> str | None:
    """The one sentence for an OS error of :data:`_IO_HINTS` (None for any other)."""
    hint = _IO_HINTS.get(exc.errno)
    if hint is None:
        return None
    where = exc.filename or "a file"
    return f"{where}: {exc.strerror or os.strerror(exc.errno)} ({hint}; finished outputs are kept)"


def main() -> None:
    import signal

    from skillmaster.runtime import children_die_with_this_process

    signal.signal(signal.SIGTERM, _terminate)
    children_die_with_this_process()
    try:
        app()
    except SkillMasterError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho(INTERRUPTED, err=True)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130 and _interrupted(exc):  # typer swallowed the KeyboardInterrupt
            typer.secho(INTERRUPTED, err=True)
        raise
    except OSError as exc:
        message = io_error_message(exc)
        if message is None:
            raise
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
