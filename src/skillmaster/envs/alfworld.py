"""ALFWorld on the real engine: game discovery, the text environment, engine caches, game data.

Games are read from ``$ALFWORLD_DATA`` (the variable alfworld itself uses; default
``~/.cache/alfworld``) in alfworld's layout ``json_2.1.1/<split>/<family>-…/trial_*/game.tw-pddl``,
with or without ``traj_data.json``. As alfworld's ``AlfredTWEnv`` does, games marked unsolvable,
games without a ``solvable`` flag, and paths holding ``movable`` or ``Sliced`` are skipped. A game
folder that cannot be used (an unreadable game file or ``traj_data.json``, no game file at all) is
skipped too, with a warning naming it; :func:`skipped_games` lists them for reports. A game whose
PDDL the engine cannot load fails its reset with an error naming the file.

The environment plays a game on textworld's PDDL backend with alfworld's name demangler, exactly as
``AlfredTWEnv`` does, without alfworld's expert (it slows every step several times). Observations
are the engine's text; ``info`` carries the keys of :data:`~skillmaster.envs.base.INFO_KEYS`
plus ``valid`` (the action was admissible) and ``step``.

**Engine caches.** Profiling the bare engine shows that almost all of a step is spent re-parsing
the same grammar strings with tatsu and deep-copying derivation contexts, and almost all of a
reset in translating the same PDDL task twice with fast-downward. :func:`set_engine_caches`
memoizes these pure computations (parsed grammar symbols and queries, PDDL→SAS translations) and
copies derivation contexts shallowly (their entity and variable objects are never mutated). The
engine's output is unchanged (``tests/envs/test_alfworld.py`` and ``skillmaster bench env``
compare both, step by step). Measured by ``skillmaster bench env`` on this project's 2-core
machine: a step about 12x faster, the first reset of a game 2x, a repeated reset 30x. textworld's
global intern table of propositions is emptied whenever another game loads
(:func:`forget_interned_facts`), so a worker's memory stays flat over many games.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from skillmaster.config import EnvConfig
from skillmaster.envs.base import TaskSpec
from skillmaster.envs.registry import register_env
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


# --------------------------------------------------------------------------- engine caches
_ORIGINALS: dict[str, Any] = {}


@functools.lru_cache(maxsize=8192)
def _parsed_symbols(text: str, rule_name: str) -> list:
    return _ORIGINALS["parse"](text, rule_name=rule_name)


def _cached_parse_and_convert(text: str, rule_name: str, trace: bool = False, **kwargs: Any) -> list:
    if trace or kwargs:
        return _ORIGINALS["parse"](text, rule_name=rule_name, trace=trace, **kwargs)
    return copy.deepcopy(_parsed_symbols(text, rule_name))  # derivations set .context on symbols


@functools.lru_cache(maxsize=8192)
def _parsed_query(expression: str):
    return _ORIGINALS["rule"].parse_conjunctive_query(expression)


def _shallow_copy_context(context: dict) -> dict:
    """textgen's ``copy_context`` without deep copies: derivations only add keys to these dicts."""
    return {
        "state": context["state"],
        "facts": context["facts"],
        "variables": dict(context["variables"]),
        "mapping": dict(context["mapping"]),
        "entity_infos": context["entity_infos"],
    }


@functools.lru_cache(maxsize=32)
def _translation(domain: str, problem: str, optimize: bool):
    return _ORIGINALS["pddl2sas"](domain, problem, optimize=optimize)


def _cached_pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False):
    if verbose:
        return _ORIGINALS["pddl2sas"](domain, problem, verbose=True, optimize=optimize)
    return _translation(domain, problem, optimize)


