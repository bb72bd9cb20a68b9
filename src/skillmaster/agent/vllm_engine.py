"""The vLLM engine (``rollout.engine: vllm``): the same surface as the transformers engine.

Prompts go in as token ids (:func:`~skillmaster.agent.tokens.encode_prompt`, the ids training
sees), one ``SamplingParams`` per prompt with its own seed, so a reply depends on its prompt and
seed only. vLLM's automatic prefix caching reuses the KV of every shared prefix (system text, task,
skill block, earlier steps), which replaces the transformers engine's hand-made prefix store.
Replies are cut by :func:`~skillmaster.agent.generation.finish_reply`, as on the other engine.

Weights: vLLM serves a plain model folder. A LoRA checkpoint is merged into its base first
(:func:`skillmaster.modeling.merged_weights`; on CPU, adapters generated several times slower than
merged weights). :meth:`VllmPolicy.update` loads new weights into the running engine and resets
the prefix cache (without the reset, cached KV of the old weights would keep serving old replies).

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
from skillmaster.agent.tokens import encode_prompt
from skillmaster.config import ModelConfig, VllmConfig

log = logging.getLogger(__name__)


def cpu_thread_binding(setting: str | None) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND``: the setting, or every core this process may run on.

    vLLM's own ``auto`` keeps one core free for its front end; on 2 cores that halved decoding speed
    (measured), and the front end only waits while the worker computes.
    """
    if setting:
        return setting
    cores = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    return ",".join(str(c) for c in cores)


def engine_environment(cfg: VllmConfig, device: str) -> dict[str, str]:
    """The environment variables vLLM reads at start-up, from ``rollout.vllm``."""
    env = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1"}
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{cfg.kv_cache_gib:g}"
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(cfg.cpu_threads_bind)
    return env


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
        for key, value in engine_environment(vcfg, device).items():
            os.environ.setdefault(key, value)
        tokenizer = load_tokenizer(tokenizer_dir)
        start = time.perf_counter()
        from vllm import LLM

        eager = vcfg.enforce_eager if vcfg.enforce_eager is not None else device == "cpu"
        model_len = max_model_len or vcfg.max_model_len
        kwargs: dict = {}
        if device == "cuda":
            kwargs["gpu_memory_utilization"] = vcfg.gpu_memory_utilization
        else:
            # vLLM rewinds a seeded request's generator after a partial (chunked) prefill, which a
            # CPU generator cannot do ("CPU Generator does not use offset" kills the engine): on
            # the CPU every prompt is prefilled whole, with a step budget of one full-length prompt.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = model_len
        llm = LLM(
            model=str(model_dir),
            tokenizer=str(tokenizer_dir),
            dtype=str(dtype).removeprefix("torch."),
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
        seeds = default_seeds(len(prompts), seed, seeds)
        grammars = check_grammars(len(prompts), grammars)
        t0 = time.perf_counter()
        ids = [p + s for p, s in (encode_prompt(self.tokenizer, text, n) for text, n in prompts)]
        params = [
            SamplingParams(
                n=1,
                temperature=temperature,
                top_p=top_p if temperature > 0 else 1.0,
                seed=s if temperature > 0 else None,  # greedy needs no generator (seeded rows sample slower)
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
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(weights_dir)})
        self.llm.reset_prefix_cache()
        self.model_dir = Path(weights_dir)
        self.stats.weight_updates += 1
        self.stats.weight_update_seconds += time.perf_counter() - t0

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
