"""Deterministic probe-task draw for counterfactual utility (METHOD.md §6 step 1)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from typing import Literal, Protocol


class TaskLike(Protocol):
    """Anything with the fields of :class:`skillmaster.envs.base.TaskSpec` that the draw reads."""

    task_id: str
    family: str
    category: str


def probe_rng(seed: int, family: str, task_id: str) -> random.Random:
    """RNG seeded from ``sha256("{seed}|{family}|{task_id}")`` (stable across processes and machines,
    unlike Python's ``hash``), as the released code does."""
    digest = hashlib.sha256(f"{seed}|{family}|{task_id}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def draw_probes(
    task_id: str,
    family: str,
    candidates: Iterable[TaskLike],
    k: int,
    seed: int,
    match: Literal["family", "category"] = "family",
) -> list[str]:
    """K probe task ids of the same ``family`` as the source task, excluding the source itself.

    ``candidates`` are the training tasks; those whose ``match`` attribute (``family`` on
    ALFWorld, ``category`` on WebShop, METHOD.md §6) equals ``family`` form the pool, sorted by
    task id so the draw does not depend on the input order. Fewer than ``k`` in the pool: all of
    them (in the drawn order). Deterministic in ``(seed, family, task_id)``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    pool = sorted({c.task_id for c in candidates if getattr(c, match) == family} - {task_id})
    return probe_rng(seed, family, task_id).sample(pool, min(k, len(pool)))


def choose_edits(keys: list[str], max_edits: int | None, seed: int) -> list[int]:
    """Indices (ascending) of the edits to score when at most ``max_edits`` may be: all of them when
    they fit, else a random subset drawn from ``(seed, keys)`` as the released code draws its
    ``max_utility_candidates_per_batch`` (not the first ones, which would favour low trajectory ids)."""
    n = len(keys)
    if max_edits is None or n <= max_edits:
        return list(range(n))
    digest = hashlib.sha256("|".join([str(seed), *keys]).encode()).hexdigest()
    return sorted(random.Random(int(digest[:16], 16)).sample(range(n), max_edits))


def probe_pools(
    candidates: Iterable[TaskLike],
    size: int,
    seed: int,
    exclude: Iterable[str] = (),
    match: Literal["family", "category"] = "family",
) -> dict[str, list[str]]:
    """Fixed probe pools (``counterfactual.probe_pool``): per value of ``match`` (the task family,
    or the category on WebShop), ``size`` task ids of ``candidates`` drawn without replacement,
    leaving out ``exclude`` (the cold start's SFT games), sorted.

    The draw of family ``f`` is seeded by ``sha256("{seed}|pool|{f}")`` over its sorted task ids,
    so a pool depends on neither the iteration, the input order nor the other families; a family
    with at most ``size`` eligible tasks pools all of them.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1 (got {size})")
    skip = set(exclude)
    by_family: dict[str, set[str]] = {}
    for c in candidates:
        if c.task_id not in skip:
            by_family.setdefault(getattr(c, match), set()).add(c.task_id)
    out = {}
    for family, ids in sorted(by_family.items()):
        digest = hashlib.sha256(f"{seed}|pool|{family}".encode()).hexdigest()
        ordered = sorted(ids)
        out[family] = sorted(random.Random(int(digest[:16], 16)).sample(ordered, min(size, len(ordered))))
    return out
