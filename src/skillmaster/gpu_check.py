"""A GPU check for a lent device: does training work there, and does the memory plan hold?

``python -m skillmaster.gpu_check [--device cuda|cpu] [--steps N] [--out DIR]`` (or
``scripts/gpu-check.sh``, or ``skillmaster doctor --gpu``) runs, on a tiny randomly initialised
Llama-shaped model built from a ``LlamaConfig`` in code (no download, no weights file):

- ``environment``: the libraries, the device, bf16 support;
- ``model``: its parameter count against the memory plan's formula;
- ``train full``: bf16 autocast (Accelerate ``mixed_precision``) over fp32 weights, AdamW, the
  language-model head on the last quarter of the positions (``logits_to_keep``, as training does):
  the loss is finite, the logits are bf16, the loss falls on a fixed batch;
- ``train LoRA``: the same with a peft adapter and gradient checkpointing: the adapter moves, the
  frozen base does not;
- ``memory``: one training step per micro-batch token budget, its peak
  (``torch.cuda.max_memory_allocated``) beside :func:`skillmaster.memory_plan.training_stage`'s
  prediction, and the peak's growth per micro-batch token beside the plan's activations + logits
  per token; on the CPU the measurement is n/a (no allocator peak);
- ``checkpoint``: Accelerate ``save_state``/``load_state`` into a model and optimizer built from
  another seed: every weight and every AdamW moment comes back bit for bit;
- ``accelerate launch``: the train and checkpoint checks again in a child process under a
  1-process ``accelerate launch --mixed_precision bf16`` (its config in a temporary file,
  ``HF_HOME`` a temporary folder: nothing read from or written to ~/.cache).

It prints a table (check, result, seconds) and the predictions beside the measurements, writes
``gpu-check.json`` into ``--out`` and exits 1 when a check fails. It imports only the standard
library, torch, transformers, accelerate, peft and :mod:`skillmaster.memory_plan` (whose own
imports are the standard library and :mod:`skillmaster.errors`), so ``PYTHONPATH=src`` suffices on
a machine with no other project dependency. About 10 s on 2 CPU cores with the CPU model; about a
minute on one GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from skillmaster import memory_plan as mp

SRC = Path(__file__).resolve().parents[1]
"""The folder holding the ``skillmaster`` package (put on the child's PYTHONPATH)."""
LORA_R = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""The adapter of params.yaml: r 16 on every projection."""
LR = 1e-3
CHILD_TIMEOUT_S = 300
SUMMARY = "gpu-check.json"


@dataclass(frozen=True)
class Spec:
    """The tiny Llama-shaped model and the micro-batch token budgets measured."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    seq_len: int
    tokens: tuple[int, ...]

    def config(self):
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            intermediate_size=self.intermediate,
            vocab_size=self.vocab,
            max_position_embeddings=max(self.seq_len, 128),
            tie_word_embeddings=False,
            use_cache=False,
        )


PRESETS = {
    # ~0.17M parameters: fast enough in bf16 on 2 CPU cores
    "cpu": Spec(64, 2, 4, 2, 176, 512, 64, (128, 512)),
    # ~155M parameters (fp32 full fine-tuning state ~2.3 GiB); 16384 tokens is the paper's budget
    "cuda": Spec(1024, 8, 16, 4, 2816, 32000, 1024, (4096, 16384)),
}


# --------------------------------------------------------------------------- small helpers
def _torch():
    import torch

    return torch


def build_model(spec: Spec, device: str, seed: int):
    """A randomly initialised ``LlamaForCausalLM`` in fp32 on ``device`` (training keeps fp32
    weights; Accelerate's bf16 autocast handles the compute)."""
    torch = _torch()
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(spec.config())
    return model.float().train()


