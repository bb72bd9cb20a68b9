"""DualAdv-GRPO training on Accelerate (METHOD.md §7), and the one training loop SFT reuses.

:func:`train_iteration` builds the iteration's samples from its tables and calls
:func:`train_on_samples`, the generic loop: the loss is picked by name (``grpo``: clipped policy
loss + KL + entropy; ``sft``: NLL), so cold-start SFT (METHOD.md §8) only builds other samples.

One optimizer step covers one mini-batch (``train.mini_batch_size`` samples; None = all of them):
its micro-batches (length-sorted, ``train.micro_batch_tokens`` padded tokens each) accumulate
gradients, and every micro-batch loss is divided by the whole mini-batch's token count, so the
sum is exactly the token-mean over the mini-batch. With several processes (``accelerate launch``)
each rank takes a deterministic, balanced share of the micro-batches; every rank knows the
global token count because every rank holds the same sample list, and the loss is scaled by the
world size to undo DDP's gradient averaging.

Old log-probs (the π_old of the ratio):
- one optimizer step in total (1 epoch, one mini-batch; the default and METHOD.md §7) means the
  update is on-policy: old = current log-probs of the same forward, detached (ratio 1, the
  gradient of the clipped loss is the policy gradient), so no extra pass is spent;
- several optimizer steps (``mini_batch_size`` smaller than the batch, or ``epochs`` > 1): one
  no-grad pass over all samples before the first step computes old (and reference) log-probs;
  they are saved with the resumable state, so a resumed run uses the same π_old.

The reference forward (no grad; adapter disabled for LoRA) is skipped when ``kl_coef`` is 0.
Checkpoints: every ``checkpoint_every`` steps a resumable one goes to ``state_dir``; a restarted
run resumes from the newest complete one; the final one goes to ``out_dir`` atomically, and then
``state_dir`` is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from skillmaster.algo.losses import PG_LOSSES, LossInputs, LossSettings, Norm, get_loss_fn
from skillmaster.config import Config, LoraConfig, ModelConfig
from skillmaster.errors import DataError
from skillmaster.train import checkpoint as ckpt
from skillmaster.train.policy import (
    is_peft,
    load_frozen_reference,
    load_trainable_policy,
    reference_logprobs,
    response_logprobs,
)
from skillmaster.train.samples import (
    MicroBatch,
    Sample,
    build_rl_samples,
    collate,
    padding_share,
    plan_micro_batches,
    plan_steps,
    shard,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class TrainSettings:
    """Everything the loop needs; built from ``train.*`` (GRPO) or ``sft.*`` (SFT)."""

    loss: str = "grpo"
    """Loss registry name (:data:`skillmaster.algo.losses.LOSSES`)."""
    loss_settings: LossSettings = field(default_factory=LossSettings)
    lr: float = 1e-4
    weight_decay: float = 0.0
    epochs: int = 1
    mini_batch_size: int | None = None
    micro_batch_tokens: int = 4096
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"
    checkpoint_every: int = 1
    lr_schedule: str = "constant"
    """transformers scheduler name: ``constant``, ``constant_with_warmup``, ``linear``, ``cosine``."""
    warmup_ratio: float = 0.0
    lora: LoraConfig | None = field(default_factory=LoraConfig)
    """None = full fine-tuning (with a frozen reference copy when the loss needs one)."""
    seed: int = 0

    @classmethod
    def for_grpo(cls, cfg: Config, seed: int = 0) -> TrainSettings:
        t = cfg.train
        return cls(
            loss="grpo",
            loss_settings=LossSettings(
                clip_eps=t.clip_eps,
                dual_clip=t.dual_clip,
                kl_coef=t.kl_coef,
                kl_estimator=t.kl_estimator,
                entropy_coef=t.entropy_coef,
                agg=t.loss_agg,
            ),
            lr=t.lr,
            weight_decay=t.weight_decay,
            epochs=t.epochs,
            mini_batch_size=t.mini_batch_size,
            micro_batch_tokens=t.micro_batch_tokens,
            grad_clip=t.grad_clip,
            gradient_checkpointing=t.gradient_checkpointing,
            mixed_precision=t.mixed_precision,
            checkpoint_every=t.checkpoint_every,
            lora=t.lora if t.lora.enabled else None,
            seed=seed,
        )

    @classmethod
    def for_sft(cls, cfg: Config, lr_schedule: str = "linear", seed: int = 0) -> TrainSettings:
        """SFT (METHOD.md §8): NLL, ``sft.epochs``, ``sft.lr`` with ``sft.warmup_ratio`` linear warm-up
        then ``lr_schedule`` (``linear`` decay by default, ``constant_with_warmup`` to hold)."""
        t = cfg.train
        return cls(
            loss="sft",
            loss_settings=LossSettings(agg="token-mean"),
            lr=cfg.sft.lr,
            weight_decay=t.weight_decay,
            epochs=cfg.sft.epochs,
            mini_batch_size=cfg.sft.batch_size,
            micro_batch_tokens=t.micro_batch_tokens,
            grad_clip=t.grad_clip,
            gradient_checkpointing=t.gradient_checkpointing,
            mixed_precision=t.mixed_precision,
            checkpoint_every=t.checkpoint_every,
            lr_schedule=lr_schedule,
            warmup_ratio=cfg.sft.warmup_ratio,
            lora=t.lora if t.lora.enabled else None,
            seed=seed,
        )

    @property
    def policy_gradient(self) -> bool:
        return self.loss in PG_LOSSES

    @property
    def uses_reference(self) -> bool:
        return self.policy_gradient and self.loss_settings.kl_coef > 0


# --------------------------------------------------------------------------- one optimizer step
@dataclass
class TrainerRun:
    """The live objects of one training run (also driven directly by ``bench train``)."""

    settings: TrainSettings
    samples: list[Sample]
    accelerator: Any
    model: Any  # prepared (DDP-wrapped when distributed)
    optimizer: Any
    scheduler: Any
    reference: Any = None  # frozen copy (full fine-tuning) or None (LoRA: adapter disabled)
    pad_id: int = 0
    precomputed: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    """``old``/``ref`` response log-probs per sample index, from the pre-update pass (or empty)."""

    @property
    def lengths(self) -> list[int]:
        return [s.length for s in self.samples]

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _stored(self, key: str, mb: MicroBatch) -> torch.Tensor | None:
        store = self.precomputed.get(key)
        if not store:
            return None
        out = torch.zeros(mb.response_mask.shape, dtype=torch.float32)
        for row, i in enumerate(mb.index.tolist()):
            values = store[i]
            out[row, : values.numel()] = values
        return out.to(mb.response_mask.device)

    def micro_step(self, mb: MicroBatch, norm: Norm) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward one micro-batch and return its (already batch-normalised) loss and metrics."""
        s = self.settings
        inputs: dict[str, Any] = {"mask": mb.response_mask}
        if s.policy_gradient:
            inputs["advantages"] = mb.advantages
            inputs["old_logp"] = self._stored("old", mb)
            if s.uses_reference:
                ref = self._stored("ref", mb)
                inputs["ref_logp"] = (
                    ref if ref is not None else reference_logprobs(self.unwrapped, self.reference, mb)
                )
        entropy = "grad" if s.policy_gradient and s.loss_settings.entropy_coef > 0 else "detached"
        inputs["logp"], inputs["entropy"] = response_logprobs(self.model, mb, entropy)
        return get_loss_fn(s.loss)(LossInputs(**inputs), s.loss_settings, norm)

    def optimizer_step(self, step_plan: Sequence[Sequence[int]]) -> dict[str, float]:
        """Accumulate gradients over the micro-batches of one mini-batch, then step. Returns metrics."""
        acc, start = self.accelerator, time.perf_counter()
        lengths = self.lengths
        everything = [i for mb in step_plan for i in mb]
        norm = Norm(
            tokens=float(sum(len(self.samples[i].response_ids) for i in everything)),
            seqs=float(len(everything)),
        )
        mine, weight = shard(step_plan, lengths, acc.process_index, acc.num_processes), 1.0
        if not mine:  # more ranks than samples: join the gradient sync with a zero-weight batch
            mine, weight = [[everything[0]]], 0.0
        sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for k, indices in enumerate(mine):
            mb = collate(self.samples, indices, self.pad_id).to(acc.device)
            last = k == len(mine) - 1
            acc.gradient_state._set_sync_gradients(last)  # DeepSpeed steps at the boundary only
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                loss, metrics = self.micro_step(mb, norm)
                acc.backward(loss * (acc.num_processes * weight))
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value.float() * weight
            tokens += int(mb.tokens * weight)
        grad_norm = acc.clip_grad_norm_(self.params, self.settings.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        keys = sorted(sums)
        totals = torch.stack([sums[k].detach().reshape(()) for k in keys] + [torch.tensor(float(tokens))])
        totals = acc.reduce(totals.to(acc.device), reduction="sum").tolist()
        out = dict(zip(keys, totals[:-1], strict=True))
        seconds = time.perf_counter() - start
        out |= {
            "grad_norm": float(grad_norm) if grad_norm is not None else math.nan,
            "lr": lr,
            "tokens": totals[-1],
            "response_tokens": norm.tokens,
            "samples": norm.seqs,
            "tokens_per_s": totals[-1] / seconds,
            "step_seconds": seconds,
        }
        return out

    @torch.no_grad()
    def precompute_logprobs(self) -> None:
        """The pre-update pass: old (and reference) response log-probs of every sample, no grad."""
        from accelerate.utils import gather_object

        acc, lengths = self.accelerator, self.lengths
        plan = plan_micro_batches(lengths, self.settings.micro_batch_tokens)
        rows = []
        for indices in shard(plan, lengths, acc.process_index, acc.num_processes):
            mb = collate(self.samples, indices, self.pad_id).to(acc.device)
            old = response_logprobs(self.unwrapped, mb)[0].cpu()
            ref = (
                reference_logprobs(self.unwrapped, self.reference, mb).cpu()
                if self.settings.uses_reference
                else None
            )
            for row, i in enumerate(indices):
                r = len(self.samples[i].response_ids)
                rows.append((i, old[row, :r].clone(), None if ref is None else ref[row, :r].clone()))
        if acc.num_processes > 1:
            rows = gather_object(rows)
        self.precomputed = {"old": {i: o for i, o, _ in rows}}
        if self.settings.uses_reference:
            self.precomputed["ref"] = {i: r for i, _, r in rows}


# --------------------------------------------------------------------------- the loop
def _fingerprint(samples: Sequence[Sample], settings: TrainSettings) -> str:
    """Identifies (samples, settings): a resumable checkpoint is reused only for the same run."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
    for s in samples:
        digest.update(
            json.dumps([s.prompt_ids, s.response_ids, round(s.advantage, 9), s.temperature]).encode()
        )
    return digest.hexdigest()[:16]


def make_accelerator(settings: TrainSettings, model_cfg: ModelConfig, model_dir: Path | None = None):
    """The process's Accelerator: CPU when ``model.device`` resolves to it (gloo under ``accelerate launch``);
    ``mixed_precision: auto`` resolves against the device and ``model_dir``'s measured CPU dtype."""
    from accelerate import Accelerator

    from skillmaster.modeling import resolve_device, resolve_mixed_precision

    precision = resolve_mixed_precision(settings.mixed_precision, model_cfg, model_dir)
    return Accelerator(mixed_precision=precision, cpu=resolve_device(model_cfg) == "cpu")


def _gathered_state_dict(acc, model) -> dict | None:
    """Sharded runs (FSDP, DeepSpeed) gather the full state dict on every rank; others need none."""
    from accelerate.utils import DistributedType

    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return acc.get_state_dict(model)
    return None


def _optimizer_is_sharded(acc) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


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


def _scheduler(settings: TrainSettings, optimizer, total_steps: int):
    """The learning-rate schedule (transformers ``get_scheduler``; warm-up = ``warmup_ratio`` of the steps)."""
    from transformers import get_scheduler

    inner = getattr(optimizer, "optimizer", optimizer)  # the torch optimizer inside Accelerate's wrapper
    return get_scheduler(
        settings.lr_schedule,
        inner,
        num_warmup_steps=math.ceil(settings.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


def build_run(
    samples: list[Sample],
    settings: TrainSettings,
    accelerator,
    model_cfg: ModelConfig,
    base_model_dir: Path,
    start_from: Path | None,
    total_steps: int,
) -> TrainerRun:
    """Load the policy (and, for full fine-tuning with KL, the frozen reference), create AdamW and
    the schedule, and prepare them with Accelerate. Seed the RNG first (fresh LoRA weights)."""
    model, tokenizer = load_trainable_policy(
        base_model_dir, model_cfg, start_from, settings.lora, settings.gradient_checkpointing
    )
    reference = None
    if settings.uses_reference and not is_peft(model):
        reference = load_frozen_reference(base_model_dir, model_cfg).to(accelerator.device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=settings.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    return TrainerRun(
        settings,
        samples,
        accelerator,
        model,
        optimizer,
        _scheduler(settings, optimizer, total_steps),
        reference,
        pad_id=tokenizer.pad_token_id or 0,
    )


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
) -> dict[str, float]:
    """Train the policy on ``samples`` and write the final checkpoint to ``out_dir``.

    Args:
        samples: training sequences (advantages already set for policy-gradient losses).
        settings: loss, optimiser and batching settings (:meth:`TrainSettings.for_grpo` / ``for_sft``).
        model_cfg: ``model.*`` (device, attention kernel, threads).
        base_model_dir: the prepared base (``models/base``); also the reference policy.
        init_policy: checkpoint to start from (previous iteration's adapter or weights), or None.
            Its optimizer state and global step carry over when it was trained with the same loss.
        out_dir: final checkpoint folder (complete once ``COMPLETE`` exists).
        state_dir: scratch folder for resumable checkpoints; removed at the end.
        tracker: :class:`~skillmaster.tracking.NullTracker`-like; per-step metrics are logged as
            ``{metric_prefix}_step/{name}`` against a global step that continues across iterations.
        on_step: called as ``on_step(step, run)`` after each optimizer step and its resumable
            checkpoint (tests use it to interrupt a run or to inspect each rank's weights).

    Returns:
        Summary metrics of the run (``{metric_prefix}/loss``, ``.../kl``, ``.../tokens_per_s``, ...).
    """
    from accelerate.utils import set_seed

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
    fingerprint = _fingerprint(samples, settings)

    # ---- where to start: a resumable checkpoint of this very run, else init_policy
    resume = ckpt.latest_complete_checkpoint(state_dir)
    state = ckpt.read_trainer_state(resume) if resume else {}
    if resume and state.get("fingerprint") != fingerprint:
        log.warning("%s belongs to another run (other samples or settings); starting over", state_dir)
        resume, state = None, {}
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(state_dir, ignore_errors=True)
    init_state = ckpt.read_trainer_state(init_policy) if init_policy else {}
    carry = init_state.get("loss") == settings.loss
    start_step = int(state.get("step", 0))
    global_step = int(state.get("global_step", init_state.get("global_step", 0) if carry else 0))
    history: list[dict[str, float]] = list(state.get("history", []))

    # ---- model, reference, optimizer, schedule
    run = build_run(samples, settings, acc, model_cfg, base_model_dir, resume or init_policy, len(plan))
    sharded = _optimizer_is_sharded(acc)
    opt_state = (
        None if sharded else ckpt.load_optimizer_state(resume or init_policy) if (resume or carry) else None
    )
    if opt_state is not None:
        try:
            run.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as exc:
            log.warning(
                "optimizer state of %s does not fit this model (%s); starting it fresh",
                resume or init_policy,
                exc,
            )
    if resume and (sched := ckpt.load_scheduler_state(resume)) is not None:
        run.scheduler.load_state_dict(sched)
        for group, lr in zip(run.optimizer.param_groups, run.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr  # load_state_dict restores the position, not the groups' rate
    elif opt_state is not None:  # carried over from the previous iteration: this run's rate and schedule
        for group in run.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = settings.lr
        run.scheduler = _scheduler(settings, run.optimizer, len(plan))
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler

    # ---- old log-probs once before the update when there are several optimizer steps
    if settings.policy_gradient and len(plan) > 1:
        run.precomputed = _prepass(run, resume, state_dir / "prepass.pt", fingerprint)

    # ---- the update
    def save(path: Path, step: int) -> None:
        payload = {
            "loss": settings.loss,
            "step": step,
            "total_steps": len(plan),
            "global_step": global_step,
            "fingerprint": fingerprint,
            "history": history,
        }
        state_dict = _gathered_state_dict(acc, model)
        if acc.is_main_process:
            ckpt.save_checkpoint(
                path, acc.unwrap_model(model), payload, None if sharded else optimizer, scheduler, state_dict
            )
        acc.wait_for_everyone()

    from tqdm.auto import tqdm

    bar = tqdm(
        range(start_step, len(plan)),
        desc=f"{metric_prefix} steps",
        initial=start_step,
        total=len(plan),
        disable=not acc.is_local_main_process,
    )
    for step in bar:
        metrics = run.optimizer_step(plan[step])
        global_step += 1
        history.append(metrics)
        if tracker is not None and acc.is_main_process:
            tracker.log_metrics(
                {f"{metric_prefix}_step/{k}": v for k, v in metrics.items()}, step=global_step
            )
        bar.set_postfix(loss=f"{metrics.get('loss', math.nan):.4f}")
        done = step + 1
        if done < len(plan) and done % settings.checkpoint_every == 0:
            path = ckpt.step_dir(state_dir, done)
            save(path, done)
            if acc.is_main_process:
                ckpt.prune_checkpoints(state_dir, keep=path)
        if on_step is not None:
            on_step(done, run)

    # ---- final checkpoint, then drop the scratch state
    save(out_dir, len(plan))
    if acc.is_main_process:
        shutil.rmtree(state_dir, ignore_errors=True)
    acc.wait_for_everyone()
    summary = _summary(history, samples, plan, metric_prefix)
    summary[f"{metric_prefix}/global_step"] = float(global_step)
    acc.free_memory()
    return summary


def _prepass(run: TrainerRun, resume: Path | None, file: Path, fingerprint: str) -> dict:
    """Old/reference log-probs before the first step, persisted: a resumed run must reuse the same π_old."""
    if file.is_file():
        saved = ckpt.load_torch(file, "pre-update log-probs")
        if saved.get("fingerprint") == fingerprint:
            return saved["logprobs"]
    if resume is not None:
        raise DataError(
            f"{file}: pre-update log-probs are missing beside a resumable checkpoint; "
            f"delete {file.parent} to start the iteration over"
        )
    run.precompute_logprobs()
    if run.accelerator.is_main_process:
        ckpt.save_torch(file, {"fingerprint": fingerprint, "logprobs": run.precomputed})
    run.accelerator.wait_for_everyone()
    return run.precomputed


# --------------------------------------------------------------------------- the stage's entry point
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
) -> dict[str, float]:
    """One DualAdv-GRPO update (METHOD.md §7) from the iteration's tables; writes ``out_dir``.

    ``steps``/``trajectories``/``reviews``/``edits`` are the STEPS/TRAJECTORIES/REVIEWS/EDITS
    frames of :mod:`skillmaster.tables` (``reviews``/``edits`` may be None). Per-step metrics go
    to ``tracker`` as ``train_step/*`` against a global step; the returned summary (sample,
    advantage and training metrics: ``train/adv/action_mean``, ``train/loss``, ``train/kl``, ...)
    is logged too, at ``step=iteration``. ``progress``: the per-step milestone progress for the
    dense progress reward (``train.progress_reward``; see :func:`build_rl_samples`). Run it on every
    rank under ``accelerate launch``.
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
    )
    summary = {f"train/{k}": v for k, v in sample_metrics.items()} | metrics
    if tracker is not None and PartialState().is_main_process:
        tracker.log_metrics(summary, step=iteration)
    return summary
