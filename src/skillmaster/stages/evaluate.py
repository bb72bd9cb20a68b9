"""Stage ``evaluate``: success per family on the evaluation splits, with and without skills (METHOD.md §9).

Iteration N evaluates the policy and bank in force after N (iteration 0: the starting policy and
bank). The games are the same in every iteration (seeded by the split, stratified over families)
and so are the episode ids (``<split>-<condition>-<game>``, no iteration in them) that seed each
episode's sampling, so iterations compare on paired episodes.

The splits are resolved before the policy loads, and a split most of whose episodes end in an
environment error fails the stage before anything is written
(:func:`~skillmaster.stages.common.check_env_errors`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import polars as pl

from skillmaster.config import Config, EnvConfig, EvalConfig, ModelConfig, RolloutConfig, SkillsConfig
from skillmaster.io import atomic_dir
from skillmaster.modeling import ensure_model_dir
from skillmaster.paths import COMPLETE_MARKER
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes
from skillmaster.rollout.metrics import rollout_metrics
from skillmaster.seeding import derive_seed
from skillmaster.stages import StageContext, register
from skillmaster.stages.common import (
    check_env_errors,
    chunk_slices,
    load_bank_at,
    load_policy,
    make_pool,
    policy_base,
    retriever_of,
    stratified_tasks,
    suite_of,
    write_metrics,
)
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import Computing, From, StageView
from skillmaster.tables import TRAJECTORIES

CONDITIONS = {"eval_skills": True, "eval_no_skills": False}


class EvaluateView(StageView):
    seed: Annotated[int, From("seed")]
    env: Annotated[EnvConfig, From("env")]
    model: Annotated[ModelConfig, From("model")]
    rollout: Annotated[RolloutConfig, Computing("rollout")]
    skills: Annotated[SkillsConfig, From("skills")]
    eval: Annotated[EvalConfig, From("eval")]
    sft_enabled: Annotated[bool, From("sft.enabled")]
    """The policy base is ``models/sft``."""

    @property
    def conditions(self) -> list[str]:
        """The conditions evaluated: with skills (``eval.with_skills`` and skills on), without skills
        (``eval.without_skills``, or skills off)."""
        out = []
        if self.eval.with_skills and self.skills.enabled:
            out.append("eval_skills")
        if self.eval.without_skills or not self.skills.enabled:
            out.append("eval_no_skills")
        return out


def eval_traj_id(split: str, condition: str, game: int, repeat: int = 0) -> str:
    """Id of an evaluation episode: the same in every iteration, so its sampling seed is too (paired).
    Repeat ``r`` ≥ 1 of a game (``evaluate(..., repeats=n)``) gets the suffix ``-rNN``; repeat 0 is
    the plain id, the episode a single evaluation plays."""
    return f"{split}-{condition}-{game:04d}" + (f"-r{repeat:02d}" if repeat else "")


def eval_tasks(ctx: StageContext, splits: list[str], limit: int | None) -> dict[str, list]:
    """The games of each split (resolved before any model loads, so a wrong split fails fast)."""
    return {split: stratified_tasks(suite_of(ctx).tasks(split), limit, ctx.cfg.seed) for split in splits}


def evaluate(
    ctx: StageContext,
    policy,
    bank,
    splits: list[str],
    conditions: list[str],
    limit: int | None,
    *,
    chunk: int | None = None,
    state: Path | None = None,
    repeats: int = 1,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Play every (split, condition, game) ``repeats`` times (default once); returns the episodes and
    their metrics. Repeat ``r`` of a game is episode :func:`eval_traj_id` ``(split, cond, game, r)``,
    so every evaluation with the same seed plays the same sampling streams (paired across banks).

    With ``chunk``, the episodes are played ``chunk`` at a time; with ``state`` too, each finished
    chunk is kept there (``<split>/chunk_NNN``) and a rerun reads it instead of playing it again.
    Every episode samples from its own (seed, traj_id, step) stream, so chunking changes no episode."""
    cfg = ctx.cfg
    frames, metrics = [], {}
    for split, tasks in eval_tasks(ctx, splits, limit).items():
        episodes = [
            EpisodeSpec(
                eval_traj_id(split, cond, i, r),
                task,
                i,
                ctx.iteration,
                bank=bank if CONDITIONS[cond] else None,
                condition=cond,
            )
            for cond in conditions
            for i, task in enumerate(tasks)
            for r in range(repeats)
        ]
        settings = RolloutSettings.from_config(
            cfg,
            stage="evaluate",
            temperature=cfg.eval.temperature,
            seed=derive_seed(cfg.seed, "eval", split),
        )
        n = len(episodes)
        pieces = [episodes[r.start : r.stop] for r in chunk_slices(n, chunk)]
        parts = []
        for k, piece in enumerate(pieces):
            kept = state / split / f"chunk_{k:03d}" if state is not None else None
            if kept is not None and (kept / COMPLETE_MARKER).is_file():
                parts.append(TRAJECTORIES.read(kept / "episodes.parquet"))
                continue
            desc = f"eval {split} it{ctx.iteration}" + (f" {k + 1}/{len(pieces)}" if len(pieces) > 1 else "")
            stats = getattr(policy, "stats", None)
            before, start = (stats.counters() if stats is not None else {}), time.monotonic()
            with make_pool(ctx, len(piece), settings.max_steps) as pool:
                _, trajs = collect_episodes(policy, pool, piece, settings, retriever_of(ctx), desc=desc)
            check_env_errors(trajs, f"evaluate (iteration {ctx.iteration}, split {split})")
            if kept is not None:
                after = stats.counters() if stats is not None else {}
                record = {
                    "episodes": len(piece),
                    "seconds": round(time.monotonic() - start, 1),
                    "generation": {f: after[f] - before[f] for f in after},
                }
                with atomic_dir(kept) as tmp:
                    TRAJECTORIES.write(trajs, tmp / "episodes.parquet")
                    (tmp / CHUNK_RECORD).write_text(json.dumps(record, indent=2) + "\n")
                    (tmp / COMPLETE_MARKER).write_text("ok\n")
            parts.append(trajs)
        trajs = pl.concat(parts) if parts else TRAJECTORIES.empty()
        frames.append(trajs)
        metrics[split] = {
            cond: rollout_metrics(trajs.filter(pl.col("condition") == cond)) for cond in conditions
        }
    episodes = pl.concat(frames) if frames else TRAJECTORIES.empty()
    return episodes, metrics