def set_engine_caches(enabled: bool) -> bool:
    """Install (or remove) the engine caches of the module doc in this process; idempotent.

    Returns whether they are installed. When textworld's internals differ from the version this
    was written for, nothing is patched and the bare engine runs.
    """
    import fast_downward
    from textworld.envs.pddl import textgen

    if enabled and not _ORIGINALS:
        needed = ("_parse_and_convert", "copy_context", "Rule")
        if not all(hasattr(textgen, n) for n in needed) or not hasattr(fast_downward, "pddl2sas"):
            return False
        _ORIGINALS.update(
            parse=textgen._parse_and_convert,
            copy_context=textgen.copy_context,
            rule=textgen.Rule,
            pddl2sas=fast_downward.pddl2sas,
        )

        class _CachedRule(_ORIGINALS["rule"]):
            parse_conjunctive_query = staticmethod(_parsed_query)

        textgen._parse_and_convert = _cached_parse_and_convert
        textgen.copy_context = _shallow_copy_context
        textgen.Rule = _CachedRule
        fast_downward.pddl2sas = _cached_pddl2sas
    elif not enabled and _ORIGINALS:
        textgen._parse_and_convert = _ORIGINALS["parse"]
        textgen.copy_context = _ORIGINALS["copy_context"]
        textgen.Rule = _ORIGINALS["rule"]
        fast_downward.pddl2sas = _ORIGINALS["pddl2sas"]
        _ORIGINALS.clear()  # the memos stay valid: they are only consulted while installed
    return bool(_ORIGINALS)


# --------------------------------------------------------------------------- the engine
def _import_engine(data_dir: Path):
    """textworld and alfworld's demangler. Importing alfworld creates ``$ALFWORLD_DATA`` or, when
    unset, ``~/.cache/alfworld``; so an unset ALFWORLD_DATA is pinned to our folder first."""
    os.environ.setdefault(DATA_ENV_VAR, str(data_dir))
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler

    return textworld, AlfredDemangler


@contextlib.contextmanager
def _keep_argv() -> Iterator[None]:
    """fast-downward's translator overwrites ``sys.argv``; put it back."""
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv[:] = saved


def start_engine(game_file: Path, data_dir: Path):
    """A textworld PDDL environment on ``game_file`` with alfworld's demangler, as ``AlfredTWEnv``
    builds it (``won`` and ``admissible_commands`` requested; the engine computes both anyway)."""
    textworld, demangler = _import_engine(data_dir)
    infos = textworld.EnvInfos(won=True, admissible_commands=True)
    with _keep_argv():
        return textworld.start(str(game_file), request_infos=infos, wrappers=[demangler(shuffle=False)])


def forget_interned_facts() -> None:
    """Empty textworld's intern table of propositions and signatures (``mementos``).

    textworld interns every proposition it builds in an unbounded global table, so a process that
    loads many games grows by about 2 MB per game. The objects compare and hash by value, so the
    table only saves memory while a game is played; it is emptied before the next game loads.
    """
    with contextlib.suppress(ImportError, AttributeError):
        from mementos import core

        core._memento_cache.clear()


class AlfworldEnv:
    """One ALFWorld game at a time on the real engine (see module doc).

    ``reset(options={"task_id": …, "split": …})`` loads the game (the split defaults to the suite's
    train split); ``step(action)`` passes the raw text to the engine, which answers
    ``Nothing happens.`` to anything inadmissible. Reward ``success_reward`` on the winning step,
    ``terminated`` on a win, ``truncated`` when ``max_steps`` steps pass without one.
    """

    def __init__(self, suite: AlfworldSuite):
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
            with _keep_argv():
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


# --------------------------------------------------------------------------- the suite
@dataclass(frozen=True)
class AlfworldSuite:
    """ALFWorld's games as SkillMaster tasks; plain data, so worker processes can rebuild it."""

    name: ClassVar[str] = "alfworld"
    categories: ClassVar[tuple[str, ...]] = CATEGORIES

    data_dir: str
    """Absolute folder holding ``json_2.1.1/<split>``."""
    max_steps: int = 50
    families: tuple[str, ...] | None = None
    train_split: str = "train"
    success_reward: float = 10.0
    engine_caches: bool = True
    """Memoize the engine's repeated parsing and PDDL translation (module doc)."""

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

    def make_env(self) -> AlfworldEnv:
        return AlfworldEnv(self)


@register_env("alfworld")
def make_alfworld_suite(cfg: EnvConfig) -> AlfworldSuite:
    return AlfworldSuite(
        data_dir=str(resolve_data_dir(cfg.data_dir)),
        max_steps=cfg.max_steps,
        families=tuple(cfg.families) if cfg.families else None,
        train_split=cfg.train_split,
    )


