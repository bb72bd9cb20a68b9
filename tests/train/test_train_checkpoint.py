"""Checkpoint folders: complete only with the marker, written atomically, newest complete one wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from skillmaster.errors import DataError
from skillmaster.paths import COMPLETE_MARKER
from skillmaster.train.checkpoint import (
    latest_complete_checkpoint,
    load_torch,
    prune_checkpoints,
    read_trainer_state,
    save_checkpoint,
    save_torch,
    step_dir,
)


class TinyPolicy:
    """Stands in for a peft/transformers model: only ``save_pretrained`` is used here."""

    def __init__(self, fail: bool = False):
        self.fail = fail

    def save_pretrained(self, folder: Path, **_):
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"weights")
        if self.fail:
            raise OSError("disk full")


def make(path: Path, complete: bool) -> Path:
    path.mkdir(parents=True)
    if complete:
        (path / COMPLETE_MARKER).write_text("ok\n")
    return path


def test_latest_complete_checkpoint_skips_incomplete_and_foreign_folders(tmp_path):
    assert latest_complete_checkpoint(tmp_path / "missing") is None
    make(step_dir(tmp_path, 1), True)
    make(step_dir(tmp_path, 2), True)
    make(step_dir(tmp_path, 3), False)  # killed while writing
    make(tmp_path / "step_x", True)
    make(tmp_path / ".step_000004.abc.tmp", True)
    assert latest_complete_checkpoint(tmp_path) == step_dir(tmp_path, 2)
    prune_checkpoints(tmp_path, keep=step_dir(tmp_path, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000002", "step_x"]


def test_save_checkpoint_writes_the_marker_last_and_never_half_a_folder(tmp_path):
    path = tmp_path / "iter_001"
    save_checkpoint(path, TinyPolicy(), {"step": 1, "loss": "grpo"})
    assert (path / COMPLETE_MARKER).is_file() and (path / "adapter_model.safetensors").is_file()
    assert read_trainer_state(path) == {"step": 1, "loss": "grpo"}
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, TinyPolicy(fail=True), {"step": 2})
    assert read_trainer_state(path)["step"] == 1  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["iter_001"]  # no temporary left behind


class _Payload:
    """A pickle that runs code when loaded (what a tampered .pt file from a remote could hold)."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).touch()",))


def test_torch_files_load_only_tensors_and_plain_state(tmp_path, monkeypatch):
    """Issue #21: torch.load(weights_only=False) would run code from a checkpoint file."""
    import torch

    monkeypatch.setenv("PWNED", str(tmp_path / "pwned"))
    torch.save({"state": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="holds objects other than tensors and plain values"):
        load_torch(tmp_path / "evil.pt", "optimizer state")
    assert not (tmp_path / "pwned").exists()
    # what the trainer saves loads: AdamW's state and transformers' schedule
    from transformers import get_scheduler

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = get_scheduler("linear", opt, num_warmup_steps=1, num_training_steps=4)
    sched.step()
    save_torch(tmp_path / "opt.pt", opt.state_dict())
    save_torch(tmp_path / "sched.pt", sched.state_dict())
    assert torch.equal(
        load_torch(tmp_path / "opt.pt", "o")["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert load_torch(tmp_path / "sched.pt", "s")["last_epoch"] == 1


def test_torch_files_round_trip_and_corrupt_ones_are_data_errors(tmp_path):
    save_torch(tmp_path / "x.pt", {"a": [1, 2]})
    assert load_torch(tmp_path / "x.pt", "thing") == {"a": [1, 2]}
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="cannot be read"):
        load_torch(tmp_path / "bad.pt", "thing")
    assert read_trainer_state(tmp_path) == {}
