"""Environment suites register by name; ``env.name`` in params.yaml picks one."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from skillmaster.config import EnvConfig
from skillmaster.envs.base import EnvSuite
from skillmaster.errors import ConfigError

# name -> module that registers it (imported on first use, so textworld loads only when needed)
_MODULES = {"alfworld": "skillmaster.envs.alfworld", "webshop": "skillmaster.envs.webshop"}
_SUITES: dict[str, Callable[[EnvConfig], EnvSuite]] = {}


def register_env(name: str):
    def deco(factory):
        _SUITES[name] = factory
        return factory

    return deco


def available() -> list[str]:
    return sorted(set(_MODULES) | set(_SUITES))


def make_suite(cfg: EnvConfig) -> EnvSuite:
    """Build the suite named by ``cfg.name`` (e.g. ``alfworld``, ``webshop``)."""
    if cfg.name not in _SUITES and cfg.name in _MODULES:
        importlib.import_module(_MODULES[cfg.name])
    if cfg.name not in _SUITES:
        raise ConfigError(
            f"env.name '{cfg.name}' is not a registered environment; choose one of: {', '.join(available())}"
        )
    return _SUITES[cfg.name](cfg)


def module_of(name: str) -> str:
    """The module that registers environment ``name`` (its code is part of every stage that plays it)."""
    if name not in _MODULES:
        raise ConfigError(
            f"env.name '{name}' is not a registered environment; choose one of: {', '.join(available())}"
        )
    return _MODULES[name]
