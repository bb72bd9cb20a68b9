"""One iteration of the paper overlay's training shape on the tiny local model, run on every rank.

Full fine-tuning, the KL term against the frozen reference, mini-batches smaller than the samples
(several optimizer steps per iteration, so the pre-update pass fixes π_old and the reference
log-probs). Run by test_train_paper_shape.py under ``accelerate launch`` (2 CPU processes: DDP or
FSDP2 over gloo). Iteration N continues from iteration N-1's serving weights and training state.

After every optimizer step each rank records a SHA-256 of the full weights (FSDP: gathered from
the shards) and, after the first, the reference's response log-probs of every sample (its own
forward) and the size of its own share of the reference's weights. ``--kill-after`` ends every
rank abruptly (``os._exit``) after that step's resumable state is written. On the last step the
main process saves what the resume check compares: per-tensor sums of the weights and AdamW
moments and two full tensors. Each rank writes ``rank{N}.json`` under ``--record``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from train_tables import make_tables

from skillmaster.config import Config, ModelConfig
from skillmaster.io import write_json
from skillmaster.modeling import load_tokenizer
from skillmaster.train.grpo import train_iteration
from skillmaster.train.resume import iteration_state
from skillmaster.train.samples import collate

PAPER_SHAPE = {
    "lora": {"enabled": False},  # full fine-tuning, frozen reference copy (METHOD.md §7)
    "lr": 1e-5,
    "kl_coef": 0.01,
    "kl_estimator": "k3",
    "entropy_coef": 0.001,
    "epochs": 1,
    "mini_batch_size": 4,  # 8 samples (4 actions, 4 reviews): 2 optimizer steps per iteration
    "micro_batch_tokens": 256,
    "max_samples": None,
    "mixed_precision": "no",
    "checkpoint_every": 1,
    "serving_dtype": "bfloat16",
    "keep_states": 1,
}
FULL_TENSORS = ("model.layers.0.mlp.down_proj.weight", "model.norm.weight")


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank (FSDP2 holds DTensor shards)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def canonical(name: str) -> str:
    return name.removeprefix("module.").removeprefix("_orig_mod.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--iteration", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--kill-after", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tables = make_tables(load_tokenizer(args.model_dir))
    cfg = Config(model=ModelConfig(dtype="float32", device="cpu").model_dump(), train=PAPER_SHAPE)
    record: dict = {"steps": []}
    policy = args.work / "policy"
    states = args.work / "train-state"
    previous = policy / f"iter_{args.iteration - 1:03d}" if args.iteration > 1 else None

    def on_step(step: int, run) -> None:
        acc = run.accelerator
        digest = hashlib.sha256()
        for _, p in sorted(run.model.named_parameters(), key=lambda kv: canonical(kv[0])):
            digest.update(full(p.detach()).cpu().contiguous().numpy().tobytes())
        record["steps"].append({"step": step, "sha256": digest.hexdigest()})
        record.update(rank=acc.process_index, world=acc.num_processes, kind=str(acc.distributed_type))
        if step == 1:
            mb = collate(run.samples, list(range(len(run.samples))), run.pad_id).to(acc.device)
            ref = run.reference_logprobs(mb)
            local = [p.to_local() if hasattr(p, "to_local") else p for p in run.reference.parameters()]
            record["reference"] = {
                "logprob_sum": float((ref * mb.response_mask).sum()),
                "own_weights_abs_sum": float(sum(t.detach().abs().double().sum() for t in local)),
                "own_weights_numel": int(sum(t.numel() for t in local)),
                "prepass_ref_sum": float(sum(v.double().sum() for v in run.precomputed["ref"].values())),
            }
        if step == args.kill_after:
            acc.wait_for_everyone()
            os._exit(17)  # killed: no clean-up, no final checkpoint
        record["last"] = _final_state(run)  # kept from the last step

    metrics = train_iteration(
        cfg,
        tables.steps,
        tables.trajectories,
        tables.reviews,
        tables.edits,
        previous,
        args.model_dir,
        policy / f"iter_{args.iteration:03d}",
        args.work / "resume" / f"train_iter_{args.iteration:03d}",
        iteration=args.iteration,
        on_step=on_step,
        carry_from=iteration_state(states, args.iteration - 1),
        save_state_to=iteration_state(states, args.iteration),
    )
    record["metrics"] = metrics
    last = record.pop("last", None)
    if last is not None and record["rank"] == 0:
        torch.save(last, args.record / f"final_iter_{args.iteration:03d}.pt")
    write_json(args.record / f"rank{record['rank']}_iter_{args.iteration:03d}.json", record)


def _final_state(run) -> dict:
    """Weights and AdamW moments after the last step: per-tensor float64 sums and two whole tensors
    (collectives under FSDP: every rank computes them)."""
    out: dict = {"sums": {}, "tensors": {}}
    opt = run.optimizer.optimizer if hasattr(run.optimizer, "optimizer") else run.optimizer
    for name, p in sorted(run.model.named_parameters(), key=lambda kv: canonical(kv[0])):
        key = canonical(name)
        state = opt.state.get(p, {})
        values = {"weight": full(p.detach())}
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                values[moment] = full(state[moment])
        out["sums"][key] = {k: float(v.double().sum()) for k, v in values.items()}
        if key in FULL_TENSORS:
            out["tensors"][key] = {k: v.detach().cpu().clone() for k, v in values.items()}
    return out


if __name__ == "__main__":
    main()
