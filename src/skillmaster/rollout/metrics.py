"""Summary numbers of a collection (success overall and by family, lengths, faults, tokens)."""

from __future__ import annotations

from typing import Any

import polars as pl


def rollout_metrics(trajectories: pl.DataFrame, steps: pl.DataFrame | None = None) -> dict[str, Any]:
    """Success rate (overall and per family, with counts), mean steps of successful episodes,
    invalid-action rate, end reasons, step prompts shortened to the engine's limit and token counts."""
    n = trajectories.height
    if n == 0:
        return {"episodes": 0}
    won = trajectories["won"]
    out: dict[str, Any] = {
        "episodes": n,
        "successes": int(won.sum()),
        "success_rate": float(won.mean()),
        "mean_score": float(trajectories["score"].mean()),
        "mean_length": float(trajectories["length"].mean()),
        "mean_episode_reward": float(trajectories["episode_reward"].mean()),
        "mean_penalty": float(trajectories["penalty_total"].mean()),
    }
    wins = trajectories.filter(pl.col("won"))
    out["mean_success_length"] = float(wins["length"].mean()) if wins.height else None
    by_family = (
        trajectories.group_by("family")
        .agg(pl.len().alias("episodes"), pl.col("won").sum().alias("successes"))
        .sort("family")
    )
    out["by_family"] = {
        r["family"]: {
            "episodes": r["episodes"],
            "successes": r["successes"],
            "success_rate": r["successes"] / r["episodes"],
        }
        for r in by_family.iter_rows(named=True)
    }
    out["end_reasons"] = dict(trajectories["end_reason"].value_counts().iter_rows())
    total_steps = int(trajectories["length"].sum())
    out["env_steps"] = total_steps
    out["invalid_rate"] = float(trajectories["invalid_count"].sum() / total_steps) if total_steps else 0.0
    if "prompts_shortened" in trajectories.columns:  # prompts cut to the engine's length limit
        out["prompts_shortened"] = int(trajectories["prompts_shortened"].sum())
    if steps is not None and steps.height:
        out["prompt_tokens"] = int(steps["prompt_tokens"].sum())
        out["response_tokens"] = int(steps["response_tokens"].sum())
        out["mean_response_tokens"] = float(steps["response_tokens"].mean())
    return out
