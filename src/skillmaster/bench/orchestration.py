"""``skillmaster bench orchestration``: what Prefect, DVC and MLflow add to an iteration.

Two fresh projects (:mod:`skillmaster.orchestration.project`) get the same settings: the default profile with
one iteration and the SFT cold start off (it runs once per experiment, not per iteration;
``--quick``: minimal sizes), and the same prepared base model.

- **bare** (the baseline): every stage of the plan called in order in one process with
  ``tracking.enabled: false``: no Prefect, no DVC, no MLflow.
- **orchestrated**: the Prefect flow (:mod:`skillmaster.orchestration.flow`) on an ephemeral Prefect API: a task per
  stage, ``dvc status`` before and ``dvc commit`` after each, the stages logging to MLflow.

Reported: the wall-time ratio orchestrated / bare, and, because two runs of the model differ by
machine noise alone, the overhead accounted inside the orchestrated run: its wall time minus the
stages' own compute (each stage's time less its MLflow calls), as a share of that compute. Both
runs do the same work (same seeds), so the stages' compute matches between them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from skillmaster.orchestration.project import make_project

TARGET = 0.05
QUICK = {
    "model": {"dtype": "float32", "device": "cpu"},
    "env": {"max_steps": 2},
    "rollout": {"num_tasks": 2, "group_size": 2, "max_new_tokens": 16, "num_workers": 1},
    "review": {"max_new_tokens": 24},
    "counterfactual": {"probes_per_edit": 1, "max_edits": 1},
    "train": {"max_samples": 4},
    "sft": {"enabled": False},
    "eval": {"limit": 2},
    "loop": {"iterations": 1},
    "orchestration": {"retries": 0},
}
FULL = {"loop": {"iterations": 1}, "sft": {"enabled": False}, "orchestration": {"retries": 0}}


def _bare(root: Path) -> tuple[float, dict[str, float]]:
    from skillmaster.config import load_config
    from skillmaster.orchestration.plan import stage_plan
    from skillmaster.stages import run_stage
    from skillmaster.stages.resources import Resources

    cfg = load_config(root / "params.yaml")
    resources = Resources()  # one engine for all stages, as in the flow
    per_stage = {}
    start = time.perf_counter()
    try:
        for spec in stage_plan(cfg, root):
            t = time.perf_counter()
            run_stage(spec.stage, cfg, spec.iteration, root=root, resources=resources)
            per_stage[spec.name] = time.perf_counter() - t
    finally:
        resources.close()
    return time.perf_counter() - start, per_stage


def _orchestrated(root: Path) -> tuple[float, dict[str, dict]]:
    import contextlib
    import sys

    from skillmaster.orchestration.flow import skillmaster_loop

    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # DVC's "Updating lock file" lines stay off --json
        results = skillmaster_loop(params=str(root / "params.yaml"))
    return time.perf_counter() - start, results


def run_orchestration_bench(quick: bool, source: Path, model_dir: Path) -> dict[str, Any]:
    """Run both sides on fresh projects under a temporary folder and return the report."""
    from skillmaster.config import deep_merge

    settings = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="skillmaster-bench-orch-") as tmp:
        tmp = Path(tmp)
        bare_root, orch_root = tmp / "bare", tmp / "orchestrated"
        make_project(bare_root, source, model_dir, deep_merge(settings, {"tracking": {"enabled": False}}))
        make_project(orch_root, source, model_dir, deep_merge(settings, {"tracking": {"enabled": True}}))
        bare_s, bare_stages = _bare(bare_root)
        orch_s, results = _orchestrated(orch_root)
    compute = sum(r.get("stage_seconds", 0.0) - r.get("tracking_seconds", 0.0) for r in results.values())
    tracking = sum(r.get("tracking_seconds", 0.0) for r in results.values())
    overhead = orch_s - compute
    return {
        "profile": "quick" if quick else "default, 1 iteration, no SFT",
        "stages": len(results),
        "bare_seconds": round(bare_s, 2),
        "orchestrated_seconds": round(orch_s, 2),
        "wall_ratio": round(orch_s / bare_s, 4),
        "stage_compute_seconds": round(compute, 2),
        "overhead_seconds": round(overhead, 2),
        "mlflow_seconds": round(tracking, 2),
        "prefect_dvc_seconds": round(overhead - tracking, 2),
        "overhead_share": round(overhead / compute, 4),
        "target_overhead_share": TARGET,
        "per_stage_bare_seconds": {k: round(v, 2) for k, v in bare_stages.items()},
        "per_stage_orchestrated_seconds": {
            k: round(r.get("stage_seconds", 0.0), 2) for k, r in results.items()
        },
    }


def format_orchestration_report(r: dict[str, Any]) -> str:
    ok = "meets" if r["overhead_share"] <= r["target_overhead_share"] else "misses"
    return "\n".join(
        [
            f"bench orchestration ({r['profile']}, {r['stages']} stages)",
            f"  bare stages (baseline)           {r['bare_seconds']:9.1f} s",
            f"  Prefect flow + DVC + MLflow      {r['orchestrated_seconds']:9.1f} s   ratio {r['wall_ratio']:.3f}",
            f"  overhead inside the flow run     {r['overhead_seconds']:9.1f} s   "
            f"= {r['overhead_share']:.1%} of stage compute ({ok} the {r['target_overhead_share']:.0%} target)",
            f"    of which MLflow calls          {r['mlflow_seconds']:9.1f} s",
            f"    of which Prefect + DVC         {r['prefect_dvc_seconds']:9.1f} s",
        ]
    )