CONTRACT = StageContract(
    name="evaluate",
    view=EvaluateView,
    reads=lambda w: [w.paths.bank(w.iteration), *w.policy(w.iteration)],
    writes=lambda w: [w.paths.eval_dir(w.iteration)],
    metrics=lambda w: [w.paths.metrics(w.iteration, "eval")],
    iterated=True,
    env_code=True,
)


@register(CONTRACT)
def evaluate_stage(ctx: StageContext) -> dict:
    view, it = ctx.view, ctx.iteration
    bank = load_bank_at(ctx, it) if view.skills.enabled else None
    ensure_model_dir(policy_base(ctx))  # the weights, then the games, are checked before the model loads
    eval_tasks(ctx, view.eval.splits, view.eval.limit)
    policy = load_policy(ctx, it)
    episodes, metrics = evaluate(ctx, policy, bank, view.eval.splits, view.conditions, view.eval.limit)
    TRAJECTORIES.write(episodes, ctx.paths.eval_dir(it) / "episodes.parquet")
    write_metrics(ctx, "eval", metrics)
    return metrics


def evaluate_checkpoint(
    cfg: Config,
    root: Path,
    split: str,
    checkpoint: Path | None,
    bank_path: Path | None,
    no_skills: bool,
    limit: int | None,
    out: Path | None = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """``skillmaster eval``: evaluate any checkpoint (None: base) with any bank, outside the pipeline.
    With ``out``, the episodes (``episodes.parquet``) and metrics (``metrics.json``) land there, and
    each finished chunk of ``chunk`` episodes is kept in ``out/.partial`` until then, so a killed
    evaluation resumes at its first unfinished chunk (only when it is the same evaluation)."""
    from skillmaster.agent.engines import open_policy
    from skillmaster.paths import Paths
    from skillmaster.skills.store import load_bank
    from skillmaster.stages.common import resolve_policy

    ctx = StageContext(cfg=cfg, iteration=0, paths=Paths(root), root=root)
    adapter = resolve_policy(checkpoint) if checkpoint is not None else None
    # models/sft when sft.enabled, and then an error when it is missing (no fallback to models/base)
    base = ensure_model_dir(policy_base(ctx))
    bank = None if no_skills else load_bank(bank_path) if bank_path else None
    eval_tasks(ctx, [split], limit)  # bad input fails before the engine starts
    conditions = ["eval_skills"] if bank is not None else ["eval_no_skills"]
    state = None
    if out is not None:
        request = {
            "split": split,
            "base": _sha256(base),
            "checkpoint": _sha256(checkpoint) if checkpoint is not None else None,
            "bank": _sha256(bank_path) if bank is not None and bank_path else None,
            "conditions": conditions,
            "limit": limit,
            "chunk": chunk,
            "settings": cfg.model_dump(
                mode="json", include={"seed", "env", "model", "rollout", "skills", "eval"}
            ),
        }
        state = partial_state(out, request)  # a different earlier evaluation fails before the model loads
    policy = open_policy(cfg, base, adapter, root)
    try:
        episodes, metrics = evaluate(ctx, policy, bank, [split], conditions, limit, chunk=chunk, state=state)
    finally:
        policy.close()
    stats = policy.stats.as_dict()
    if state is not None:  # every chunk's counters, also those an earlier process played
        stats, metrics["chunks"] = chunk_totals(state, policy.stats)
    metrics["generation"] = {"engine": policy.engine, **stats}
    if out is not None:
        import shutil

        from skillmaster.io import write_json

        TRAJECTORIES.write(episodes, out / "episodes.parquet")
        write_json(out / "metrics.json", metrics)
        shutil.rmtree(out / PARTIAL, ignore_errors=True)
    return metrics


PARTIAL = ".partial"
"""Folder of ``skillmaster eval --out``'s finished chunks until the evaluation completes."""

CHUNK_RECORD = "chunk.json"
"""A finished chunk's wall seconds and the generation counters it used (next to its episodes)."""


def chunk_totals(state: Path, stats) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The whole evaluation's generation counters and per-chunk wall times, from the chunk records in
    ``state``: an evaluation resumed over several processes counts every chunk once, not only those
    its last process played (engine starts stay the last process's). A chunk kept by an older
    version has no record; ``chunks`` then says so (``seconds`` None) and the counters leave it out."""
    from skillmaster.agent.generation import GenerationStats

    chunks, totals = [], dict.fromkeys(GenerationStats.COUNTERS, 0)
    for kept in sorted(p for p in state.glob("*/chunk_*") if (p / COMPLETE_MARKER).is_file()):
        record = kept / CHUNK_RECORD
        rec = json.loads(record.read_text()) if record.is_file() else {"seconds": None}
        chunks.append(
            {"chunk": f"{kept.parent.name}/{kept.name}", **{k: rec.get(k) for k in ("episodes", "seconds")}}
        )
        for f, v in rec.get("generation", {}).items():
            totals[f] = totals.get(f, 0) + v
    merged = GenerationStats(**{**stats.__dict__, **totals, "seconds": round(totals["seconds"], 2)})
    return merged.as_dict(), chunks


def _sha256(path: Path) -> str:
    """Digest of a file, or of a folder's files (names and contents): what a checkpoint holds, not where."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def partial_state(out: Path, request: dict[str, Any]) -> Path:
    """``out/.partial`` for the evaluation ``request``: created with the request on a first start;
    on a restart its finished chunks are reused, but only for the very same request."""
    import json

    from skillmaster.errors import DataError
    from skillmaster.io import atomic_write_text

    state = out / PARTIAL
    recorded = state / "request.json"
    if recorded.is_file():
        if json.loads(recorded.read_text()) != request:
            raise DataError(
                f"{state} holds the finished part of a different evaluation (other checkpoint, bank, "
                "games or settings); remove it or pick another --out folder"
            )
    else:
        state.mkdir(parents=True, exist_ok=True)
        atomic_write_text(recorded, json.dumps(request, indent=2, sort_keys=True))
    return state
