"""Environments register by name; ``env.name`` in params.yaml picks one.

Every environment is one package ``skillmaster/envs/<name>/`` whose ``__init__`` registers a suite
factory and its :class:`~skillmaster.envs.profile.EnvProfile` with :func:`register_env`. The
registry finds the packages on disk (every subpackage of ``skillmaster.envs`` is an environment),
so adding an environment touches only its own folder. A package is imported on the first lookup of
its name; its ``__init__`` stays light (the engine, search indexes and the like load when a suite
or environment is built), so asking for a profile imports no engine.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache

from skillmaster.config import EnvConfig
from skillmaster.envs.base import EnvSuite
from skillmaster.envs.profile import EnvProfile
from skillmaster.errors import ConfigError

DEFAULT_ENV: str = EnvConfig.model_fields["name"].default
"""The environment of a config that names none; generic code asked about an unknown name falls back
to its wording where it has no generic one (the agent prompt)."""

_SUITES: dict[str, Callable[[EnvConfig], EnvSuite]] = {}
_PROFILES: dict[str, EnvProfile] = {}
_MODULES: dict[str, str] = {}


def register_env(name: str, profile: EnvProfile):
    """Decorator of a suite factory ``(EnvConfig) -> EnvSuite``: registers it and ``profile`` as
    ``name``."""
    if profile.name != name:
        raise ValueError(f"the profile of env '{name}' is named '{profile.name}'")

    def deco(factory: Callable[[EnvConfig], EnvSuite]):
        _SUITES[name] = factory
        _PROFILES[name] = profile
        _MODULES[name] = _packages().get(name, factory.__module__)
        return factory

    return deco


@cache
def _packages() -> dict[str, str]:
    """Environment name → its package, for every subpackage of ``skillmaster.envs`` (nothing imported)."""
    import skillmaster.envs as envs

    return {m.name: f"{envs.__name__}.{m.name}" for m in pkgutil.iter_modules(envs.__path__) if m.ispkg}


def available() -> list[str]:
    """Names of every environment (registered or found on disk)."""
    return sorted(set(_packages()) | set(_SUITES))


def _load(name: str) -> None:
    if name not in _SUITES and name in _packages():
        importlib.import_module(_packages()[name])
    if name not in _SUITES:
        raise ConfigError(
            f"env.name '{name}' is not a registered environment; choose one of: {', '.join(available())}"
        )


def make_suite(cfg: EnvConfig) -> EnvSuite:
    """Build the suite named by ``cfg.name`` (e.g. ``alfworld``, ``webshop``)."""
    _load(cfg.name)
    return _SUITES[cfg.name](cfg)


def profile(name: str) -> EnvProfile:
    """The profile of environment ``name`` (a clear ConfigError for an unknown name)."""
    _load(name)
    return _PROFILES[name]


def find_profile(name: str) -> EnvProfile | None:
    """The profile of ``name``, or None when no environment has that name."""
    try:
        return profile(name)
    except ConfigError:
        return None


def profiles() -> list[EnvProfile]:
    """The profiles of every environment, in name order."""
    return [profile(name) for name in available()]


def module_of(name: str) -> str:
    """The module that registers ``name`` (its package): the root of the code an environment's
    stages depend on (``pipeline.py`` walks its imports)."""
    _load(name)
    return _MODULES[name]
