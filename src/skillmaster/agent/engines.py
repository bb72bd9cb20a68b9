"""Opening the configured generation engine on a policy's weights (``rollout.engine``).

:func:`open_policy` is the one place that decides which engine serves which weights: the
transformers engine loads the base plus a LoRA adapter directly; vLLM serves plain weights, so a LoRA
checkpoint is merged into its base first (:func:`merged_weights`, cached by content). An engine the
process already holds is reused where it can take the new weights in place (``rollout.vllm.weight_sync``):
a LoRA checkpoint is merged in memory and pushed to the engine in its serving precision
(:func:`serving_weights`, :meth:`~skillmaster.agent.vllm_engine.VllmPolicy.update_weights`, no merged
folder written; by default on CUDA), or its merged folder is reloaded (CPU); full weights are reloaded
from their folder; a failed push falls back to the merged folder.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skillmaster.agent.generation import resolve_engine
from skillmaster.paths import COMPLETE_MARKER

log = logging.getLogger(__name__)

MERGED_KEEP = 4
"""Merged-weight folders kept in the cache (the newest ones)."""


def is_lora(adapter: Path | None) -> bool:
    """Whether ``adapter`` is a LoRA adapter folder (not None, not a full checkpoint)."""
    return adapter is not None and not (
        (adapter / "config.json").is_file() and not (adapter / "adapter_config.json").is_file()
    )


def merged_dir(base: Path, adapter: Path, cache: Path) -> Path:
    """Where :func:`merged_weights` keeps ``base`` + the LoRA ``adapter`` (keyed by the adapter's and
    the base's content); also the name of those weights when they are served from memory."""
    digest = hashlib.sha256(str(base.resolve()).encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (adapter / name).is_file():
            digest.update((adapter / name).read_bytes())
    for name in ("model.safetensors", "config.json"):
        if (base / name).is_file():
            digest.update(str((base / name).stat().st_mtime_ns).encode())
    return cache / digest.hexdigest()[:16]


def merged_weights(base: Path, adapter: Path | None, cache: Path) -> Path:
    """A plain model folder holding ``base`` with ``adapter`` applied, for engines that serve plain
    weights: ``base`` itself without an adapter, a full checkpoint as it is, a LoRA adapter merged
    into ``base`` once and kept in ``cache`` (keyed by the adapter's and the base's content)."""
    if adapter is None:
        return base
    if not is_lora(adapter):
        return adapter
    out = merged_dir(base, adapter, cache)
    if not (out / COMPLETE_MARKER).is_file():
        from skillmaster.modeling import export_merged

        export_merged(base, adapter, out)
        old = sorted((p for p in cache.iterdir() if p.is_dir() and p != out), key=lambda p: p.stat().st_mtime)
        for stale in old[: max(0, len(old) - (MERGED_KEEP - 1))]:
            shutil.rmtree(stale, ignore_errors=True)
    return out


PEFT_PREFIX = "base_model.model."


@contextmanager
def serving_weights(model) -> Iterator[dict]:
    """The weights an engine serving plain checkpoints needs for ``model`` (a transformers model,
    or a PEFT model whose LoRA is merged for the duration, on the device the model is on, as TRL's
    colocated sync does), under the base checkpoint's names. The tensors are the model's own
    (no copy): push them before the block ends."""
    peft = hasattr(model, "peft_config") and hasattr(model, "merge_adapter")
    if peft:
        model.merge_adapter()
    try:
        out = {}
        for name, tensor in model.state_dict().items():
            if peft:
                if "lora_" in name or "original_module" in name:
                    continue  # adapter factors (merged already); a saved module's frozen original
                name = name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
                name = name.replace(".modules_to_save.default.", ".")
            out[name] = tensor
        yield out
    finally:
        if peft:
            model.unmerge_adapter()


def push_merged(policy, base: Path, adapter: Path, name: Path) -> None:
    """Merge the LoRA ``adapter`` into ``base`` in memory and load the result into the running vLLM
    ``policy``, which then serves ``name``. The merge runs on the engine's device: on CUDA in the
    serving dtype, on the CPU in fp32 (as :func:`merged_weights` merges)."""
    from skillmaster.config import ModelConfig
    from skillmaster.modeling import load_model

    dtype = policy.dtype if policy.device == "cuda" else "float32"
    model, _, _ = load_model(base, ModelConfig(dtype=dtype, device=policy.device), adapter=adapter)
    try:
        with serving_weights(model) as weights:
            policy.update_weights(weights, source=name)
    finally:
        del model
        if policy.device == "cuda":
            import torch

            torch.cuda.empty_cache()  # the merged copy's memory goes back to the engine's device


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

    cache = root / ".skillmaster" / "merged"
    if isinstance(current, VllmPolicy) and not current.closed and current.tokenizer_dir == base:
        sync = cfg.rollout.vllm.weight_sync
        if is_lora(adapter) and (sync == "memory" or (sync == "auto" and current.device == "cuda")):
            name = merged_dir(base, adapter, cache)
            if current.model_dir == name:
                return current
            try:
                push_merged(current, base, adapter, name)
                return current
            except Exception as exc:  # the file path still serves: a merged folder, reloaded
                log.warning("in-memory weight update failed (%s); loading a merged folder instead", exc)
        weights = merged_weights(base, adapter, cache)
        if current.model_dir != weights:
            current.update(weights)
        return current
    if current is not None:
        current.close()
    weights = merged_weights(base, adapter, cache)
    return VllmPolicy.load(weights, cfg.model, cfg.rollout.vllm, tokenizer_dir=base)
