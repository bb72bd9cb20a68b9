"""DualAdv-GRPO training on the real 135M model with LoRA: it learns, checkpoints and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_tables import BAD, GOOD, chat

from skillmaster.config import Config
from skillmaster.paths import COMPLETE_MARKER
from skillmaster.train.checkpoint import latest_complete_checkpoint, read_trainer_state
from skillmaster.train.grpo import train_iteration
from skillmaster.train.samples import Sample, build_sft_samples, collate
from skillmaster.train.settings import TrainSettings
from skillmaster.train.trainer import train_on_samples

pytestmark = pytest.mark.model

TRAIN = {
    "lr": 2e-3,
    "epochs": 2,
    "kl_coef": 0.01,
    "entropy_coef": 0.001,
    "micro_batch_tokens": 256,
    "checkpoint_every": 1,
    "max_samples": None,
    "lora": {"r": 8, "alpha": 16},
}


def config(model_cfg, **train) -> Config:
    return Config(model=model_cfg.model_dump(), train=TRAIN | train)


def response_logprob(model_dir: Path, adapter: Path | None, model_cfg, prompt: str, response: str) -> float:
    from skillmaster.agent.tokens import encode_prompt
    from skillmaster.modeling import load_model
    from skillmaster.train.policy import response_logprobs

    model, tok, _ = load_model(model_dir, model_cfg, adapter=adapter)
    prefix, suffix = encode_prompt(tok, prompt, 0)
    sample = Sample(prefix + suffix, tok(response, add_special_tokens=False).input_ids)
    mb = collate([sample], [0], tok.pad_token_id)
    with torch.no_grad():
        logp, _ = response_logprobs(model, mb)
    return float(logp.sum())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, base_model_dir, model_cfg, tables):
    """An uninterrupted 2-step run (2 epochs over one fixed batch, pre-update old log-probs)."""
    root = tmp_path_factory.mktemp("grpo")
    seen = []
    metrics = train_iteration(
        config(model_cfg),
        tables.steps,
        tables.trajectories,
        tables.reviews,
        tables.edits,
        None,
        base_model_dir,
        root / "iter_001",
        root / "state",
        iteration=1,
        on_step=lambda step, run: seen.append((step, run.accelerator.num_processes)),
        save_state_to=root / "states" / "iter_001",
    )
    return root, metrics, seen


def test_training_moves_the_adapter_the_loss_and_the_preference(full_run, base_model_dir, model_cfg, tables):
    root, metrics, seen = full_run
    out = root / "iter_001"
    assert (out / COMPLETE_MARKER).is_file() and (out / "adapter_config.json").is_file()
    # the serving weights hold the adapter alone; the training state (optimizer, schedule, RNG) is apart
    assert not (out / "optimizer.pt").exists() and not (root / "state").exists()
    assert {"optimizer.bin", "scheduler.bin", "COMPLETE"} <= {
        p.name for p in (root / "states" / "iter_001").iterdir()
    }
    assert seen == [(1, 1), (2, 1)]
    state = read_trainer_state(out)
    assert state["step"] == 2 and state["global_step"] == 2 and len(state["history"]) == 2
    # LoRA's B matrices start at zero: any non-zero entry means the adapter was trained
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().max()) > 0 for v in lora_b)
    # the loss moved, and the metrics the issue asks for are there
    assert metrics["train/loss_first"] != pytest.approx(metrics["train/loss_last"], abs=1e-6)
    for key in (
        "loss",
        "pg_loss",
        "kl",
        "entropy",
        "clip_frac",
        "dual_clip_frac",
        "approx_kl",
        "grad_norm",
        "tokens_per_s",
    ):
        assert f"train/{key}" in metrics, key
    assert metrics["train/adv/action_max"] > 0 > metrics["train/adv/action_min"]
    assert metrics["train/kl"] > 0  # the policy left the reference after step 1
    # the positive-advantage response gained log-probability relative to the negative one
    before = response_logprob(base_model_dir, None, model_cfg, tables.first_prompt, GOOD) - response_logprob(
        base_model_dir, None, model_cfg, tables.first_prompt, BAD
    )
    after = response_logprob(base_model_dir, out, model_cfg, tables.first_prompt, GOOD) - response_logprob(
        base_model_dir, out, model_cfg, tables.first_prompt, BAD
    )
    print("preference before/after", before, after)
    assert after > before + 0.5, (before, after)


class Interrupt(Exception):
    pass


def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_final_step(
    full_run, tmp_path, base_model_dir, model_cfg, tables
):
    out, state_dir = tmp_path / "iter_001", tmp_path / "state"
    args = (
        config(model_cfg),
        tables.steps,
        tables.trajectories,
        tables.reviews,
        tables.edits,
        None,
        base_model_dir,
        out,
        state_dir,
    )

    def kill_after_first_checkpoint(step, run):
        if step == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_iteration(*args, iteration=1, on_step=kill_after_first_checkpoint)
    assert not out.exists()
    assert latest_complete_checkpoint(state_dir).name == "step_000001"
    assert (state_dir / "prepass.pt").is_file()

    steps_run = []
    train_iteration(*args, iteration=1, on_step=lambda step, run: steps_run.append(step))
    assert steps_run == [2]  # resumed after step 1
    state = read_trainer_state(out)
    assert state["step"] == 2 and state["global_step"] == 2 and len(state["history"]) == 2
    assert not state_dir.exists()
    # same data order, optimizer state and π_old: the same trajectory as the uninterrupted run
    straight_state = read_trainer_state(full_run[0] / "iter_001")
    for mine, theirs in zip(state["history"], straight_state["history"], strict=True):
        for key in ("loss", "pg_loss", "kl", "grad_norm"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-7), key
    resumed = load_file(out / "adapter_model.safetensors")
    straight = load_file(full_run[0] / "iter_001" / "adapter_model.safetensors")
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-3, atol=1e-5)


def test_next_iteration_continues_adapter_optimizer_and_global_step(
    full_run, tmp_path, base_model_dir, model_cfg, tables
):
    first = full_run[0] / "iter_001"
    # one on-policy step (old log-probs come from the same forward), with activation checkpointing
    cfg = config(model_cfg, epochs=1, gradient_checkpointing=True)
    metrics = train_iteration(
        cfg,
        tables.steps,
        tables.trajectories,
        tables.reviews,
        tables.edits,
        first,
        base_model_dir,
        tmp_path / "iter_002",
        tmp_path / "state",
        iteration=2,
        carry_from=full_run[0] / "states" / "iter_001",
        save_state_to=tmp_path / "states" / "iter_002",
    )
    assert metrics["train/global_step"] == 3.0
    assert metrics["train/clip_frac"] == 0.0 and metrics["train/ratio_mean"] == pytest.approx(1.0)
    state = read_trainer_state(tmp_path / "iter_002")
    assert state["global_step"] == 3 and state["step"] == 1
    opt = torch.load(tmp_path / "states" / "iter_002" / "optimizer.bin", weights_only=True)
    assert max(s["step"] for s in opt["state"].values()) == 3  # Adam's step count carried over


def test_padded_micro_batch_gives_the_same_logprobs_as_one_sample_at_a_time(base_model_dir, model_cfg):
    from skillmaster.modeling import load_model
    from skillmaster.train.policy import response_logprobs

    model, tok, _ = load_model(base_model_dir, model_cfg)
    a = Sample(tok("Hello there, how are you today?").input_ids, tok(" Fine, thanks.").input_ids)
    b = Sample(tok("Hi").input_ids, tok(" Go to the kitchen and take the apple.").input_ids, temperature=0.7)
    with torch.no_grad():
        both, ent = response_logprobs(model, collate([a, b], [0, 1], tok.pad_token_id), entropy="detached")
        alone = [response_logprobs(model, collate([s], [0], tok.pad_token_id))[0][0] for s in (a, b)]
    for row, ref in enumerate(alone):
        n = ref.numel()
        torch.testing.assert_close(both[row, :n], ref, rtol=1e-4, atol=1e-4)
    assert bool((ent[0, : len(a.response_ids)] > 0).all())


def test_sft_uses_the_same_loop_and_lowers_the_nll(tmp_path, base_model_dir, model_cfg, tokenizer):
    import polars as pl

    prompts = [chat(tokenizer, f"Task {i}: heat an egg.") for i in range(2)]
    frame = pl.DataFrame(
        {"prompt": prompts, "prefix_chars": [0, 0], "response": [GOOD] * 2, "kind": ["action"] * 2}
    )
    cfg = Config(
        model=model_cfg.model_dump(),
        sft={"epochs": 2, "lr": 2e-3, "batch_size": 2, "warmup_ratio": 0.0},
        train={"lora": {"r": 8, "alpha": 16}},
    )
    settings = TrainSettings.for_sft(cfg)
    assert settings.loss == "sft" and not settings.uses_reference
    rates = []
    metrics = train_on_samples(
        build_sft_samples(frame, tokenizer),
        settings,
        model_cfg=cfg.model,
        base_model_dir=base_model_dir,
        init_policy=None,
        out_dir=tmp_path / "sft",
        state_dir=tmp_path / "state",
        metric_prefix="sft",
        on_step=lambda step, run: rates.append(run.optimizer.param_groups[0]["lr"]),
    )
    assert metrics["sft/steps"] == 2.0
    assert metrics["sft/loss_last"] < metrics["sft/loss_first"]
    assert rates == pytest.approx([1e-3, 0.0])  # linear decay over the 2 steps
    assert json.loads((tmp_path / "sft" / "trainer_state.json").read_text())["loss"] == "sft"


def test_full_fine_tuning_trains_every_weight_against_a_frozen_reference(
    tmp_path, base_model_dir, model_cfg, tokenizer
):
    from skillmaster.algo.losses import LossSettings

    prompt = tokenizer(
        "<|im_start|>user\nPut the egg in the microwave.<|im_end|>\n<|im_start|>assistant\n"
    ).input_ids
    samples = [
        Sample(prompt, tokenizer(text).input_ids, advantage=adv)
        for text, adv in ((GOOD, 1.0), (BAD, -1.0), (GOOD + " ok", 0.5), (BAD + " no", -0.5))
    ]
    settings = TrainSettings(
        loss_settings=LossSettings(kl_coef=0.05, entropy_coef=0.001),
        lr=1e-5,
        lora=None,
        micro_batch_tokens=128,
    )
    seen = {}

    def on_step(step, run):
        seen["frozen_reference"] = run.reference is not None and not any(
            p.requires_grad for p in run.reference.parameters()
        )
        seen["trainable"] = sum(p.numel() for p in run.params)

    metrics = train_on_samples(
        samples,
        settings,
        model_cfg=model_cfg,
        base_model_dir=base_model_dir,
        init_policy=None,
        out_dir=tmp_path / "full",
        state_dir=tmp_path / "state",
        on_step=on_step,
    )
    assert seen["frozen_reference"] and seen["trainable"] > 100_000_000  # every weight of the 135M model
    assert metrics["train/kl"] == pytest.approx(0.0, abs=1e-6)  # on-policy first step: policy == reference
    out = tmp_path / "full"
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    name = "model.layers.0.mlp.down_proj.weight"
    trained, base = (
        load_file(out / "model.safetensors")[name],
        load_file(base_model_dir / "model.safetensors")[name],
    )
    assert not torch.equal(trained, base)
