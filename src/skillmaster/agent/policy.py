"""The transformers engine (``rollout.engine: hf``): batched, left-padded generation with prefix KV reuse.

The vLLM engine (:mod:`skillmaster.agent.vllm_engine`) has the same surface; what the two share (the
reply type, counters, stop handling) is in :mod:`skillmaster.agent.generation`.

Prompts arrive as ``(text, prefix_chars)`` pairs (see :mod:`skillmaster.agent.tokens`). With
``prefix_reuse`` on, the KV cache of every distinct prefix (system text + task + skill block) is
computed once, kept in a small LRU store, and stacked under the batch, so each step only
prefills the per-step suffix. On these CPUs prefill dominates generation time, so this is where
most of the rollout speed comes from. The cached and uncached paths see the same token ids and
positions (left padding in front of each prefix and each suffix is masked out), and give the
same greedy outputs in fp32 (tested).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from skillmaster.agent.generation import (
    Generation,
    GenerationStats,
    check_grammars,
    default_seeds,
    finish_reply,
)
from skillmaster.agent.greedy import is_greedy
from skillmaster.agent.tokens import encode_prompt
from skillmaster.config import ModelConfig
from skillmaster.errors import ConfigError

__all__ = ["Generation", "GenerationStats", "GrammarMask", "Policy", "RowSeededSampler", "TailStop"]

log = logging.getLogger(__name__)


class RowSeededSampler:
    """A logits processor that samples each row from softmax(logits / T) (after top-p) with its own
    ``torch.Generator``, by the Gumbel-max trick: ``generate(do_sample=False)`` then takes the
    argmax, which is exactly that sample. A row's tokens depend on its seed alone, not on which
    other prompts share the batch, so a sharded collection equals the single-process one."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(int(s) % (2**63)) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.temperature  # (B, V)
        if self.top_p < 1.0:
            logits, order = scores.sort(dim=-1, descending=True)
            probs = logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > self.top_p  # keep the smallest set reaching top_p
            scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        u = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        return scores + (-torch.log(-torch.log(u.clamp_min(1e-20)))).to(scores.device)


class GrammarMask:
    """A logits processor that keeps each constrained row inside its EBNF grammar (xgrammar's
    matcher, as vLLM's structured outputs do): tokens the grammar cannot take next get -inf. Rows
    without a grammar, and rows whose matcher has finished or rejected the last token (a row that
    already stopped is padded), are left as they are. Runs before :class:`RowSeededSampler`."""

    def __init__(self, tokenizer, vocab_size: int, grammars: Sequence[str | None]):
        try:
            import xgrammar as xgr
        except ImportError as exc:  # installed with vLLM
            raise ConfigError(
                "review.constrained needs xgrammar (`pip install --no-deps xgrammar==0.2.8`; "
                "`make install` installs it with vLLM)"
            ) from exc
        self.xgr = xgr
        compiler = _grammar_compiler(tokenizer, vocab_size)
        self.matchers = [xgr.GrammarMatcher(compiler.compile_grammar(g)) if g else None for g in grammars]
        self.done = [m is None for m in self.matchers]
        self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)
        self.started = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        rows = [i for i, m in enumerate(self.matchers) if m is not None and not self.done[i]]
        if self.started:
            for i in rows:
                m = self.matchers[i]
                if not m.accept_token(int(input_ids[i, -1])) or m.is_terminated():
                    self.done[i] = True
        self.started = True
        rows = [i for i in rows if not self.done[i]]
        if not rows:
            return scores
        self.xgr.reset_token_bitmask(self.bitmask)
        for i in rows:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
        masked = scores[rows].float().cpu()
        self.xgr.apply_token_bitmask_inplace(masked, self.bitmask[rows])
        scores = scores.clone()
        scores[rows] = masked.to(scores.device, scores.dtype)
        return scores


@functools.cache
def _grammar_compiler(tokenizer, vocab_size: int):
    import xgrammar as xgr

    return xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size))


