"""Checkpoint folders: written atomically, complete only once the marker exists (docs/ARCHITECTURE.md, "Models").

The serving weights a stage hands to DVC (``models/policy/iter_NNN``, ``models/sft``)::

    adapter_config.json + adapter_model.safetensors   (LoRA, peft ``save_pretrained``)
    or config.json + model*.safetensors               (full fine-tuning: train.serving_dtype,
                                                       sharded past 5 GB with an index)
    trainer_state.json                                (step, global step, per-step metrics, ...)
    COMPLETE                                          (written last)

The training states (:mod:`skillmaster.train.resume`: Accelerate's ``save_state`` plus
``trainer_state.json`` and ``COMPLETE``) live under ``.skillmaster/``, outside DVC: the resumable
step states of a running stage (``.skillmaster/resume/train_iter_NNN/step_000002``) and the
end-of-iteration states the next iteration continues from (``.skillmaster/train-state/iter_NNN``).

The folder is built in a temporary sibling and renamed into place (:func:`skillmaster.io.atomic_dir`),
so a killed run leaves either the previous checkpoint or the new one, never half of one.
:func:`skillmaster.modeling.load_model` loads the policy of any serving folder (``adapter=path``).
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from skillmaster.errors import DataError
from skillmaster.io import atomic_dir, atomic_write_bytes, read_json, write_json
from skillmaster.paths import COMPLETE_MARKER

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
MAX_SHARD_SIZE = "5GB"
STEP_DIR = re.compile(r"^step_(\d{6,})$")


def step_dir(state_dir: Path, step: int) -> Path:
    """Resumable checkpoint folder after optimizer step ``step``."""
    return Path(state_dir) / f"step_{step:06d}"


def is_complete(path: Path) -> bool:
    return (Path(path) / COMPLETE_MARKER).is_file()


def latest_complete_checkpoint(state_dir: Path) -> Path | None:
    """The complete ``step_NNNNNN`` folder with the highest step in ``state_dir`` (None if there is none)."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in state_dir.iterdir()
        if (m := STEP_DIR.match(p.name)) and p.is_dir() and is_complete(p)
    ]
    return max(found)[1] if found else None


def save_checkpoint(
    path: Path,
    model,
    state: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None = None,
    tokenizer=None,
    dtype: str | None = None,
) -> Path:
    """Write a complete checkpoint folder atomically (marker last). Call on the main process only.

    ``model`` is the unwrapped policy (a peft model saves its adapter only); ``state_dict``, when
    given, is the gathered full state dict (cast to the serving dtype, tied copies left out).
    ``tokenizer``, when given, is saved too (full weights then form a usable model folder). The
    optimizer and schedule are no part of it: they are in the training state
    (:func:`skillmaster.train.resume.save_state`). ``dtype``: the dtype ``state_dict`` was cast
    to, recorded in config.json (transformers records the live model's, the fp32 of training).
    """
    with atomic_dir(path) as tmp:
        kwargs: dict[str, Any] = {"state_dict": state_dict} if state_dict is not None else {}
        if not hasattr(model, "peft_config"):  # full weights: shards of at most MAX_SHARD_SIZE
            kwargs["max_shard_size"] = MAX_SHARD_SIZE
        model.save_pretrained(tmp, **kwargs)
        if dtype is not None and (tmp / "config.json").is_file():
            config = read_json(tmp / "config.json", "model config")
            config.update({k: dtype for k in ("dtype", "torch_dtype") if k in config} or {"dtype": dtype})
            write_json(tmp / "config.json", config)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_json(tmp / STATE_FILE, state)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
    return path


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` through an atomic write (a crash never leaves a truncated file)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_torch(path: Path, what: str) -> Any:
    """A ``.pt`` file of this project (optimizer and scheduler state, log-probs): tensors and plain
    values only (``weights_only``), so a file from a DVC remote or an MLflow store cannot run code."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # not a pickle of code: a corrupt file
            raise DataError(
                f"{path}: {what} cannot be read (UnpicklingError); delete it to start over"
            ) from None
        raise DataError(
            f"{path}: {what} holds objects other than tensors and plain values, so it is not loaded; "
            "delete it to start over"
        ) from None
    except Exception as exc:  # torch raises several types for corrupt files
        raise DataError(
            f"{path}: {what} cannot be read ({type(exc).__name__}); delete it to start over"
        ) from None


def read_trainer_state(path: Path) -> dict[str, Any]:
    """``trainer_state.json`` of a checkpoint folder ({} when the folder has none, e.g. models/base)."""
    file = Path(path) / STATE_FILE
    return read_json(file, "trainer state") if file.is_file() else {}


def prune_checkpoints(state_dir: Path, keep: Path) -> None:
    """Remove every ``step_*`` folder (and leftover temporaries) in ``state_dir`` except ``keep``."""
    for p in Path(state_dir).iterdir():
        stale_tmp = p.name.startswith(".step_")
        if p != keep and (STEP_DIR.match(p.name) or stale_tmp) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
