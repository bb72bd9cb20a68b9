"""``skillmaster skills show|diff|history``: look at banks, what changed between iterations, and why."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from skillmaster.errors import DataError

skills_app = typer.Typer(help="Inspect skill banks.", no_args_is_help=True)

RootOpt = Annotated[Path, typer.Option("--root", help="Project root (where data/banks/ lives).")]


def latest_bank(root: Path) -> Path:
    """The newest ``data/banks/iter_NNN.json`` under ``root`` (by iteration number)."""
    from skillmaster.paths import Paths

    folder = Paths(root).bank(0).parent
    found = sorted(
        (int(m.group(1)), p)
        for p in folder.glob("iter_*.json")
        if (m := re.fullmatch(r"iter_(\d+)\.json", p.name))
    )
    if not found:
        raise DataError(f"{folder}: no skill banks yet (run an iteration, or pass --file)")
    return found[-1][1]


def resolve_bank(ref: str, root: Path) -> Path:
    """An iteration number (``3``) or a bank file path."""
    from skillmaster.paths import Paths

    if ref.isdigit():
        return Paths(root).bank(int(ref))
    return Path(ref)


@skills_app.command("show")
def show(
    iteration: Annotated[
        int | None, typer.Option("--iteration", "-i", help="Bank after iteration N.")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A bank file to show instead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bank as JSON.")] = False,
    root: RootOpt = Path("."),
) -> None:
    """Print a skill bank (default: the newest iteration's)."""
    from skillmaster.paths import Paths
    from skillmaster.skills.diff import format_bank
    from skillmaster.skills.store import load_bank

    if file is not None and iteration is not None:
        raise typer.BadParameter("give --iteration or --file, not both")
    path = (
        file
        if file is not None
        else Paths(root).bank(iteration)
        if iteration is not None
        else latest_bank(root)
    )
    bank = load_bank(path)
    if as_json:
        typer.echo(json.dumps(bank.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        typer.echo(f"{path}\n{format_bank(bank)}")


@skills_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="Old bank: iteration number or file.")],
    b: Annotated[str, typer.Argument(help="New bank: iteration number or file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON.")] = False,
    root: RootOpt = Path("."),
) -> None:
    """Print what changed from bank A to bank B: added, updated (before/after) and removed items."""
    from dataclasses import asdict

    from skillmaster.skills.diff import diff_banks, format_diff
    from skillmaster.skills.store import load_bank

    pa, pb = resolve_bank(a, root), resolve_bank(b, root)
    changes = diff_banks(load_bank(pa), load_bank(pb))
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in changes], indent=2, ensure_ascii=False))
    else:
        typer.echo(format_diff(changes, str(pa), str(pb)))


@skills_app.command("history")
def history(
    all_edits: Annotated[
        bool, typer.Option("--all", help="Every edit with its fate, not only the committed ones.")
    ] = False,
    iteration: Annotated[int | None, typer.Option("--iteration", "-i", help="Only iteration N.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    root: RootOpt = Path("."),
) -> None:
    """The bank's lineage: each committed edit with its iteration, source episode, evidence, probes,
    scores, U and the skill's text before and after."""
    from skillmaster.skills.history import bank_history, format_history, history_json

    entries = bank_history(root, committed_only=not all_edits, iteration=iteration)
    typer.echo(history_json(entries) if as_json else format_history(entries, committed_only=not all_edits))


@skills_app.command("shown")
def shown(
    episodes: Annotated[
        Path, typer.Argument(help="The row's evaluation (folder or episodes.parquet), with skills shown.")
    ],
    reference: Annotated[
        Path,
        typer.Option("--reference", help="The evaluation to compare with (same games), e.g. the SFT row's."),
    ],
    root: RootOpt = Path("."),
) -> None:
    """Were the committed edits (``skills history``) shown in the games whose outcome changed against
    the reference: improved (won only by the row) and worsened (won only by the reference)."""
    import polars as pl

    from skillmaster.evaluations import shown_in_changed
    from skillmaster.skills.history import bank_history

    def read(path: Path) -> pl.DataFrame:
        file = path / "episodes.parquet" if path.is_dir() else path
        if not file.is_file():
            raise DataError(f"{path}: no episodes.parquet there (write one with `skillmaster eval --out`)")
        return pl.read_parquet(file)

    ids = sorted({e.skill_id for e in bank_history(root)})
    if not ids:
        typer.echo("no committed edits under this root: the bank is still the starting bank")
        return
    row, ref = read(episodes), read(reference)
    s = shown_in_changed(row, ref, ids)
    typer.echo(f"committed skills: {', '.join(ids)}")
    typer.echo(f"shown in {s.shown} of {s.games} games")
    typer.echo(
        f"improved (won only by the row): {s.improved}, of which shown an edited skill: {s.improved_shown}"
    )
    typer.echo(
        f"worsened (won only by the reference): {s.worsened}, of which shown an edited skill: {s.worsened_shown}"
    )
    if len(ids) > 1:  # each skill alone: a general skill shown in every game separates nothing
        typer.echo("per skill (shown in games; in improved; in worsened):")
        for skill_id in ids:
            one = shown_in_changed(row, ref, [skill_id])
            typer.echo(
                f"  {skill_id}: {one.shown}/{one.games}; {one.improved_shown}/{one.improved}; "
                f"{one.worsened_shown}/{one.worsened}"
            )
    if s.shown == s.games:
        typer.echo(
            "an edited skill was shown in every game, so being shown cannot tell improved games from worsened ones"
        )
