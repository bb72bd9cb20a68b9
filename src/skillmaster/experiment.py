"""``skillmaster experiment``: the method against its baselines, one row at a time, resumable.

Each row is one DVC experiment (``dvc exp run --name <prefix>-<row>``) run with the row's settings
in the run overlay ``overrides.yaml`` (:mod:`skillmaster.orchestration.overrides`, the mechanism the
Prefect flow uses: the shared experiment overlay's values, then the row's baseline overlay's, so
every row spends the same budget), followed by two evaluations of its final policy on every game of
the split (``skillmaster eval --all``), with the skills shown and without, into
``<out>/<row>/skills`` and ``<out>/<row>/no-skills``. ``base`` and ``sft`` do no RL: their
experiments run the pipeline up to ``model`` and up to ``sft``. ``skillmaster compare --evals
<out>`` then prints the table with intervals and paired tests.

``params.yaml`` is never written: before each step the row's settings become the run overlay (and
``dvc.yaml`` lists their keys as the stages' DVC params), a copy of it is kept with the row's results
(``<out>/<row>/overrides.yaml``), and at the end the overlay that was there before is put back. A
step whose output exists is skipped, so after a crash or a stop the same command goes on where it
was (DVC's run cache restores finished stages too).

:func:`plan` is pure (tested); :func:`run_plan` runs it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from skillmaster.errors import ConfigError, DataError
from skillmaster.evaluations import CONDITIONS


@dataclass(frozen=True)
class Row:
    name: str
    overlay: str | None = None
    """Baseline overlay stacked on the experiment overlay (None: the experiment's own settings)."""
    train: bool = True
    """Run the RL iterations (False: evaluate the base model or the SFT policy only)."""
    checkpoint: str | None = "final"
    """``final``: the last iteration's policy; ``sft``: models/sft; None: the base model."""
    evolving_bank: bool = True
    """Show the last iteration's bank (False: the seed bank, for rows that never edit it)."""
    reviews: bool = True
    """Trains on review turns. A row that does not (grpo, static-skills) takes as many more action
    samples per iteration as the others have reviews, so every row makes the same optimizer steps
    on as many samples (:func:`plan`'s ``review_samples``)."""


ROWS: tuple[Row, ...] = (
    Row("base", train=False, checkpoint=None, evolving_bank=False),
    Row("sft", train=False, checkpoint="sft", evolving_bank=False),
    Row("grpo", "configs/baseline-grpo.yaml", evolving_bank=False, reviews=False),
    Row("static-skills", "configs/baseline-static-skills.yaml", evolving_bank=False, reviews=False),
    Row("no-cf", "configs/baseline-no-counterfactual.yaml"),
    Row("merged-adv", "configs/baseline-merged-advantage.yaml"),
    Row("skillmaster"),
)
"""The rows of the paper's table (METHOD.md §7), in its order."""


@dataclass(frozen=True)
class Step:
    row: str
    kind: str
    """``train`` (a DVC experiment), ``restore`` (the SFT row's stages again, from DVC's run cache),
    ``apply`` (``skillmaster pipeline outputs``: the row's outputs back into the
    workspace before its evaluations, the code left as it is) or ``eval-skills`` / ``eval-no-skills``."""
    argv: tuple[str, ...]
    done_marker: Path
    """Exists when the step has finished (then it is skipped)."""
    overrides: tuple[str, ...] = ()
    """The row's settings (``KEY=VALUE``): the run overlay (``overrides.yaml``) while the step runs."""
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        return shlex.join(self.argv)


def select_rows(names: Sequence[str] | None) -> list[Row]:
    if not names:
        return list(ROWS)
    known = {r.name: r for r in ROWS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown experiment row(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [known[n] for n in names]


def overlay_settings(overlays: Sequence[Path]) -> list[str]:
    """The overlays' values as ``KEY=VALUE`` settings (values as YAML), later files winning."""
    import yaml

    from skillmaster.config import flatten, read_yaml

    merged: dict = {}
    for overlay in overlays:
        merged.update(flatten(read_yaml(overlay)))
    return [
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        for key, value in merged.items()
    ]


def set_flags(overlays: Sequence[Path]) -> list[str]:
    """The overlays' values as ``dvc exp run`` arguments (``-S``, ``KEY=VALUE`` …), later files winning."""
    return [a for setting in overlay_settings(overlays) for a in ("-S", setting)]


def plan(
    rows: Sequence[Row],
    *,
    overlay: Path,
    out: Path,
    iterations: int,
    seed_banks: Mapping[str, str | None],
    split: str = "valid_seen",
    settings_of: Callable[[Sequence[Path]], list[str]] = overlay_settings,
    prefix: str = "exp",
    conditions: Sequence[str] = CONDITIONS,
    max_samples: int | None = None,
    review_samples: int = 0,
    chunk: int | None = None,
) -> list[Step]:
    """The steps of the experiment, in order: per row its DVC experiment (the whole pipeline; up to
    ``sft`` for the SFT row, up to ``model`` for the base row), its outputs put back, and its
    evaluations (``conditions``: skills, no-skills). Every step of a row carries the row's settings,
    ``settings_of(overlay_files)`` (``KEY=VALUE``), which :func:`run_plan` writes as the run overlay
    before it runs the step. ``seed_banks``: each row's ``skills.seed_bank`` (from its settings),
    the bank a row that never edits its bank is shown (None: no skills shown, as in training).
    ``max_samples`` (``train.max_samples``, action samples per iteration) and ``review_samples``
    (review samples per iteration, B × G): a row without reviews trains on ``max_samples +
    review_samples`` action samples, the same count and optimizer steps as a row with them.
    ``chunk``: games an evaluation plays at a time (``skillmaster eval --chunk``; None: its default)."""
    steps: list[Step] = []
    final = f"iter_{iterations:03d}"
    for row in rows:
        overlays = [overlay] + ([Path(row.overlay)] if row.overlay else [])
        folder = out / row.name
        name = f"{prefix}-{row.name}"
        targets = () if row.train else (("sft",) if row.checkpoint == "sft" else ("model",))
        settings = list(settings_of(overlays))
        if row.train and not row.reviews and max_samples is not None and review_samples:
            settings.append(f"train.max_samples={max_samples + review_samples}")
        sets = tuple(settings)

        def step(kind: str, argv: Sequence[str], marker: Path, row: str = row.name, sets=sets) -> Step:
            return Step(row, kind, tuple(argv), marker, overrides=sets)

        steps.append(step("train", ("dvc", "exp", "run", "--name", name, *targets), folder / "train.json"))
        if row.checkpoint == "sft":  # rows that turn skills or reviews off (grpo, static-skills) train
            # their own cold start into models/sft; the shared one comes back from DVC's run cache
            # (no training) by running the same stages again, as an unnamed experiment
            restore = ("dvc", "exp", "run", *targets)
            steps.append(step("restore", restore, folder / conditions[-1] / "metrics.json"))
        if row.train:  # base and sft cannot be applied (a partial pipeline's other outputs are in no
            # cache). Done once this pass's last evaluation is: another row may have run in the workspace since.
            apply = ("skillmaster", "pipeline", "outputs", name)
            steps.append(step("apply", apply, folder / conditions[-1] / "metrics.json"))
        checkpoint = {"final": f"models/policy/{final}", "sft": "models/sft", None: None}[row.checkpoint]
        bank = f"data/banks/{final}.json" if row.evolving_bank else seed_banks.get(row.name)
        for condition in conditions:
            argv = ["skillmaster", "eval", "--split", split, "--all", "--out", str(folder / condition)]
            argv += ["--chunk", str(chunk)] if chunk is not None else []
            if checkpoint:
                argv += ["--checkpoint", checkpoint]
            else:  # without --checkpoint, eval serves the starting policy: models/sft when sft.enabled
                argv += ["-S", "sft.enabled=false"]
            # without a seed bank a row that never edits its bank has no skills to show
            argv += ["--bank", bank] if condition == "skills" and bank else ["--no-skills"]
            steps.append(step(f"eval-{condition}", argv, folder / condition / "metrics.json"))
    return steps


def _resolved(argv: Sequence[str]) -> list[str]:
    """``dvc`` and ``skillmaster`` from this interpreter's environment when they are there (a venv
    that is not activated is not on PATH), else from PATH."""
    sibling = Path(sys.executable).parent / argv[0]
    return [str(sibling) if argv[0] in ("dvc", "skillmaster") and sibling.exists() else argv[0], *argv[1:]]


def run_plan(steps: Sequence[Step], *, params: Path, out: Path, echo=print) -> None:
    """Run the steps that have not finished, each with its row's settings as the run overlay beside
    ``params`` (and ``dvc.yaml`` brought in line when it is there), kept in ``<out>/<row>/overrides.yaml``;
    at the end the overlay that was there before is put back. ``params`` itself is never written."""
    from skillmaster.config import overrides_path
    from skillmaster.io import atomic_write_text
    from skillmaster.orchestration.overrides import sync_dvc_yaml, write_run_overrides

    overlay = overrides_path(params)
    before = overlay.read_text() if overlay.is_file() else None
    root = params.resolve().parent
    dvc_project = (root / "dvc.yaml").is_file()
    current: tuple[str, ...] | None = None
    try:
        for i, step in enumerate(steps, 1):
            if step.done_marker.exists():
                echo(f"[{i}/{len(steps)}] {step.row} {step.kind}: done, skipped")
                continue
            if step.overrides != current:
                write_run_overrides(params, list(step.overrides))
                if dvc_project:
                    sync_dvc_yaml(params, root)
                current = step.overrides
            (out / step.row).mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                out / step.row / overlay.name, overlay.read_text() if overlay.is_file() else "{}\n"
            )
            echo(f"[{i}/{len(steps)}] {step.row} {step.kind}: {step.shell()}")
            started = time.time()
            result = subprocess.run(_resolved(step.argv), check=False)
            if result.returncode != 0:
                raise DataError(
                    f"experiment row '{step.row}' ({step.kind}) failed with exit code {result.returncode}; "
                    "rerun the same command to go on from this step"
                )
            seconds = time.time() - started
            if step.kind == "train":
                record = {
                    "command": step.shell(),
                    "overrides": list(step.overrides),
                    "seconds": round(seconds, 1),
                }
                atomic_write_text(step.done_marker, json.dumps(record, indent=2))
            else:
                times = step.done_marker.parent.parent / "times.json"
                record = json.loads(times.read_text()) if times.exists() else {}
                record[step.kind] = round(seconds, 1)
                atomic_write_text(times, json.dumps(record, indent=2))
            echo(f"[{i}/{len(steps)}] {step.row} {step.kind}: {seconds / 60:.1f} min")
    finally:
        if current is not None:  # the overlay of the run before the experiment, and its dvc.yaml
            if before is None:
                overlay.unlink(missing_ok=True)
            else:
                atomic_write_text(overlay, before)
            if dvc_project:
                sync_dvc_yaml(params, root)


# --------------------------------------------------------------------------- command
def experiment_cmd(
    rows: Annotated[
        list[str] | None,
        typer.Option(
            "--row",
            "-r",
            help=f"Row(s) to run, in the table's order (default: all: {', '.join(r.name for r in ROWS)}).",
        ),
    ] = None,
    overlay: Annotated[
        Path, typer.Option("--overlay", "-o", help="The shared experiment overlay every row stacks on.")
    ] = Path("configs/experiment-cpu.yaml"),
    out: Annotated[Path, typer.Option(help="Folder of the rows' evaluations.")] = Path("results/experiment"),
    split: Annotated[str, typer.Option(help="Evaluation split (every game of it).")] = "valid_seen",
    prefix: Annotated[str, typer.Option(help="DVC experiment names: <prefix>-<row>.")] = "exp",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the commands, run nothing.")] = False,
    params: Annotated[Path, typer.Option("--params", "-p", help="Settings file.")] = Path("params.yaml"),
    conditions: Annotated[
        list[str] | None,
        typer.Option(
            "--condition",
            "-c",
            help="Evaluations to run: skills, no-skills (default: both). E.g. every row's skills "
            "evaluation first: -c skills, then -c no-skills.",
        ),
    ] = None,
    chunk: Annotated[
        int,
        typer.Option(
            min=0,
            help="Games an evaluation plays at a time (0: all at once); a stop keeps its finished "
            "chunks. On CPU fewer, larger generate calls are faster: 140 games at once took 0.97 s "
            "per sequence, 35 at a time 1.94 s.",
        ),
    ] = 140,
) -> None:
    """Run the experiment: each row's DVC experiment, then its evaluations with and without skills
    (resumable: finished steps are skipped). Then: skillmaster compare --evals <out>."""
    from skillmaster.config import OVERRIDES_FILE, load_config

    chosen = select_rows(rows)
    conditions = conditions or list(CONDITIONS)
    if bad := [c for c in conditions if c not in CONDITIONS]:
        raise ConfigError(
            f"unknown evaluation condition(s) {', '.join(bad)}; choose from {', '.join(CONDITIONS)}"
        )
    if not overlay.exists():
        raise ConfigError(f"experiment overlay {overlay} does not exist")
    seed_banks: dict[str, str | None] = {}
    for row in chosen:  # validate all first; each row's seed bank as its settings name it
        if row.overlay and not Path(row.overlay).exists():
            raise ConfigError(f"row '{row.name}': overlay {row.overlay} does not exist")
        row_cfg = load_config(
            params, overlays=[overlay] + ([Path(row.overlay)] if row.overlay else []), run_overrides=False
        )
        seed_banks[row.name] = row_cfg.skills.seed_bank
    cfg = load_config(params, overlays=[overlay], run_overrides=False)
    steps = plan(
        chosen,
        overlay=overlay,
        out=out,
        iterations=cfg.loop.iterations,
        seed_banks=seed_banks,
        split=split,
        prefix=prefix,
        conditions=[c for c in CONDITIONS if c in conditions],
        max_samples=cfg.train.max_samples,
        review_samples=cfg.rollout.num_tasks * cfg.rollout.group_size if cfg.review.enabled else 0,
        chunk=chunk,
    )
    if dry_run:
        shown: tuple[str, ...] | None = None
        for step in steps:
            if step.overrides != shown:
                shown = step.overrides
                typer.echo(f"# {step.row}: run overlay {OVERRIDES_FILE}: {' '.join(shown) or '(empty)'}")
            state = "done" if step.done_marker.exists() else "todo"
            typer.echo(f"# {step.row} {step.kind} ({state})\n{step.shell()}")
        return
    run_plan(steps, params=params, out=out, echo=typer.echo)
    typer.echo(f"all rows done: skillmaster compare --evals {out}")