class TailStop:
    """Stopping criterion: a row is done once its reply contains ``stop``. Each step it decodes only
    the reply's last ``len(stop)`` tokens (every token is at least one character, and the string is
    checked every step, so a fresh match ends inside that window). transformers'
    ``StopStringCriteria`` does the same job but scans the whole vocabulary when it is built
    (~0.4 s here), which ``generate(stop_strings=...)`` redoes on every call, i.e. every bucket of
    every step (`skillmaster bench rollout` reports both)."""

    def __init__(self, tokenizer, stop: str, prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, stop, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        start = max(self.prompt_len, input_ids.shape[1] - len(self.stop))
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([self.stop in t for t in tails], dtype=torch.bool, device=input_ids.device)


@dataclass
class _Prefix:
    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (1, kv_heads, len, head_dim)


@dataclass
class Policy:
    """The transformers engine. ``model`` is a causal LM (merged weights: LoRA hooks are slower)."""

    engine = "hf"
    model: object
    tokenizer: object
    device: str = "cpu"
    prefix_reuse: bool = True
    max_batch_size: int | None = None
    cache_size: int = 256
    max_model_len: int | None = None
    """Longest prompt + reply (the model's ``max_position_embeddings`` unless given); a longer
    rollout or review prompt is shortened first (:data:`~skillmaster.agent.prompts.PROMPT_FIT_RULE`)."""
    stats: GenerationStats = field(default_factory=GenerationStats)
    _prefixes: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def load(cls, base_dir: Path, cfg: ModelConfig, adapter: Path | None = None, **kwargs) -> Policy:
        from skillmaster.modeling import load_model

        model, tokenizer, device = load_model(base_dir, cfg, adapter=adapter)
        if adapter is not None and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()  # plain weights generate faster than LoRA hooks
        kwargs.setdefault("max_model_len", getattr(model.config, "max_position_embeddings", None))
        return cls(model=model, tokenizer=tokenizer, device=device, **kwargs)

    # ------------------------------------------------------------------ prefix cache
    def clear_cache(self) -> None:
        self._prefixes.clear()

    def _ensure_prefixes(self, texts: Sequence[str]) -> None:
        """Compute (batched) the KV of prefixes not yet in the store."""
        missing = [t for t in dict.fromkeys(texts) if t and t not in self._prefixes]
        for t in texts:
            if t in self._prefixes:
                self._prefixes.move_to_end(t)
        if not missing:
            return
        encoded = [self.tokenizer(t, add_special_tokens=False).input_ids for t in missing]
        for start in range(0, len(encoded), self.max_batch_size or len(encoded)):
            chunk = encoded[start : start + (self.max_batch_size or len(encoded))]
            ids, mask = self._left_pad(chunk)
            with torch.inference_mode():
                out = self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(self.device),
                    use_cache=True,
                )
            cache = out.past_key_values
            for row, seq in enumerate(chunk):
                n = len(seq)
                kv = [
                    (layer.keys[row : row + 1, :, -n:].clone(), layer.values[row : row + 1, :, -n:].clone())
                    for layer in cache.layers
                ]
                self._prefixes[missing[start + row]] = _Prefix(seq, kv)
                self.stats.prefix_tokens_computed += n
        while len(self._prefixes) > self.cache_size:
            self._prefixes.popitem(last=False)

    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max((len(s) for s in seqs), default=0)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
                mask[i, width - len(s) :] = 1
        return ids, mask

    def _batch_cache(self, prefixes: Sequence[_Prefix]):
        """A DynamicCache holding each row's prefix KV, left-padded to the longest prefix."""
        from transformers import DynamicCache

        width = max(len(p.ids) for p in prefixes)
        layers = []
        for li in range(len(prefixes[0].kv)):
            keys, values = [], []
            for p in prefixes:
                k, v = p.kv[li]
                pad = width - k.shape[2]
                if pad:
                    k = torch.nn.functional.pad(k, (0, 0, pad, 0))
                    v = torch.nn.functional.pad(v, (0, 0, pad, 0))
                keys.append(k)
                values.append(v)
            layers.append((torch.cat(keys), torch.cat(values)))
        return DynamicCache(ddp_cache_data=layers, config=self.model.config)

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
        grammars: Sequence[str | None] | None = None,
    ) -> list[Generation]:
        """Generate one reply per ``(prompt_text, prefix_chars)``, in order, in batches.

        Sampling is seeded per prompt: ``seeds`` gives each prompt its own seed (a reply then
        depends on its prompt and seed only); without it, prompt ``i`` gets ``seed + i``.
        ``grammars``: per prompt, an EBNF grammar the reply must follow (:class:`GrammarMask`), or None.
        """
        seeds = default_seeds(len(prompts), seed, seeds)
        grammars = check_grammars(len(prompts), grammars)
        parts = [encode_prompt(self.tokenizer, text, n) for text, n in prompts]

        # Length buckets: prompts are chunked in order of their (suffix) length, so a chunk's left
        # padding is small; replies go back in the callers' order. A reply depends on its prompt
        # and seed only (RowSeededSampler), so the chunking does not change what is sampled.
        def prefill_len(i: int) -> tuple[int, int]:
            p, s = parts[i]
            return (len(s), len(p)) if self.prefix_reuse else (len(p) + len(s), 0)

        order = sorted(range(len(prompts)), key=prefill_len)
        out: list[Generation | None] = [None] * len(prompts)
        size = self.max_batch_size or max(len(prompts), 1)
        for start in range(0, len(prompts), size):
            chunk = order[start : start + size]
            replies = self._generate_batch(
                [prompts[i] for i in chunk],
                [parts[i] for i in chunk],
                max_new_tokens,
                temperature,
                top_p,
                stop,
                [seeds[i] for i in chunk],
                [grammars[i] for i in chunk],
            )
            for i, reply in zip(chunk, replies, strict=True):
                out[i] = reply
        return out  # type: ignore[return-value]

    def _generate_batch(
        self, prompts, parts, max_new_tokens, temperature, top_p, stop, seeds, grammars
    ) -> list[Generation]:
        import time

        if not prompts:
            return []
        t0 = time.perf_counter()
        tok = self.tokenizer
        use_cache = self.prefix_reuse and all(p for p, _ in parts)
        kwargs: dict = {}
        if use_cache:
            prefix_texts = [text[:n] for text, n in prompts]
            self._ensure_prefixes(prefix_texts)
            prefixes = [self._prefixes[t] for t in prefix_texts]
            p_ids, p_mask = self._left_pad([p.ids for p in prefixes])
            s_ids, s_mask = self._left_pad([s for _, s in parts])
            input_ids = torch.cat([p_ids, s_ids], dim=1)
            attention_mask = torch.cat([p_mask, s_mask], dim=1)
            kwargs["past_key_values"] = self._batch_cache(prefixes)
            prefilled = [len(s) for _, s in parts]
        else:
            input_ids, attention_mask = self._left_pad([p + s for p, s in parts])
            prefilled = [len(p) + len(s) for p, s in parts]
        gen_kwargs = dict(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        processors: list = []
        if any(grammars):
            vocab = self.model.get_output_embeddings().weight.shape[0]
            processors.append(GrammarMask(tok, vocab, grammars))
        if not is_greedy(temperature):  # sampled per row (see RowSeededSampler); greedy otherwise
            processors.append(RowSeededSampler(seeds, temperature, top_p))
        if processors:
            from transformers import LogitsProcessorList

            gen_kwargs["logits_processor"] = LogitsProcessorList(processors)
        if stop:
            from transformers import StoppingCriteriaList

            gen_kwargs["stopping_criteria"] = StoppingCriteriaList(
                [TailStop(tok, stop, prompt_len=input_ids.shape[1])]
            )
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                **gen_kwargs,
                **kwargs,
            )
        new = sequences[:, input_ids.shape[1] :].tolist()
        results = []
        for (p, s), ids, n_pre in zip(parts, new, prefilled, strict=True):
            results.append(finish_reply(tok, ids, len(p) + len(s), n_pre, stop, max_new_tokens))
        self.stats.calls += 1
        self.stats.sequences += len(prompts)
        self.stats.prompt_tokens += sum(len(p) + len(s) for p, s in parts)
        self.stats.prefilled_tokens += sum(prefilled)
        self.stats.generated_tokens += sum(len(r.token_ids) for r in results)
        self.stats.seconds += time.perf_counter() - t0
        return results

    # ------------------------------------------------------------------ engine surface
    def update(self, weights_dir: Path) -> None:
        """Serve the weights in ``weights_dir`` (a prepared model folder) from now on."""
        import time

        from transformers import AutoModelForCausalLM

        t0 = time.perf_counter()
        new = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=self.model.dtype)
        self.model.load_state_dict(new.state_dict())
        self.clear_cache()  # the stored prefix KV belongs to the old weights
        self.stats.weight_updates += 1
        self.stats.weight_update_seconds += time.perf_counter() - t0

    def close(self) -> None:
        self.clear_cache()

    def __enter__(self) -> Policy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
