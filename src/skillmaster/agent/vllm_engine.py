"""The vLLM engine (``rollout.engine: vllm``): the same surface as the transformers engine.

Prompts go in as token ids (:func:`~skillmaster.agent.tokens.encode_prompt`, the ids training
sees), one ``SamplingParams`` per prompt with its own seed, so a reply depends on its prompt and
seed only. vLLM's automatic prefix caching reuses the KV of every shared prefix (system text, task,
skill block, earlier steps), which replaces the transformers engine's hand-made prefix store.
Replies are cut by :func:`~skillmaster.agent.generation.finish_reply`, as on the other engine.

Weights: vLLM starts on a plain model folder. A LoRA checkpoint is merged into its base first
(:func:`skillmaster.agent.engines.merged_weights`; on CPU, adapters generated several times slower
than merged weights). New weights reach the running engine two ways, both through vLLM's own
in-place loader (the worker's ``reload_weights``, which also redoes the CPU kernels' weight
packing), and both reset the prefix cache (without the reset, cached KV of the old weights would
keep serving old replies):

- :meth:`VllmPolicy.update_weights`: named tensors in memory, cast to the serving dtype and sent
  to the engine's workers over vLLM's ``collective_rpc`` (:class:`WeightReceiver`, the worker
  extension), no file written: the colocated path (a flow keeps one engine across its stages);
- :meth:`VllmPolicy.update`: a model folder read from disk, for stages in separate processes.

Sleep mode (``rollout.vllm.sleep_mode``, CUDA only): :meth:`VllmPolicy.sleep` frees the GPU for a
train stage of the same process; the engine wakes before it next generates or loads weights.

Processes: vLLM runs an engine-core and a worker process beside this one. :meth:`close` ends them;
it runs on exit, on an error and on SIGTERM/Ctrl-C (the CLI turns both into exceptions), and the
engine's own death pipes end them when this process is killed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skillmaster.agent.generation import (
    Generation,
    GenerationStats,
    check_grammars,
    default_seeds,
    finish_reply,
)
from skillmaster.agent.greedy import is_greedy
from skillmaster.agent.tokens import encode_prompt
from skillmaster.config import ModelConfig, VllmConfig
from skillmaster.errors import ConfigError

log = logging.getLogger(__name__)


GIB = 1 << 30


def _usable_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_thread_binding(setting: str | None, ranks: int = 1) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND``: the setting, or every core this process may run on, split into
    ``ranks`` contiguous lists (``0|1``), one per tensor-parallel rank.

    vLLM's own ``auto`` keeps one core free for its front end; on 2 cores that halved decoding speed
    (measured), and the front end only waits while the worker computes.
    """
    if setting:
        if len(setting.split("|")) != ranks:
            raise ConfigError(
                f"rollout.vllm.cpu_threads_bind {setting!r} must hold one core list per tensor-parallel "
                f"rank, {ranks} separated by '|' (e.g. '0-7|8-15')"
            )
        return setting
    cores = _usable_cores()
    if len(cores) < ranks:
        raise ConfigError(
            f"rollout.vllm.tensor_parallel_size {ranks} needs at least one core per rank on CPU, and this "
            f"process may use {len(cores)}"
        )
    per = len(cores) // ranks
    groups = [cores[i * per : (i + 1) * per] for i in range(ranks)]
    groups[-1] += cores[ranks * per :]
    return "|".join(",".join(str(c) for c in g) for g in groups)


def engine_environment(cfg: VllmConfig, device: str) -> dict[str, str]:
    """The environment variables vLLM reads at start-up, from ``rollout.vllm`` (the KV-cache size
    goes as an engine argument, :func:`engine_arguments`)."""
    env = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1"}
    if device == "cpu":
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(cfg.cpu_threads_bind, cfg.tensor_parallel_size)
    return env


