"""``skillmaster compare``: the runs of the MLflow experiment side by side, one row per run.

Each pipeline run is one MLflow run (:mod:`skillmaster.tracking`): named
``<method>-<env>-<model>-<N>it-<fingerprint>``, tagged with ``skillmaster.method``,
``skillmaster.run_key`` (settings fingerprint + git commit) and ``git_commit``, with the whole config
as params and metrics at ``step=iteration``. The table shows, per run, its identity and the latest
value of the headline metrics, the very numbers the MLflow runs table shows in those columns:

- ``success``: eval success on the first split with skills shown (``success_no_skills`` where the
  run shows none); stores from before one name per metric: ``success_rate``, else the evaluate
  stage's ``eval/<split>.eval_skills.success_rate``;
- one column per task family (``success/Pick`` …), named as in the paper's tables;
- ``bank``: skills in the bank (``bank/size``).

``--metric NAME`` (repeatable) shows the named metrics instead (``params.KEY`` and ``tags.KEY``
work too); ``--plot out.png`` draws each run's success over iterations.

The core (:func:`compare_table`, :func:`format_table`, :func:`history_rows`) is pure and works on
the runs frame (columns ``run_id``, ``status``, ``start_time``, ``metrics.*``, ``params.*``,
``tags.*``, as ``mlflow.search_runs`` names them); :func:`fetch_runs` and :func:`fetch_histories`
are the MLflow shell around it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skillmaster.errors import ConfigError, DataError
from skillmaster.tracking import RUN_KEY_TAG

if TYPE_CHECKING:
    import polars as pl

RUN_NAME_TAG = "mlflow.runName"
METHOD_TAG = "skillmaster.method"
IDENTITY_COLUMNS = ("run", "run_id", "method", "fingerprint", "commit", "status", "started", "iterations")
"""Columns every table starts with."""


# --------------------------------------------------------------------------- pure core
def _metric(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(f"metrics.{name}")
    return None if value is None or value != value else float(value)  # value != value: NaN


def eval_split(row: Mapping[str, Any]) -> str | None:
    """The run's first eval split, from its logged ``eval.splits`` param (e.g. ``"['valid_seen']"``)."""
    import yaml

    raw = row.get("params.eval.splits")
    try:
        splits = yaml.safe_load(raw) if isinstance(raw, str) else None
    except yaml.YAMLError:
        return None
    return str(splits[0]) if isinstance(splits, list) and splits else None


