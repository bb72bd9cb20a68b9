"""Colocated weight updates (issue #38): new weights reach a running vLLM engine in memory.

On the real 135M model (vLLM's CPU build, fp32, where greedy replies equal the transformers
engine's): weights changed in a transformers copy and pushed with ``update_weights`` make vLLM's
greedy replies the new model's, also for prompts whose prefixes it cached under the old weights,
with no file written (no new large file in the engine's temporary folder or $HOME, the model folder
untouched); loading the old folder back serves the old replies (the output head, tied to the
changed embedding, is rebuilt on both paths); a LoRA checkpoint reaching an engine the process
holds is merged and pushed in memory (no merged folder). Also: engine settings a device cannot use
are refused in one sentence, and a fractional KV-cache size reaches vLLM (in bytes).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from skillmaster.config import ModelConfig, VllmConfig
from skillmaster.errors import ConfigError

STOP = "</action>"
KV_GIB = 0.75
"""Fractional on purpose: vLLM 0.32 read VLLM_CPU_KVCACHE_SPACE with int() and refused 0.75."""
LARGE = 20_000_000
"""Bytes: any weight file of the model (fp32 540 MB, bf16 270 MB) is larger."""

PREFIX = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2, "
    "a countertop 1, a drawer 1, a fridge 1, a microwave 1, a sinkbasin 1 and a stoveburner 1.\n"
    "Your task is to: "
)
PROMPTS = [
    (PREFIX + "put a clean mug in coffeemachine.\n> ", len(PREFIX)),
    (PREFIX + "heat some egg and put it in garbagecan.\n> ", len(PREFIX)),
    (PREFIX + "look at bowl under the desklamp.\n> ", len(PREFIX)),
]


# ------------------------------------------------------------------ settings (no engine)
def test_a_fractional_kv_cache_goes_to_vllm_in_bytes():
    from skillmaster.agent.vllm_engine import GIB, engine_arguments, engine_environment

    args = engine_arguments(VllmConfig(kv_cache_gib=6.5), "cpu", 4096)
    assert args["kv_cache_memory_bytes"] == int(6.5 * GIB) and isinstance(args["kv_cache_memory_bytes"], int)
    assert "VLLM_CPU_KVCACHE_SPACE" not in engine_environment(VllmConfig(kv_cache_gib=6.5), "cpu")
    assert "kv_cache_memory_bytes" not in engine_arguments(VllmConfig(), "cuda", 4096)


def test_settings_a_device_cannot_use_are_refused_in_one_sentence(monkeypatch):
    from skillmaster.agent.vllm_engine import cpu_thread_binding, engine_arguments

    with pytest.raises(ConfigError, match="sleep_mode needs a CUDA device"):
        engine_arguments(VllmConfig(sleep_mode=True), "cpu", 4096)
    cuda = engine_arguments(VllmConfig(sleep_mode=True, tensor_parallel_size=2), "cuda", 4096)
    assert cuda["enable_sleep_mode"] is True and cuda["tensor_parallel_size"] == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    assert cpu_thread_binding(None) == "0,1,2"
    assert cpu_thread_binding(None, ranks=2) == "0|1,2"  # one core list per tensor-parallel rank
    with pytest.raises(ConfigError, match="at least one core per rank"):
        cpu_thread_binding(None, ranks=4)
    with pytest.raises(ConfigError, match="one core list per tensor-parallel rank"):
        cpu_thread_binding("0-1", ranks=2)
    assert cpu_thread_binding("0|1", ranks=2) == "0|1"
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="rollout shards"):
        VllmConfig(data_parallel_size=2)
    with pytest.raises(ValidationError):
        VllmConfig(tensor_parallel_size=0)


def test_weight_records_cast_to_the_serving_dtype_and_skip_tied_copies():
    from skillmaster.agent.vllm_engine import weight_records

    emb = torch.randn(8, 4)
    weights = {"model.embed_tokens.weight": emb, "lm_head.weight": emb, "model.norm.weight": torch.ones(4)}
    records, nbytes = weight_records(weights, torch.bfloat16)
    assert [r[0] for r in records] == ["model.embed_tokens.weight", "model.norm.weight"]
    assert [r[1] for r in records] == ["bfloat16", "bfloat16"] and nbytes == (32 + 4) * 2
    back = torch.frombuffer(bytearray(records[0][3]), dtype=torch.bfloat16).view(records[0][2])
    assert torch.equal(back, emb.to(torch.bfloat16))


def test_serving_weights_of_a_peft_model_are_merged_under_the_base_names():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from skillmaster.agent.engines import serving_weights

    torch.manual_seed(0)
    tiny = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    base = LlamaForCausalLM(tiny)
    names = set(base.state_dict())
    model = get_peft_model(
        base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    plain = q.base_layer.weight.detach().clone()
    merged_ref = plain + q.get_delta_weight("default")
    with serving_weights(model) as weights:
        assert set(weights) == names
        assert torch.allclose(weights["model.layers.0.self_attn.q_proj.weight"], merged_ref, atol=1e-6)
    assert torch.allclose(q.base_layer.weight, plain, atol=1e-6)  # unmerged again (to rounding)


def test_a_train_stage_puts_a_sleeping_capable_engine_to_sleep():
    from skillmaster.orchestration.flow import yield_device
    from skillmaster.stages.resources import Resources

    calls = []
    yield_device(Resources(policy=SimpleNamespace(sleep=lambda: calls.append(1) or True)))
    yield_device(Resources(policy=None))
    yield_device(Resources(policy=SimpleNamespace()))  # the transformers engine: nothing to do
    assert calls == [1]


class _FakeLLM:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append(name)


def _fake_policy(device: str, base: Path, **kw):
    from skillmaster.agent.vllm_engine import VllmPolicy

    return VllmPolicy(llm=_FakeLLM(), tokenizer=None, model_dir=base, tokenizer_dir=base, device=device, **kw)


def test_sleep_and_wake_happen_only_in_sleep_mode(tmp_path):
    awake = _fake_policy("cuda", tmp_path)
    assert awake.sleep() is False and awake.llm.calls == []
    policy = _fake_policy("cuda", tmp_path, sleep_mode=True)
    assert policy.sleep() is True and policy.sleep() is True  # once
    assert policy.llm.calls == ["sleep"]
    policy.update(tmp_path)  # wakes first, then loads
    assert policy.llm.calls == [
        "sleep",
        "wake_up",
        "reset_prefix_cache",
        "collective_rpc",
        "reset_prefix_cache",
    ]
    assert not policy.sleeping


@pytest.mark.parametrize(
    ("device", "sync", "in_memory"),
    [("cpu", "auto", False), ("cuda", "auto", True), ("cpu", "memory", True), ("cuda", "files", False)],
)
def test_weight_sync_picks_memory_or_files(device, sync, in_memory, tmp_path, monkeypatch):
    from skillmaster.agent import engines

    base, adapter = tmp_path / "base", tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    pushed, written = [], []
    monkeypatch.setattr(engines, "push_merged", lambda policy, b, a, name: pushed.append(name))
    monkeypatch.setattr(
        engines, "merged_weights", lambda b, a, cache: written.append(a) or tmp_path / "merged"
    )
    cfg = SimpleNamespace(rollout=SimpleNamespace(engine="vllm", vllm=VllmConfig(weight_sync=sync)))
    policy = _fake_policy(device, base)
    assert engines.open_policy(cfg, base, adapter, tmp_path, current=policy) is policy
    assert (pushed != [], written != []) == (in_memory, not in_memory)


# ------------------------------------------------------------------ the real engine
@pytest.fixture(scope="module")
def engine(base_model_dir):
    pytest.importorskip("vllm")
    from skillmaster.agent.vllm_engine import VllmPolicy

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)  # would take precedence over the setting
        private = Path(tempfile.mkdtemp(prefix="vllm-weight-update-"))
        mp.setenv("TMPDIR", str(private))  # the engine's processes (and this one) write temporaries here
        mp.setattr(tempfile, "tempdir", str(private))
        policy = VllmPolicy.load(
            base_model_dir,
            ModelConfig(dtype="float32", device="cpu"),
            VllmConfig(kv_cache_gib=KV_GIB, max_model_len=2048),
        )
        with policy:
            yield policy
    shutil.rmtree(private, ignore_errors=True)


def _large_new_files(roots: list[Path], since: float) -> list[Path]:
    out = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = Path(dirpath) / f
                try:
                    st = p.stat()
                except OSError:
                    continue
                if st.st_mtime >= since and st.st_size >= LARGE:
                    out.append(p)
    return out


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _greedy(policy, n: int = 16) -> list[list[int]]:
    return [g.token_ids for g in policy.generate(PROMPTS, max_new_tokens=n, temperature=0.0, stop=STOP)]


@pytest.mark.model
@pytest.mark.vllm
def test_a_fractional_kv_cache_starts_the_engine(engine):
    cache = engine.llm.llm_engine.vllm_config.cache_config
    assert cache.kv_cache_memory_bytes == int(KV_GIB * (1 << 30))


@pytest.mark.model
@pytest.mark.vllm
def test_an_in_memory_update_serves_the_new_policy_and_writes_no_file(engine, base_model_dir):
    from skillmaster.agent.policy import Policy

    before = _greedy(engine)  # also fills the prefix cache with the old weights' KV
    hf = Policy.load(base_model_dir, ModelConfig(dtype="float32", device="cpu"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a different policy: every projection and the (tied) embedding perturbed
        for name, p in hf.model.named_parameters():
            if name.endswith("proj.weight") or name.endswith("embed_tokens.weight"):
                scale = 0.5 if name.endswith("proj.weight") else 0.1
                p.add_(scale * p.std() * torch.randn(p.shape, generator=gen))
    expected = _greedy(hf)
    assert expected != before  # the two policies differ

    model_files = _snapshot(base_model_dir)
    starts, updates = engine.stats.engine_starts, engine.stats.weight_updates
    since = time.time() - 1
    t0 = time.perf_counter()
    loaded = engine.update_weights(hf.model.state_dict(), source=Path("in-memory"))
    seconds = time.perf_counter() - t0
    after = _greedy(engine)
    try:
        assert after == expected
        assert loaded == len(hf.model.state_dict()) - 1  # all but the tied lm_head
        assert _large_new_files([Path(tempfile.gettempdir()), Path.home()], since) == []
        assert _snapshot(base_model_dir) == model_files
        assert engine.model_dir == Path("in-memory")
        assert engine.stats.engine_starts == starts and engine.stats.weight_updates == updates + 1
        print(f"in-memory update of {loaded} tensors (fp32): {seconds:.1f}s")
    finally:  # back from the folder (the file path): the tied head follows the embedding there too
        engine.update(base_model_dir)
    assert _greedy(engine) == before


@pytest.mark.model
@pytest.mark.vllm
def test_a_lora_checkpoint_reaches_a_held_engine_merged_in_memory(engine, base_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from skillmaster.agent.engines import merged_dir, open_policy
    from skillmaster.agent.policy import Policy
    from skillmaster.modeling import load_model

    model, _, _ = load_model(base_model_dir, ModelConfig(dtype="float32", device="cpu"))
    torch.manual_seed(0)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
        ),
    )
    adapter = tmp_path / "policy" / "iter_001"  # what the train stage writes
    peft_model.save_pretrained(adapter)
    expected = _greedy(
        Policy.load(base_model_dir, ModelConfig(dtype="float32", device="cpu"), adapter=adapter)
    )
    before = _greedy(engine)
    assert expected != before

    cfg = SimpleNamespace(
        rollout=SimpleNamespace(engine="vllm", vllm=VllmConfig(kv_cache_gib=KV_GIB, weight_sync="memory")),
        model=ModelConfig(dtype="float32", device="cpu"),
    )
    try:
        served = open_policy(cfg, base_model_dir, adapter, tmp_path, current=engine)
        assert served is engine and engine.stats.engine_starts == 1
        assert engine.model_dir == merged_dir(base_model_dir, adapter, tmp_path / ".skillmaster" / "merged")
        assert not (tmp_path / ".skillmaster").exists()  # no merged folder written
        assert _greedy(engine) == expected
        updates = engine.stats.weight_updates
        assert open_policy(cfg, base_model_dir, adapter, tmp_path, current=engine) is engine
        assert engine.stats.weight_updates == updates  # the same weights: nothing pushed again
    finally:
        open_policy(cfg, base_model_dir, None, tmp_path, current=engine)  # the base again, from its folder
    assert engine.model_dir == base_model_dir and _greedy(engine) == before


@pytest.mark.gpu
@pytest.mark.model
@pytest.mark.vllm
@pytest.mark.skipif(not torch.cuda.is_available(), reason="sleep mode needs a CUDA device")
def test_on_cuda_the_engine_sleeps_for_training_and_wakes_to_the_pushed_weights(base_model_dir):
    """Colocation as the RL stacks do it (TRL colocate, verl's hybrid engine): the engine frees the
    GPU while training holds it, and after it serves the weights pushed to it in memory."""
    pytest.importorskip("vllm")
    from skillmaster.agent.policy import Policy
    from skillmaster.agent.vllm_engine import VllmPolicy

    cfg = ModelConfig(dtype="float32", device="cuda")
    with VllmPolicy.load(
        base_model_dir, cfg, VllmConfig(sleep_mode=True, gpu_memory_utilization=0.3, max_model_len=2048)
    ) as engine:
        before = _greedy(engine, 8)
        free_awake = torch.cuda.mem_get_info()[0]
        assert engine.sleep() is True
        assert torch.cuda.mem_get_info()[0] > free_awake + 500 * 2**20  # weights and KV cache let go
        hf = Policy.load(base_model_dir, cfg)
        gen = torch.Generator(device="cuda").manual_seed(0)
        with torch.no_grad():
            for name, p in hf.model.named_parameters():
                if name.endswith("proj.weight"):
                    p.add_(0.5 * p.std() * torch.randn(p.shape, generator=gen, device="cuda"))
        expected = _greedy(hf, 8)
        engine.update_weights(hf.model.state_dict())  # wakes the engine first
        assert not engine.sleeping
        assert _greedy(engine, 8) == expected != before
