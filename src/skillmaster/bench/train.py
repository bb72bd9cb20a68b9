"""``skillmaster bench train``: the DualAdv-GRPO update against its bare, unavoidable parts.

The batch is realistic: ALFWorld-style chat prompts (~300 tokens, spread) and
``<think>…</think><action>…</action>`` responses (~40 tokens, spread) from the real tokenizer, in
4 groups with action and review samples. Three measurements, each on the same micro-batches:

- **full update**: :meth:`TrainerRun.optimizer_step` as training runs it: planning, collation,
  reference forward (LoRA adapter disabled), policy forward with entropy, clipped loss + KL +
  entropy bonus, gradient accumulation, clipping, AdamW step, metric reduction.
- **baseline** (the bare parts, same tokens and micro-batches, pre-collated): reference forward,
  policy forward to the response log-probs, ``−Σ A·log π / N`` backward, AdamW step. Nothing else.
- **policy only** (memory baseline): the baseline without the reference forward.

Reported: training tokens/s of the full update over the baseline's (median of alternating
rounds, in one process), peak RSS of the full update over the policy-only run (each in a fresh
subprocess, the peak reset after loading so it covers the update alone), and the share of padding
tokens. Old log-probs: one optimizer step is on-policy, so they are the detached log-probs of the
same forward; no extra pass is made (see :mod:`skillmaster.train.trainer`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

TARGETS = {"tokens_per_s_ratio": 0.85, "padding_share": 0.15, "memory_ratio": 1.2}
SIZES = {  # samples, mean prompt tokens, mean response tokens, timing rounds
    "quick": (6, 96, 20, 2),
    "full": (32, 300, 40, 3),
}
ROOMS = [
    "cabinet",
    "countertop",
    "drawer",
    "fridge",
    "microwave",
    "sinkbasin",
    "stoveburner",
    "shelf",
    "garbagecan",
    "toaster",
    "coffeemachine",
    "diningtable",
    "sidetable",
    "dresser",
    "safe",
    "bed",
]
THOUGHTS = [
    "The apple is not here, so I should look elsewhere.",
    "I need to clean the mug before putting it away.",
    "The fridge is closed; I will open it first.",
    "I have the object, now I go to the target.",
    "Nothing happened last time, so I try a different receptacle.",
]


# --------------------------------------------------------------------------- the batch
def _prompt(tokenizer, rng: random.Random, target: int) -> str:
    """An ALFWorld-like chat prompt of about ``target`` tokens (history grows until it fits)."""
    things = ", ".join(f"a {r} {rng.randint(1, 4)}" for r in rng.sample(ROOMS, 10))
    head = (
        f"You are an expert household agent.\nYour task is to: put a clean {rng.choice(['mug', 'apple', 'egg'])} "
        f"in the {rng.choice(ROOMS)}.\nYou are in the middle of a room. Looking quickly around you, you see "
        f"{things}.\n## Current Progress\n"
    )
    lines: list[str] = []
    while True:
        place = f"{rng.choice(ROOMS)} {rng.randint(1, 4)}"
        lines.append(
            f"Action: go to {place}\nObservation: You arrive at {place}. On the {place}, you see "
            f"a {rng.choice(['cup', 'spoon', 'book', 'pen'])} {rng.randint(1, 3)}."
        )
        text = head + "\n".join(lines) + "\nAdmissible actions: look, inventory, go to fridge 1.\n"
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        if len(tokenizer(prompt, add_special_tokens=False).input_ids) >= target:
            return prompt


def bench_samples(tokenizer, n: int, prompt_tokens: int, response_tokens: int, seed: int = 0):
    """``n`` samples in 4 groups (1 in 4 a review), lengths spread ±30 % around the means."""
    from skillmaster.agent.tokens import encode_prompt
    from skillmaster.train.samples import Sample

    rng = random.Random(seed)
    samples = []
    for i in range(n):
        prompt = _prompt(tokenizer, rng, int(prompt_tokens * rng.uniform(0.7, 1.3)))
        want = int(response_tokens * rng.uniform(0.6, 1.4))
        thought = ""
        while True:
            thought = f"{thought} {rng.choice(THOUGHTS)}".strip()
            text = f"<think>{thought}</think><action>go to {rng.choice(ROOMS)} {rng.randint(1, 4)}</action>"
            ids = tokenizer(text, add_special_tokens=False).input_ids
            if len(ids) >= want:
                break
        prefix, suffix = encode_prompt(tokenizer, prompt, 0)
        samples.append(
            Sample(
                prefix + suffix,
                ids[:want],
                advantage=rng.gauss(0.0, 1.0),
                kind="review" if i % 4 == 3 else "action",
                group=i % 4,
            )
        )
    return samples


# --------------------------------------------------------------------------- measurements (child processes)
def _setup(quick: bool, model_dir: Path):
    import torch

    from skillmaster.config import Config, ModelConfig
    from skillmaster.modeling import load_tokenizer
    from skillmaster.train.run import build_run, make_accelerator
    from skillmaster.train.samples import collate, plan_steps
    from skillmaster.train.settings import TrainSettings

    n, p, r, _ = SIZES["quick" if quick else "full"]
    cfg = Config(model=ModelConfig(dtype="float32"))
    settings = replace(TrainSettings.for_grpo(cfg), mixed_precision="no")  # fp32, as the bare baseline
    samples = bench_samples(load_tokenizer(model_dir), n, p, r)
    torch.manual_seed(0)
    acc = make_accelerator(settings, cfg.model)
    run = build_run(samples, settings, acc, cfg.model, model_dir, None, total_steps=1_000)
    plan = plan_steps(run.lengths, None, 1, settings.micro_batch_tokens)[0]
    batches = [collate(samples, idx, run.pad_id).to(acc.device) for idx in plan]
    return run, plan, batches


def _bare_update(run, batches, with_reference: bool) -> None:
    """The unavoidable parts: (reference forward,) policy forward + backward, AdamW step."""
    import torch

    from skillmaster.train.policy import response_logprobs

    n_tokens = sum(int(mb.response_mask.sum()) for mb in batches)
    for mb in batches:
        if with_reference:
            with torch.no_grad(), run.unwrapped.disable_adapter():
                response_logprobs(run.unwrapped, mb)
        logp, _ = response_logprobs(run.model, mb)
        (-(logp * mb.advantages[:, None] * mb.response_mask).sum() / n_tokens).backward()
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)


def _full_update(run) -> dict[str, float]:
    from skillmaster.train.samples import plan_steps

    plan = plan_steps(run.lengths, None, 1, run.settings.micro_batch_tokens)
    return run.optimizer_step(plan[0])


def measure_timing(quick: bool, model_dir: Path) -> dict[str, Any]:
    """Alternating rounds of full update and baseline in one process; tokens/s of each round."""
    run, _, batches = _setup(quick, model_dir)
    tokens = sum(mb.tokens for mb in batches)
    rounds = SIZES["quick" if quick else "full"][3]
    warm = batches[-1:]  # the smallest micro-batch: allocator and kernels warm, cheaply
    _bare_update(run, warm, True)
    run.optimizer_step([warm[0].index.tolist()])
    full, bare = [], []
    for k in range(rounds):
        order = ("full", "bare") if k % 2 == 0 else ("bare", "full")
        for which in order:
            start = time.perf_counter()
            if which == "full":
                _full_update(run)
            else:
                _bare_update(run, batches, True)
            (full if which == "full" else bare).append(tokens / (time.perf_counter() - start))
    import torch

    return {
        "tokens": tokens,
        "threads": torch.get_num_threads(),
        "full_tokens_per_s": full,
        "baseline_tokens_per_s": bare,
    }


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_memory(quick: bool, model_dir: Path, mode: str) -> dict[str, Any]:
    """Peak RSS of one update (``full`` or ``policy``) in this fresh process, after loading."""
    import gc

    run, _, batches = _setup(quick, model_dir)
    gc.collect()
    before = _rss_mb()
    exact = _reset_peak()
    if mode == "full":
        _full_update(run)
    else:
        _bare_update(run, batches, with_reference=False)
    return {"rss_before_mb": before, "peak_mb": _peak_mb(), "peak_reset": exact}


# --------------------------------------------------------------------------- driver
CHILD_ENV = {
    # glibc's dynamic mmap threshold makes peak RSS depend on allocation history (±50 % between
    # identical runs); a fixed threshold returns every large tensor to the OS when freed, so RSS
    # follows the live tensors. A fixed hash seed keeps the allocation order the same.
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "PYTHONHASHSEED": "0",
}


def _child(mode: str, quick: bool, model_dir: Path, threads: int | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "skillmaster.bench.train", "--mode", mode, "--model-dir", str(model_dir)]
    if quick:
        cmd.append("--quick")
    env = os.environ | CHILD_ENV
    if threads:
        cmd += ["--threads", str(threads)]
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"bench train ({mode}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_train(
    quick: bool = False, model_dir: Path | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Run the three measurements (fresh subprocesses) and return the figures and ratios as a dict.

    ``threads`` sets torch's CPU threads in the measuring processes (None: torch's default); on a
    machine shared with other work, 1 thread gives the steadiest ratios.
    """
    import torch

    from skillmaster.modeling import ensure_model_dir, load_tokenizer
    from skillmaster.paths import Paths
    from skillmaster.runtime import project_root
    from skillmaster.train.samples import padding_share, plan_steps

    model_dir = ensure_model_dir(Path(model_dir) if model_dir else Paths(project_root()).base_model)
    n, p, r, rounds = SIZES["quick" if quick else "full"]
    from skillmaster.config import TrainConfig

    samples = bench_samples(load_tokenizer(model_dir), n, p, r)
    lengths = [s.length for s in samples]
    plan = plan_steps(lengths, None, 1, TrainConfig().micro_batch_tokens)[0]
    pad = padding_share(lengths, plan)

    timing = _child("timing", quick, model_dir, threads)
    mem_full = _child("memory-full", quick, model_dir, threads)
    mem_policy = _child("memory-policy", quick, model_dir, threads)
    full = statistics.median(timing["full_tokens_per_s"])
    base = statistics.median(timing["baseline_tokens_per_s"])
    speed_ratio = full / base
    mem_ratio = mem_full["peak_mb"] / mem_policy["peak_mb"]
    growth = (mem_full["peak_mb"] - mem_full["rss_before_mb"]) / max(
        mem_policy["peak_mb"] - mem_policy["rss_before_mb"], 1e-9
    )
    return {
        "benchmark": "train",
        "quick": quick,
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "torch_threads": timing["threads"],
        "batch": {
            "samples": n,
            "tokens": sum(lengths),
            "response_tokens": sum(len(s.response_ids) for s in samples),
            "micro_batches": len(plan),
            "rounds": rounds,
        },
        "baseline": "bare parts over the same micro-batches: reference forward (adapter disabled) + policy "
        "forward to response log-probs + backward of -sum(A*logp)/N + AdamW step",
        "tokens_per_s": {
            "full_update": round(full, 2),
            "baseline": round(base, 2),
            "ratio": round(speed_ratio, 4),
            "full_rounds": [round(x, 2) for x in timing["full_tokens_per_s"]],
            "baseline_rounds": [round(x, 2) for x in timing["baseline_tokens_per_s"]],
        },
        "memory": {
            "full_update_peak_mb": round(mem_full["peak_mb"], 1),
            "policy_only_peak_mb": round(mem_policy["peak_mb"], 1),
            "ratio": round(mem_ratio, 4),
            "rss_before_update_mb": round(mem_full["rss_before_mb"], 1),
            "growth_ratio": round(growth, 4),
            "peak_reset_after_load": bool(mem_full["peak_reset"] and mem_policy["peak_reset"]),
        },
        "padding_share": round(pad, 4),
        "old_logprobs": "on-policy single optimizer step: the detached log-probs of the same forward (no extra pass)",
        "targets": {
            "tokens_per_s_ratio": f">= {TARGETS['tokens_per_s_ratio']}",
            "padding_share": f"<= {TARGETS['padding_share']}",
            "memory_ratio": f"<= {TARGETS['memory_ratio']}",
        },
        "pass": {
            "tokens_per_s_ratio": speed_ratio >= TARGETS["tokens_per_s_ratio"],
            "padding_share": pad <= TARGETS["padding_share"],
            "memory_ratio": mem_ratio <= TARGETS["memory_ratio"],
        },
    }


