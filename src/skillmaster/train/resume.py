"""Resumable training: step checkpoints under the stage's state folder, and where a run starts.

Every ``checkpoint_every`` optimizer steps a resumable checkpoint goes to
``state_dir/step_NNNNNN`` (the layout of :mod:`skillmaster.train.checkpoint`); only the newest is
kept. A restarted run resumes from the newest complete one, but only when it belongs to the very
same run: its ``fingerprint`` (a hash of the samples and the settings) must match, otherwise the
state folder is cleared and the run starts over. Without a resumable checkpoint a run starts from
``init_policy`` (the previous iteration's checkpoint), whose optimizer state and global step carry
over when it was trained with the same loss.

The old (and reference) log-probs of the pre-update pass are saved beside the step checkpoints
(``prepass.pt``), so a resumed run uses the same π_old.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skillmaster.errors import DataError
from skillmaster.train import checkpoint as ckpt
from skillmaster.train.run import TrainerRun, is_sharded, make_scheduler
from skillmaster.train.samples import Sample
from skillmaster.train.settings import TrainSettings

log = logging.getLogger(__name__)

PREPASS_FILE = "prepass.pt"


def fingerprint(samples: Sequence[Sample], settings: TrainSettings) -> str:
    """Identifies (samples, settings): a resumable checkpoint is reused only for the same run."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
    for s in samples:
        digest.update(
            json.dumps([s.prompt_ids, s.response_ids, round(s.advantage, 9), s.temperature]).encode()
        )
    return digest.hexdigest()[:16]


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
    """The resumable checkpoint this run continues, or None."""
    init_policy: Path | None = None
    carry: bool = False
    """``init_policy`` was trained with the same loss: its optimizer state and global step carry over."""

    @property
    def weights(self) -> Path | None:
        """The checkpoint the policy's weights load from (None: the base)."""
        return self.resume or self.init_policy

    def payload(self, step: int) -> dict:
        return {
            "loss": self.loss,
            "step": step,
            "total_steps": self.total_steps,
            "global_step": self.global_step,
            "fingerprint": self.fingerprint,
            "history": self.history,
        }


def find_start(
    acc,
    state_dir: Path,
    init_policy: Path | None,
    settings: TrainSettings,
    fingerprint: str,
    total_steps: int,
) -> RunState:
    """A resumable checkpoint of this very run in ``state_dir``, else ``init_policy``.

    A checkpoint of another run (other samples or settings) is removed with the whole ``state_dir``.
    """
    resume = ckpt.latest_complete_checkpoint(state_dir)
    state = ckpt.read_trainer_state(resume) if resume else {}
    if resume and state.get("fingerprint") != fingerprint:
        log.warning("%s belongs to another run (other samples or settings); starting over", state_dir)
        resume, state = None, {}
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(state_dir, ignore_errors=True)
    init_state = ckpt.read_trainer_state(init_policy) if init_policy else {}
    carry = init_state.get("loss") == settings.loss
    return RunState(
        loss=settings.loss,
        fingerprint=fingerprint,
        total_steps=total_steps,
        start_step=int(state.get("step", 0)),
        global_step=int(state.get("global_step", init_state.get("global_step", 0) if carry else 0)),
        history=list(state.get("history", [])),
        resume=resume,
        init_policy=init_policy,
        carry=carry,
    )


def restore_optimizer(run: TrainerRun, start: RunState) -> None:
    """Load the optimizer state (resumed, or carried over from ``init_policy``) and the schedule.

    A resumed run continues its schedule where it stopped; a carried-over optimizer state gets this
    run's learning rate and a fresh schedule. Sharded optimizers (FSDP, DeepSpeed) start fresh.
    """
    source = start.weights
    opt_state = (
        ckpt.load_optimizer_state(source)
        if not is_sharded(run.accelerator) and (start.resume or start.carry)
        else None
    )
    if opt_state is not None:
        try:
            run.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as exc:
            log.warning("optimizer state of %s does not fit this model (%s); starting it fresh", source, exc)
    if start.resume and (sched := ckpt.load_scheduler_state(start.resume)) is not None:
        run.scheduler.load_state_dict(sched)
        for group, lr in zip(run.optimizer.param_groups, run.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr  # load_state_dict restores the position, not the groups' rate
    elif opt_state is not None:  # carried over from the previous iteration: this run's rate and schedule
        for group in run.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = run.settings.lr
        run.scheduler = make_scheduler(run.settings, run.optimizer, start.total_steps)


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


def save(run: TrainerRun, state: RunState, path: Path, step: int) -> None:
    """Write a complete checkpoint of the run after ``step`` steps (main process; every rank waits)."""
    acc = run.accelerator
    state_dict = acc.get_state_dict(run.model) if is_sharded(acc) else None
    if acc.is_main_process:
        optimizer = None if is_sharded(acc) else run.optimizer
        ckpt.save_checkpoint(
            path, acc.unwrap_model(run.model), state.payload(step), optimizer, run.scheduler, state_dict
        )
    acc.wait_for_everyone()


def save_step(run: TrainerRun, state: RunState, state_dir: Path, step: int) -> None:
    """The resumable checkpoint after ``step``; older ones are pruned."""
    path = ckpt.step_dir(state_dir, step)
    save(run, state, path, step)
    if run.accelerator.is_main_process:
        ckpt.prune_checkpoints(state_dir, keep=path)
