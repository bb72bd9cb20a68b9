"""ALFWorld's games as SkillMaster tasks (:class:`AlfworldSuite`), with their walkthroughs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from skillmaster.envs.alfworld.env import AlfworldEnv
from skillmaster.envs.alfworld.games import (
    CATEGORIES,
    FAMILY_CATEGORY,
    GAME_FILE,
    GAMES_DIR,
    discover,
    skipped_games,
)
from skillmaster.envs.alfworld.profile import PROFILE
from skillmaster.envs.base import TaskSpec
from skillmaster.errors import ConfigError, DataError


@dataclass(frozen=True)
class AlfworldSuite:
    """ALFWorld's games as SkillMaster tasks; plain data, so worker processes can rebuild it."""

    name: ClassVar[str] = "alfworld"
    categories: ClassVar[tuple[str, ...]] = CATEGORIES

    data_dir: str
    """Absolute folder holding ``json_2.1.1/<split>``."""
    max_steps: int = PROFILE.default_max_steps
    """Episode step limit (the stage's :func:`~skillmaster.envs.limits.step_limit`)."""
    families: tuple[str, ...] | None = None
    train_split: str = "train"
    success_reward: float = 10.0
    engine_caches: bool = True
    """Memoize the engine's repeated parsing and PDDL translation (:mod:`.engine`)."""

    def __post_init__(self) -> None:
        unknown = [f for f in self.families or () if f not in FAMILY_CATEGORY]
        if unknown:
            raise ConfigError(
                f"env.families: {unknown} are not ALFWorld task families; choose from: {', '.join(FAMILY_CATEGORY)}"
            )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def tasks(self, split: str) -> list[TaskSpec]:
        return discover(self.data_path, split, self.families)

    def game_file(self, task_id: str, split: str) -> Path:
        game = self.data_path / GAMES_DIR / split / task_id / GAME_FILE
        if ".." in Path(task_id).parts or not game.is_file():
            raise DataError(f"ALFWorld task '{task_id}' of split '{split}' not found: no file {game}")
        return game

    def walkthrough(self, task_id: str, split: str) -> list[str]:
        """The game's expert walkthrough (the ``walkthrough`` field of its game file)."""
        game = self.game_file(task_id, split)
        walk = json.loads(game.read_text()).get("walkthrough")
        if not walk:
            raise DataError(
                f"{game} has no walkthrough (alfworld 0.4 game files carry one; re-download the games)"
            )
        return list(walk)

    def skipped(self, split: str) -> list[dict[str, str]]:
        return skipped_games(self.data_path, split)

    def make_env(self) -> AlfworldEnv:
        return AlfworldEnv(self)
