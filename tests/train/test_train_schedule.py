"""Learning-rate schedules of the training loop (SFT: linear warm-up, METHOD.md §8)."""

from __future__ import annotations

import pytest
import torch

from skillmaster.config import Config
from skillmaster.train.run import make_scheduler
from skillmaster.train.settings import TrainSettings


def rates(settings: TrainSettings, steps: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=settings.lr)
    schedule = make_scheduler(settings, optimizer, steps)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


def test_sft_warms_up_over_ten_percent_then_decays():
    cfg = Config(sft={"lr": 1e-5, "warmup_ratio": 0.1, "epochs": 2})
    lr = rates(TrainSettings.for_sft(cfg), 20)  # 2 warm-up steps
    assert lr[:3] == pytest.approx([0.0, 0.5e-5, 1e-5])
    assert lr[-1] == pytest.approx(1e-5 / 18)
    hold = rates(TrainSettings.for_sft(cfg, lr_schedule="constant_with_warmup"), 20)
    assert hold[2:] == pytest.approx([1e-5] * 18)


def test_grpo_keeps_a_constant_rate():
    assert rates(TrainSettings.for_grpo(Config(train={"lr": 3e-4})), 5) == pytest.approx([3e-4] * 5)