def make_batch(spec: Spec, tokens: int, seed: int, device):
    """``tokens // seq_len`` rows of random token ids (at least one row)."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    rows = max(1, tokens // spec.seq_len)
    return torch.randint(0, spec.vocab, (rows, spec.seq_len), generator=g).to(device)


def compute_loss(model, ids):
    """Negative log-likelihood of the next token on the last RESPONSE_SHARE of positions, the LM head
    run on those alone (``logits_to_keep``, as train/policy.py does); also the logits' dtype."""
    torch = _torch()
    seq = ids.shape[1]
    response = max(1, int(seq * mp.RESPONSE_SHARE))
    keep = torch.arange(seq - 1 - response, seq - 1, device=ids.device)
    out = model(input_ids=ids, logits_to_keep=keep, use_cache=False)
    logp = torch.log_softmax(out.logits.float(), dim=-1)
    nll = -logp.gather(-1, ids[:, keep + 1, None]).squeeze(-1)
    return nll.mean(), out.logits.dtype


def train_step(acc, model, opt, ids) -> float:
    loss, _ = compute_loss(model, ids)
    acc.backward(loss)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def watch_compute_dtype(model) -> set[str]:
    """The dtypes the first MLP's down projection computes in, filled by each forward pass (the
    logits say nothing: Accelerate converts a prepared model's outputs back to fp32)."""
    seen: set[str] = set()
    module = next(m for name, m in model.named_modules() if name.endswith("down_proj"))
    module.register_forward_hook(lambda _m, _inputs, output: seen.add(str(output.dtype)))
    return seen


def enable_checkpointing(model) -> None:
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def add_lora(model):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, lora_dropout=0.0, target_modules=LORA_TARGETS)
    return get_peft_model(model, config)


def _release(acc=None) -> None:
    torch = _torch()
    if acc is not None:
        acc.free_memory()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _cpu_clone(obj):
    """A deep copy with every tensor cloned to the CPU."""
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_clone(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu_clone(v) for v in obj)
    return obj


def _gib(nbytes: float | None) -> float | None:
    return None if nbytes is None else round(nbytes / mp.GIB, 4)


def _fmt_gib(nbytes: float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / mp.GIB:.3f} GiB"


# --------------------------------------------------------------------------- the memory plan's prediction
def plan_config(tokens: int, lora: bool, checkpointing: bool) -> SimpleNamespace:
    """The settings :func:`memory_plan.training_stage` reads, as this check trains: fp32 weights
    (``model.dtype: auto``), bf16 autocast, one process, the params.yaml adapter when ``lora``."""
    return SimpleNamespace(
        model=SimpleNamespace(dtype="auto"),
        train=SimpleNamespace(
            lora=SimpleNamespace(enabled=lora, r=LORA_R, target_modules=LORA_TARGETS),
            mixed_precision="bf16",
            gradient_checkpointing=checkpointing,
            micro_batch_tokens=tokens,
        ),
    )


def predicted_bytes(shape: mp.Shape, tokens: int, lora: bool, checkpointing: bool) -> dict[str, float]:
    """The plan of one training process (no reference copy: LoRA's is the adapter off, and this
    check trains full fine-tuning without KL): its total, the total less the CUDA-context allowance
    (which ``max_memory_allocated`` does not see), and the part that grows with the tokens."""
    params = mp.parameter_count(shape)
    stage = mp.training_stage(
        "train", plan_config(tokens, lora, checkpointing), shape, params, mp.Sharding(), False
    )
    value = mp.activation_value_bytes("bf16", mp.weight_bytes("auto"))
    per_batch = mp.activation_bytes(tokens, shape.hidden, shape.layers, value, checkpointing)
    per_batch += mp.logits_bytes(tokens, shape.vocab)
    return {
        "total": stage.total,
        "without_runtime": stage.total - mp.RUNTIME_BYTES,
        "activations_and_logits": per_batch,
        "parts": {name: b for name, b in stage.parts},
    }


