"""DualAdv-GRPO training of one iteration (METHOD.md §7): the ``train`` stage's entry point.

:func:`train_iteration` builds the iteration's samples from its tables (one per environment step and
one per review, with the DualAdv advantages: :func:`~skillmaster.train.samples.build_rl_samples`)
and trains on them with the shared loop, :func:`~skillmaster.train.trainer.train_on_samples`, under
:meth:`TrainSettings.for_grpo <skillmaster.train.settings.TrainSettings.for_grpo>`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skillmaster.config import Config
from skillmaster.train.run import TrainerRun
from skillmaster.train.samples import build_rl_samples
from skillmaster.train.settings import TrainSettings
from skillmaster.train.trainer import train_on_samples


def train_iteration(
    cfg: Config,
    steps,
    trajectories,
    reviews,
    edits,
    init_policy: Path | None,
    base_model_dir: Path,
    out_dir: Path,
    state_dir: Path,
    tracker=None,
    iteration: int = 1,
    on_step: Callable[[int, TrainerRun], None] | None = None,
    progress=None,
    carry_from: Path | None = None,
    save_state_to: Path | None = None,
) -> dict[str, float]:
    """One DualAdv-GRPO update (METHOD.md §7) from the iteration's tables; writes ``out_dir``.

    ``steps``/``trajectories``/``reviews``/``edits`` are the STEPS/TRAJECTORIES/REVIEWS/EDITS
    frames of :mod:`skillmaster.tables` (``reviews``/``edits`` may be None). Per-step metrics go
    to ``tracker`` as ``train_step/*`` against a global step; the returned summary (sample,
    advantage and training metrics: ``train/adv/action_mean``, ``train/loss``, ``train/kl``, ...)
    is logged too, at ``step=iteration``. ``progress``: the per-step milestone progress for the
    dense progress reward (``train.progress_reward``; see :func:`build_rl_samples`). ``carry_from``
    / ``save_state_to``: the previous iteration's training state and where this one's goes
    (:func:`~skillmaster.train.trainer.train_on_samples`). Run it on every rank under
    ``accelerate launch``.
    """
    from accelerate import PartialState

    from skillmaster.modeling import load_tokenizer

    seed = cfg.seed * 100_003 + iteration
    tokenizer = load_tokenizer(base_model_dir)
    samples, sample_metrics = build_rl_samples(
        cfg, steps, trajectories, reviews, edits, tokenizer, seed=seed, progress=progress
    )
    metrics = train_on_samples(
        samples,
        TrainSettings.for_grpo(cfg, seed=seed),
        model_cfg=cfg.model,
        base_model_dir=base_model_dir,
        init_policy=init_policy,
        out_dir=out_dir,
        state_dir=state_dir,
        tracker=tracker,
        metric_prefix="train",
        on_step=on_step,
        carry_from=carry_from,
        save_state_to=save_state_to,
    )
    summary = {f"train/{k}": v for k, v in sample_metrics.items()} | metrics
    if tracker is not None and PartialState().is_main_process:
        tracker.log_metrics(summary, step=iteration)
    return summary
