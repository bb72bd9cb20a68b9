"""``skillmaster bench rollout``: the two generation engines and a naive loop, measured in one run.

Everything runs on the real prepared model (in the dtype the pipeline would use: ``model.dtype:
auto``) and real ALFWorld games of the first split found (valid_seen first), with the seed skill
bank shown (template retrieval), greedy decoding and a fixed step limit, so every side does the
same work:

(a) **Rollout steps/s.** :func:`~skillmaster.rollout.collector.collect_episodes` with an
    :class:`~skillmaster.envs.pool.EnvPool`, as the ``collect`` stage builds them (B tasks × G
    episodes in lock-step, one generate call per step), once on the **vLLM engine** and once on the
    **transformers engine** (batched, prefix KV reuse), against the **naive loop**: one episode at
    a time, one un-batched ``model.generate`` per step over the full prompt, one environment in
    this process. Episodes never end on a malformed reply (``end_on_malformed`` off), so each side
    plays ``B·G·max_steps`` environment steps unless a game is won. Timed: the collection calls and
    the loop; engine start-up (reported) and worker start-up excluded. The naive loop plays half its
    episodes first and half last, so that it meets the same background load as the engines.
(b) **Generation time.** The project's vLLM path (:meth:`VllmPolicy.generate`: tokenising, one
    request per prompt with its seed, the shared stop handling) against **bare ``vllm.LLM.generate``**
    on the same token ids with the same sampling settings, on the prompts of every step of (a);
    likewise the transformers engine against a bare ``model.generate``. Rounds alternate; medians.
(c) **Prefix cache.** The share of prompt tokens vLLM served from its prefix cache during (a), and
    the prompt tokens the transformers engine's prefix store saved.

Wall-clock ratios are the figures; CPU seconds of this process and its children (the pool's and
the engine's workers) are reported beside them.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmaster.bench.env import bench_tasks

TARGETS = {"vllm_over_hf": 2.5, "vllm_over_naive": 3.0, "vllm_generation_ratio": 1.25}
SIZES: dict[str, dict[str, int]] = {
    "quick": {"tasks": 1, "group_size": 2, "max_steps": 2, "max_new_tokens": 8, "rounds": 1},
    "full": {"tasks": 8, "group_size": 2, "max_steps": 5, "max_new_tokens": 48, "rounds": 3},
}
SEED_BANK = "src/skillmaster/resources/seed_bank_alfworld_small.json"

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
    but leaves the work done (CPU seconds) nearly unchanged, with one torch thread (see module doc).
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


# --------------------------------------------------------------------------- set-up
def _suite_and_tasks(max_steps: int, n_tasks: int):
    """The ALFWorld suite (``env`` section of params.yaml when present) and ``n_tasks`` tasks
    spread over families, plus one more task for warming up."""
    from skillmaster.envs.cli import env_config, round_robin
    from skillmaster.envs.registry import make_suite

    suite = make_suite(env_config(Path("params.yaml"), "alfworld", max_steps=max_steps))
    tasks = bench_tasks(suite)
    picked = round_robin(tasks, n_tasks + 1)
    return suite, picked[:n_tasks], picked[-1]


def _settings(size: dict[str, int]):
    from skillmaster.config import RolloutConfig
    from skillmaster.rollout.collector import RolloutSettings

    r = RolloutConfig()
    return RolloutSettings(
        env_name="alfworld",
        max_steps=size["max_steps"],
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=size["max_new_tokens"],
        history_length=r.history_length,
        max_obs_chars=r.max_obs_chars,
        end_on_malformed=False,
        penalties=r.penalties,
        success_reward=r.success_reward,
        seed=0,
    )


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
    sec, out = _time_rounds({"bare": bare, "project": project}, rounds)
    return {
        "project_s": round(sec["project"], 3),
        "bare_s": round(sec["bare"], 3),
        "ratio": _ratio(sec["project"], sec["bare"]),
        "identical_outputs": out["project"] == out["bare"],
        "prompts": len(prompts),
        "baseline": "bare vllm.LLM.generate: the same token ids, greedy, same max_tokens and stop string",
    }


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

    sec, out = _time_rounds({"bare": bare, "project": project}, rounds)
    return {
        "project_s": round(sec["project"], 3),
        "bare_s": round(sec["bare"], 3),
        "ratio": _ratio(sec["project"], sec["bare"]),
        "identical_outputs": out["project"] == out["bare"],
        "prompts": len(prompts),
        "baseline": "bare transformers model.generate: left-padded batches of the same token ids, greedy, "
        "same max_new_tokens and stop string, no prefix cache",
    }


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
        "ratio": _ratio(out["tail_stop"], out["stop_strings"]),
        "baseline": "transformers StopStringCriteria (generate(stop_strings=...)), built once per call",
    }


# --------------------------------------------------------------------------- the benchmark
def _seed_bank_path() -> Path:
    import skillmaster

    return Path(skillmaster.__file__).parent / "resources" / Path(SEED_BANK).name


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else float("inf")


def render_block(bank, retriever, category: str) -> str:
    """The skill block shown for ``category`` (template retrieval ignores the task text)."""
    from skillmaster.skills.retrieval import render_skill_block

    return render_skill_block(retriever(bank, "", category))[0]


@dataclass
class _Side:
    """One engine's collection in (a)."""

    env_steps: int
    seconds: float
    cpu_seconds: float
    generate_seconds: float
    actions: dict
    stats: dict
    prompts: list[tuple[str, int]]


