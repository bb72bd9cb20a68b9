"""WebShop (Yao et al. 2022) in text mode, rebuilt from its standard data files.

The original package needs Python ≤ 3.10, a Java search engine and data from a file host; this is
a reimplementation of its text mode: :mod:`.data` (files and cleaning), :mod:`.goals` (goals,
prices, splits), :mod:`.search` (BM25), :mod:`.pages` (page text, observation formats, available
actions), :mod:`.reward` (the score), :mod:`.env` (transitions, the suite), :mod:`.profile` (what
generic code asks of WebShop: prompt and review wording, its actions, probe matching). Registered
as ``env.name: webshop``; data from ``env.data_dir`` or ``$WEBSHOP_DATA``.

Where it differs from WebShop, and why:

- search: ``bm25s`` with Lucene's formula and settings and a Python version of Lucene's English
  analyzer, instead of Pyserini; near-ties can order differently (Lucene stores document lengths
  lossily). WebShop's internal query prefixes ``<r>``/``<a>``/``<c>``/``<q>`` (random, attribute,
  category, query listings used for data collection) are plain text here;
- type reward: title nouns from spaCy when an English pipeline is installed, else content words
  (:mod:`.nouns`);
- option score: WebShop's main-branch rule by default (``option_scorer="webshop"``; verl-agent's
  copy, which SkillMaster's runs used, is the same rule, also named ``"verl-agent"``); an unmerged
  WebShop pull request's variant (exact size matching, per bought option) is
  ``option_scorer="unmerged-pr-exact-size"``;
- randomness: one generator seeded with 233 draws prices, price bounds and the goal shuffle, so
  goals are the same on every machine (WebShop seeds only the shuffle);
- bad data: unparsable price pieces are skipped and ASINs missing from the attribute file get no
  instruction (WebShop raises on both);
- actions: surrounding whitespace is ignored and ``Search[...]``/``Click[...]`` are accepted
  (verl-agent lower-cases actions anyway);
- skill categories: whole-word keyword rules (:mod:`.categories`), not substrings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from skillmaster.config import EnvConfig
from skillmaster.envs.registry import register_env
from skillmaster.envs.webshop.profile import PROFILE

if TYPE_CHECKING:
    from skillmaster.envs.webshop.env import WebshopEnv, WebshopSuite, load_world

__all__ = ["PROFILE", "WebshopEnv", "WebshopSuite", "load_world"]
_LAZY = {"WebshopEnv", "WebshopSuite", "load_world"}
"""Loaded on first use: :mod:`.env` imports the search engine (bm25s, numba: about a second), which
a profile lookup does not need."""


@register_env("webshop", PROFILE)
def make_webshop_suite(cfg: EnvConfig) -> WebshopSuite:
    from skillmaster.envs.webshop.env import WebshopSuite

    return WebshopSuite(cfg)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("skillmaster.envs.webshop.env"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
