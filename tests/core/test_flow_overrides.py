"""Flow overrides are written into params.yaml the way `dvc exp run -S` does."""

from __future__ import annotations

import shutil

import pytest

from skillmaster.config import load_config
from skillmaster.errors import ConfigError
from skillmaster.orchestration.flow import apply_overrides


def test_overrides_keep_comments_and_change_only_the_named_keys(repo_root, tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    before = params.read_text().splitlines()
    apply_overrides(params, ["rollout.num_tasks=8", "train.lora.r=8"])
    after = params.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        ("  num_tasks: 4               # B", "  num_tasks: 8               # B"),
        ("    r: 16", "    r: 8"),
    ]
    cfg = load_config(params)
    assert cfg.rollout.num_tasks == 8 and cfg.train.lora.r == 8


def test_a_bad_override_leaves_the_file_untouched(repo_root, tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    text = params.read_text()
    with pytest.raises(ConfigError):
        apply_overrides(params, ["rollout.num_tasks=-3"])
    assert params.read_text() == text