def _collect(policy, pool, episodes, settings, retriever, desc: str) -> _Side:
    from skillmaster.agent.generation import GenerationStats
    from skillmaster.rollout.collector import collect_episodes

    policy.clear_cache()
    policy.stats = GenerationStats(
        engine_starts=policy.stats.engine_starts, engine_start_seconds=policy.stats.engine_start_seconds
    )
    start = clock()
    steps, _ = collect_episodes(policy, pool, episodes, settings, retriever, desc=desc)
    wall, cpu = since(start)
    return _Side(
        env_steps=steps.height,
        seconds=wall,
        cpu_seconds=cpu,
        generate_seconds=policy.stats.seconds,
        actions={(r["traj_id"], r["step"]): r["action"] for r in steps.iter_rows(named=True)},
        stats=policy.stats.as_dict(),
        prompts=list(zip(steps["prompt"].to_list(), steps["prefix_chars"].to_list(), strict=True)),
    )


def _side_report(side: _Side, naive: dict) -> dict:
    same = sum(naive["actions"].get(k) == a for k, a in side.actions.items())
    return {
        "steps_per_s": round(side.env_steps / side.seconds, 3),
        "env_steps": side.env_steps,
        "seconds": round(side.seconds, 2),
        "cpu_seconds": round(side.cpu_seconds, 2),
        "generate_share": round(side.generate_seconds / side.seconds, 3),
        "same_actions_as_naive": round(same / max(side.env_steps, 1), 4),
    }