def engine_arguments(cfg: VllmConfig, device: str, model_len: int) -> dict:
    """The device-dependent ``LLM(...)`` arguments from ``rollout.vllm``, or a :class:`ConfigError`
    naming a setting this device's vLLM cannot use."""
    if cfg.sleep_mode and device != "cuda":
        raise ConfigError(
            "rollout.vllm.sleep_mode needs a CUDA device: vLLM's CPU build has no sleep mode "
            "(set it to false)"
        )
    kwargs: dict = {"tensor_parallel_size": cfg.tensor_parallel_size}
    if device == "cuda":
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        kwargs["enable_sleep_mode"] = cfg.sleep_mode
    else:
        # vLLM 0.32 reads VLLM_CPU_KVCACHE_SPACE with int(): a fractional size (6.5) failed there, so
        # the size goes in bytes (an explicit VLLM_CPU_KVCACHE_SPACE still takes precedence in vLLM).
        kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * GIB)
        # vLLM rewinds a seeded request's generator after a partial (chunked) prefill, which a
        # CPU generator cannot do ("CPU Generator does not use offset" kills the engine): on
        # the CPU every prompt is prefilled whole, with a step budget of one full-length prompt.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = model_len
    return kwargs


class WeightReceiver:
    """vLLM worker extension (``worker_extension_cls``): loads weights sent over ``collective_rpc``.

    vLLM mixes this class into each of its worker processes. The weights come as
    :func:`weight_records` (vLLM's RPC messages carry plain bytes; its tensor encoding needs a typed
    receiver, which worker calls do not have) and go through the worker's own ``reload_weights``:
    each rank takes its tensor-parallel shard, and the CPU kernels' packed weights are rebuilt.

    A tied output head (SmolLM2's ``lm_head`` is its embedding) is rebuilt too: vLLM's in-place
    reload repacks only the layers whose names it loads, so on CPU the head kept computing logits
    from a packed copy of the old embedding (measured: replies of the old model after an update
    that changed the embedding, from memory or from a folder alike).
    """

    def skillmaster_reload_path(self, path: str) -> None:
        """vLLM's ``reload_weights`` from the model folder ``path``, plus the tied head."""
        self.reload_weights(weights_path=path, is_checkpoint_format=True)
        self._skillmaster_refresh_tied_head()

    def _skillmaster_refresh_tied_head(self) -> None:
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        embed = getattr(getattr(model, "model", None), "embed_tokens", None)
        method = getattr(head, "quant_method", None)
        if method is None or embed is None or head.weight.data_ptr() != embed.weight.data_ptr():
            return
        from vllm.config import set_current_vllm_config

        with set_current_vllm_config(self.vllm_config):
            method.process_weights_after_loading(head)

    def skillmaster_load_weights(self, records: list) -> int:
        import warnings

        import torch

        def tensors():
            for name, dtype, shape, data in records:
                with warnings.catch_warnings():  # read-only bytes: the loader only reads them
                    warnings.simplefilter("ignore", UserWarning)
                    yield name, torch.frombuffer(data, dtype=getattr(torch, dtype)).view(shape)

        self.reload_weights(weights_iterator=tensors(), is_checkpoint_format=True)
        self._skillmaster_refresh_tied_head()
        return len(records)


WORKER_EXTENSION = f"{WeightReceiver.__module__}.{WeightReceiver.__qualname__}"


def weight_records(weights, dtype) -> tuple[list, int]:
    """``weights`` (a mapping or pairs of checkpoint name and tensor) as RPC records ``[name, dtype,
    shape, bytes]`` in the serving ``dtype`` (floating tensors; others keep theirs), on the host,
    with their byte count. A tensor sharing storage with one before it (a tied ``lm_head``, which
    vLLM does not load) is left out."""
    import torch

    items = weights.items() if hasattr(weights, "items") else weights
    records, seen, nbytes = [], set(), 0
    for name, tensor in items:
        t = tensor.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        t = t.to(device="cpu", dtype=dtype if t.is_floating_point() else t.dtype).contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy()  # no copy; the RPC encoder copies once
        records.append([name, str(t.dtype).removeprefix("torch."), list(t.shape), raw.data])
        nbytes += t.nbytes
    return records, nbytes


