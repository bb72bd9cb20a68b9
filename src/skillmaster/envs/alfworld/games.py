"""ALFWorld's games on disk: layout, task families and skill categories, game discovery.

Games are read from ``$ALFWORLD_DATA`` (the variable alfworld itself uses; default
``~/.cache/alfworld``) in alfworld's layout ``json_2.1.1/<split>/<family>-…/trial_*/game.tw-pddl``,
with or without ``traj_data.json``. As alfworld's ``AlfredTWEnv`` does, games marked unsolvable,
games without a ``solvable`` flag, and paths holding ``movable`` or ``Sliced`` are skipped. A game
folder that cannot be used (an unreadable game file or ``traj_data.json``, no game file at all) is
skipped too, with a warning naming it; :func:`skipped_games` lists them for reports. A game whose
PDDL the engine cannot load fails its reset with an error naming the file.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

from skillmaster.envs.base import TaskSpec
from skillmaster.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATA_ENV_VAR = "ALFWORLD_DATA"
ARCHIVES_ENV_VAR = "ALFWORLD_ARCHIVES"
DEFAULT_DATA_DIR = "~/.cache/alfworld"
GAMES_DIR = "json_2.1.1"
GAME_FILE = "game.tw-pddl"
TRAJ_FILE = "traj_data.json"
SPLITS = ("train", "valid_seen", "valid_unseen", "valid_train")
TASK_PREFIX = "Your task is to: "

FAMILY_CATEGORY = {
    "pick_and_place_simple": "pick_and_place",
    "pick_two_obj_and_place": "pick_and_place",
    "look_at_obj_in_light": "look_at_obj_in_light",
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
}
"""Task family (game folder prefix) → skill category (METHOD.md §2)."""

CATEGORIES = ("pick_and_place", "look_at_obj_in_light", "clean", "heat", "cool", "examine")
"""ALFWorld skill categories (METHOD.md §2); ``examine`` is kept for seed-bank compatibility."""

HOW_TO_GET_DATA = (
    "run `make data` (or `skillmaster env data`, which unpacks $ALFWORLD_ARCHIVES or runs "
    "`alfworld-download`), or point ALFWORLD_DATA / env.data_dir at a folder holding json_2.1.1/<split>"
)


# --------------------------------------------------------------------------- discovery
def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$ALFWORLD_DATA``, else ``~/.cache/alfworld`` (absolute)."""
    raw = data_dir or os.environ.get(DATA_ENV_VAR) or DEFAULT_DATA_DIR
    return Path(raw).expanduser().absolute()


def category_of(family: str) -> str:
    """Skill category of a task family (METHOD.md §2: pick-two maps to pick_and_place)."""
    return FAMILY_CATEGORY[family]


def task_text_of(observation: str) -> str:
    """The goal in an initial observation: the text after ``Your task is to: ``."""
    at = observation.rfind(TASK_PREFIX)
    return observation[at + len(TASK_PREFIX) :].strip() if at >= 0 else ""


def game_family(game_dir: Path) -> str:
    """Family of the game in ``game_dir`` (``…/<family>-…/trial_*``): ``task_type`` of its
    ``traj_data.json`` when present, else the folder-name prefix before the first ``-``."""
    traj = game_dir / TRAJ_FILE
    if traj.is_file():
        try:
            return str(json.loads(traj.read_text())["task_type"])
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
            raise DataError(
                f"{traj}: not a valid ALFWorld traj_data.json ({exc!r}); re-download the games"
            ) from None
    return game_dir.parent.name.split("-", 1)[0]


def _skipped_path(rel: str) -> bool:
    return "movable" in rel or "Sliced" in rel


def _solvable(game: Path) -> bool:
    try:
        with open(game, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{game}: not a valid ALFWorld game file ({exc}); unpack or download the games again"
        ) from None
    return data.get("solvable") is True  # alfworld skips games without the flag, too


@functools.lru_cache(maxsize=16)
def _scan(split_dir: str, _stamp: int) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """``(task_id, family)`` of every playable game under ``split_dir``, sorted by task id, and
    ``(folder, reason)`` of every game folder skipped because it cannot be used (warned once)."""
    root = Path(split_dir)
    found, skipped = [], []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        task_id = folder.relative_to(root).as_posix()
        if _skipped_path(task_id):
            continue
        game = folder / GAME_FILE
        try:
            if not game.is_file():
                raise DataError(f"{folder}: no {GAME_FILE} in this game folder")
            family = game_family(folder)
            if family in FAMILY_CATEGORY and _solvable(game):
                found.append((task_id, family))
        except (DataError, OSError) as exc:  # one bad game never stops the split
            skipped.append((str(folder), str(exc)))
            log.warning("skipping an ALFWorld game: %s", exc)
    return tuple(found), tuple(skipped)


def skipped_games(data_dir: Path, split: str) -> list[dict[str, str]]:
    """Game folders of ``split`` that :func:`discover` skipped as unusable: ``{"folder", "reason"}``."""
    where = data_dir / GAMES_DIR / split
    if not where.is_dir():
        return []
    return [{"folder": f, "reason": r} for f, r in _scan(str(where), where.stat().st_mtime_ns)[1]]


def discover(data_dir: Path, split: str, families: tuple[str, ...] | None = None) -> list[TaskSpec]:
    """Tasks of ``split`` under ``data_dir`` in a stable order (the task id is the game folder
    relative to the split folder, the same on every machine)."""
    if split not in SPLITS:
        raise ConfigError(f"'{split}' is not an ALFWorld split; choose one of: {', '.join(SPLITS)}")
    where = data_dir / GAMES_DIR / split
    if not where.is_dir():
        raise DataError(f"ALFWorld split '{split}' not found at {where}: {HOW_TO_GET_DATA}")
    games, _ = _scan(str(where), where.stat().st_mtime_ns)
    specs = [
        TaskSpec(task_id=tid, family=fam, category=category_of(fam), split=split)
        for tid, fam in games
        if families is None or fam in families
    ]
    if not specs:
        which = f" of families {list(families)}" if families else ""
        raise DataError(f"{where} holds no solvable ALFWorld games{which}: {HOW_TO_GET_DATA}")
    return specs