# --------------------------------------------------------------------------- the checks
@dataclass
class Context:
    """What every check shares: the device, the model spec, the steps, a scratch folder and how to
    make the Accelerator (in-process: bf16 asked for here; ``launched``: from `accelerate launch`)."""

    device: str
    spec: Spec
    steps: int
    scratch: Path
    launched: bool = False

    def accelerator(self):
        from accelerate import Accelerator

        if self.launched:
            return Accelerator()  # mixed precision and device from `accelerate launch`
        return Accelerator(mixed_precision="bf16", cpu=self.device == "cpu")


def check_environment(ctx: Context) -> dict:
    torch = _torch()
    import accelerate
    import peft
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "peft": peft.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if ctx.device == "cuda":
        if not torch.cuda.is_available():
            return info | {"ok": False, "error": "--device cuda but torch sees no CUDA device"}
        props = torch.cuda.get_device_properties(0)
        info |= {
            "device_name": props.name,
            "device_count": torch.cuda.device_count(),
            "gpu_memory_gib": round(props.total_memory / mp.GIB, 2),
            "cuda": torch.version.cuda,
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
        info["ok"] = bool(info["bf16_supported"])
        info["summary"] = f"{props.name}, {info['gpu_memory_gib']} GiB, bf16 {info['bf16_supported']}"
    else:
        info |= {
            "device_name": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        }
        info["summary"] = f"CPU, {info['threads']} threads (bf16 autocast on the CPU)"
    return info


def check_model(ctx: Context) -> dict:
    model = build_model(ctx.spec, ctx.device, seed=0)
    actual = sum(p.numel() for p in model.parameters())
    shape = mp.shape_from_config(model.config.to_dict())
    planned = mp.parameter_count(shape)
    attention = getattr(model.config, "_attn_implementation", None)
    del model
    _release()
    return {
        "ok": actual == planned,
        "parameters": actual,
        "planned_parameters": planned,
        "attention": attention,
        "summary": f"{actual:,} parameters (plan's formula: {planned:,}), attention {attention}",
    }


def check_train_full(ctx: Context) -> dict:
    """N full fine-tuning steps on one fixed batch: finite, bf16 logits, a falling loss."""
    torch = _torch()
    acc = ctx.accelerator()
    model = build_model(ctx.spec, acc.device, seed=0)
    dtypes = watch_compute_dtype(model)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    model, opt = acc.prepare(model, opt)
    ids = make_batch(ctx.spec, ctx.spec.tokens[0], seed=1, device=acc.device)
    losses = [train_step(acc, model, opt, ids) for _ in range(ctx.steps)]
    _release(acc)
    finite = all(math.isfinite(v) for v in losses)
    falls = len(losses) > 1 and losses[-1] < losses[0]
    bf16 = dtypes == {"torch.bfloat16"}
    return {
        "ok": finite and falls and bf16,
        "mixed_precision": acc.mixed_precision,
        "device": str(acc.device),
        "losses": [round(v, 5) for v in losses],
        "compute_dtype": sorted(dtypes),
        "summary": f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {len(losses)} steps, "
        f"compute {', '.join(sorted(dtypes))} over fp32 weights",
    }


def check_train_lora(ctx: Context) -> dict:
    """N LoRA steps with gradient checkpointing: finite, the adapter moves, the base stays."""
    torch = _torch()
    acc = ctx.accelerator()
    model = add_lora(build_model(ctx.spec, acc.device, seed=0))
    enable_checkpointing(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=LR)
    model, opt = acc.prepare(model, opt)
    ids = make_batch(ctx.spec, ctx.spec.tokens[0], seed=1, device=acc.device)
    losses = [train_step(acc, model, opt, ids) for _ in range(ctx.steps)]
    after = dict(acc.unwrap_model(model).named_parameters())
    adapter_moved = any(not torch.equal(before[n], p) for n, p in after.items() if "lora_" in n)
    base_still = all(torch.equal(before[n], p) for n, p in after.items() if "lora_" not in n)
    n_adapter = sum(p.numel() for p in trainable)
    _release(acc)
    finite = all(math.isfinite(v) for v in losses)
    return {
        "ok": finite and adapter_moved and base_still,
        "adapter_parameters": n_adapter,
        "adapter_moved": adapter_moved,
        "base_unchanged": base_still,
        "losses": [round(v, 5) for v in losses],
        "summary": f"adapter {n_adapter:,} params moved {adapter_moved}, base unchanged {base_still}, "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}",
    }


