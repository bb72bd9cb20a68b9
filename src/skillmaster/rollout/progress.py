"""Progress towards a goal for non-won episodes: the probe score and the dense reward built on it.

Not in the paper: METHOD.md §6 scores a probe only by its win, and METHOD.md §7 rewards only the
win. At CPU scale almost nothing is won, so every probe scores 0 and every action sample shares
the same reward; progress gives a non-won episode a graded value. Two settings use it, both off
in the paper overlays: ``counterfactual.score: progress`` (:func:`progress_score`) and
``train.progress_reward`` (:func:`progress_to_go`).

Where the environment has expert walkthroughs, progress is the share of the walkthrough's
milestones the episode reached in order (the milestones are the environment's:
:class:`~skillmaster.envs.profile.WalkthroughKit`; ALFWorld's: :mod:`skillmaster.envs.alfworld.milestones`);
elsewhere (WebShop) it is the episode's own [0, 1] score (:func:`episode_progress`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from skillmaster.envs.profile import WalkthroughKit

PROGRESS_WEIGHT = 0.5
"""Score of a non-won probe with every milestone reached: a win scores at least 1
(METHOD.md §6: 1 + (T_max − L)/T_max), so any win outranks any non-win."""


def progress_score(
    won: bool, length: int, t_max: int, share: float, weight: float = PROGRESS_WEIGHT
) -> float:
    """Probe score of ``counterfactual.score: progress``: METHOD.md §6's s for a win
    (1 + (T_max − L)/T_max ≥ 1), else ``weight`` × the share of milestones reached (< 1), so a win
    always outranks a non-win and a non-win that got further outranks one that did not."""
    from skillmaster.skills.utility import probe_score

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"progress share must be in [0, 1] (got {share})")
    if not 0.0 < weight < 1.0:
        raise ValueError(f"progress weight must be in (0, 1) so a win outranks a non-win (got {weight})")
    if won:
        return probe_score(True, length, t_max)
    probe_score(False, length, t_max)  # the same checks of length and t_max
    return weight * share


def progress_to_go(hits: Sequence[int], total: int) -> list[float]:
    """Dense progress reward of each step (``train.progress_reward`` scales it): the share of the
    ``total`` milestones reached at this step or later in the episode (a return-to-go, so the steps
    that led to a milestone share its credit)."""
    if total <= 0:
        return [0.0] * len(hits)
    out, rest = [], 0
    for n in reversed(hits):
        rest += n
        out.append(rest / total)
    return out[::-1]


def episode_progress(
    steps: pl.DataFrame,
    trajectories: pl.DataFrame,
    walkthrough: Callable[[str, str], Sequence[str] | None],
    kit: WalkthroughKit | None,
) -> tuple[dict[str, float], pl.DataFrame]:
    """Progress of every episode of a STEPS/TRAJECTORIES pair: per trajectory the share reached,
    and per step (``traj_id``, ``step``, ``progress_to_go``) the dense value of :func:`progress_to_go`.

    With the environment's walkthrough ``kit`` (its profile's), the share is that of the game's
    walkthrough milestones reached in order (``walkthrough(task_id, split)`` gives a game's
    walkthrough). Without one (WebShop), the share is the episode's own score (callers clip it to
    [0, 1]), and every step's value is that score clipped to [0, 1].
    """
    if kit is None:
        shares = {r["traj_id"]: float(r["score"]) for r in trajectories.iter_rows(named=True)}
        score = trajectories.select("traj_id", pl.col("score").clip(0.0, 1.0).alias("progress_to_go"))
        return shares, steps.select("traj_id", "step").join(score, on="traj_id", how="left")
    by_traj = {key[0]: frame.sort("step") for key, frame in steps.group_by("traj_id")}
    goals: dict[tuple[str, str], Sequence] = {}
    shares = {}
    rows: list[dict] = []
    for t in trajectories.iter_rows(named=True):
        key = (t["task_id"], t["split"])
        if key not in goals:
            goals[key] = kit.milestones(walkthrough(*key) or [])
        goal = goals[key]
        frame = by_traj.get(t["traj_id"])
        taken = [] if frame is None else list(zip(frame["action"], frame["valid"], strict=True))
        hits = kit.milestone_hits(goal, taken)
        shares[t["traj_id"]] = sum(hits) / len(goal) if goal else 1.0
        to_go = progress_to_go(hits, len(goal))
        if frame is not None:
            rows += [
                {"traj_id": t["traj_id"], "step": s, "progress_to_go": v}
                for s, v in zip(frame["step"], to_go, strict=True)
            ]
    schema = {"traj_id": pl.Utf8, "step": pl.Int32, "progress_to_go": pl.Float64}
    return shares, pl.DataFrame(rows, schema=schema)