@dataclass
class VllmPolicy:
    llm: object
    tokenizer: object
    model_dir: Path
    tokenizer_dir: Path
    device: str = "cpu"
    max_model_len: int | None = None
    """Longest prompt + reply the engine takes (``rollout.vllm.max_model_len``); vLLM refuses a whole
    call holding a longer prompt, so rollout and review prompts are shortened first
    (:data:`~skillmaster.agent.prompts.PROMPT_FIT_RULE`)."""
    dtype: str = "float32"
    """The serving dtype (what :meth:`update_weights` casts to)."""
    sleep_mode: bool = False
    sleeping: bool = False
    stats: GenerationStats = field(default_factory=GenerationStats)
    closed: bool = False

    engine = "vllm"

    @classmethod
    def load(
        cls,
        model_dir: Path,
        cfg: ModelConfig,
        vcfg: VllmConfig,
        *,
        tokenizer_dir: Path | None = None,
        max_model_len: int | None = None,
    ) -> VllmPolicy:
        """Start an engine on the plain model folder ``model_dir`` (merged weights), with the dtype
        the transformers engine would use, and the tokenizer of ``tokenizer_dir`` (default: the same
        folder)."""
        from skillmaster.modeling import load_tokenizer, resolve_device, resolve_dtype

        device = resolve_device(cfg)
        tokenizer_dir = tokenizer_dir or model_dir
        dtype = resolve_dtype(cfg, device, tokenizer_dir)
        model_len = max_model_len or vcfg.max_model_len
        kwargs = engine_arguments(vcfg, device, model_len)  # a setting this device refuses fails here
        for key, value in engine_environment(vcfg, device).items():
            os.environ.setdefault(key, value)
        tokenizer = load_tokenizer(tokenizer_dir)
        start = time.perf_counter()
        from vllm import LLM

        eager = vcfg.enforce_eager if vcfg.enforce_eager is not None else device == "cpu"
        dtype_name = str(dtype).removeprefix("torch.")
        llm = LLM(
            model=str(model_dir),
            tokenizer=str(tokenizer_dir),
            dtype=dtype_name,
            worker_extension_cls=WORKER_EXTENSION,
            seed=0,
            enable_prefix_caching=True,
            enforce_eager=eager,
            max_model_len=model_len,
            max_num_seqs=vcfg.max_num_seqs,
            disable_log_stats=True,
            **kwargs,
        )
        policy = cls(
            llm=llm,
            tokenizer=tokenizer,
            model_dir=Path(model_dir),
            tokenizer_dir=Path(tokenizer_dir),
            device=device,
            max_model_len=model_len,
            dtype=dtype_name,
            sleep_mode=vcfg.sleep_mode,
        )
        policy.stats.engine_starts += 1
        policy.stats.engine_start_seconds += time.perf_counter() - start
        log.info("vLLM engine started in %.1fs (%s, %s)", time.perf_counter() - start, model_dir, dtype)
        return policy

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[tuple[str, int]],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: str | None = "</action>",
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
        logprobs: bool = False,
        grammars: Sequence[str | None] | None = None,
    ) -> list[Generation]:
        """Generate one reply per ``(prompt_text, prefix_chars)``, in order (one engine call).

        Sampling is seeded per prompt: ``seeds`` gives each prompt its own seed; without it, prompt
        ``i`` gets ``seed + i``. ``logprobs`` adds each kept token's log-probability (raw, before any
        grammar mask). ``grammars``: per prompt, an EBNF grammar the reply must follow (vLLM
        structured outputs), or None.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import StructuredOutputsParams

        if not prompts:
            return []
        self.wake_up()
        seeds = default_seeds(len(prompts), seed, seeds)
        grammars = check_grammars(len(prompts), grammars)
        t0 = time.perf_counter()
        ids = [p + s for p, s in (encode_prompt(self.tokenizer, text, n) for text, n in prompts)]
        params = [
            SamplingParams(
                n=1,
                temperature=temperature,
                top_p=1.0 if is_greedy(temperature) else top_p,
                # greedy needs no generator (seeded rows sample slower)
                seed=None if is_greedy(temperature) else s,
                max_tokens=max_new_tokens,
                stop=[stop] if stop else None,
                include_stop_str_in_output=True,
                logprobs=0 if logprobs else None,
                structured_outputs=StructuredOutputsParams(grammar=g) if g else None,
            )
            for s, g in zip(seeds, grammars, strict=True)
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=False)
        results = []
        for x, out in zip(ids, outputs, strict=True):
            reply = out.outputs[0]
            cached = out.num_cached_tokens or 0
            lp = None
            if logprobs and reply.logprobs is not None:
                lp = [step[t].logprob for step, t in zip(reply.logprobs, reply.token_ids, strict=False)]
            results.append(
                finish_reply(
                    self.tokenizer,
                    list(reply.token_ids),
                    len(x),
                    len(x) - cached,
                    stop,
                    max_new_tokens,
                    logprobs=lp,
                )
            )
        self.stats.calls += 1
        self.stats.sequences += len(prompts)
        self.stats.prompt_tokens += sum(len(x) for x in ids)
        self.stats.prefilled_tokens += sum(r.prefilled_tokens for r in results)
        self.stats.generated_tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
        self.stats.seconds += time.perf_counter() - t0
        return results

    # ------------------------------------------------------------------ weights and lifetime
    def update(self, weights_dir: Path) -> None:
        """Load the weights of ``weights_dir`` (same architecture) into the running engine, in place,
        and drop the prefix cache, whose KV was computed by the old weights."""
        t0 = time.perf_counter()
        self.wake_up()
        self.llm.collective_rpc("skillmaster_reload_path", args=(str(weights_dir),))
        self.llm.reset_prefix_cache()
        self.model_dir = Path(weights_dir)
        self.stats.weight_updates += 1
        self.stats.weight_update_seconds += time.perf_counter() - t0

    def update_weights(self, weights, *, source: Path | None = None) -> int:
        """Load ``weights`` (a state dict or pairs of checkpoint name and tensor, same architecture)
        into the running engine, in memory: cast to the serving dtype, sent to every worker
        (:class:`WeightReceiver`), loaded by vLLM's in-place loader; then the prefix cache is
        dropped. No file is written. ``source`` names what the weights are (it becomes
        :attr:`model_dir`, so :func:`~skillmaster.agent.engines.open_policy` knows what is served).
        Returns the number of tensors loaded (per worker)."""
        import torch

        t0 = time.perf_counter()
        self.wake_up()
        records, nbytes = weight_records(weights, getattr(torch, self.dtype))
        loaded = self.llm.collective_rpc("skillmaster_load_weights", args=(records,))
        del records
        self.llm.reset_prefix_cache()
        if source is not None:
            self.model_dir = Path(source)
        self.stats.weight_updates += 1
        self.stats.weight_update_seconds += time.perf_counter() - t0
        log.info(
            "vLLM weights updated in memory: %d tensors, %.0f MB %s, %.1fs",
            loaded[0],
            nbytes / 1e6,
            self.dtype,
            time.perf_counter() - t0,
        )
        return loaded[0]

    def sleep(self) -> bool:
        """Free the GPU for training (sleep mode only; elsewhere nothing happens): weights offloaded
        to host memory, KV cache dropped. Returns whether the engine sleeps."""
        if not self.sleep_mode or self.sleeping or self.closed:
            return self.sleeping
        self.llm.sleep(level=1)
        self.sleeping = True
        return True

    def wake_up(self) -> None:
        """Take the GPU back after :meth:`sleep` (done before every generation and weight load)."""
        if self.sleeping and not self.closed:
            self.llm.wake_up()
            self.llm.reset_prefix_cache()
            self.sleeping = False

    def clear_cache(self) -> None:
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """End the engine-core and worker processes (idempotent)."""
        if self.closed:
            return
        self.closed = True
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None:
            try:
                core.shutdown()
            except Exception as exc:  # the engine may already be gone (killed worker)
                log.debug("vLLM shutdown: %s", exc)
        self.llm = None

    def __enter__(self) -> VllmPolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