VARIANTS = {"full": (False, False), "lora+ckpt": (True, True)}
"""name: (LoRA, gradient checkpointing): full fine-tuning as the plan's worst case, the paper's
settings (LoRA r 16 on every projection, checkpointing)."""


def check_memory(ctx: Context) -> dict:
    """Per variant: one warm-up step (AdamW's moments exist from then on), then one step per token
    budget with the allocator's peak reset before it."""
    torch = _torch()
    cuda = ctx.device == "cuda"
    rows, slopes = [], []
    for variant, (lora, ckpt) in VARIANTS.items():
        acc = ctx.accelerator()
        model = build_model(ctx.spec, acc.device, seed=0)
        shape = mp.shape_from_config(model.config.to_dict())
        if lora:
            model = add_lora(model)
        if ckpt:
            enable_checkpointing(model)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
        model, opt = acc.prepare(model, opt)
        train_step(acc, model, opt, make_batch(ctx.spec, ctx.spec.tokens[0], 0, acc.device))
        measured: dict[int, float | None] = {}
        for tokens in ctx.spec.tokens:
            ids = make_batch(ctx.spec, tokens, seed=tokens, device=acc.device)
            real_tokens = ids.numel()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                state = torch.cuda.memory_allocated()
            train_step(acc, model, opt, ids)
            peak = reserved = None
            if cuda:
                torch.cuda.synchronize()
                peak, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
            measured[real_tokens] = peak
            p = predicted_bytes(shape, real_tokens, lora, ckpt)
            rows.append(
                {
                    "variant": variant,
                    "tokens": real_tokens,
                    "predicted_gib": _gib(p["total"]),
                    "predicted_without_runtime_gib": _gib(p["without_runtime"]),
                    "predicted_activations_and_logits_gib": _gib(p["activations_and_logits"]),
                    "measured_peak_gib": _gib(peak),
                    "measured_reserved_gib": _gib(reserved),
                    "measured_state_before_step_gib": _gib(state) if cuda else None,
                    "within_plan": None if peak is None else peak <= p["without_runtime"],
                    "predicted_parts_gib": {k: _gib(v) for k, v in p["parts"].items()},
                }
            )
        acc.free_memory()
        del model, opt
        _release()
        points = list(measured.items())
        (t1, m1), (t2, m2) = points[0], points[-1]
        p1 = predicted_bytes(shape, t1, lora, ckpt)["activations_and_logits"]
        p2 = predicted_bytes(shape, t2, lora, ckpt)["activations_and_logits"]
        slopes.append(
            {
                "variant": variant,
                "between_tokens": [t1, t2],
                "predicted_kib_per_token": round((p2 - p1) / (t2 - t1) / 1024, 2)
                if t2 != t1
                else round(p1 / t1 / 1024, 2),
                "measured_kib_per_token": None
                if m1 is None or t2 == t1
                else round((m2 - m1) / (t2 - t1) / 1024, 2),
            }
        )
    over = [f"{r['variant']}@{r['tokens']}" for r in rows if r["within_plan"] is False]
    summary = "measured n/a on the CPU (prediction only)"
    if cuda:
        summary = "every peak within the plan" if not over else f"peak over the plan: {', '.join(over)}"
    return {
        "ok": True,
        "measured_with": "torch.cuda.max_memory_allocated" if cuda else None,
        "rows": rows,
        "per_token": slopes,
        "over_plan": over,
        "summary": summary,
    }