def format_train_report(report: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`bench_train`'s result."""
    t, m, b = report["tokens_per_s"], report["memory"], report["batch"]
    ok = report["pass"]
    mark = {True: "ok", False: "FAIL"}
    return "\n".join(
        [
            f"bench train ({'quick' if report['quick'] else 'full'}; {report['device']}, {report['torch_threads']} threads): "
            f"{b['samples']} samples, {b['tokens']} tokens, {b['micro_batches']} micro-batches",
            f"  tokens/s   full update {t['full_update']:.1f} vs baseline {t['baseline']:.1f}: ratio {t['ratio']:.3f} "
            f"(target {report['targets']['tokens_per_s_ratio']}) {mark[ok['tokens_per_s_ratio']]}",
            f"  peak RSS   full update {m['full_update_peak_mb']:.0f} MB vs policy only {m['policy_only_peak_mb']:.0f} MB: "
            f"ratio {m['ratio']:.3f} (target {report['targets']['memory_ratio']}) {mark[ok['memory_ratio']]}",
            f"  padding    {report['padding_share']:.1%} of tokens (target {report['targets']['padding_share']}) "
            f"{mark[ok['padding_share']]}",
            f"  baseline:  {report['baseline']}",
            f"  old log-probs: {report['old_logprobs']}",
        ]
    )


def _main() -> None:
    parser = argparse.ArgumentParser(description="skillmaster bench train (child process)")
    parser.add_argument("--mode", choices=["timing", "memory-full", "memory-policy"], required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    from skillmaster.runtime import configure_environment

    configure_environment()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "timing":
        out = measure_timing(args.quick, args.model_dir)
    else:
        out = measure_memory(args.quick, args.model_dir, args.mode.removeprefix("memory-"))
    print(json.dumps(out))


if __name__ == "__main__":
    _main()