# --------------------------------------------------------------------------- getting the games
def count_games(data_dir: Path) -> dict[str, int]:
    """Game files per split folder under ``data_dir`` (no parsing; empty when there are none)."""
    root = data_dir / GAMES_DIR
    if not root.is_dir():
        return {}
    counts = {
        d.name: sum(1 for _ in d.glob(f"*/*/{GAME_FILE}")) for d in sorted(root.iterdir()) if d.is_dir()
    }
    return {k: v for k, v in counts.items() if v}


def _summary(data_dir: Path, counts: dict[str, int]) -> str:
    return f"{data_dir}: ALFWorld games present (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"


def unpack_archives(archives: list[Path], data_dir: Path, progress: bool = True) -> dict[str, int]:
    """Unpack ``*.tar.xz`` archives of ``json_2.1.1/<split>/…`` into ``data_dir``.

    Everything is extracted into a temporary folder inside ``data_dir`` first; each split folder
    is then renamed into place, so an interruption leaves no half-unpacked split behind. Splits
    already present are kept.
    """
    from tqdm import tqdm

    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(".unpack-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=data_dir))
    try:
        for archive in archives:
            try:
                with tarfile.open(archive, "r:*") as tar:
                    for member in tqdm(tar, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                        tar.extract(member, tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(
                    f"{archive}: cannot unpack ALFWorld games ({exc}); replace the archive"
                ) from None
        (data_dir / GAMES_DIR).mkdir(exist_ok=True)
        for split in sorted((tmp / GAMES_DIR).glob("*")):
            target = data_dir / GAMES_DIR / split.name
            if split.is_dir() and not target.exists():
                os.replace(split, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count_games(data_dir)


def _downloader() -> str | None:
    beside = Path(sys.executable).parent / "alfworld-download"
    return str(beside) if beside.is_file() else shutil.which("alfworld-download")


def ensure_data(data_dir: Path, archives_dir: Path | None = None, progress: bool = True) -> str:
    """Make sure ``data_dir`` holds games; returns a one-line summary.

    Present → nothing to do. Else the ``*.tar.xz`` archives in ``archives_dir`` are unpacked. Else
    alfworld's own downloader (``alfworld-download --data-dir``) fetches them. When that fails
    (offline), one DataError says where we looked and how to get the data.
    """
    counts = count_games(data_dir)
    if counts:
        return _summary(data_dir, counts)
    archives = sorted(archives_dir.glob("*.tar.xz")) if archives_dir and archives_dir.is_dir() else []
    if archives:
        counts = unpack_archives(archives, data_dir, progress=progress)
        if counts:
            return _summary(data_dir, counts)
        raise DataError(
            f"the archives in {archives_dir} hold no ALFWorld games (json_2.1.1/<split>/…/{GAME_FILE})"
        )
    tool = _downloader()
    looked = f"no ALFWorld games in {data_dir}" + (
        f" and no *.tar.xz in {archives_dir}" if archives_dir else ""
    )
    if tool is None:
        raise DataError(f"{looked}, and alfworld-download is not installed: {HOW_TO_GET_DATA}")
    env = {**os.environ, DATA_ENV_VAR: str(data_dir)}
    done = subprocess.run(
        [tool, "--data-dir", str(data_dir)], env=env, capture_output=not progress, text=True
    )
    counts = count_games(data_dir)
    if done.returncode != 0 or not counts:
        tail = (done.stderr or "").strip().splitlines()
        last = tail[-1].split(" (Caused by", 1)[0] if tail else ""
        reason = f" ({last[:150]}{'…' if len(last) > 150 else ''})" if last else ""
        raise DataError(
            f"{looked}, and `alfworld-download --data-dir {data_dir}` failed{reason}: fetch the games on a "
            f"machine with internet access and copy them there, or set {ARCHIVES_ENV_VAR} to a folder of "
            f"*.tar.xz game archives, or point ALFWORLD_DATA at unpacked games"
        )
    return _summary(data_dir, counts)