def check_checkpoint(ctx: Context) -> dict:
    """save_state after N steps; load_state into a model and optimizer built from another seed;
    every weight, every optimizer tensor and the loss on the batch come back exactly."""
    torch = _torch()
    folder = ctx.scratch / ("state-launched" if ctx.launched else "state")
    shutil.rmtree(folder, ignore_errors=True)
    acc = ctx.accelerator()
    model = build_model(ctx.spec, acc.device, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    model, opt = acc.prepare(model, opt)
    ids = make_batch(ctx.spec, ctx.spec.tokens[0], seed=1, device=acc.device)
    for _ in range(ctx.steps):
        train_step(acc, model, opt, ids)
    acc.save_state(str(folder))
    weights = _cpu_clone(acc.unwrap_model(model).state_dict())
    optim = _cpu_clone(opt.state_dict())
    with torch.no_grad():
        loss_saved = float(compute_loss(model, ids)[0])
    files = sorted(p.name for p in folder.iterdir())
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    _release(acc)
    del model, opt

    acc = ctx.accelerator()
    fresh = build_model(ctx.spec, acc.device, seed=12345)
    opt = torch.optim.AdamW(fresh.parameters(), lr=LR)
    fresh, opt = acc.prepare(fresh, opt)
    differed = any(
        not torch.equal(v.cpu(), weights[k]) for k, v in acc.unwrap_model(fresh).state_dict().items()
    )
    acc.load_state(str(folder))
    loaded = acc.unwrap_model(fresh).state_dict()
    weights_equal = loaded.keys() == weights.keys() and all(
        torch.equal(loaded[k].cpu(), v) for k, v in weights.items()
    )
    state = opt.state_dict()
    optimizer_equal, moments = _optimizer_equal(optim, state)
    with torch.no_grad():
        loss_loaded = float(compute_loss(fresh, ids)[0])
    same_loss = abs(loss_loaded - loss_saved) <= 1e-6 * max(1.0, abs(loss_saved))
    _release(acc)
    del fresh, opt
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "ok": differed and weights_equal and optimizer_equal and same_loss,
        "files": files,
        "bytes": size,
        "fresh_model_differed": differed,
        "weights_equal": weights_equal,
        "optimizer_equal": optimizer_equal,
        "optimizer_tensors_compared": moments,
        "loss_saved": loss_saved,
        "loss_loaded": loss_loaded,
        "summary": f"{len(weights)} weights, {moments} optimizer tensors equal {weights_equal and optimizer_equal}, "
        f"loss {loss_saved:.6f} {'==' if same_loss else '!='} {loss_loaded:.6f}",
    }


def _optimizer_equal(saved: dict, loaded: dict) -> tuple[bool, int]:
    """Whether two optimizer state_dicts hold the same tensors and groups; the tensors compared."""
    torch = _torch()
    if saved["state"].keys() != loaded["state"].keys() or not saved["state"]:
        return False, 0
    compared, same = 0, True
    for key, entry in saved["state"].items():
        other = loaded["state"][key]
        if entry.keys() != other.keys():
            return False, compared
        for name, value in entry.items():
            compared += 1
            if isinstance(value, torch.Tensor):
                same &= torch.equal(value, other[name].detach().cpu())
            else:
                same &= value == other[name]
    return same and saved["param_groups"] == loaded["param_groups"], compared


