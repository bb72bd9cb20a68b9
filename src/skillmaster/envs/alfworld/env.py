"""The ALFWorld text environment: one game at a time on the real engine (:mod:`.engine`).

Observations are the engine's text; ``info`` carries the keys of
:data:`~skillmaster.envs.base.INFO_KEYS` plus ``valid`` (the action was admissible) and ``step``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from skillmaster.envs.alfworld.engine import forget_interned_facts, keep_argv, set_engine_caches, start_engine
from skillmaster.envs.alfworld.games import FAMILY_CATEGORY, game_family, task_text_of
from skillmaster.errors import DataError


class Games(Protocol):
    """What an environment needs of its suite (:class:`~.suite.AlfworldSuite`): where the games are."""

    data_path: Path
    max_steps: int
    train_split: str
    success_reward: float
    engine_caches: bool

    def game_file(self, task_id: str, split: str) -> Path: ...


class AlfworldEnv:
    """One ALFWorld game at a time on the real engine (see :mod:`.engine`).

    ``reset(options={"task_id": …, "split": …})`` loads the game (the split defaults to the suite's
    train split); ``step(action)`` passes the raw text to the engine, which answers
    ``Nothing happens.`` to anything inadmissible. Reward ``success_reward`` on the winning step,
    ``terminated`` on a win, ``truncated`` when ``max_steps`` steps pass without one.
    """

    def __init__(self, suite: Games):
        self.suite = suite
        self._engine = None
        self._loaded: Path | None = None
        self._meta: dict[str, Any] = {}
        self._admissible: list[str] = []
        self._steps = 0
        self._done = True
        set_engine_caches(suite.engine_caches)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        """Start ``options["task_id"]``; ``seed`` is unused (ALFWorld games are deterministic)."""
        options = options or {}
        if "task_id" not in options:
            raise ValueError("AlfworldEnv.reset needs options={'task_id': ..., 'split': ...}")
        task_id, split = str(options["task_id"]), str(options.get("split") or self.suite.train_split)
        game = self.suite.game_file(task_id, split)
        try:
            with keep_argv():
                if self._engine is None:
                    self._engine = start_engine(game, self.suite.data_path)
                elif game != self._loaded:
                    forget_interned_facts()
                    self._engine.load(str(game))
                self._loaded = game
                state = self._engine.reset()
        except OSError:  # the machine (a full disk), not the game
            self._engine, self._loaded = None, None
            raise
        except Exception as exc:  # broken PDDL or grammar: name the file
            self._engine, self._loaded = None, None
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DataError(
                f"{game}: the engine cannot load this ALFWorld game ({type(exc).__name__}: {reason}); "
                "re-download the games"
            ) from None
        family = game_family(game.parent)
        self._meta = {
            "task_id": task_id,
            "task_family": family,
            "category": FAMILY_CATEGORY.get(family, "pick_and_place"),
            "task_text": task_text_of(state.feedback),
        }
        self._steps, self._done = 0, False
        return state.feedback, self._info(state, valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._done or self._engine is None:
            raise RuntimeError("AlfworldEnv.step() called before reset() or after the episode ended")
        valid = action.strip() in self._admissible
        state, _, _ = self._engine.step(action)
        self._steps += 1
        info = self._info(state, valid=valid)
        terminated = info["won"]
        truncated = not terminated and self._steps >= self.suite.max_steps
        self._done = terminated or truncated
        reward = self.suite.success_reward if terminated else 0.0
        return state.feedback, reward, terminated, truncated, info

    def close(self) -> None:
        # The engine's fast-downward library copy stays loaded: unloading it (dlclose) crashes the
        # interpreter at exit. An environment lives as long as its worker, so nothing piles up.
        self._engine, self._loaded, self._done = None, None, True

    def _info(self, state, valid: bool) -> dict[str, Any]:
        self._admissible = [a for a in state["admissible_commands"] if a != "help"]
        return {
            "admissible_actions": list(self._admissible),
            "won": bool(state["won"]),
            **self._meta,
            "valid": valid,
            "step": self._steps,
        }
