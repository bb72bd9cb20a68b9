"""The baselines of ``skillmaster bench rollout`` (:mod:`skillmaster.bench.rollout`) and its clocks.

- (a) :func:`naive_loop`: one episode at a time, one un-batched ``model.generate`` per step on the
  full prompt, one in-process environment.
- (b) :func:`measure_vllm_generation` / :func:`measure_hf_generation`: the project's generation path
  of each engine against the bare engine call on the same token ids; :func:`measure_stop_check`:
  the policy's stop-string check against transformers' ``StopStringCriteria``.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

STOP = "</action>"


@dataclass
class _NaiveState:
    """What :func:`~skillmaster.rollout.collector.render_step_prompt` reads of an episode."""

    obs: str
    info: dict
    skills_block: str | None
    history: list[tuple[str, str]] = field(default_factory=list)


def clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its live children: the pool's workers).

    CPU time is the cross-check on a shared machine: other processes' load stretches wall time
    but leaves the work done (CPU seconds) nearly unchanged, with one torch thread (see :mod:`skillmaster.bench.rollout`).
    """
    import psutil

    me = psutil.Process()
    cpu = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cpu += sum(child.cpu_times()[:2])
    return time.perf_counter(), cpu


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clock()
    return now[0] - start[0], now[1] - start[1]


def ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else float("inf")


# --------------------------------------------------------------------------- (a) naive loop
def _bare_generate(
    model, tokenizer, id_lists: list[list[int]], max_new_tokens: int
) -> list[tuple[str, bool]]:
    """Plain HF greedy ``generate`` on a left-padded batch: per row, the reply cut after
    :data:`STOP` and whether it ran out of tokens before :data:`STOP` or EOS.

    ``input_ids``/``attention_mask``: (batch, longest prompt); the output's new part:
    (batch, ≤ max_new_tokens).
    """
    import torch

    width = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(id_lists):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, width - len(ids) :] = 1
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stop_strings=[STOP],
            tokenizer=tokenizer,
        )
    new = out[:, width:]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    ended = (new == tokenizer.eos_token_id).any(dim=1).tolist()
    return [
        (t[: t.index(STOP) + len(STOP)], False) if STOP in t else (t, not eos)
        for t, eos in zip(texts, ended, strict=True)
    ]


def naive_loop(model, tokenizer, env, episodes, settings, bank, retriever) -> dict[str, Any]:
    """One episode at a time, one un-batched generate per step on the full prompt, one in-process
    environment; skills retrieved from ``bank`` like the collector does. Returns env steps, wall
    and CPU seconds, prompt tokens and the actions taken per (traj, step)."""
    from tqdm.auto import tqdm

    from skillmaster.agent.parsing import parse_action
    from skillmaster.agent.tokens import encode_prompt
    from skillmaster.rollout.collector import render_step_prompt
    from skillmaster.skills.retrieval import render_skill_block

    actions: dict[tuple[str, int], str] = {}
    env_steps = prompt_tokens = 0
    generate_s = 0.0
    started = clock()
    for ep in tqdm(episodes, desc="naive loop", unit="ep", dynamic_ncols=True):
        obs, info = env.reset(options={"task_id": ep.task.task_id, "split": ep.task.split})
        block, _ = render_skill_block(retriever(bank, info.get("task_text", ""), ep.task.category))
        state = _NaiveState(obs=obs, info=info, skills_block=block)
        for step in range(settings.max_steps):
            text, prefix_chars = render_step_prompt(tokenizer, state, step, settings)
            prefix, suffix = encode_prompt(tokenizer, text, prefix_chars)
            prompt_tokens += len(prefix) + len(suffix)
            t0 = time.perf_counter()
            reply, truncated = _bare_generate(model, tokenizer, [prefix + suffix], settings.max_new_tokens)[0]
            generate_s += time.perf_counter() - t0
            parsed = parse_action(reply, state.info.get("admissible_actions", []), truncated=truncated)
            action = parsed.action or reply.strip()[:200]
            actions[(ep.traj_id, step)] = action
            obs, _, terminated, truncated_env, info = env.step(action)
            env_steps += 1
            state.history.append((action, obs))
            state.obs, state.info = obs, info
            if terminated or truncated_env or info.get("won"):
                break
    wall, cpu = since(started)
    return {
        "env_steps": env_steps,
        "seconds": wall,
        "cpu_seconds": cpu,
        "generate_seconds": generate_s,
        "prompt_tokens": prompt_tokens,
        "actions": actions,
    }


