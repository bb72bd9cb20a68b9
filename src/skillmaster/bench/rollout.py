"""``skillmaster bench rollout``: the rollout path against naive baselines, measured in one run.

Everything runs on the real prepared model (fp32 on CPU) and real ALFWorld games of the first
split found (valid_seen first), with the seed skill bank shown (template retrieval), greedy
decoding and a fixed step limit, so both sides of each comparison do the same work:

(a) **Rollout steps/s.** :func:`~skillmaster.rollout.collector.collect_episodes` with an
    :class:`~skillmaster.envs.pool.EnvPool`, as the ``collect`` stage builds them (B tasks × G
    episodes in lock-step, one batched generate per step, prefix KV reuse) against the **naive
    loop**: one episode at a time, one un-batched ``model.generate`` per step over the full prompt
    (no prefix reuse), one environment in this process. Same tasks, same prompts (the collector's
    renderer), same token cap and stop string, same step limit; episodes never end on a malformed
    reply (``end_on_malformed`` off) so both play ``B·G·max_steps`` environment steps unless a game
    is won. Timed: the collection call and the loop (model load and worker start-up excluded); the
    naive loop plays half its episodes before the collection and half after, so that both meet the
    same background load.
(b) **Generation time.** :meth:`~skillmaster.agent.policy.Policy.generate` against a **bare
    ``model.generate``** (HF, left-padded batch of the same token ids, greedy, same
    ``max_new_tokens`` and stop string, no prefix cache) on the step prompts of the last step of
    (a). The policy is timed as rollouts use it (prefix reuse on, store emptied before the call,
    so the prefixes are computed inside it), with the store already warm, and with prefix reuse
    off (the wrapper's own overhead). Rounds alternate; medians are reported.
(c) **Prefill.** Prompt tokens per step the model had to run with prefix reuse (suffixes plus each
    distinct prefix once) against without (every prompt in full), from the policy's counters over
    the collection of (a).

Wall-clock ratios are the figures; CPU seconds (this process and the pool's workers) are reported
beside them. On a machine shared with other work use ``--threads 1``: with 2 torch threads on 2
busy cores, generation ran ~5x slower than with 1 (threads waiting on each other), and that
waiting counts as CPU time too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmaster.bench.env import bench_tasks

TARGETS = {"steps_per_s_ratio": 3.0, "generation_ratio": 1.25, "prefill_reduction": 0.40}
SIZES: dict[str, dict[str, int]] = {
    "quick": {"tasks": 1, "group_size": 2, "max_steps": 2, "max_new_tokens": 4, "rounds": 1},
    "full": {"tasks": 8, "group_size": 2, "max_steps": 3, "max_new_tokens": 32, "rounds": 1},
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
def measure_generation(
    policy, prompts: list[tuple[str, int]], max_new_tokens: int, rounds: int
) -> dict[str, Any]:
    """Median wall and CPU seconds of the bare generate and the policy's three ways, alternating rounds."""
    from skillmaster.agent.tokens import encode_prompt

    tok, model = policy.tokenizer, policy.model
    times: dict[str, list[tuple[float, float]]] = {
        "bare": [],
        "policy": [],
        "policy_warm": [],
        "policy_no_reuse": [],
    }
    texts: dict[str, list[str]] = {}

    def bare() -> list[str]:
        ids = [p + s for p, s in (encode_prompt(tok, text, n) for text, n in prompts)]
        return [text for text, _ in _bare_generate(model, tok, ids, max_new_tokens)]

    def pol(reuse: bool, clear: bool) -> list[str]:
        policy.prefix_reuse = reuse
        if clear:
            policy.clear_cache()
        gens = policy.generate(prompts, max_new_tokens=max_new_tokens, temperature=0.0, stop=STOP)
        return [g.text for g in gens]

    runs = {
        "bare": bare,
        "policy": lambda: pol(True, True),
        "policy_warm": lambda: pol(True, False),
        "policy_no_reuse": lambda: pol(False, False),
    }
    order = list(runs)
    for k in range(rounds):
        for name in order if k % 2 == 0 else order[1:] + order[:1]:  # "policy" always before "policy_warm"
            start = clock()
            texts[name] = runs[name]()
            times[name].append(since(start))
    policy.prefix_reuse = True
    return {
        "seconds": {k: statistics.median(w for w, _ in v) for k, v in times.items()},
        "cpu_seconds": {k: statistics.median(c for _, c in v) for k, v in times.items()},
        "rounds": {k: [round(w, 3) for w, _ in v] for k, v in times.items()},
        "identical_outputs": all(texts[k] == texts["bare"] for k in texts),
    }


