"""Where every artifact lives. dvc.yaml, the stages and the flows all ask this module.

Iteration 0 is the starting point (the seed bank, the SFT or base policy); iteration N ≥ 1 is
the N-th SkillMaster iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COMPLETE_MARKER = "COMPLETE"
"""A checkpoint folder is complete only once this file exists (written last)."""


def iter_name(iteration: int) -> str:
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0 (got {iteration})")
    return f"iter_{iteration:03d}"


def project_file(value: str | Path | None, root: Path) -> Path | None:
    """A path setting (``skills.seed_bank``) as a file: relative paths lie under the project ``root``,
    absolute ones stay; None or empty: None."""
    return (root / value) if value else None


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    # ---------------------------------------------------------------- models
    @property
    def base_model(self) -> Path:
        return self.root / "models" / "base"

    @property
    def sft_model(self) -> Path:
        return self.root / "models" / "sft"

    def policy(self, iteration: int) -> Path:
        """Checkpoint after iteration N (LoRA adapter, or full weights when LoRA is off)."""
        return self.root / "models" / "policy" / iter_name(iteration)

    # ---------------------------------------------------------------- data
    @property
    def sft_data(self) -> Path:
        return self.root / "data" / "sft" / "samples.parquet"

    def iter_dir(self, iteration: int) -> Path:
        return self.root / "data" / iter_name(iteration)

    def collect_dir(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "collect"

    def steps(self, iteration: int) -> Path:
        return self.collect_dir(iteration) / "steps.parquet"

    def trajectories(self, iteration: int) -> Path:
        return self.collect_dir(iteration) / "trajectories.parquet"

    def reviews(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "review" / "reviews.parquet"

    def counterfactual_dir(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "counterfactual"

    def edits(self, iteration: int) -> Path:
        return self.counterfactual_dir(iteration) / "edits.parquet"

    def probe_trajectories(self, iteration: int) -> Path:
        """The TRAJECTORIES rows of the probe episodes (one per probe run)."""
        return self.counterfactual_dir(iteration) / "probe_trajectories.parquet"

    def probe_steps(self, iteration: int) -> Path:
        """The STEPS rows of the probe episodes (what the progress score reads)."""
        return self.counterfactual_dir(iteration) / "probe_steps.parquet"

    def placebos(self, iteration: int) -> Path:
        return self.counterfactual_dir(iteration) / "placebos.parquet"

    def eval_dir(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "eval"

    def bank(self, iteration: int) -> Path:
        """Skill bank in force after iteration N (iteration 0: the starting bank)."""
        return self.root / "data" / "banks" / f"{iter_name(iteration)}.json"

    # ---------------------------------------------------------------- metrics and plots
    def metrics(self, iteration: int, stage: str) -> Path:
        return self.root / "metrics" / iter_name(iteration) / f"{stage}.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def summary(self) -> Path:
        return self.root / "metrics" / "summary.json"

    # ---------------------------------------------------------------- scratch state (not DVC outputs)
    @property
    def state(self) -> Path:
        """Resumable scratch state of running stages (partial checkpoints, finished shards)."""
        return self.root / ".skillmaster"

    def stage_state(self, stage: str, iteration: int | None = None) -> Path:
        name = stage if iteration is None else f"{stage}_{iter_name(iteration)}"
        return self.state / "resume" / name
