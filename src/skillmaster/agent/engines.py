"""Opening the configured generation engine on a policy's weights (``rollout.engine``).

:func:`open_policy` is the one place that decides which engine serves which weights: the
transformers engine loads the base plus a LoRA adapter directly; vLLM serves plain weights, so a LoRA
checkpoint is merged into its base first (:func:`merged_weights`, cached by content). An engine the
process already holds is reused where it can take the new weights in place.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from skillmaster.agent.generation import resolve_engine
from skillmaster.paths import COMPLETE_MARKER

MERGED_KEEP = 4
"""Merged-weight folders kept in the cache (the newest ones)."""


def merged_weights(base: Path, adapter: Path | None, cache: Path) -> Path:
    """A plain model folder holding ``base`` with ``adapter`` applied, for engines that serve plain
    weights: ``base`` itself without an adapter, a full checkpoint as it is, a LoRA adapter merged
    into ``base`` once and kept in ``cache`` (keyed by the adapter's and the base's content)."""
    if adapter is None:
        return base
    if (adapter / "config.json").is_file() and not (adapter / "adapter_config.json").is_file():
        return adapter
    digest = hashlib.sha256(str(base.resolve()).encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (adapter / name).is_file():
            digest.update((adapter / name).read_bytes())
    for name in ("model.safetensors", "config.json"):
        if (base / name).is_file():
            digest.update(str((base / name).stat().st_mtime_ns).encode())
    out = cache / digest.hexdigest()[:16]
    if not (out / COMPLETE_MARKER).is_file():
        from skillmaster.modeling import export_merged

        export_merged(base, adapter, out)
        old = sorted((p for p in cache.iterdir() if p.is_dir() and p != out), key=lambda p: p.stat().st_mtime)
        for stale in old[: max(0, len(old) - (MERGED_KEEP - 1))]:
            shutil.rmtree(stale, ignore_errors=True)
    return out


def open_policy(cfg, base: Path, adapter: Path | None, root: Path, current=None):
    """The configured engine serving ``base`` (+ ``adapter``). ``current``, an engine this process
    already holds, is reused when it can serve the new weights in place (vLLM: weights reloaded,
    prefix cache reset), else closed."""
    engine = resolve_engine(cfg.rollout.engine)
    if engine == "hf":
        from skillmaster.agent.policy import Policy

        if current is not None:
            current.close()
        return Policy.load(
            base,
            cfg.model,
            adapter=adapter,
            prefix_reuse=cfg.rollout.prefix_reuse,
            max_batch_size=cfg.rollout.max_batch_size,
        )
    from skillmaster.agent.vllm_engine import VllmPolicy

    weights = merged_weights(base, adapter, root / ".skillmaster" / "merged")
    if isinstance(current, VllmPolicy) and not current.closed and current.tokenizer_dir == base:
        if current.model_dir != weights:
            current.update(weights)
        return current
    if current is not None:
        current.close()
    return VllmPolicy.load(weights, cfg.model, cfg.rollout.vllm, tokenizer_dir=base)
