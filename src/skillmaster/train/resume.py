"""Resumable training: training states and where a run starts.

Two kinds of output, kept apart (docs/ARCHITECTURE.md, "Models"):

- the **serving weights** of a finished run (``models/policy/iter_NNN``, ``models/sft``): what DVC
  versions and the generation engines load; full weights in ``train.serving_dtype`` as sharded
  safetensors, or the LoRA adapter (:func:`save_serving`);
- the **training state** (:func:`save_state`): Accelerate's ``save_state`` of the policy (fp32
  master weights; sharded under FSDP/DeepSpeed), the optimizer, the schedule and every rank's RNG,
  plus ``trainer_state.json`` and ``COMPLETE``. Written under ``.skillmaster/``, outside DVC's
  cache: every ``checkpoint_every`` optimizer steps inside a stage
  (``state_dir/step_NNNNNN``, only the newest kept), and at the end of each RL iteration
  (``.skillmaster/train-state/iter_NNN``, the newest ``train.keep_states`` kept).

A restarted run resumes from the newest complete step state, but only when it belongs to the very
same run: its ``fingerprint`` (a hash of the samples and the settings) and its layout (launcher
kind and number of processes) must match, otherwise the state folder is cleared and the run
starts over. Without one, a run starts from ``init_policy`` (the previous iteration's serving
weights); when the previous iteration's training state is there (same loss, same layout, the same
run as ``init_policy``), its fp32 weights and optimizer moments carry over, with this run's
learning rate and a fresh schedule.

The old (and reference) log-probs of the pre-update pass are saved beside the step states
(``prepass.pt``), so a resumed run uses the same π_old.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skillmaster.errors import DataError
from skillmaster.io import write_json
from skillmaster.paths import COMPLETE_MARKER
from skillmaster.train import checkpoint as ckpt
from skillmaster.train.run import TrainerRun
from skillmaster.train.samples import Sample
from skillmaster.train.settings import TrainSettings

log = logging.getLogger(__name__)

PREPASS_FILE = "prepass.pt"
ITER_STATE = re.compile(r"^iter_(\d{3,})$")


def fingerprint(samples: Sequence[Sample], settings: TrainSettings) -> str:
    """Identifies (samples, settings): a resumable checkpoint is reused only for the same run."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
    for s in samples:
        digest.update(
            json.dumps([s.prompt_ids, s.response_ids, round(s.advantage, 9), s.temperature]).encode()
        )
    return digest.hexdigest()[:16]


def layout(acc) -> dict:
    """How the training state is laid out on disk: the launcher kind and the number of processes
    (a sharded state loads only into the same sharding)."""
    return {"distributed_type": str(acc.distributed_type).split(".")[-1], "processes": acc.num_processes}


@dataclass
class RunState:
    """Where a run stands; what its checkpoints record in ``trainer_state.json``."""

    loss: str
    fingerprint: str
    total_steps: int
    start_step: int = 0
    """Optimizer steps already done (resumed runs)."""
    global_step: int = 0
    """Optimizer steps across iterations (the tracker's step axis)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per-step metrics so far."""
    resume: Path | None = None
    """The step state this run continues, or None."""
    init_policy: Path | None = None
    carry: Path | None = None
    """The previous iteration's training state whose weights and optimizer moments carry over."""
    layout: dict = field(default_factory=dict)

    @property
    def weights(self) -> Path | None:
        """The serving weights the policy is built from (None: the base); a loaded training state
        then overwrites them with its fp32 weights."""
        return self.init_policy

    def payload(self, step: int) -> dict:
        return {
            "loss": self.loss,
            "step": step,
            "total_steps": self.total_steps,
            "global_step": self.global_step,
            "fingerprint": self.fingerprint,
            "layout": self.layout,
            "history": self.history,
        }


def find_start(
    acc,
    state_dir: Path,
    init_policy: Path | None,
    settings: TrainSettings,
    fingerprint: str,
    total_steps: int,
    carry_from: Path | None = None,
) -> RunState:
    """A resumable step state of this very run in ``state_dir``, else ``init_policy`` (with the
    training state ``carry_from`` when it belongs to it).

    A step state of another run (other samples, settings or layout) is removed with the whole
    ``state_dir``.
    """
    here = layout(acc)
    resume = ckpt.latest_complete_checkpoint(state_dir)
    state = ckpt.read_trainer_state(resume) if resume else {}
    if resume and (state.get("fingerprint") != fingerprint or state.get("layout") != here):
        log.warning("%s belongs to another run (samples, settings or launcher); starting over", state_dir)
        resume, state = None, {}
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(state_dir, ignore_errors=True)
        acc.wait_for_everyone()
    init_state = ckpt.read_trainer_state(init_policy) if init_policy else {}
    same_loss = init_state.get("loss") == settings.loss
    carry = None
    if carry_from is not None and same_loss and ckpt.is_complete(carry_from):
        saved = ckpt.read_trainer_state(carry_from)
        if saved.get("fingerprint") == init_state.get("fingerprint") and saved.get("layout") == here:
            carry = carry_from
        else:
            log.warning(
                "%s does not belong to %s or was written under another launcher: "
                "the optimizer starts fresh from the serving weights",
                carry_from,
                init_policy,
            )
    return RunState(
        loss=settings.loss,
        fingerprint=fingerprint,
        total_steps=total_steps,
        start_step=int(state.get("step", 0)),
        global_step=int(state.get("global_step", init_state.get("global_step", 0) if same_loss else 0)),
        history=list(state.get("history", [])),
        resume=resume,
        init_policy=init_policy,
        carry=carry,
        layout=here,
    )


