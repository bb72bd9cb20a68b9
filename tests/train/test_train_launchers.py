"""What the trainer hands to each launcher, against the real Accelerate objects (no GPU, no DeepSpeed).

- DeepSpeed (configs/accelerate/deepspeed-zero*.yaml): Accelerate refuses ``prepare`` without a
  dataloader while ``train_micro_batch_size_per_gpu`` is ``auto``; the trainer sets an integer in the
  plugin's config first, keeps DeepSpeed's accumulation at 1, and the frozen reference takes
  DeepSpeed's training dtype. (``deepspeed.initialize`` itself is not run here: DeepSpeed is not
  installed and needs CUDA for its optimizers; what stays unverified is listed in the module's
  launcher files.)
- The schedule is made on the torch optimizer and prepared with it: it steps once per optimizer
  step in any launcher (DeepSpeed's optimizer is no torch optimizer, so no schedule is made on it).
- Every rank runs as many micro-batches as the busiest (FSDP, ZeRO-3: each forward is a collective).
- End-of-iteration training states are pruned to the newest N and every k-th.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from skillmaster.errors import ConfigError
from skillmaster.train.resume import prune_states
from skillmaster.train.run import deepspeed_dtype, deepspeed_overrides, make_scheduler
from skillmaster.train.samples import plan_micro_batches, plan_steps, shard_even
from skillmaster.train.settings import TrainSettings

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.fast


def plugin_of(name: str):
    """Accelerate's DeepSpeedPlugin as ``accelerate launch --config_file <name>`` builds it."""
    from accelerate.utils import DeepSpeedPlugin

    ds = yaml.safe_load((REPO / "configs" / "accelerate" / name).read_text())["deepspeed_config"]
    keys = ("zero_stage", "gradient_accumulation_steps", "gradient_clipping", "zero3_init_flag")
    kwargs = {k: ds[k] for k in keys if k in ds}
    kwargs |= {k: ds[k] for k in ("offload_optimizer_device", "offload_param_device") if k in ds}
    if "zero3_save_16bit_model" in ds:
        kwargs["zero3_save_16bit_model"] = ds["zero3_save_16bit_model"]
    return DeepSpeedPlugin(**kwargs)


@pytest.mark.parametrize("name", ["deepspeed-zero2.yaml", "deepspeed-zero3.yaml"])
def test_deepspeed_gets_an_integer_micro_batch_before_prepare(name):
    plugin = plugin_of(name)
    # what Accelerate's _prepare_deepspeed refuses without a dataloader
    assert plugin.is_auto("train_micro_batch_size_per_gpu")
    plugin.deepspeed_config.update(deepspeed_overrides(plugin.deepspeed_config))
    assert not plugin.is_auto("train_micro_batch_size_per_gpu")
    assert plugin.get_value("train_micro_batch_size_per_gpu") == 1
    assert plugin.get_value("gradient_accumulation_steps") == 1
    # Accelerate then fills the rest from these (train_batch_size = micro × accumulation × processes)
    plugin.deepspeed_config_process(must_match=False, train_batch_size=1 * 1 * 8)
    assert plugin.deepspeed_config["train_batch_size"] == 8
    plugin.set_mixed_precision("bf16")
    assert deepspeed_dtype(plugin.deepspeed_config) is torch.bfloat16  # the reference's dtype


def test_deepspeed_accumulation_other_than_one_is_refused():
    assert deepspeed_overrides({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1}) == {}
    assert deepspeed_overrides({"gradient_accumulation_steps": "auto"})["gradient_accumulation_steps"] == 1
    with pytest.raises(ConfigError, match="gradient_accumulation_steps: 4; set it to 1"):
        deepspeed_overrides({"gradient_accumulation_steps": 4})
    assert deepspeed_dtype({"bf16": {"enabled": False}, "fp16": {"enabled": True}}) is torch.float16
    assert deepspeed_dtype({"bf16": {"enabled": "auto"}}) is None


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate's state is one per process and refuses another mixed precision later: start this
    test from none and leave none behind."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_the_prepared_schedule_steps_once_per_optimizer_step(fresh_accelerate_state):
    """``make_accelerator`` sets step_scheduler_with_optimizer=False: Accelerate's wrapper would
    otherwise step the schedule once per process on every optimizer step."""
    from accelerate import Accelerator

    settings = TrainSettings(lr=1.0, lr_schedule="linear", warmup_ratio=0.25)
    acc = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    sched = make_scheduler(settings, opt, 4)
    model, opt, sched = acc.prepare(model, opt, sched)
    rates = []
    for _ in range(4):
        rates.append(opt.param_groups[0]["lr"])
        acc.backward(model(torch.ones(1, 2)).sum())
        opt.step()
        sched.step()
        opt.zero_grad()
    assert rates == pytest.approx([0.0, 1.0, 2 / 3, 1 / 3])
    assert type(sched.scheduler).__name__ == "LambdaLR"  # made on the torch AdamW, not on a wrapper


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_every_rank_runs_the_same_number_of_micro_batches(world):
    lengths = [5, 90, 91, 7, 300, 12, 40, 41, 42, 600, 8]
    for step in plan_steps(lengths, 4, 2, 128, seed=3) + [plan_micro_batches(lengths, 128)]:
        shares = [shard_even(step, lengths, r, world) for r in range(world)]
        assert len({len(s) for s in shares}) == 1  # equal counts: the collectives stay in step
        real = sorted(i for s in shares for mb, w in s if w == 1.0 for i in mb)
        assert real == sorted(i for mb in step for i in mb)  # every sample exactly once, with weight 1
        fillers = [mb for s in shares for mb, w in s if w == 0.0]
        shortest = min((i for mb in step for i in mb), key=lambda i: (lengths[i], i))
        assert all(mb == [shortest] for mb in fillers)


def test_end_of_iteration_states_keep_the_newest_and_every_kth(tmp_path):
    for it in range(1, 8):
        (tmp_path / f"iter_{it:03d}").mkdir()
        if it != 7:  # iteration 7 was killed while writing: incomplete
            (tmp_path / f"iter_{it:03d}" / "COMPLETE").write_text("ok\n")
    (tmp_path / ".iter_008.tmp").mkdir()
    prune_states(tmp_path, keep=2, every=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_003", "iter_005", "iter_006"]
    prune_states(tmp_path, keep=0)
    assert list(tmp_path.iterdir()) == []
