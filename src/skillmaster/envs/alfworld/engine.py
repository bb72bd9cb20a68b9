"""The ALFWorld engine: textworld's PDDL backend with alfworld's name demangler, and its caches.

The environment plays a game on textworld's PDDL backend with alfworld's name demangler, exactly as
``AlfredTWEnv`` does, without alfworld's expert (it slows every step several times).

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

textworld, alfworld and fast-downward are imported when an engine starts, never at import time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skillmaster.envs.alfworld.games import DATA_ENV_VAR

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
def keep_argv() -> Iterator[None]:
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
    with keep_argv():
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
