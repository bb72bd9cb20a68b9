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
from skillmaster.train.samples import MicroBatch, Sample, collate, plan_micro_batches, shard_even
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

    def reference_logprobs(self, mb: MicroBatch) -> torch.Tensor:
        """Reference response log-probs, in the training precision, through prepared modules only."""
        with self.accelerator.autocast():
            return reference_logprobs(self.model, self.reference, mb, self.unwrapped)

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
                inputs["ref_logp"] = ref if ref is not None else self.reference_logprobs(mb)
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
        mine = shard_even(step_plan, lengths, acc.process_index, acc.num_processes)
        sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for k, (indices, weight) in enumerate(mine):
            mb = collate(self.samples, indices, self.pad_id).to(acc.device)
            last = k == len(mine) - 1
            acc.gradient_state._set_sync_gradients(last)  # DeepSpeed steps at the boundary only
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                loss, metrics = self.micro_step(mb, norm)
                # zero weight: a filler micro-batch that keeps the ranks' collectives in step
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
        for indices, weight in shard_even(plan, lengths, acc.process_index, acc.num_processes):
            mb = collate(self.samples, indices, self.pad_id).to(acc.device)
            old = response_logprobs(self.model, mb)[0].float().cpu()
            ref = self.reference_logprobs(mb).float().cpu() if self.settings.uses_reference else None
            if weight == 0:  # a filler forward (every rank runs as many as the busiest)
                continue
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
    ``mixed_precision: auto`` resolves against the device and ``model_dir``'s measured CPU dtype.
    The schedule steps once per optimizer step; FSDP runs on the CPU too; DeepSpeed gets the
    settings it cannot infer without a dataloader (:func:`deepspeed_overrides`)."""
    from accelerate import Accelerator

    from skillmaster.modeling import resolve_device, resolve_mixed_precision

    precision = resolve_mixed_precision(settings.mixed_precision, model_cfg, model_dir)
    cpu = resolve_device(model_cfg) == "cpu"
    acc = Accelerator(mixed_precision=precision, cpu=cpu, step_scheduler_with_optimizer=False)
    if cpu:
        _fsdp_on_cpu(acc)
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if plugin is not None:
        plugin.deepspeed_config.update(deepspeed_overrides(plugin.deepspeed_config))
    return acc


def _fsdp_on_cpu(acc) -> None:
    """Under an FSDP launcher (``ACCELERATE_USE_FSDP``) on the CPU, Accelerate sets up plain
    multi-CPU data parallelism; switch the state to FSDP with the launcher's plugin (FSDP2 runs on
    CPU tensors over gloo)."""
    import os

    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if acc.distributed_type != DistributedType.MULTI_CPU:
        return
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    plugin = FullyShardedDataParallelPlugin()  # from the launcher's FSDP_* variables
    if acc.mixed_precision != "no":
        plugin.set_mixed_precision(acc.mixed_precision)
    acc.state.fsdp_plugin = plugin
    acc.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def deepspeed_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """What the trainer sets in a DeepSpeed config before ``prepare``.

    No dataloader goes through ``prepare`` (the trainer plans its own micro-batches), so Accelerate
    cannot fill ``train_micro_batch_size_per_gpu: auto`` and refuses; 1 stands in (DeepSpeed only
    reports throughput with it: micro-batches hold a token budget, not a sample count). DeepSpeed's
    own accumulation must stay at 1: the trainer marks the last micro-batch as the boundary and
    normalises the loss itself, and DeepSpeed would divide the loss again by its steps.
    """
    from skillmaster.errors import ConfigError

    out: dict[str, Any] = {}
    if config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        out["train_micro_batch_size_per_gpu"] = 1
    steps = config.get("gradient_accumulation_steps", "auto")
    if steps == "auto":
        out["gradient_accumulation_steps"] = 1
    elif int(steps) != 1:
        raise ConfigError(
            f"the DeepSpeed config sets gradient_accumulation_steps: {steps}; set it to 1 "
            "(the trainer accumulates over train.micro_batch_tokens micro-batches itself)"
        )
    return out


def make_scheduler(settings: TrainSettings, optimizer, total_steps: int):
    """The learning-rate schedule (transformers ``get_scheduler``; warm-up = ``warmup_ratio`` of the
    steps) on a torch optimizer: make it before ``accelerator.prepare`` and prepare it with the
    optimizer (DeepSpeed's optimizer is no torch optimizer)."""
    from transformers import get_scheduler

    return get_scheduler(
        settings.lr_schedule,
        optimizer,
        num_warmup_steps=math.ceil(settings.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


def reference_dtype(acc) -> torch.dtype | None:
    """The dtype of the frozen reference copy: DeepSpeed's bf16/fp16 when it trains in it (DeepSpeed
    casts the policy itself; the reference must compute as the policy does), else None (fp32 under
    Accelerate's autocast, or FSDP's mixed-precision policy)."""
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    return None if plugin is None else deepspeed_dtype(plugin.deepspeed_config)


def deepspeed_dtype(config: dict[str, Any]) -> torch.dtype | None:
    """The dtype DeepSpeed trains in by its config (after Accelerate set the mixed precision):
    bf16, fp16, or None (fp32)."""
    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if str((config.get(key) or {}).get("enabled", False)).lower() == "true":
            return dtype
    return None


def prepare_reference(acc, base_model_dir: Path, model_cfg: ModelConfig):
    """The frozen reference of full fine-tuning, ready to run on this rank: under FSDP prepared like
    the policy (sharded, rank 0's weights on every rank, the same mixed precision) but left out
    of ``save_state`` (it never changes); otherwise a whole copy on the device."""
    from accelerate.utils import DistributedType

    reference = load_frozen_reference(base_model_dir, model_cfg, reference_dtype(acc))
    if acc.distributed_type != DistributedType.FSDP:
        return reference.to(acc.device)
    prepared = acc.prepare(reference)
    acc._models = [m for m in acc._models if m is not prepared]  # save_state/load_state: the policy only
    return prepared


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
    peft = is_peft(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=settings.weight_decay
    )
    scheduler = make_scheduler(settings, optimizer, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    reference = None
    if settings.uses_reference and not peft:
        reference = prepare_reference(accelerator, base_model_dir, model_cfg)
    return TrainerRun(
        settings,
        samples,
        accelerator,
        model,
        optimizer,
        scheduler,
        reference,
        pad_id=tokenizer.pad_token_id or 0,
    )
