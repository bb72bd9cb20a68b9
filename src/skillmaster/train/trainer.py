"""The one training loop of DualAdv-GRPO (METHOD.md §7) and cold-start SFT (METHOD.md §8).

:func:`train_on_samples` trains the policy on a list of samples; the loss is picked by name
(``grpo``: clipped policy loss + KL + entropy; ``sft``: NLL), so SFT only builds other samples.

One optimizer step covers one mini-batch (``train.mini_batch_size`` samples; None = all of them):
its micro-batches (length-sorted, ``train.micro_batch_tokens`` padded tokens each) accumulate
gradients, and every micro-batch loss is divided by the whole mini-batch's token count, so the
sum is exactly the token-mean over the mini-batch. With several processes (``accelerate launch``)
each rank takes a deterministic, balanced share of the micro-batches; every rank knows the
global token count because every rank holds the same sample list, and the loss is scaled by the
world size to undo DDP's gradient averaging (:mod:`skillmaster.train.run`).

Old log-probs (the π_old of the ratio):
- one optimizer step in total (1 epoch, one mini-batch; the default and METHOD.md §7) means the
  update is on-policy: old = current log-probs of the same forward, detached (ratio 1, the
  gradient of the clipped loss is the policy gradient), so no extra pass is spent;
- several optimizer steps (``mini_batch_size`` smaller than the batch, or ``epochs`` > 1): one
  no-grad pass over all samples before the first step computes old (and reference) log-probs;
  they are saved with the resumable state, so a resumed run uses the same π_old.

The reference forward (no grad; adapter disabled for LoRA) is skipped when ``kl_coef`` is 0.
Checkpoints (:mod:`skillmaster.train.resume`): every ``checkpoint_every`` steps the full training
state goes to ``state_dir`` (Accelerate's ``save_state``: weights, optimizer, schedule, RNG, under
every launcher); a restarted run resumes from the newest complete one. At the end the training
state goes to ``save_state_to`` (when given: the next iteration continues from it), the serving
weights to ``out_dir`` atomically, and then ``state_dir`` is removed.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from skillmaster.config import ModelConfig
from skillmaster.errors import DataError
from skillmaster.train import resume
from skillmaster.train.run import TrainerRun, build_run, make_accelerator
from skillmaster.train.samples import Sample, padding_share, plan_steps
from skillmaster.train.settings import TrainSettings


def train_on_samples(
    samples: list[Sample],
    settings: TrainSettings,
    *,
    model_cfg: ModelConfig,
    base_model_dir: Path,
    init_policy: Path | None,
    out_dir: Path,
    state_dir: Path,
    tracker=None,
    metric_prefix: str = "train",
    on_step: Callable[[int, TrainerRun], None] | None = None,
    carry_from: Path | None = None,
    save_state_to: Path | None = None,
) -> dict[str, float]:
    """Train the policy on ``samples`` and write the serving weights to ``out_dir``.

    Args:
        samples: training sequences (advantages already set for policy-gradient losses).
        settings: loss, optimiser and batching settings (:meth:`TrainSettings.for_grpo` / ``for_sft``).
        model_cfg: ``model.*`` (device, attention kernel, threads).
        base_model_dir: the prepared base (``models/base``); also the reference policy.
        init_policy: serving weights to start from (previous iteration's adapter or weights), or
            None. Its global step carries over when it was trained with the same loss.
        out_dir: serving weights (complete once ``COMPLETE`` exists): the LoRA adapter, or the full
            weights in ``train.serving_dtype``.
        state_dir: scratch folder for resumable step states; removed at the end.
        tracker: :class:`~skillmaster.tracking.NullTracker`-like; per-step metrics are logged as
            ``{metric_prefix}_step/{name}`` against a global step that continues across iterations.
        on_step: called as ``on_step(step, run)`` after each optimizer step and its resumable
            checkpoint (tests use it to interrupt a run or to inspect each rank's weights).
        carry_from: the training state of ``init_policy``'s run (the previous iteration's
            ``save_state_to``): its fp32 weights and optimizer moments carry over when it matches.
        save_state_to: where the final training state goes (None: nowhere).

    Returns:
        Summary metrics of the run (``{metric_prefix}/loss``, ``.../kl``, ``.../tokens_per_s``, ...).
    """
    from accelerate.utils import set_seed

    from skillmaster.bars import LoggedBar

    if not samples:
        raise DataError("there is nothing to train on: no sample has a response")
    state_dir, out_dir = Path(state_dir), Path(out_dir)
    acc = make_accelerator(settings, model_cfg, base_model_dir)
    set_seed(settings.seed)
    plan = plan_steps(
        [s.length for s in samples],
        settings.mini_batch_size,
        settings.epochs,
        settings.micro_batch_tokens,
        settings.seed,
    )

    # ---- where to start: a resumable checkpoint of this very run, else init_policy
    fingerprint = resume.fingerprint(samples, settings)
    state = resume.find_start(acc, state_dir, init_policy, settings, fingerprint, len(plan), carry_from)

    # ---- model, reference, optimizer, schedule
    run = build_run(samples, settings, acc, model_cfg, base_model_dir, state.weights, len(plan))
    resume.restore(run, state)

    # ---- old log-probs once before the update when there are several optimizer steps
    if settings.policy_gradient and len(plan) > 1:
        run.precomputed = resume.load_or_compute_prepass(run, state, state_dir)

    # ---- the update
    bar = LoggedBar(
        range(state.start_step, len(plan)),
        desc=f"{metric_prefix} steps",
        initial=state.start_step,
        total=len(plan),
        disable=not acc.is_local_main_process,
    )
    for step in bar:
        metrics = run.optimizer_step(plan[step])
        state.global_step += 1
        state.history.append(metrics)
        if tracker is not None and acc.is_main_process:
            tracker.log_metrics(
                {f"{metric_prefix}_step/{k}": v for k, v in metrics.items()}, step=state.global_step
            )
        bar.set_postfix(loss=f"{metrics.get('loss', math.nan):.4f}")
        done = step + 1
        if done < len(plan) and done % settings.checkpoint_every == 0:
            resume.save_step(run, state, state_dir, done)
        if on_step is not None:
            on_step(done, run)

    # ---- final training state (outside DVC), serving weights, then drop the step states
    if save_state_to is not None:
        resume.save_state(run, save_state_to, state.payload(len(plan)))
    resume.save_serving(run, state, out_dir, serving_dtype(settings, model_cfg), len(plan))
    if acc.is_main_process:
        shutil.rmtree(state_dir, ignore_errors=True)
    acc.wait_for_everyone()
    summary = _summary(state.history, samples, plan, metric_prefix)
    summary[f"{metric_prefix}/global_step"] = float(state.global_step)
    acc.free_memory()
    return summary


def serving_dtype(settings: TrainSettings, model_cfg: ModelConfig) -> str:
    """``train.serving_dtype`` resolved: ``auto`` is bfloat16 when training on a GPU, else float32."""
    from skillmaster.modeling import resolve_device

    if settings.serving_dtype != "auto":
        return settings.serving_dtype
    return "bfloat16" if resolve_device(model_cfg) == "cuda" else "float32"


def _summary(
    history: list[dict[str, float]], samples: Sequence[Sample], plan, prefix: str
) -> dict[str, float]:
    """Iteration summary: the mean of each per-step metric plus totals."""
    out: dict[str, float] = {}
    for key in sorted({k for h in history for k in h}):
        values = [h[key] for h in history if key in h and math.isfinite(h[key])]
        if values:
            out[f"{prefix}/{key}"] = sum(values) / len(values)
    seconds = sum(h.get("step_seconds", 0.0) for h in history)
    tokens = sum(h.get("tokens", 0.0) for h in history)
    lengths = [s.length for s in samples]
    out |= {
        f"{prefix}/steps": float(len(plan)),
        f"{prefix}/tokens": tokens,
        f"{prefix}/seconds": seconds,
        f"{prefix}/tokens_per_s": tokens / seconds if seconds else 0.0,
        f"{prefix}/padding_share": padding_share(lengths, [mb for step in plan for mb in step]),
    }
    if history:
        out[f"{prefix}/loss_first"] = history[0].get("loss", math.nan)
        out[f"{prefix}/loss_last"] = history[-1].get("loss", math.nan)
    return out