# --------------------------------------------------------------------------- (c) prefill
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


def padded_prefill_tokens(tokenizer, steps) -> int:
    """Prompt tokens the model ran in the collection *including left padding*: per lock-step, the
    live rows' suffixes padded to the longest one, and at the first step the distinct prefixes
    padded to the longest one (the policy's prefix path, all prompts in one batch)."""
    from skillmaster.agent.tokens import encode_prompt

    total = 0
    for step in sorted(set(steps["step"].to_list())):
        rows = steps.filter(steps["step"] == step)
        prompts = list(zip(rows["prompt"], rows["prefix_chars"], strict=True))
        parts = [encode_prompt(tokenizer, text, n) for text, n in prompts]
        total += len(parts) * max(len(suffix) for _, suffix in parts)
        if step == 0:
            prefixes = {text[:n]: len(prefix) for (text, n), (prefix, _) in zip(prompts, parts, strict=True)}
            total += len(prefixes) * max(prefixes.values())
    return total


# --------------------------------------------------------------------------- the benchmark
def _seed_bank_path() -> Path:
    import skillmaster

    return Path(skillmaster.__file__).parent / "resources" / Path(SEED_BANK).name


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else float("inf")


def bench_rollout(
    quick: bool = False, model_dir: Path | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Run (a), (b) and (c) of the module doc in this process; the figures and ratios as a dict.

    ``threads`` sets torch's CPU threads (None: torch's default); on a machine shared with other
    work, 1 gives the steadiest ratios.
    """
    import torch

    from skillmaster.agent.policy import GenerationStats, Policy
    from skillmaster.config import ModelConfig, RolloutConfig, SkillsConfig
    from skillmaster.envs.pool import EnvPool
    from skillmaster.modeling import ensure_model_dir
    from skillmaster.paths import Paths
    from skillmaster.rollout.collector import EpisodeSpec, collect_episodes
    from skillmaster.runtime import configure_environment, project_root
    from skillmaster.skills.bank import load_bank
    from skillmaster.skills.retrieval import make_retriever

    configure_environment()
    if threads:
        torch.set_num_threads(threads)
    size = SIZES["quick" if quick else "full"]
    model_dir = ensure_model_dir(Path(model_dir) if model_dir else Paths(project_root()).base_model)
    suite, tasks, spare = _suite_and_tasks(size["max_steps"], size["tasks"])
    settings = _settings(size)
    bank = load_bank(_seed_bank_path())
    retriever = make_retriever(SkillsConfig(retrieval="template"))
    episodes = [
        EpisodeSpec(f"bench-{g:02d}-{m:02d}", task, g, 0, bank=bank)
        for g, task in enumerate(tasks)
        for m in range(size["group_size"])
    ]
    policy = Policy.load(
        model_dir, ModelConfig(dtype="float32", device="cpu", num_threads=threads), prefix_reuse=True
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    warm_options = {"task_id": spare.task_id, "split": spare.split}
    policy.generate([("Hello", 0)], max_new_tokens=2, temperature=0.0, stop=None)  # kernels warm

    workers = max(1, min(RolloutConfig().num_workers, len(episodes)))
    env = suite.make_env()  # the naive loop's
    half = len(episodes) // 2  # the naive loop runs half before the collector, half after (same load)
    with EnvPool(suite, num_envs=len(episodes), num_workers=workers) as pool:
        pool.reset_many([(i, warm_options) for i in range(workers)])  # every worker's engine started
        env.reset(options=warm_options)
        naive = naive_loop(policy.model, policy.tokenizer, env, episodes[:half], settings, bank, retriever)
        policy.clear_cache()
        policy.stats = GenerationStats()
        start = clock()
        steps, _ = collect_episodes(policy, pool, episodes, settings, retriever, desc="batched collector")
        batched_s, batched_cpu = since(start)
        stats = dataclasses.replace(policy.stats)  # (b) below adds to the policy's counters
        rest = naive_loop(policy.model, policy.tokenizer, env, episodes[half:], settings, bank, retriever)
    env.close()
    naive = {k: v | rest[k] if isinstance(v, dict) else v + rest[k] for k, v in naive.items()}

    last = steps.filter(steps["step"] == steps["step"].max())
    prompts = list(zip(last["prompt"].to_list(), last["prefix_chars"].to_list(), strict=True))
    gen = measure_generation(policy, prompts, settings.max_new_tokens, size["rounds"])

    batched_steps = steps.height
    matching = sum(
        naive["actions"].get((row["traj_id"], row["step"])) == row["action"]
        for row in steps.iter_rows(named=True)
    )
    batched_rate = batched_steps / batched_s
    naive_rate = naive["env_steps"] / naive["seconds"]
    sec, cpu = gen["seconds"], gen["cpu_seconds"]
    prefill_with = stats.prefilled_tokens + stats.prefix_tokens_computed
    reduction = 1 - prefill_with / stats.prompt_tokens if stats.prompt_tokens else 0.0
    padded = padded_prefill_tokens(policy.tokenizer, steps)
    skill_block = render_block(bank, retriever, tasks[0].category)
    report: dict[str, Any] = {
        "benchmark": "rollout",
        "quick": quick,
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "torch_threads": torch.get_num_threads(),
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
            "batched": round(batched_rate, 3),
            "naive": round(naive_rate, 3),
            "ratio": _ratio(batched_rate, naive_rate),
            "batched_env_steps": batched_steps,
            "naive_env_steps": naive["env_steps"],
            "batched_seconds": round(batched_s, 2),
            "naive_seconds": round(naive["seconds"], 2),
            "cpu_ratio": _ratio(batched_steps / batched_cpu, naive["env_steps"] / naive["cpu_seconds"]),
            "batched_cpu_seconds": round(batched_cpu, 2),
            "naive_cpu_seconds": round(naive["cpu_seconds"], 2),
            "matching_actions": round(matching / max(batched_steps, 1), 4),
            "batched_generate_share": round(stats.seconds / batched_s, 3),
            "naive_generate_share": round(naive["generate_seconds"] / naive["seconds"], 3),
            "baseline": "naive loop: one episode at a time, one un-batched model.generate per step on the full "
            "prompt (no prefix reuse), one in-process environment; same tasks, prompts, token cap and steps",
        },
        "generation": {
            "policy_s": round(sec["policy"], 3),
            "bare_s": round(sec["bare"], 3),
            "ratio": _ratio(sec["policy"], sec["bare"]),
            "policy_warm_cache_s": round(sec["policy_warm"], 3),
            "ratio_warm_cache": _ratio(sec["policy_warm"], sec["bare"]),
            "policy_no_prefix_reuse_s": round(sec["policy_no_reuse"], 3),
            "ratio_no_prefix_reuse": _ratio(sec["policy_no_reuse"], sec["bare"]),
            "cpu_ratio": _ratio(cpu["policy"], cpu["bare"]),
            "cpu_ratio_warm_cache": _ratio(cpu["policy_warm"], cpu["bare"]),
            "cpu_ratio_no_prefix_reuse": _ratio(cpu["policy_no_reuse"], cpu["bare"]),
            "prompts": len(prompts),
            "rounds": gen["rounds"],
            "identical_outputs": gen["identical_outputs"],
            "baseline": "bare HF model.generate: left-padded batch of the same token ids, greedy, same "
            "max_new_tokens and stop string, no prefix cache",
        },
        "prefill": {
            "prompt_tokens_per_step": round(stats.prompt_tokens / max(stats.sequences, 1), 1),
            "prefilled_tokens_per_step": round(prefill_with / max(stats.sequences, 1), 1),
            "suffix_tokens_per_step": round(stats.prefilled_tokens / max(stats.sequences, 1), 1),
            "prefix_tokens_computed": stats.prefix_tokens_computed,
            "reduction": round(reduction, 4),
            "padded_tokens_per_step": round(padded / max(stats.sequences, 1), 1),
            "padding_share": round(1 - prefill_with / padded, 4) if padded else 0.0,
            "naive_prompt_tokens_per_step": round(naive["prompt_tokens"] / max(naive["env_steps"], 1), 1),
            "skill_block_tokens": len(policy.tokenizer(skill_block, add_special_tokens=False).input_ids),
            "baseline": "the same prompts prefilled in full (no prefix reuse); with reuse: each step's suffix "
            "plus each distinct prefix (system, task, skill block) once",
        },
        "stop_check": measure_stop_check(policy.tokenizer),
        "generation_stats": stats.as_dict(),
        "targets": {
            "steps_per_s_ratio": f">= {TARGETS['steps_per_s_ratio']}",
            "generation_ratio": f"<= {TARGETS['generation_ratio']}",
            "prefill_reduction": f">= {TARGETS['prefill_reduction']}",
        },
    }
    report["pass"] = {
        "steps_per_s_ratio": report["steps_per_s"]["ratio"] >= TARGETS["steps_per_s_ratio"],
        "generation_ratio": report["generation"]["ratio"] <= TARGETS["generation_ratio"],
        "prefill_reduction": reduction >= TARGETS["prefill_reduction"],
    }
    return report


def render_block(bank, retriever, category: str) -> str:
    """The skill block shown for ``category`` (template retrieval ignores the task text)."""
    from skillmaster.skills.retrieval import render_skill_block

    return render_skill_block(retriever(bank, "", category))[0]


def format_rollout_report(report: dict[str, Any]) -> str:
    """A short readable table of :func:`bench_rollout`'s result (``--json`` prints everything)."""
    a, g, p, ok = report["steps_per_s"], report["generation"], report["prefill"], report["pass"]
    mark = {True: "ok", False: "FAIL"}
    t = report["targets"]
    return "\n".join(
        [
            f"bench rollout ({'quick' if report['quick'] else 'full'}; {report['device']}, "
            f"{report['torch_threads']} threads, load {report['load_avg_1m_at_start']}): {report['split']}, "
            f"{report['tasks']} tasks x group {report['group_size']} = {report['episodes']} episodes, "
            f"{report['max_steps']} steps, {report['max_new_tokens']} new tokens max, greedy, "
            f"skills from {report['seed_bank']}",
            f"  steps/s     batched collector {a['batched']:.2f} vs naive loop {a['naive']:.2f}: ratio "
            f"{a['ratio']:.2f} (target {t['steps_per_s_ratio']}) {mark[ok['steps_per_s_ratio']]}; env steps "
            f"{a['batched_env_steps']} vs {a['naive_env_steps']}, same actions {a['matching_actions']:.0%}; "
            f"generation is {a['batched_generate_share']:.0%} vs {a['naive_generate_share']:.0%} of the time; "
            f"by CPU seconds (load-insensitive) ratio {a['cpu_ratio']:.2f}",
            f"  generation  Policy.generate {g['policy_s']:.2f}s vs bare model.generate {g['bare_s']:.2f}s: ratio "
            f"{g['ratio']:.3f} (target {t['generation_ratio']}) {mark[ok['generation_ratio']]}; warm prefix store "
            f"{g['ratio_warm_cache']:.3f}, no prefix reuse {g['ratio_no_prefix_reuse']:.3f}; {g['prompts']} prompts, "
            f"identical outputs {g['identical_outputs']}; by CPU seconds {g['cpu_ratio']:.3f} / "
            f"{g['cpu_ratio_warm_cache']:.3f} / {g['cpu_ratio_no_prefix_reuse']:.3f}",
            f"  prefill     {p['prefilled_tokens_per_step']:.0f} tokens/step with prefix reuse vs "
            f"{p['prompt_tokens_per_step']:.0f} without: reduction {p['reduction']:.1%} "
            f"(target {t['prefill_reduction']}) {mark[ok['prefill_reduction']]}; skill block "
            f"{p['skill_block_tokens']} tokens; with the batch's left padding the model ran "
            f"{p['padded_tokens_per_step']:.0f} tokens/step ({p['padding_share']:.0%} padding)",
            f"  stop check  {report['stop_check']['tail_stop_ms_per_step']:.2f} ms/decode step vs "
            f"{report['stop_check']['stop_strings_ms_per_step']:.2f} ms for StopStringCriteria (+ "
            f"{report['stop_check']['stop_strings_build_s']:.2f}s to build it per call), batch "
            f"{report['stop_check']['batch']}",
            f"  baselines:  (a) {a['baseline']}",
            f"              (b) {g['baseline']}",
            f"              (c) {p['baseline']}",
        ]
    )