def bench_rollout(
    quick: bool = False, model_dir: Path | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Run (a), (b) and (c) of the module doc in this process; the figures and ratios as a dict.

    ``threads`` sets torch's CPU threads for the transformers sides (None: torch's default).
    """
    import torch

    from skillmaster.agent.policy import Policy
    from skillmaster.agent.vllm_engine import VllmPolicy
    from skillmaster.config import ModelConfig, RolloutConfig, SkillsConfig, VllmConfig
    from skillmaster.envs.pool import EnvPool
    from skillmaster.modeling import ensure_model_dir, resolve_dtype
    from skillmaster.paths import Paths
    from skillmaster.rollout.collector import EpisodeSpec
    from skillmaster.runtime import configure_environment, project_root
    from skillmaster.skills.retrieval import make_retriever
    from skillmaster.skills.store import load_bank

    configure_environment()
    if threads:
        torch.set_num_threads(threads)
    size = SIZES["quick" if quick else "full"]
    model_dir = ensure_model_dir(Path(model_dir) if model_dir else Paths(project_root()).base_model)
    model_cfg = ModelConfig(device="cpu", num_threads=threads)
    dtype = str(resolve_dtype(model_cfg, "cpu", model_dir)).removeprefix("torch.")
    suite, tasks, spare = _suite_and_tasks(size["max_steps"], size["tasks"])
    settings = _settings(size)
    bank = load_bank(_seed_bank_path())
    retriever = make_retriever(SkillsConfig(retrieval="template"))
    episodes = [
        EpisodeSpec(f"bench-{g:02d}-{m:02d}", task, g, 0, bank=bank)
        for g, task in enumerate(tasks)
        for m in range(size["group_size"])
    ]
    hf = Policy.load(model_dir, model_cfg, prefix_reuse=True, max_batch_size=RolloutConfig().max_batch_size)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    warm = {"task_id": spare.task_id, "split": spare.split}
    hf.generate([("Hello", 0)], max_new_tokens=2, temperature=0.0, stop=None)  # kernels warm

    workers = max(1, min(RolloutConfig().num_workers, len(episodes)))
    env = suite.make_env()  # the naive loop's
    half = len(episodes) // 2
    with EnvPool(suite, num_envs=len(episodes), num_workers=workers) as pool:
        pool.reset_many([(i, warm) for i in range(workers)])  # every worker's engine started
        env.reset(options=warm)
        naive = naive_loop(hf.model, hf.tokenizer, env, episodes[:half], settings, bank, retriever)
        hf_side = _collect(hf, pool, episodes, settings, retriever, "transformers engine")
        hf_gen = measure_hf_generation(hf, hf_side.prompts, settings.max_new_tokens, size["rounds"])
        with VllmPolicy.load(model_dir, model_cfg, VllmConfig()) as vllm:
            vllm.generate([("Hello", 0)], max_new_tokens=2, temperature=0.0, stop=None)
            v_side = _collect(vllm, pool, episodes, settings, retriever, "vLLM engine")
            v_gen = measure_vllm_generation(vllm, v_side.prompts, settings.max_new_tokens, size["rounds"])
            start_s = vllm.stats.engine_start_seconds
        rest = naive_loop(hf.model, hf.tokenizer, env, episodes[half:], settings, bank, retriever)
    env.close()
    naive = {k: v | rest[k] if isinstance(v, dict) else v + rest[k] for k, v in naive.items()}
    naive_rate = naive["env_steps"] / naive["seconds"]
    v_rate, hf_rate = v_side.env_steps / v_side.seconds, hf_side.env_steps / hf_side.seconds
    vs, hs = v_side.stats, hf_side.stats
    report: dict[str, Any] = {
        "benchmark": "rollout",
        "quick": quick,
        "device": "cpu",
        "dtype": dtype,
        "torch_threads": torch.get_num_threads(),
        "vllm_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
        "load_avg_1m_at_start": round(load, 2) if load is not None else None,
        "split": tasks[0].split,
        "tasks": len(tasks),
        "group_size": size["group_size"],
        "episodes": len(episodes),
        "max_steps": settings.max_steps,
        "max_new_tokens": settings.max_new_tokens,
        "decoding": "greedy",
        "env_workers": workers,
        "seed_bank": SEED_BANK,
        "steps_per_s": {
            "vllm": _side_report(v_side, naive),
            "hf": _side_report(hf_side, naive),
            "naive": {
                "steps_per_s": round(naive_rate, 3),
                "env_steps": naive["env_steps"],
                "seconds": round(naive["seconds"], 2),
                "cpu_seconds": round(naive["cpu_seconds"], 2),
                "generate_share": round(naive["generate_seconds"] / naive["seconds"], 3),
            },
            "vllm_over_hf": _ratio(v_rate, hf_rate),
            "vllm_over_naive": _ratio(v_rate, naive_rate),
            "hf_over_naive": _ratio(hf_rate, naive_rate),
            "baseline": "naive loop: one episode at a time, one un-batched transformers model.generate per "
            "step on the full prompt (no prefix reuse), one in-process environment; the transformers "
            "engine: the same collector, batched, with its prefix KV store",
        },
        "engine_start_s": {"vllm": round(start_s, 2)},
        "generation": {"vllm": v_gen, "hf": hf_gen},
        "prefix_cache": {
            "vllm_hit_rate": vs["prefix_cache_hit_rate"],
            "vllm_prompt_tokens": vs["prompt_tokens"],
            "vllm_prefilled_tokens": vs["prefilled_tokens"],
            "hf_prefill_saved": hs["prefix_cache_hit_rate"],
            "hf_prompt_tokens": hs["prompt_tokens"],
            "baseline": "every prompt token prefilled (no prefix cache)",
        },
        "stop_check": measure_stop_check(hf.tokenizer),
        "skill_block_tokens": len(
            hf.tokenizer(render_block(bank, retriever, tasks[0].category), add_special_tokens=False).input_ids
        ),
        "targets": {
            k: (">= " if k != "vllm_generation_ratio" else "<= ") + str(v) for k, v in TARGETS.items()
        },
    }
    report["pass"] = {
        "vllm_over_hf": report["steps_per_s"]["vllm_over_hf"] >= TARGETS["vllm_over_hf"],
        "vllm_over_naive": report["steps_per_s"]["vllm_over_naive"] >= TARGETS["vllm_over_naive"],
        "vllm_generation_ratio": v_gen["ratio"] <= TARGETS["vllm_generation_ratio"],
    }
    return report


def format_rollout_report(report: dict[str, Any]) -> str:
    """A short readable table of :func:`bench_rollout`'s result (``--json`` prints everything)."""
    a, g, c, ok, t = (
        report["steps_per_s"],
        report["generation"],
        report["prefix_cache"],
        report["pass"],
        report["targets"],
    )
    mark = {True: "ok", False: "FAIL"}
    v, h, n = a["vllm"], a["hf"], a["naive"]
    return "\n".join(
        [
            f"bench rollout ({'quick' if report['quick'] else 'full'}; {report['device']} {report['dtype']}, "
            f"load {report['load_avg_1m_at_start']}): {report['split']}, {report['tasks']} tasks x group "
            f"{report['group_size']} = {report['episodes']} episodes, {report['max_steps']} steps, "
            f"{report['max_new_tokens']} new tokens max, greedy, skills from {report['seed_bank']}",
            f"  steps/s     vLLM engine {v['steps_per_s']:.2f}, transformers engine {h['steps_per_s']:.2f}, naive "
            f"loop {n['steps_per_s']:.2f}: vLLM/transformers {a['vllm_over_hf']:.2f} (target "
            f"{t['vllm_over_hf']}) {mark[ok['vllm_over_hf']]}, vLLM/naive {a['vllm_over_naive']:.2f} (target "
            f"{t['vllm_over_naive']}) {mark[ok['vllm_over_naive']]}, transformers/naive {a['hf_over_naive']:.2f}; "
            f"same actions as naive {v['same_actions_as_naive']:.0%} / {h['same_actions_as_naive']:.0%}; "
            f"vLLM start-up {report['engine_start_s']['vllm']:.1f}s (not in steps/s)",
            f"  generation  vLLM path {g['vllm']['project_s']:.2f}s vs bare LLM.generate {g['vllm']['bare_s']:.2f}s: "
            f"ratio {g['vllm']['ratio']:.3f} (target {t['vllm_generation_ratio']}) "
            f"{mark[ok['vllm_generation_ratio']]}, identical {g['vllm']['identical_outputs']}; transformers engine "
            f"{g['hf']['project_s']:.2f}s vs bare model.generate {g['hf']['bare_s']:.2f}s: ratio "
            f"{g['hf']['ratio']:.3f}, identical {g['hf']['identical_outputs']}; {g['vllm']['prompts']} prompts",
            f"  prefix      vLLM served {c['vllm_hit_rate']:.1%} of {c['vllm_prompt_tokens']} prompt tokens from its "
            f"cache; the transformers prefix store saved {c['hf_prefill_saved']:.1%}",
            f"  baselines:  (a) {a['baseline']}",
            f"              (b) {g['vllm']['baseline']}; {g['hf']['baseline']}",
        ]
    )