def check_launch(ctx: Context) -> dict:
    """The train and checkpoint checks in a child under a 1-process `accelerate launch` (bf16)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-launch-") as tmp:
        tmp_path = Path(tmp)
        config = tmp_path / "accelerate.yaml"
        config.write_text(
            "compute_environment: LOCAL_MACHINE\n"
            "distributed_type: 'NO'\n"
            "num_machines: 1\n"
            "num_processes: 1\n"
            "machine_rank: 0\n"
            "mixed_precision: bf16\n"
            f"use_cpu: {'true' if ctx.device == 'cpu' else 'false'}\n"
            "dynamo_config: {}\n"
        )
        out = tmp_path / "child"
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(config),
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "bf16",
            *(["--cpu"] if ctx.device == "cpu" else []),
            "-m",
            "skillmaster.gpu_check",
            "--child",
            *_spec_args(ctx),
            "--out",
            str(out),
        ]
        env = os.environ | {
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
        }
        started = time.perf_counter()
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
        )
        seconds = round(time.perf_counter() - started, 2)
        child = _read(out / SUMMARY)
    tail = (proc.stdout + proc.stderr)[-3000:]
    if child is None:
        return {"ok": False, "returncode": proc.returncode, "error": "no child summary", "output_tail": tail}
    checks = {c["check"]: c["ok"] for c in child["checks"]}
    info = child.get("accelerator", {})
    ok = proc.returncode == 0 and child["ok"]
    return {
        "ok": ok,
        "returncode": proc.returncode,
        "seconds": seconds,
        "accelerator": info,
        "checks": child["checks"],
        **({} if ok else {"output_tail": tail}),
        "summary": f"{info.get('num_processes')} process, {info.get('mixed_precision')}, "
        f"{info.get('device')}: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()),
    }


def _spec_args(ctx: Context) -> list[str]:
    s = ctx.spec
    return [
        *("--device", ctx.device, "--steps", str(ctx.steps)),
        *("--hidden", str(s.hidden), "--layers", str(s.layers), "--heads", str(s.heads)),
        *("--kv-heads", str(s.kv_heads), "--intermediate", str(s.intermediate)),
        *("--vocab", str(s.vocab), "--seq-len", str(s.seq_len), "--tokens", ",".join(map(str, s.tokens))),
    ]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- running and reporting
def run_check(name: str, fn: Callable[[Context], dict], ctx: Context) -> dict:
    started = time.perf_counter()
    try:
        detail = fn(ctx)
        ok = bool(detail.pop("ok", True))
    except Exception as exc:  # a failed check is a result, not a crash
        ok = False
        detail = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
            "summary": f"{type(exc).__name__}: {str(exc)[:160]}",
        }
    result = {"check": name, "ok": ok, "seconds": round(time.perf_counter() - started, 2), "detail": detail}
    print(_row(result), flush=True)
    return result


def _row(result: dict) -> str:
    verdict = "PASS" if result["ok"] else "FAIL"
    summary = result["detail"].get("summary", "")
    return f"{result['check']:<18} {verdict:<6} {result['seconds']:>7.1f}  {summary}"


def memory_lines(memory: dict | None) -> list[str]:
    """The predictions beside the measurements, one line per variant and budget."""
    if not memory:
        return []
    how = memory.get("measured_with") or "n/a on the CPU: no allocator peak to read"
    lines = [
        "memory plan vs measurement (fp32 weights, bf16 autocast, AdamW, one process, no reference copy; "
        f"measured: {how})"
    ]
    for r in memory["rows"]:
        measured = "n/a peak"
        if r["measured_peak_gib"] is not None:
            measured = f"{r['measured_peak_gib']:.4g} GiB peak"
            measured += f" ({r['measured_state_before_step_gib']:.4g} GiB held before the step)"
        lines.append(
            f"  {r['variant']:<10} {r['tokens']:>6} tokens: predicted {r['predicted_gib']:.4g} GiB "
            f"({r['predicted_without_runtime_gib']:.4g} GiB without the plan's "
            f"{mp.RUNTIME_BYTES / mp.GIB:g} GiB CUDA context allowance) vs measured {measured}"
            + ("" if r["within_plan"] is not False else "  <- OVER the plan")
        )
    for s in memory["per_token"]:
        measured = "n/a" if s["measured_kib_per_token"] is None else f"{s['measured_kib_per_token']:.2f}"
        lines.append(
            f"  {s['variant']:<10} per micro-batch token: predicted {s['predicted_kib_per_token']:.2f} KiB "
            f"vs measured {measured} KiB (peak growth from {s['between_tokens'][0]} "
            f"to {s['between_tokens'][1]} tokens)"
        )
    return lines


CHECKS: list[tuple[str, Callable[[Context], dict]]] = [
    ("environment", check_environment),
    ("model", check_model),
    ("train full", check_train_full),
    ("train LoRA", check_train_lora),
    ("memory", check_memory),
    ("checkpoint", check_checkpoint),
    ("accelerate launch", check_launch),
]
CHILD_CHECKS = [("train full", check_train_full), ("checkpoint", check_checkpoint)]


def run(device: str, spec: Spec, steps: int, out: Path, child: bool = False) -> dict:
    """Run the checks (the child's subset under ``child``), print the table, write the summary."""
    torch = _torch()
    import transformers

    transformers.logging.set_verbosity_error()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {"device": device, "spec": asdict(spec), "steps": steps, "child": child}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        ctx = Context(device, spec, steps, Path(scratch), launched=child)
        if child:
            from accelerate import PartialState

            state = PartialState()
            summary["accelerator"] = {
                "num_processes": state.num_processes,
                "distributed_type": str(state.distributed_type),
                "device": str(state.device),
                "mixed_precision": os.environ.get("ACCELERATE_MIXED_PRECISION"),
            }
        else:
            print(f"GPU check on {device}: tiny Llama {asdict(spec)}, {steps} steps", flush=True)
            print(f"{'check':<18} {'result':<6} {'seconds':>7}  detail", flush=True)
        checks = []
        for name, fn in CHILD_CHECKS if child else CHECKS:
            if checks and not checks[0]["ok"] and checks[0]["check"] == "environment":
                checks.append({"check": name, "ok": False, "seconds": 0.0, "detail": {"summary": "skipped"}})
                print(_row(checks[-1]), flush=True)
                continue
            checks.append(run_check(name, fn, ctx))
    if child:
        info = summary["accelerator"]
        bad = info["num_processes"] != 1 or info["mixed_precision"] != "bf16"
        if bad:
            checks.append(
                {
                    "check": "launcher",
                    "ok": False,
                    "seconds": 0.0,
                    "detail": {"summary": f"unexpected {info}"},
                }
            )
    summary["checks"] = checks
    summary["ok"] = all(c["ok"] for c in checks)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    memory = next((c["detail"] for c in checks if c["check"] == "memory" and "rows" in c["detail"]), None)
    summary["memory"] = memory
    summary["torch"] = torch.__version__
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
    if not child:
        for line in memory_lines(memory):
            print(line)
        passed = sum(c["ok"] for c in checks)
        print(
            f"{'PASSED' if summary['ok'] else 'FAILED'}: {passed}/{len(checks)} checks in "
            f"{summary['seconds']:.1f} s; summary {out / SUMMARY}",
            flush=True,
        )
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m skillmaster.gpu_check", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument(
        "--device", choices=["auto", "cuda", "cpu"], default="auto", help="default: cuda if visible"
    )
    p.add_argument("--steps", type=int, default=4, help="training steps per check (at least 2)")
    p.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder for gpu-check.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("hidden", "layers", "heads", "kv-heads", "intermediate", "vocab", "seq-len"):
        p.add_argument(f"--{name}", type=int, default=None, help="override the device's tiny model")
    p.add_argument("--tokens", default=None, help="micro-batch token budgets, comma-separated")
    return p.parse_args(argv)


def spec_from(args: argparse.Namespace, device: str) -> Spec:
    base = PRESETS[device]
    fields = {
        k: getattr(args, k) if getattr(args, k) is not None else getattr(base, k)
        for k in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab", "seq_len")
    }
    tokens = tuple(int(t) for t in args.tokens.split(",")) if args.tokens else base.tokens
    return Spec(**fields, tokens=tokens)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if _torch().cuda.is_available() else "cpu"
    summary = run(device, spec_from(args, device), max(2, args.steps), args.out, child=args.child)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
