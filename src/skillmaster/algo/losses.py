"""Policy losses of DualAdv-GRPO (METHOD.md §7) and the SFT loss (METHOD.md §8).

Token tensors are ``(B, T)``: B samples, T response positions (right-padded); ``mask`` is 1 on
real response tokens. Per-sample advantages are ``(B,)`` and broadcast over the tokens.

Micro-batching: the trainer splits a (mini-)batch into micro-batches and accumulates gradients.
For the result to equal the loss over the whole batch, every micro-batch divides by the
*whole batch's* denominator (:class:`Norm`: its token count for token-mean, its sequence count for
the seq-mean modes), never by its own; then the micro-batch losses simply add up. The metrics
follow the same rule, so summing a metric over micro-batches (and ranks) gives its batch value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from skillmaster.errors import ConfigError


@dataclass(frozen=True)
class Norm:
    """Denominators of the whole (mini-)batch, over all its micro-batches and ranks."""

    tokens: float
    """Response tokens in the batch (token-mean)."""
    seqs: float
    """Samples in the batch (seq-mean-*)."""


def _masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device))


# --------------------------------------------------------------------------- aggregation
def token_mean(values: torch.Tensor, mask: torch.Tensor, norm: Norm | None = None) -> torch.Tensor:
    """Σ values·mask / N_tokens: every response token in the batch weighs the same (verl ``token-mean``).

    values, mask: (B, T). Returns a 0-dim tensor.
    """
    denom = norm.tokens if norm is not None else mask.sum().clamp(min=1)
    return _masked(values, mask).sum() / denom


def seq_mean_token_sum(values: torch.Tensor, mask: torch.Tensor, norm: Norm | None = None) -> torch.Tensor:
    """mean over samples of Σ_t values·mask. values, mask: (B, T). Returns a 0-dim tensor."""
    denom = norm.seqs if norm is not None else max(values.shape[0], 1)
    return _masked(values, mask).sum(-1).sum() / denom


def seq_mean_token_mean(values: torch.Tensor, mask: torch.Tensor, norm: Norm | None = None) -> torch.Tensor:
    """mean over samples of the per-sample token mean. values, mask: (B, T). Returns a 0-dim tensor."""
    denom = norm.seqs if norm is not None else max(values.shape[0], 1)
    per_seq = _masked(values, mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.sum() / denom


AggregateFn = Callable[[torch.Tensor, torch.Tensor, "Norm | None"], torch.Tensor]
AGGREGATIONS: dict[str, AggregateFn] = {
    "token-mean": token_mean,
    "seq-mean-token-sum": seq_mean_token_sum,
    "seq-mean-token-mean": seq_mean_token_mean,
}
"""``train.loss_agg`` → aggregation (METHOD.md §7 uses ``token-mean``)."""


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str, norm: Norm | None = None) -> torch.Tensor:
    """Reduce a (B, T) token loss to a scalar with the named aggregation (``norm``: see :class:`Norm`)."""
    if mode not in AGGREGATIONS:
        raise ConfigError(f"train.loss_agg '{mode}' is unknown; choose one of: {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[mode](values, mask, norm)


# --------------------------------------------------------------------------- KL to the reference
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log π − log π_ref (unbiased, high variance). (B, T) → (B, T)."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = ½ (log π − log π_ref)². (B, T) → (B, T)."""
    return 0.5 * (logp - ref_logp).square()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 "low-variance KL" (METHOD.md §7; Schulman's estimator, verl ``low_var_kl``).

    With d = log π_ref − log π: k3 = exp(d) − d − 1 ≥ 0, zero iff the policies agree on the token.
    As in verl, d is clamped to [−20, 20] and the result to [−10, 10] for numerical safety.
    (B, T) → (B, T).
    """
    d = (ref_logp - logp).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
    "low_var_kl": kl_k3,
}
"""``train.kl_estimator`` → per-token KL estimate."""


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate. logp, ref_logp: (B, T) → (B, T)."""
    if estimator not in KL_ESTIMATORS:
        raise ConfigError(
            f"train.kl_estimator '{estimator}' is unknown; choose one of: {', '.join(KL_ESTIMATORS)}"
        )
    return KL_ESTIMATORS[estimator](logp, ref_logp)


# --------------------------------------------------------------------------- entropy
def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of a distribution given as log-probabilities over the last axis: −Σ exp(logp)·logp.

    (..., V) → (...). The trainer passes the ``log_softmax(logits / T)`` it already holds for the
    token log-probs (:func:`skillmaster.train.policy.response_logprobs`), so no second softmax over
    the vocabulary is spent; fp32 there.
    """
    return -(logp.exp() * logp).sum(-1)


# --------------------------------------------------------------------------- clipped policy loss
def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    dual_clip: float | None = 3.0,
    agg: str = "token-mean",
    norm: Norm | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate with dual clip (METHOD.md §7; verl ``compute_policy_loss``).

    Per token, with ρ = exp(log π − log π_old) and A the sample's advantage:
    L = max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)); for A < 0 the dual clip bounds it: L = min(L, −c·A)
    (Ye et al. 2020), so a very unlikely-now token with negative advantage cannot blow up the loss.

    Args:
        logp, old_logp: (B, T) log-probs of the sampled tokens under the current / old policy.
        advantages: (B,) per sample, or (B, T) per token.
        mask: (B, T) response-token mask.
        clip_eps: ε. dual_clip: c > 1, or None to disable.
        agg: aggregation name (:data:`AGGREGATIONS`). norm: batch denominators (:class:`Norm`).

    Returns:
        The aggregated loss (0-dim) and detached token-mean metrics: ``clip_frac`` (tokens where
        the ε-clip is active), ``dual_clip_frac`` (where the dual clip is active), ``approx_kl``
        (mean of log π_old − log π), ``ratio_mean``.
    """
    adv = advantages[:, None] if advantages.ndim == 1 else advantages
    adv = adv.to(logp.dtype)
    log_ratio = (logp - old_logp).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    loss_unclipped = -adv * ratio
    loss_clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss_ppo = torch.maximum(loss_unclipped, loss_clipped)
    metrics = {
        "clip_frac": token_mean((loss_clipped > loss_unclipped).to(logp.dtype), mask, norm),
        "approx_kl": token_mean(-log_ratio, mask, norm),
        "ratio_mean": token_mean(ratio, mask, norm),
    }
    if dual_clip is not None:
        loss_dual = -adv * dual_clip
        negative = adv < 0
        metrics["dual_clip_frac"] = token_mean(((loss_ppo > loss_dual) & negative).to(logp.dtype), mask, norm)
        loss_ppo = torch.where(negative, torch.minimum(loss_ppo, loss_dual), loss_ppo)
    loss = aggregate(loss_ppo, mask, agg, norm)
    return loss, {k: v.detach() for k, v in metrics.items()}


# --------------------------------------------------------------------------- trainer losses (registry)
@dataclass(frozen=True)
class LossSettings:
    """Coefficients of the trainer's loss (from ``train.*`` in params.yaml)."""

    clip_eps: float = 0.2
    dual_clip: float | None = 3.0
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    agg: str = "token-mean"


@dataclass(frozen=True)
class LossInputs:
    """What the trainer's forward pass hands a loss; all token tensors (B, T)."""

    logp: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor | None = None  # (B,)
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


LossFn = Callable[[LossInputs, LossSettings, "Norm | None"], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def grpo_loss(
    inp: LossInputs, s: LossSettings, norm: Norm | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DualAdv-GRPO loss (METHOD.md §7): clipped policy loss − entropy_coef·H + kl_coef·KL(π‖π_ref).

    ``old_logp`` None means on-policy (old = current, detached: ratio 1). ``ref_logp`` None skips
    the KL term; ``entropy`` None skips the bonus. Returns the loss and detached metrics
    (``loss``, ``pg_loss``, ``kl``, ``entropy``, ``clip_frac``, ``dual_clip_frac``, ``approx_kl``).
    """
    if inp.advantages is None:
        raise ValueError("grpo_loss needs advantages")
    old = inp.old_logp if inp.old_logp is not None else inp.logp.detach()
    pg_loss, metrics = ppo_clip_loss(
        inp.logp, old, inp.advantages, inp.mask, s.clip_eps, s.dual_clip, s.agg, norm
    )
    loss = pg_loss
    if inp.entropy is not None:
        if s.entropy_coef:
            loss = loss - s.entropy_coef * aggregate(inp.entropy, inp.mask, s.agg, norm)
        metrics["entropy"] = token_mean(inp.entropy.detach(), inp.mask, norm)
    if inp.ref_logp is not None:
        kl = kl_penalty(inp.logp, inp.ref_logp, s.kl_estimator)
        if s.kl_coef:
            loss = loss + s.kl_coef * aggregate(kl, inp.mask, s.agg, norm)
        metrics["kl"] = token_mean(kl.detach(), inp.mask, norm)
    metrics["pg_loss"] = pg_loss.detach()
    metrics["loss"] = loss.detach()
    return loss, metrics


def sft_loss(
    inp: LossInputs, s: LossSettings, norm: Norm | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Supervised fine-tuning (METHOD.md §8): negative log-likelihood of the response tokens.

    Returns the aggregated NLL and detached metrics (``loss``, ``nll`` as token mean, ``entropy``
    when given).
    """
    loss = aggregate(-inp.logp, inp.mask, s.agg, norm)
    metrics = {"loss": loss.detach(), "nll": token_mean(-inp.logp.detach(), inp.mask, norm)}
    if inp.entropy is not None:
        metrics["entropy"] = token_mean(inp.entropy.detach(), inp.mask, norm)
    return loss, metrics


LOSSES: dict[str, LossFn] = {"grpo": grpo_loss, "sft": sft_loss}
"""Trainer loss by name: ``fn(inputs, settings, norm) -> (loss, metrics)``."""

PG_LOSSES = frozenset({"grpo"})
"""Losses that use advantages, old log-probs and the reference policy (the trainer skips them otherwise)."""


def get_loss_fn(name: str) -> LossFn:
    if name not in LOSSES:
        raise ConfigError(f"loss '{name}' is unknown; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]
