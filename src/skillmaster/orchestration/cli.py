"""``skillmaster pipeline write|check|outputs``: dvc.yaml from the stages' contracts and params.yaml;
a DVC experiment's outputs into the workspace."""

from __future__ import annotations

from pathlib import Path

import typer

pipeline_app = typer.Typer(help="Generate and check dvc.yaml from params.yaml.", no_args_is_help=True)


@pipeline_app.command("write")
def write_cmd(params: Path = typer.Option(Path("params.yaml"), "--params", "-p")) -> None:
    """Write dvc.yaml for the settings in params.yaml."""
    from skillmaster.config import flatten, load_config, overrides_path, read_yaml
    from skillmaster.io import atomic_write_text
    from skillmaster.orchestration.plan import render_dvc_yaml, stage_plan
    from skillmaster.runtime import project_root

    root = project_root()
    cfg = load_config(params)
    overlay = overrides_path(params)
    if overlay.is_file() and (keys := sorted(flatten(read_yaml(overlay) or {}))):
        typer.echo(
            f"run overlay {overlay.name} in force: {', '.join(keys)} (empty it: skillmaster config override)"
        )
    text = render_dvc_yaml(cfg, root)
    path = root / "dvc.yaml"
    if path.is_file() and path.read_text() == text:
        typer.echo("dvc.yaml is up to date")
        return
    atomic_write_text(path, text)
    typer.echo(f"wrote dvc.yaml: {len(stage_plan(cfg, root))} stages, {cfg.loop.iterations} iterations")


@pipeline_app.command("check")
def check_cmd(params: Path = typer.Option(Path("params.yaml"), "--params", "-p")) -> None:
    """Fail when dvc.yaml is out of date with params.yaml."""
    from skillmaster.config import load_config
    from skillmaster.orchestration.plan import check_in_sync
    from skillmaster.runtime import project_root

    root = project_root()
    check_in_sync(load_config(params), root)
    typer.echo("dvc.yaml matches params.yaml")


@pipeline_app.command("outputs")
def outputs_cmd(
    name: str = typer.Argument(help="DVC experiment name (`dvc exp list --all-commits`)."),
) -> None:
    """Put a DVC experiment's outputs (models, data, metrics) into the workspace from DVC's cache,
    leaving code and params.yaml as they are (`dvc exp apply` also brings back the experiment's code)."""
    from skillmaster.orchestration.dvc import checkout_outputs
    from skillmaster.runtime import project_root

    root = project_root()
    checkout_outputs(name, root)
    typer.echo(f"outputs of DVC experiment '{name}' checked out (dvc.lock and its outputs)")
