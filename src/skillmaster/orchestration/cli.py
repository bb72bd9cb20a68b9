"""``skillmaster pipeline write|check``: dvc.yaml from the stages' contracts and params.yaml."""

from __future__ import annotations

from pathlib import Path

import typer

pipeline_app = typer.Typer(help="Generate and check dvc.yaml from params.yaml.", no_args_is_help=True)


@pipeline_app.command("write")
def write_cmd(params: Path = typer.Option(Path("params.yaml"), "--params", "-p")) -> None:
    """Write dvc.yaml for the settings in params.yaml."""
    from skillmaster.config import load_config
    from skillmaster.io import atomic_write_text
    from skillmaster.orchestration.plan import render_dvc_yaml, stage_plan
    from skillmaster.runtime import project_root

    root = project_root()
    cfg = load_config(params)
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
