"""The trainable policy, its reference, and the one forward pass training uses.

- :func:`load_trainable_policy`: the base (or the previous checkpoint) with a trainable LoRA adapter
  (peft), or all weights trainable when LoRA is off. Training keeps fp32 master weights
  (``model.dtype: auto``); Accelerate's ``mixed_precision`` handles bf16/fp16 compute on GPUs.
- The reference policy (METHOD.md §7): with LoRA it is the same model with the adapter disabled
  (:func:`reference_logprobs`), so no second copy exists; with full fine-tuning it is a frozen
  copy of the base weights.
- :func:`response_logprobs`: log-probabilities (and entropy) of the response tokens only. The
  language-model head runs on the response positions alone (``logits_to_keep``), which saves the
  vocabulary projection of every prompt token.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from skillmaster.algo.losses import entropy_from_logprobs
from skillmaster.config import LoraConfig, ModelConfig
from skillmaster.modeling import load_model
from skillmaster.train.samples import MicroBatch


def training_model_config(cfg: ModelConfig) -> ModelConfig:
    """Load on the CPU in fp32 (Accelerate moves the model to its device); an explicit dtype wins."""
    dtype = "float32" if cfg.dtype == "auto" else cfg.dtype
    return cfg.model_copy(update={"device": "cpu", "dtype": dtype})


def is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def load_trainable_policy(
    base_model_dir: Path,
    model_cfg: ModelConfig,
    start_from: Path | None,
    lora: LoraConfig | None,
    gradient_checkpointing: bool = False,
):
    """``(model, tokenizer)``: the policy to train, in train mode, on the CPU.

    ``start_from`` is a checkpoint folder (LoRA adapter or full weights) or None for the base.
    With ``lora`` set, an adapter found in ``start_from`` is trained further; otherwise a fresh one
    is created from ``lora`` (seed the RNG first for identical adapters on every rank). With
    ``lora`` None, an adapter in ``start_from`` is merged and every weight is trained.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    model, tokenizer, _ = load_model(
        base_model_dir, training_model_config(model_cfg), adapter=start_from, trainable=True
    )
    if lora is not None and not is_peft(model):
        model = get_peft_model(
            model,
            PeftLoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    elif lora is None:
        if is_peft(model):
            model = model.merge_and_unload()
        for p in model.parameters():
            p.requires_grad_(True)
    if gradient_checkpointing:  # non-reentrant: no input gradients needed, works with a frozen base
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.train()
    return model, tokenizer


def load_frozen_reference(base_model_dir: Path, model_cfg: ModelConfig, dtype: torch.dtype | None = None):
    """A frozen copy of the base weights: the reference policy of full fine-tuning (METHOD.md §7),
    cast to ``dtype`` when given (the dtype DeepSpeed trains the policy in)."""
    model, _, _ = load_model(base_model_dir, training_model_config(model_cfg), trainable=False)
    if dtype is not None:
        model = model.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def response_logprobs(
    model, mb: MicroBatch, entropy: str = "none"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the response tokens under softmax(logits / T), and optionally their entropy.

    Args:
        model: a causal LM (possibly wrapped by Accelerate/DDP).
        mb: a right-padded :class:`MicroBatch`. No attention mask is passed: with right padding the
            causal mask already keeps every real token from seeing padding, and without a mask
            the attention kernel takes its causal fast path.
        entropy: ``none``, ``detached`` (a metric) or ``grad`` (the entropy bonus trains).

    Returns:
        ``logp`` (B, R) and ``entropy`` (B, R) or None; padded response slots hold junk that
        ``mb.response_mask`` excludes.
    """
    # the LM head runs on the union of the rows' response positions (a 1-D ``logits_to_keep``: (B, U, V)),
    # then each row takes its own positions back out: (B, R, V)
    keep, where = torch.unique(mb.positions, return_inverse=True)  # (U,), (B, R)
    out = model(input_ids=mb.input_ids, logits_to_keep=keep, use_cache=False)
    rows = torch.arange(where.shape[0], device=where.device)[:, None]
    logits = out.logits[rows, where].float() / mb.temperature[:, None, None]  # (B, R, V)
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, mb.response_ids[..., None]).squeeze(-1)
    ent = None
    if entropy != "none":
        with torch.no_grad() if entropy == "detached" else contextlib.nullcontext():
            ent = entropy_from_logprobs(logp_all)
    return logp, ent


@torch.no_grad()
def reference_logprobs(policy, reference, mb: MicroBatch, adapter_owner=None) -> torch.Tensor:
    """Response log-probs (B, R) under the reference: ``reference`` if given, else ``policy`` with
    the LoRA adapter of ``adapter_owner`` (the unwrapped peft model; default ``policy``) disabled.
    ``policy`` may be the prepared (DDP/FSDP/DeepSpeed) module: the forward goes through it."""
    if reference is not None:
        return response_logprobs(reference, mb)[0]
    owner = policy if adapter_owner is None else adapter_owner
    with owner.disable_adapter():
        return response_logprobs(policy, mb)[0]
