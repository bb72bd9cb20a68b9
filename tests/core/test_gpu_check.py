"""The GPU check for a lent device (src/skillmaster/gpu_check.py, scripts/gpu-check.sh) in its CPU
mode: every check passes end to end (bf16 steps in-process and under a 1-process `accelerate
launch`, the memory plan's prediction printed, a bit-exact save_state/load_state round trip), with
the project's other dependencies made unimportable, as on a bare GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skillmaster import gpu_check
from skillmaster import memory_plan as mp

REPO = Path(__file__).resolve().parents[2]
CHECKS = ["environment", "model", "train full", "train LoRA", "memory", "checkpoint", "accelerate launch"]
ABSENT = [
    *("pydantic", "typer", "click", "prefect", "mlflow", "dvc", "pandas", "vllm", "deepspeed"),
    *("textworld", "alfworld", "skillmaster.config", "skillmaster.runtime", "skillmaster.cli"),
]
"""Made unimportable in the check's processes (the launcher's and the child's too): a GPU machine
has torch, transformers, accelerate and peft, not the rest of the project's dependencies."""
SITECUSTOMIZE = f"""import sys
for name in {ABSENT!r}:
    sys.modules[name] = None  # `import name` raises ModuleNotFoundError; find_spec answers None
"""


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One CPU run of ``python -m skillmaster.gpu_check`` as scripts/gpu-check.sh runs it:
    PYTHONPATH=src, HF_HOME a scratch folder, offline."""
    tmp = tmp_path_factory.mktemp("gpu-check")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp / "out"
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(tmp / "site"), str(REPO / "src")]),
        "HF_HOME": str(tmp / "hf"),
        "HF_HUB_OFFLINE": "1",
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "skillmaster.gpu_check", "--device", "cpu", "--steps", "3", "--out", str(out)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    seconds = time.perf_counter() - started
    summary = (
        json.loads((out / gpu_check.SUMMARY).read_text()) if (out / gpu_check.SUMMARY).is_file() else None
    )
    return proc, summary, out, seconds


def test_the_cpu_mode_passes_every_check(cpu_run):
    proc, summary, out, seconds = cpu_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary is not None
    assert [c["check"] for c in summary["checks"]] == CHECKS
    assert all(c["ok"] for c in summary["checks"]), json.dumps(summary["checks"], indent=1)
    assert summary["ok"] and summary["device"] == "cpu"
    assert sorted(p.name for p in out.iterdir()) == [gpu_check.SUMMARY]  # the checkpoint stays in a tmp dir
    for name in CHECKS:
        assert f"\n{name}" in proc.stdout and "PASS" in proc.stdout
    assert f"PASSED: {len(CHECKS)}/{len(CHECKS)} checks" in proc.stdout
    assert seconds < 300


def test_the_model_and_training_checks(cpu_run):
    checks = {c["check"]: c["detail"] for c in cpu_run[1]["checks"]}
    model = checks["model"]
    assert model["parameters"] == model["planned_parameters"] > 0  # the plan's formula counts the Llama
    full = checks["train full"]
    assert full["mixed_precision"] == "bf16"
    assert full["compute_dtype"] == ["torch.bfloat16"]  # autocast over fp32 weights
    assert full["losses"][-1] < full["losses"][0]
    lora = checks["train LoRA"]
    assert lora["adapter_moved"] and lora["base_unchanged"]


def test_the_checkpoint_round_trip_is_exact(cpu_run):
    checks = {c["check"]: c["detail"] for c in cpu_run[1]["checks"]}
    ckpt = checks["checkpoint"]
    assert ckpt["fresh_model_differed"]  # the load had something to restore
    assert ckpt["weights_equal"] and ckpt["optimizer_equal"]
    # 21 tensors of the 2-layer model, each with AdamW's step, exp_avg and exp_avg_sq
    assert ckpt["optimizer_tensors_compared"] == 3 * 21
    assert ckpt["loss_loaded"] == ckpt["loss_saved"]
    assert "model.safetensors" in ckpt["files"] and "optimizer.bin" in ckpt["files"]


def test_the_accelerate_launch_child(cpu_run):
    checks = {c["check"]: c["detail"] for c in cpu_run[1]["checks"]}
    launch = checks["accelerate launch"]
    assert launch["returncode"] == 0
    assert launch["accelerator"]["num_processes"] == 1
    assert launch["accelerator"]["mixed_precision"] == "bf16"
    child = {c["check"]: c for c in launch["checks"]}
    assert list(child) == ["train full", "checkpoint"]
    assert all(c["ok"] for c in child.values())
    assert child["checkpoint"]["detail"]["weights_equal"] and child["checkpoint"]["detail"]["optimizer_equal"]
    assert child["train full"]["detail"]["compute_dtype"] == ["torch.bfloat16"]


def test_the_memory_plan_is_printed_beside_the_measurement(cpu_run):
    proc, summary, _, _ = cpu_run
    memory = summary["memory"]
    assert [(r["variant"], r["tokens"]) for r in memory["rows"]] == [
        ("full", 128),
        ("full", 512),
        ("lora+ckpt", 128),
        ("lora+ckpt", 512),
    ]
    for row in memory["rows"]:
        assert row["measured_peak_gib"] is None  # no allocator peak on the CPU
        assert row["predicted_gib"] > mp.RUNTIME_BYTES / mp.GIB > row["predicted_without_runtime_gib"] > 0
        assert f"{row['tokens']:>6} tokens: predicted {row['predicted_gib']:.4g} GiB" in proc.stdout
    assert proc.stdout.count("vs measured n/a peak") == 4
    # per token, the CPU model (h 64, L 2, V 512) in bf16: logits 1/4 × 512 × 16 B = 2048 B;
    # no checkpointing 64 × 2 × 2 B × 34 = 8704 B (10.5 KiB with the logits);
    # checkpointed 64 × 2 B × (2 × 2 + 34) = 4864 B (6.75 KiB)
    per_token = {s["variant"]: s["predicted_kib_per_token"] for s in memory["per_token"]}
    assert per_token == {"full": 10.5, "lora+ckpt": 6.75}
    assert "per micro-batch token: predicted 10.50 KiB vs measured n/a KiB" in proc.stdout


def test_the_prediction_is_the_memory_plans():
    shape = mp.KNOWN_MODELS["Qwen/Qwen2.5-7B-Instruct"]
    p = gpu_check.predicted_bytes(shape, 16384, lora=True, checkpointing=True)
    stage = mp.training_stage(
        "train",
        gpu_check.plan_config(16384, True, True),
        shape,
        mp.parameter_count(shape),
        mp.Sharding(),
        False,
    )
    assert p["total"] == stage.total
    assert p["without_runtime"] == stage.total - mp.RUNTIME_BYTES
    # activations 16384 × 3584 × 2 B × (28 × 2 + 34) + logits 4096 × 152064 × 16 B
    assert p["activations_and_logits"] == 16384 * 3584 * 2 * 90 + 4096 * 152064 * 16


@pytest.mark.skipif(gpu_check._torch().cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu_fails_at_once(tmp_path, capsys):
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path)]) == 1
    summary = json.loads((tmp_path / gpu_check.SUMMARY).read_text())
    assert not summary["checks"][0]["ok"]
    assert "torch sees no CUDA device" in summary["checks"][0]["detail"]["error"]
    assert all(c["detail"]["summary"] == "skipped" for c in summary["checks"][1:])
    assert "FAILED: 0/7 checks" in capsys.readouterr().out


def test_skillmaster_doctor_is_registered():
    from typer.testing import CliRunner

    from skillmaster.cli import app

    result = CliRunner().invoke(app, ["doctor", "--help"])
    assert result.exit_code == 0
    assert "--gpu" in result.output and "--cpu" in result.output


def test_the_script_is_executable_and_bounded():
    script = REPO / "scripts" / "gpu-check.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "timeout" in text and "600" in text and "HF_HOME" in text and "PYTHONPATH" in text
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