def restore(run: TrainerRun, start: RunState) -> None:
    """Load a training state: the resumed step state (weights, optimizer, schedule, RNG: the run
    goes on exactly), or the carried one of the previous iteration (its weights and optimizer
    moments, with this run's learning rate and a fresh schedule)."""
    if start.resume is not None:
        load_state(run, start.resume)
    elif start.carry is not None:
        fresh = copy.deepcopy(run.scheduler.state_dict())
        load_state(run, start.carry)
        run.scheduler.load_state_dict(fresh)
        for group, lr in zip(run.optimizer.param_groups, fresh["_last_lr"], strict=True):
            group["initial_lr"] = run.settings.lr
            group["lr"] = lr


def load_or_compute_prepass(run: TrainerRun, start: RunState, state_dir: Path) -> dict:
    """Old/reference log-probs before the first step, persisted: a resumed run must reuse the same π_old."""
    file = Path(state_dir) / PREPASS_FILE
    if file.is_file():
        saved = ckpt.load_torch(file, "pre-update log-probs")
        if saved.get("fingerprint") == start.fingerprint:
            return saved["logprobs"]
    if start.resume is not None:
        raise DataError(
            f"{file}: pre-update log-probs are missing beside a resumable checkpoint; "
            f"delete {file.parent} to start the iteration over"
        )
    run.precompute_logprobs()
    if run.accelerator.is_main_process:
        ckpt.save_torch(file, {"fingerprint": start.fingerprint, "logprobs": run.precomputed})
    run.accelerator.wait_for_everyone()
    return run.precomputed


# --------------------------------------------------------------------------- writing
def save_state(run: TrainerRun, path: Path, payload: dict) -> Path:
    """The full training state at ``path`` (every rank writes its part; complete once ``COMPLETE``
    exists): built in ``.<name>.tmp`` beside it and renamed into place, so a killed run leaves the
    previous state or the new one."""
    acc, path = run.accelerator, Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        write_json(tmp / ckpt.STATE_FILE, payload)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    acc.wait_for_everyone()
    return path


def load_state(run: TrainerRun, path: Path) -> None:
    """Load a state written by :func:`save_state` into the prepared run (every rank)."""
    run.accelerator.load_state(str(path))


def save_serving(run: TrainerRun, state: RunState, path: Path, dtype: str, step: int) -> None:
    """The serving weights after ``step`` steps (gathered from every rank; written by the main
    process): the LoRA adapter, or the full weights in ``dtype`` as sharded safetensors."""
    import torch

    acc = run.accelerator
    state_dict = acc.get_state_dict(run.model)  # a collective under FSDP/DeepSpeed
    if acc.is_main_process:
        model = acc.unwrap_model(run.model)
        full = not hasattr(model, "peft_config")
        if full:
            cast = getattr(torch, dtype)
            # tied weights (an LM head sharing the embeddings) are one tensor: written once
            unique = {name for name, _ in model.named_parameters()}
            aliases = {name for name, _ in model.named_parameters(remove_duplicate=False)} - unique
            state_dict = {
                k: v.to(cast) if v.is_floating_point() else v
                for k, v in state_dict.items()
                if k not in aliases
            }
        payload = state.payload(step)
        ckpt.save_checkpoint(path, model, payload, state_dict=state_dict, dtype=dtype if full else None)
    acc.wait_for_everyone()


def save_step(run: TrainerRun, state: RunState, state_dir: Path, step: int) -> None:
    """The resumable step state after ``step``; older ones are pruned."""
    path = save_state(run, ckpt.step_dir(state_dir, step), state.payload(step))
    if run.accelerator.is_main_process:
        ckpt.prune_checkpoints(state_dir, keep=path)
    run.accelerator.wait_for_everyone()


def iteration_state(root: Path, iteration: int) -> Path:
    """The end-of-iteration training state of ``iteration`` under ``root``."""
    return Path(root) / f"iter_{iteration:03d}"


def prune_states(root: Path, keep: int, every: int | None = None) -> list[Path]:
    """Remove end-of-iteration states under ``root`` but the newest ``keep`` complete ones and those
    of every ``every``-th iteration; leftovers of killed writes go too. Returns what was removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if (m := ITER_STATE.match(p.name)) and p.is_dir()
    )
    complete = [(i, p) for i, p in found if ckpt.is_complete(p)]
    newest = {p for _, p in complete[len(complete) - keep :]} if keep > 0 else set()
    kept = newest | {p for i, p in complete if every and i % every == 0}
    removed = [p for _, p in found if p not in kept]
    removed += [p for p in root.iterdir() if p.name.startswith(".iter_") and p.name.endswith(".tmp")]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed
