"""The tiny settings the pipeline tests run at, and a work folder holding what stages read.

The settings are the project's params.yaml with :data:`TINY` on top: real model and games,
minimal sizes (2 tasks x 2 rollouts, 2 steps, 16 new tokens).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skillmaster.config import Config, deep_merge, read_yaml
from skillmaster.paths import Paths

REPO = Path(__file__).resolve().parents[2]

TINY: dict[str, Any] = {
    "seed": 0,
    "model": {"dtype": "float32", "device": "cpu", "num_threads": 1},
    "env": {"max_steps": 2},
    "rollout": {
        "engine": "hf",  # the pipeline mechanics; the vLLM engine has its own tests and the flow test
        "num_tasks": 2,
        "group_size": 2,
        "max_new_tokens": 16,
        "num_workers": 1,
        "max_obs_chars": 200,
    },
    "review": {"max_new_tokens": 16, "obs_chars": 200},
    "counterfactual": {"probes_per_edit": 1, "max_edits": 1},
    "train": {"max_samples": 2},
    "sft": {"enabled": False, "num_games": 1},
    "eval": {"limit": 2},
    "loop": {"iterations": 1},
    "tracking": {"enabled": False},
    "orchestration": {"retries": 0, "retry_delay_s": 0.0},
}


def tiny_params(*overrides: dict[str, Any]) -> dict[str, Any]:
    """The project's params.yaml with :data:`TINY` and ``overrides`` merged on top (every key present,
    as DVC's params dependencies need)."""
    data = deep_merge(read_yaml(REPO / "params.yaml"), TINY)
    for extra in overrides:
        data = deep_merge(data, extra)
    return data


def tiny_config(*overrides: dict[str, Any]) -> Config:
    return Config.model_validate(tiny_params(*overrides))


def seed_workdir(root: Path, base_model: Path, cfg: Config) -> Paths:
    """``root`` with models/base (a link to the prepared model) and the starting bank (bank-init)."""
    from skillmaster.stages import run_stage

    paths = Paths(root)
    paths.base_model.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(base_model.resolve(), paths.base_model, target_is_directory=True)
    seed = cfg.skills.seed_bank
    if seed and not Path(seed).is_absolute():
        cfg = cfg.model_copy(update={"skills": cfg.skills.model_copy(update={"seed_bank": str(REPO / seed)})})
    run_stage("bank-init", cfg, 0, root=root)
    return paths
