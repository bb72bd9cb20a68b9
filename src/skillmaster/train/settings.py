"""What one training run is set to do: :class:`TrainSettings`, derived from ``train.*`` (DualAdv-GRPO,
METHOD.md §7) or ``sft.*`` (cold-start SFT, METHOD.md §8), so both use the same trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skillmaster.algo.losses import PG_LOSSES, LossSettings
from skillmaster.config import Config, LoraConfig, SftConfig


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
    serving_dtype: str = "auto"
    """dtype of the full weights a finished run writes (``auto``: bfloat16 on a GPU, else float32)."""
    lr_schedule: str = "constant"
    """transformers scheduler name: ``constant``, ``constant_with_warmup``, ``linear``, ``cosine``."""
    warmup_ratio: float = 0.0
    lora: LoraConfig | None = field(default_factory=LoraConfig)
    """None = full fine-tuning (with a frozen reference copy when the loss needs one)."""
    seed: int = 0

    @classmethod
    def for_grpo(cls, cfg: Config, seed: int = 0) -> TrainSettings:
        """DualAdv-GRPO (METHOD.md §7): the clipped loss with KL and entropy terms, all from ``train.*``."""
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
            epochs=t.epochs,
            mini_batch_size=t.mini_batch_size,
            **_shared(t, seed),
        )

    @classmethod
    def for_sft(cls, cfg: Config, lr_schedule: str = "linear", seed: int = 0) -> TrainSettings:
        """SFT (METHOD.md §8): NLL, ``sft.epochs``, ``sft.lr`` with ``sft.warmup_ratio`` linear warm-up
        then ``lr_schedule`` (``linear`` decay by default, ``constant_with_warmup`` to hold)."""
        return cls.from_sft(cfg.sft, cfg.train, lr_schedule, seed)

    @classmethod
    def from_sft(
        cls, sft: SftConfig, train: Any, lr_schedule: str = "linear", seed: int = 0
    ) -> TrainSettings:
        """:meth:`for_sft` from the ``sft`` section and an object with the ``train.*`` settings SFT
        shares (``train.lora``, ``weight_decay``, ``micro_batch_tokens``, ``grad_clip``,
        ``gradient_checkpointing``, ``mixed_precision``, ``checkpoint_every``, ``serving_dtype``):
        the train section, or the sft stage's view."""
        return cls(
            loss="sft",
            loss_settings=LossSettings(agg="token-mean"),
            lr=sft.lr,
            epochs=sft.epochs,
            mini_batch_size=sft.batch_size,
            lr_schedule=lr_schedule,
            warmup_ratio=sft.warmup_ratio,
            **_shared(train, seed),
        )

    @property
    def policy_gradient(self) -> bool:
        return self.loss in PG_LOSSES

    @property
    def uses_reference(self) -> bool:
        return self.policy_gradient and self.loss_settings.kl_coef > 0


def _shared(t: Any, seed: int) -> dict:
    """The settings GRPO and SFT both take from ``train.*`` (``t``): batching, precision, checkpoints, LoRA."""
    return {
        "weight_decay": t.weight_decay,
        "micro_batch_tokens": t.micro_batch_tokens,
        "grad_clip": t.grad_clip,
        "gradient_checkpointing": t.gradient_checkpointing,
        "mixed_precision": t.mixed_precision,
        "checkpoint_every": t.checkpoint_every,
        "serving_dtype": t.serving_dtype,
        "lora": t.lora if t.lora.enabled else None,
        "seed": seed,
    }