# --------------------------------------------------------------------------- (b) generation
def _time_rounds(runs: dict, rounds: int) -> tuple[dict[str, float], dict[str, list]]:
    """Median wall seconds of each run (alternating order per round) and the last outputs."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, list] = {}
    order = list(runs)
    for k in range(rounds):
        for name in order if k % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            outputs[name] = runs[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, outputs


def _generation_report(runs: dict, rounds: int, prompts: int, baseline: str) -> dict:
    """Time the project's path against the bare call (:func:`_time_rounds`) and compare their outputs."""
    sec, out = _time_rounds(runs, rounds)
    return {
        "project_s": round(sec["project"], 3),
        "bare_s": round(sec["bare"], 3),
        "ratio": ratio(sec["project"], sec["bare"]),
        "identical_outputs": out["project"] == out["bare"],
        "prompts": prompts,
        "baseline": baseline,
    }


def measure_vllm_generation(policy, prompts: list[tuple[str, int]], max_new_tokens: int, rounds: int) -> dict:
    """The project's vLLM path against bare ``LLM.generate`` on the same ids and sampling settings."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from skillmaster.agent.tokens import encode_prompt

    tok = policy.tokenizer
    ids = [p + s for p, s in (encode_prompt(tok, text, n) for text, n in prompts)]
    params = SamplingParams(
        temperature=0.0, max_tokens=max_new_tokens, stop=[STOP], include_stop_str_in_output=True
    )

    def bare() -> list[str]:
        outs = policy.llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]

    def project() -> list[str]:
        gens = policy.generate(prompts, max_new_tokens=max_new_tokens, temperature=0.0, stop=STOP)
        return [g.text for g in gens]

    policy.clear_cache()
    bare()  # both sides then find the prompts' prefixes cached, as in a rollout
    return _generation_report(
        {"bare": bare, "project": project},
        rounds,
        len(prompts),
        "bare vllm.LLM.generate: the same token ids, greedy, same max_tokens and stop string",
    )


def measure_hf_generation(policy, prompts: list[tuple[str, int]], max_new_tokens: int, rounds: int) -> dict:
    """The transformers engine (prefix store emptied first) against a bare ``model.generate``."""
    from skillmaster.agent.tokens import encode_prompt

    tok, model = policy.tokenizer, policy.model
    ids = [p + s for p, s in (encode_prompt(tok, text, n) for text, n in prompts)]
    size = policy.max_batch_size or len(ids)

    def bare() -> list[str]:
        out = []
        for start in range(0, len(ids), size):
            out += [t for t, _ in _bare_generate(model, tok, ids[start : start + size], max_new_tokens)]
        return out

    def project() -> list[str]:
        policy.clear_cache()
        gens = policy.generate(prompts, max_new_tokens=max_new_tokens, temperature=0.0, stop=STOP)
        return [g.text for g in gens]

    return _generation_report(
        {"bare": bare, "project": project},
        rounds,
        len(prompts),
        "bare transformers model.generate: left-padded batches of the same token ids, greedy, "
        "same max_new_tokens and stop string, no prefix cache",
    )


def measure_stop_check(tokenizer, batch: int = 16, prompt_len: int = 600, steps: int = 48) -> dict[str, Any]:
    """The stop-string check alone, per decode step, on random ids (no model): the policy's
    :class:`TailStop` vs transformers' ``StopStringCriteria`` (what ``generate(stop_strings=...)``
    builds on every call)."""
    import torch
    from transformers import StopStringCriteria

    from skillmaster.agent.policy import TailStop

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 40000, (batch, prompt_len + steps), generator=gen)
    scores = torch.zeros(batch, 1)
    t = time.perf_counter()
    hf = StopStringCriteria(tokenizer, [STOP])
    build_s = time.perf_counter() - t
    tail = TailStop(tokenizer, STOP, prompt_len=prompt_len)
    out = {}
    for name, crit in (("stop_strings", hf), ("tail_stop", tail)):
        t = time.perf_counter()
        for n in range(1, steps + 1):
            crit(ids[:, : prompt_len + n], scores)
        out[name] = (time.perf_counter() - t) / steps * 1000
    return {
        "batch": batch,
        "steps": steps,
        "tail_stop_ms_per_step": round(out["tail_stop"], 3),
        "stop_strings_ms_per_step": round(out["stop_strings"], 3),
        "stop_strings_build_s": round(build_s, 3),
        "ratio": ratio(out["tail_stop"], out["stop_strings"]),
        "baseline": "transformers StopStringCriteria (generate(stop_strings=...)), built once per call",
    }
