"""The live objects of one training run and what one optimizer step does (METHOD.md §7, §8).

:func:`build_run` loads the policy (and, for full fine-tuning with KL, a frozen reference), creates
AdamW and the learning-rate schedule and prepares them with Accelerate. A :class:`TrainerRun` then
takes optimizer steps: :meth:`TrainerRun.optimizer_step` accumulates gradients over the
micro-batches of one mini-batch (its share of them on this rank) and steps;
:meth:`TrainerRun.precompute_logprobs` is the no-grad pass that fixes π_old (and the reference
log-probs) before the first of several steps. ``bench train`` drives these directly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skillmaster.algo.losses import LossInputs, Norm, get_loss_fn
from skillmaster.config import ModelConfig
from skillmaster.train.policy import (
    is_peft,
    load_frozen_reference,
    load_trainable_policy,
    reference_logprobs,
    response_logprobs,
)
from skillmaster.train.samples import MicroBatch, Sample, collate, plan_micro_batches, shard
from skillmaster.train.settings import TrainSettings


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


# --------------------------------------------------------------------------- building a run
def make_accelerator(settings: TrainSettings, model_cfg: ModelConfig, model_dir: Path | None = None):
    """The process's Accelerator: CPU when ``model.device`` resolves to it (gloo under ``accelerate launch``);
    ``mixed_precision: auto`` resolves against the device and ``model_dir``'s measured CPU dtype."""
    from accelerate import Accelerator

    from skillmaster.modeling import resolve_device, resolve_mixed_precision

    precision = resolve_mixed_precision(settings.mixed_precision, model_cfg, model_dir)
    return Accelerator(mixed_precision=precision, cpu=resolve_device(model_cfg) == "cpu")


def is_sharded(acc) -> bool:
    """Whether parameters and optimizer state are sharded over the ranks (FSDP, DeepSpeed): a
    checkpoint then needs the gathered state dict, and the optimizer state is not saved."""
    from accelerate.utils import DistributedType

    return acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def make_scheduler(settings: TrainSettings, optimizer, total_steps: int):
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
        make_scheduler(settings, optimizer, total_steps),
        reference,
        pad_id=tokenizer.pad_token_id or 0,
    )
