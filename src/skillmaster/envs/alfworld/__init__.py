"""ALFWorld (Shridhar et al. 2021) on the real TextWorld/PDDL engine, registered as ``env.name: alfworld``.

Everything ALFWorld-specific lives in this folder:

- :mod:`.games`: the games on disk (layout, families, categories, discovery);
- :mod:`.engine`: textworld's PDDL backend with alfworld's demangler, and the engine caches;
- :mod:`.env`: the text environment (:class:`AlfworldEnv`); :mod:`.suite`: the tasks and their
  walkthroughs (:class:`AlfworldSuite`); :mod:`.data`: getting the games (``skillmaster env data``);
- :mod:`.profile`: what generic code asks of ALFWorld (prompt and review wording, its actions,
  probe matching, plot labels), and the walkthrough kit: the cold start's experts (:mod:`.expert`),
  walkthrough milestones (:mod:`.milestones`), mistake and tactic detectors (:mod:`.evidence`)
  and the household lessons of the review targets (:mod:`.lessons`).

Importing this package loads none of textworld, alfworld or fast-downward (an engine does, when it
starts).
"""

from __future__ import annotations

from skillmaster.config import EnvConfig
from skillmaster.envs.alfworld.data import count_games, ensure_data, unpack_archives
from skillmaster.envs.alfworld.engine import forget_interned_facts, set_engine_caches, start_engine
from skillmaster.envs.alfworld.env import AlfworldEnv
from skillmaster.envs.alfworld.games import (
    CATEGORIES,
    FAMILY_CATEGORY,
    SPLITS,
    category_of,
    discover,
    game_family,
    resolve_data_dir,
    skipped_games,
    task_text_of,
)
from skillmaster.envs.alfworld.profile import PROFILE
from skillmaster.envs.alfworld.suite import AlfworldSuite
from skillmaster.envs.registry import register_env

__all__ = [
    "CATEGORIES",
    "FAMILY_CATEGORY",
    "PROFILE",
    "SPLITS",
    "AlfworldEnv",
    "AlfworldSuite",
    "category_of",
    "count_games",
    "discover",
    "ensure_data",
    "forget_interned_facts",
    "game_family",
    "make_alfworld_suite",
    "resolve_data_dir",
    "set_engine_caches",
    "skipped_games",
    "start_engine",
    "task_text_of",
    "unpack_archives",
]


@register_env("alfworld", PROFILE)
def make_alfworld_suite(cfg: EnvConfig) -> AlfworldSuite:
    return AlfworldSuite(
        data_dir=str(resolve_data_dir(cfg.data_dir)),
        max_steps=cfg.max_steps,
        families=tuple(cfg.families) if cfg.families else None,
        train_split=cfg.train_split,
    )
