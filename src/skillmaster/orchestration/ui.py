"""What a flow run shows in the Prefect UI: stage logs, and artifacts with the settings and each
stage's headline metrics.

The stages log through the ``skillmaster`` loggers (progress bars included, :mod:`skillmaster.bars`);
while a stage task runs, :func:`forward_logs` sends those records to the task's run logger, so they
appear in the flow run's log pane, not only in the serving terminal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from skillmaster.io import read_json
from skillmaster.tracking import metric_names

if TYPE_CHECKING:
    from skillmaster.config import Config
    from skillmaster.orchestration.plan import StageSpec

HEADLINE = (
    "success",
    "success_no_skills",
    "collect/success_rate",
    "collect/invalid_rate",
    "review/valid_edit_share",
    "review/parse_error_share",
    "edits/scored",
    "edits/committed",
    "edits/mean_utility",
    "bank/size",
    "train/loss",
    "train/kl",
    "train/clip_frac",
    "sft/loss",
)
"""The numbers a stage's artifact shows, when the stage has them (MLflow names)."""


class _Forward(logging.Handler):
    """Hands each record of the ``skillmaster`` loggers to a Prefect run logger."""

    def __init__(self, target: logging.LoggerAdapter):
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.log(record.levelno, "%s", record.getMessage())
        except Exception:  # a log line is never worth failing a stage
            self.handleError(record)


@contextlib.contextmanager
def forward_logs() -> Iterator[logging.LoggerAdapter]:
    """Within a Prefect task: the ``skillmaster`` loggers' INFO records go to the run's logs."""
    from prefect import get_run_logger

    run_logger = get_run_logger()
    source = logging.getLogger("skillmaster")
    handler, level = _Forward(run_logger), source.level
    source.addHandler(handler)
    if source.getEffectiveLevel() > logging.INFO:
        source.setLevel(logging.INFO)
    try:
        yield run_logger
    finally:
        source.removeHandler(handler)
        source.setLevel(level)


def artifact_key(name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from a stage name."""
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def stage_headline(spec: StageSpec, root: Path, split: str | None) -> dict[str, float]:
    """The headline numbers of a finished stage, read from its metrics files."""
    numbers: dict[str, float] = {}
    for path in spec.metrics:
        file = root / path
        if file.is_file() and file.suffix == ".json" and spec.stage != "report":
            numbers |= metric_names(file.stem, read_json(file, "metrics"), split)  # eval.json: "eval"
    return {k: numbers[k] for k in HEADLINE if k in numbers}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def publish_stage(
    spec: StageSpec, root: Path, cfg: Config, result: dict[str, Any], seconds: float, logger
) -> dict[str, float]:
    """Log the stage's end and put its headline metrics on the flow-run page (a markdown artifact)."""
    from prefect.artifacts import create_markdown_artifact

    if result.get("skipped"):
        logger.info("%s: skipped, DVC has it up to date", spec.name)
    split = cfg.eval.splits[0] if cfg.eval.splits else None
    headline = stage_headline(spec, root, split)
    shown = ", ".join(f"{k} {_fmt(v)}" for k, v in headline.items())
    logger.info("%s: finished in %.0f s%s", spec.name, seconds, f" ({shown})" if shown else "")
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in headline.items())
    body = (
        f"### {spec.name}\n\n{'skipped (up to date in DVC)' if result.get('skipped') else f'{seconds:.0f} s'}"
    )
    if rows:
        body += f"\n\n| metric | value |\n| --- | --- |\n{rows}\n"
    create_markdown_artifact(body, key=artifact_key(spec.name), description=f"{spec.name}: headline metrics")
    return headline


def publish_settings(cfg: Config, overrides: list[str], plan: list[StageSpec]) -> None:
    """Log the run's overrides and plan, and store its effective settings as an artifact."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    logger = get_run_logger()
    logger.info("overrides: %s", ", ".join(overrides) if overrides else "none (params.yaml as it is)")
    logger.info("plan: %d stages: %s", len(plan), " ".join(s.name for s in plan))
    settings = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    listed = "\n".join(f"- `{o}`" for o in overrides) or "none"
    create_markdown_artifact(
        f"### Settings of this run\n\nOverrides:\n{listed}\n\n```yaml\n{settings}```\n",
        key="settings",
        description="The effective settings (params.yaml + this run's overrides)",
    )