def success_source(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(overall metric, family metric pattern with {fam})`` of the run's success, or None.

    The report's metrics win; before the report has run, the evaluate stage's metrics of the first
    eval split (with skills, else without) stand in.
    """
    for name in ("success", "success_no_skills"):  # tracking.metric_names' headline names
        if _metric(row, name) is not None:
            return name, name + "/{fam}"
    if _metric(row, "success_rate") is not None:  # stores written before one name per metric
        return "success_rate", "success/{fam}"
    split = eval_split(row)
    for cond in ("eval_skills", "eval_no_skills"):
        prefix = f"eval/{split}.{cond}"
        if split and _metric(row, f"{prefix}.success_rate") is not None:
            return f"{prefix}.success_rate", prefix + ".by_family.{fam}.success_rate"
    return None


def family_success(row: Mapping[str, Any]) -> dict[str, float]:
    """Success per task family, keyed by the paper's label (Pick, Look, …)."""
    from skillmaster.plots import label

    source = success_source(row)
    if source is None:
        return {}
    head, tail = (f"metrics.{source[1]}").split("{fam}")
    out = {}
    for key, value in row.items():
        if key.startswith(head) and key.endswith(tail) and value is not None and value == value:
            fam = key[len(head) : len(key) - len(tail)]
            out[label(fam)] = float(value)
    return out


def _family_order(names: set[str]) -> list[str]:
    from skillmaster.plots import FAMILY_LABELS

    known = [lab for lab in FAMILY_LABELS.values() if lab in names]
    return known + sorted(names - set(known))


def _identity(row: Mapping[str, Any]) -> dict[str, Any]:
    commit = str(row.get("tags.git_commit") or "")
    sha, dirty = commit.removesuffix("-dirty"), commit.endswith("-dirty")
    started = row.get("start_time")
    iterations = row.get("params.loop.iterations")
    return {
        "run": row.get(f"tags.{RUN_NAME_TAG}") or row.get("run_id", ""),
        "run_id": str(row.get("run_id", ""))[:8],
        "method": row.get(f"tags.{METHOD_TAG}"),
        "fingerprint": str(row.get(f"tags.{RUN_KEY_TAG}") or "").split("-")[0] or None,
        "commit": (sha[:8] + ("-dirty" if dirty else "")) if sha else None,
        "status": row.get("status"),
        "started": (
            datetime.fromtimestamp(started / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            if isinstance(started, int | float)
            else None
        ),
        "iterations": int(iterations) if isinstance(iterations, str) and iterations.isdigit() else None,
    }


def _resolve_columns(columns: Sequence[str], names: Sequence[str]) -> list[tuple[str, str]]:
    """``(column title, frame column)`` per requested name; unknown names are a ConfigError."""
    available = set(columns)
    metric_names = sorted(c.removeprefix("metrics.") for c in columns if c.startswith("metrics."))
    out = []
    for name in names:
        key = name if name.startswith(("metrics.", "params.", "tags.")) else f"metrics.{name}"
        if key not in available:
            close = difflib.get_close_matches(name, metric_names, n=3, cutoff=0.5)
            hint = (
                f"; did you mean {', '.join(close)}?" if close else "; `--metric` takes MLflow metric names"
            )
            raise ConfigError(f"--metric {name!r}: no run of the experiment has it{hint}")
        out.append((name, key))
    return out


def compare_table(runs: pl.DataFrame, metrics: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per run: identity columns, then success (overall, per family) and bank size.

    ``runs`` has ``mlflow.search_runs``' columns (one row per run); ``metrics`` replaces the
    default value columns with these metric names (or ``params.KEY`` / ``tags.KEY`` columns).
    Values are the runs' latest (highest-step) metric values; a missing value is null.
    """
    import polars as pl

    rows = runs.to_dicts()
    table: list[dict[str, Any]] = []
    if metrics:
        chosen = _resolve_columns(runs.columns, metrics)
        for row in rows:
            table.append(_identity(row) | {title: row.get(key) for title, key in chosen})
    else:
        families = _family_order({fam for row in rows for fam in family_success(row)})
        for row in rows:
            source = success_source(row)
            per_family = family_success(row)
            bank = next(
                (
                    v
                    for k in ("bank/size", "bank.total", "counterfactual/bank_total")
                    if (v := _metric(row, k)) is not None
                ),
                None,
            )
            table.append(
                _identity(row)
                | {"success": _metric(row, source[0]) if source else None}
                | {fam: per_family.get(fam) for fam in families}
                | {"bank": None if bank is None else int(bank)}
            )
    if not table:
        return pl.DataFrame(schema=dict.fromkeys(IDENTITY_COLUMNS, pl.String))
    return pl.from_dicts(table, infer_schema_length=None)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def format_table(table: pl.DataFrame) -> str:
    """The table as aligned text columns (numbers right-aligned, ``-`` for a missing value)."""
    header = list(table.columns)
    cells = [[_cell(v) for v in row] for row in table.iter_rows()]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    numeric = [table.schema[c].is_numeric() and c not in ("iterations",) for c in header]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def history_rows(histories: Mapping[str, Sequence[tuple[int, float]]]) -> list[dict[str, Any]]:
    """``{label: [(step, value), …]}`` → rows ``{"iteration": step, label: value, …}`` by step.

    The input of :func:`skillmaster.plots.line_plot`; a run without a value at a step leaves it out.
    """
    by_step: dict[int, dict[str, Any]] = {}
    for name, points in histories.items():
        for step, value in points:
            by_step.setdefault(int(step), {"iteration": int(step)})[name] = float(value)
    return [by_step[s] for s in sorted(by_step)]


def plot_labels(table: pl.DataFrame) -> list[str]:
    """A legend label per row: the run name, with the run id when two runs share a name."""
    names = table["run"].to_list()
    ids = table["run_id"].to_list()
    return [n if names.count(n) == 1 else f"{n}@{i}" for n, i in zip(names, ids, strict=True)]


# --------------------------------------------------------------------------- MLflow shell
def run_record(run) -> dict[str, Any]:
    """An ``mlflow.entities.Run`` as one row with ``mlflow.search_runs``' column names."""
    info, data = run.info, run.data
    return (
        {"run_id": info.run_id, "status": info.status, "start_time": info.start_time}
        | {f"metrics.{k}": float(v) for k, v in data.metrics.items()}
        | {f"params.{k}": v for k, v in data.params.items()}
        | {f"tags.{k}": v for k, v in data.tags.items()}
    )


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def fetch_runs(uri: str, experiment: str, filter_string: str = "", limit: int | None = None) -> pl.DataFrame:
    """The experiment's runs, newest first, as a frame with ``mlflow.search_runs``' columns."""
    import polars as pl
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise DataError(
            f"no MLflow experiment '{experiment}' at {uri}: run the pipeline first "
            "(dvc repro or skillmaster loop), or pass --experiment / --uri"
        )
    records: list[dict[str, Any]] = []
    token = None
    while limit is None or len(records) < limit:
        page_size = 1000 if limit is None else min(1000, limit - len(records))
        try:
            page = client.search_runs(
                [exp.experiment_id],
                filter_string=filter_string,
                max_results=page_size,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
        except MlflowException as exc:
            raise ConfigError(
                f"--filter {filter_string!r} is not a valid MLflow filter: {str(exc).splitlines()[0]}"
            ) from None
        records += [run_record(r) for r in page]
        token = page.token
        if not token:
            break
    if not records:
        where = f" matching {filter_string!r}" if filter_string else ""
        raise DataError(f"MLflow experiment '{experiment}' at {uri} has no runs{where} yet")
    return pl.from_dicts(records, infer_schema_length=None)


def fetch_histories(
    uri: str, runs: pl.DataFrame, labels: Sequence[str]
) -> dict[str, list[tuple[int, float]]]:
    """Each run's success over iterations (the metric :func:`success_source` picks), keyed by label."""
    client = _client(uri)
    out: dict[str, list[tuple[int, float]]] = {}
    for row, name in zip(runs.to_dicts(), labels, strict=True):
        source = success_source(row)
        if source is None:
            continue
        history = client.get_metric_history(row["run_id"], source[0])
        latest: dict[int, tuple[int, float]] = {}  # a re-logged step keeps its newest value
        for m in history:
            if m.step not in latest or m.timestamp >= latest[m.step][0]:
                latest[m.step] = (m.timestamp, m.value)
        out[name] = [(step, value) for step, (_, value) in sorted(latest.items())]
    return out


# --------------------------------------------------------------------------- command
def compare_cmd(
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: tracking.experiment).")
    ] = None,
    uri: Annotated[
        str | None, typer.Option(help="Tracking URI (default: tracking.uri of the settings).")
    ] = None,
    filter_: Annotated[
        str, typer.Option("--filter", help="MLflow filter, e.g. \"tags.`skillmaster.method` = 'grpo'\".")
    ] = "",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Show this metric instead of the default columns (repeatable; params.KEY and tags.KEY work too).",
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of each run's success over iterations.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many runs (newest first).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    params: Annotated[Path, typer.Option("--params", "-p", help="Settings file.")] = Path("params.yaml"),
    overlay: Annotated[
        list[Path] | None, typer.Option("--overlay", "-o", help="Overlay file(s) merged on top.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-S", help="Override one setting: KEY=VALUE.")
    ] = None,
    evals: Annotated[
        list[Path] | None,
        typer.Option(
            "--evals",
            help="Compare evaluation folders (`skillmaster eval --out`) instead of MLflow runs: per family, "
            "overall with 95% interval, invalid actions, steps of wins, paired test (repeatable; a folder of "
            "folders is expanded).",
        ),
    ] = None,
    reference: Annotated[
        str,
        typer.Option(
            help="With --evals: the row every other row is paired against (McNemar, same games), in each "
            "row's condition; ROW:CONDITION pairs every row with that one evaluation (e.g. skillmaster:skills)."
        ),
    ] = "skillmaster",
    condition: Annotated[
        str, typer.Option(help="With --evals --plot: the condition to plot (skills or no-skills).")
    ] = "skills",
) -> None:
    """Compare the MLflow runs of the experiment (success overall and per family, bank size, ...), or
    with --evals the evaluations of the experiment's rows game by game."""
    if evals:
        from skillmaster.evaluations import (
            evaluation_table,
            family_bar_plot,
            format_evaluation_table,
            format_shown_effect,
            load_evaluations,
            records_json,
        )

        records = evaluation_table(load_evaluations(evals), reference)
        if plot is not None:
            family_bar_plot(plot, records, condition)
        typer.echo(records_json(records) if json_ else format_evaluation_table(records, reference))
        if not json_ and (effect := format_shown_effect(records)):
            typer.echo("\nShowing the skills against hiding them (same policy, same games):\n\n" + effect)
        if plot is not None:
            typer.echo(f"wrote {plot}", err=json_)
        return
    from skillmaster.runtime import configure_environment, project_root

    root = project_root(params.resolve().parent)
    configure_environment(root)
    if uri is None or experiment is None:
        from skillmaster.config import load_config
        from skillmaster.tracking import resolve_uri

        cfg = load_config(params, overlays=overlay or [], sets=set_ or [])
        uri = uri or resolve_uri(cfg.tracking.uri, root)
        experiment = experiment or cfg.tracking.experiment
    runs = fetch_runs(uri, experiment, filter_, limit)
    table = compare_table(runs, metric)
    if plot is not None:
        from skillmaster.plots import line_plot

        labels = plot_labels(table)
        histories = fetch_histories(uri, runs, labels)
        if not histories:
            raise DataError(
                f"no run of experiment '{experiment}' has logged an eval success rate to plot yet"
            )
        line_plot(
            plot,
            history_rows(histories),
            list(histories),
            f"Success by run ({experiment})",
            "success rate",
            (-0.05, 1.05),
        )
    if json_:
        typer.echo(json.dumps(table.to_dicts(), indent=2, default=str))
    else:
        typer.echo(format_table(table))
    if plot is not None:
        typer.echo(f"wrote {plot}", err=json_)
