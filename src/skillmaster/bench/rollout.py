"""``skillmaster bench rollout``: the two generation engines and a naive loop, measured in one run.

Everything runs on the real prepared model (in the dtype the pipeline would use: ``model.dtype:
auto``) and real ALFWorld games of the first split found (valid_seen first), with the seed skill
bank shown (``skills.seed_bank`` of params.yaml, as the ``bank-init`` stage reads it: an empty bank
when it is null; template retrieval), greedy decoding and a fixed step limit, so every side does
the same work:

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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmaster.bench.baselines import (
    clock,
    measure_hf_generation,
    measure_stop_check,
    measure_vllm_generation,
    naive_loop,
    ratio,
    since,
)
from skillmaster.bench.env import bench_tasks

TARGETS = {"vllm_over_hf": 2.5, "vllm_over_naive": 3.0, "vllm_generation_ratio": 1.25}
SIZES: dict[str, dict[str, int]] = {
    "quick": {"tasks": 1, "group_size": 2, "max_steps": 2, "max_new_tokens": 8, "rounds": 1},
    "full": {"tasks": 8, "group_size": 2, "max_steps": 5, "max_new_tokens": 48, "rounds": 3},
}
SEED_BANK = "src/skillmaster/resources/seed_bank_alfworld_small.json"
"""The bundled ALFWorld seed bank: the bench's bank when params.yaml is missing or configures
another environment (whose bank would not fit ALFWorld's categories)."""


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


# --------------------------------------------------------------------------- the benchmark
def _seed_bank_path() -> Path:
    import skillmaster

    return Path(skillmaster.__file__).parent / "resources" / Path(SEED_BANK).name


def configured_seed_bank(params: Path) -> str | None:
    """The seed bank the pipeline starts from: ``skills.seed_bank`` of ``params`` (with its run
    overlay) when it configures ALFWorld; None when that is null (an empty bank); :data:`SEED_BANK`
    when ``params`` is missing or configures another environment."""
    if not params.is_file():
        return SEED_BANK
    from skillmaster.config import load_config

    cfg = load_config(params)
    return cfg.skills.seed_bank if cfg.env.name == "alfworld" else SEED_BANK


def load_seed_bank(seed: str | None, root: Path, categories):
    """The bank ``seed`` names (relative to the project ``root``), or an empty bank with the suite's
    ``categories`` for None, as the ``bank-init`` stage makes it."""
    from skillmaster.skills.bank import empty_bank
    from skillmaster.skills.store import load_bank

    if seed is None:
        return empty_bank(categories)
    path = Path(seed) if Path(seed).is_absolute() else root / seed
    if not path.is_file() and seed == SEED_BANK:  # outside a checkout: the installed package's copy
        path = _seed_bank_path()
    return load_bank(path)


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


@dataclass
class _Bench:
    """The benchmark's fixed inputs: sizes, model, games, settings, skills and the episodes to play."""

    quick: bool
    size: dict[str, int]
    model_dir: Path
    model_cfg: Any
    dtype: str
    suite: Any
    tasks: list
    warm: dict[str, str]
    """reset options of the spare task every environment starts on (engines warm)."""
    settings: Any
    bank: Any
    retriever: Any
    episodes: list
    workers: int
    seed_bank: str | None = SEED_BANK
    """``skills.seed_bank`` the bank came from (None: an empty bank)."""


@dataclass
class _Measured:
    """What (a), (b) and (c) measured."""

    naive: dict
    hf: _Side
    vllm: _Side
    hf_generation: dict
    vllm_generation: dict
    vllm_start_s: float
    load: float | None
    stop_check: dict
    skill_block_tokens: int


def _set_up(quick: bool, model_dir: Path | None, threads: int | None) -> _Bench:
    """Sizes, the prepared model, ALFWorld tasks spread over families, the seed bank and the episodes."""
    import torch

    from skillmaster.config import ModelConfig, RolloutConfig, SkillsConfig
    from skillmaster.modeling import ensure_model_dir, resolve_dtype
    from skillmaster.paths import Paths
    from skillmaster.rollout.collector import EpisodeSpec
    from skillmaster.runtime import configure_environment, project_root
    from skillmaster.skills.retrieval import make_retriever

    configure_environment()
    if threads:
        torch.set_num_threads(threads)
    size = SIZES["quick" if quick else "full"]
    model_dir = ensure_model_dir(Path(model_dir) if model_dir else Paths(project_root()).base_model)
    model_cfg = ModelConfig(device="cpu", num_threads=threads)
    dtype = str(resolve_dtype(model_cfg, "cpu", model_dir)).removeprefix("torch.")
    suite, tasks, spare = _suite_and_tasks(size["max_steps"], size["tasks"])
    seed_bank = configured_seed_bank(Path("params.yaml"))
    bank = load_seed_bank(seed_bank, project_root(), suite.categories)
    episodes = [
        EpisodeSpec(f"bench-{g:02d}-{m:02d}", task, g, 0, bank=bank)
        for g, task in enumerate(tasks)
        for m in range(size["group_size"])
    ]
    return _Bench(
        quick=quick,
        size=size,
        model_dir=model_dir,
        model_cfg=model_cfg,
        dtype=dtype,
        suite=suite,
        tasks=tasks,
        warm={"task_id": spare.task_id, "split": spare.split},
        settings=_settings(size),
        bank=bank,
        retriever=make_retriever(SkillsConfig(retrieval="template")),
        episodes=episodes,
        workers=max(1, min(RolloutConfig().num_workers, len(episodes))),
        seed_bank=seed_bank,
    )


def _measure(b: _Bench) -> _Measured:
    """(a) the naive loop's first half, the transformers engine's collection and (b) its generation,
    the same on vLLM, then the naive loop's second half; (c) is read from the engines' counters."""
    from skillmaster.agent.policy import Policy
    from skillmaster.agent.vllm_engine import VllmPolicy
    from skillmaster.config import RolloutConfig, VllmConfig
    from skillmaster.envs.pool import EnvPool

    hf = Policy.load(
        b.model_dir, b.model_cfg, prefix_reuse=True, max_batch_size=RolloutConfig().max_batch_size
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    hf.generate([("Hello", 0)], max_new_tokens=2, temperature=0.0, stop=None)  # kernels warm

    settings, rounds, episodes = b.settings, b.size["rounds"], b.episodes
    env = b.suite.make_env()  # the naive loop's
    half = len(episodes) // 2

    def naive(part: list) -> dict:
        return naive_loop(hf.model, hf.tokenizer, env, part, settings, b.bank, b.retriever)

    with EnvPool(b.suite, num_envs=len(episodes), num_workers=b.workers) as pool:
        pool.reset_many([(i, b.warm) for i in range(b.workers)])  # every worker's engine started
        env.reset(options=b.warm)
        first = naive(episodes[:half])
        hf_side = _collect(hf, pool, episodes, settings, b.retriever, "transformers engine")
        hf_gen = measure_hf_generation(hf, hf_side.prompts, settings.max_new_tokens, rounds)
        with VllmPolicy.load(b.model_dir, b.model_cfg, VllmConfig()) as vllm:
            vllm.generate([("Hello", 0)], max_new_tokens=2, temperature=0.0, stop=None)
            v_side = _collect(vllm, pool, episodes, settings, b.retriever, "vLLM engine")
            v_gen = measure_vllm_generation(vllm, v_side.prompts, settings.max_new_tokens, rounds)
            start_s = vllm.stats.engine_start_seconds
        rest = naive(episodes[half:])
    env.close()
    block = render_block(b.bank, b.retriever, b.tasks[0].category)
    return _Measured(
        naive={k: v | rest[k] if isinstance(v, dict) else v + rest[k] for k, v in first.items()},
        hf=hf_side,
        vllm=v_side,
        hf_generation=hf_gen,
        vllm_generation=v_gen,
        vllm_start_s=start_s,
        load=load,
        stop_check=measure_stop_check(hf.tokenizer),
        skill_block_tokens=len(hf.tokenizer(block, add_special_tokens=False).input_ids),
    )


def _steps_report(m: _Measured) -> dict:
    """(a): steps/s of each side and their ratios."""
    naive = m.naive
    naive_rate = naive["env_steps"] / naive["seconds"]
    v_rate, hf_rate = m.vllm.env_steps / m.vllm.seconds, m.hf.env_steps / m.hf.seconds
    return {
        "vllm": _side_report(m.vllm, naive),
        "hf": _side_report(m.hf, naive),
        "naive": {
            "steps_per_s": round(naive_rate, 3),
            "env_steps": naive["env_steps"],
            "seconds": round(naive["seconds"], 2),
            "cpu_seconds": round(naive["cpu_seconds"], 2),
            "generate_share": round(naive["generate_seconds"] / naive["seconds"], 3),
        },
        "vllm_over_hf": ratio(v_rate, hf_rate),
        "vllm_over_naive": ratio(v_rate, naive_rate),
        "hf_over_naive": ratio(hf_rate, naive_rate),
        "baseline": "naive loop: one episode at a time, one un-batched transformers model.generate per "
        "step on the full prompt (no prefix reuse), one in-process environment; the transformers "
        "engine: the same collector, batched, with its prefix KV store",
    }


def _prefix_report(m: _Measured) -> dict:
    """(c): prompt tokens served from vLLM's prefix cache and saved by the transformers prefix store."""
    vs, hs = m.vllm.stats, m.hf.stats
    return {
        "vllm_hit_rate": vs["prefix_cache_hit_rate"],
        "vllm_prompt_tokens": vs["prompt_tokens"],
        "vllm_prefilled_tokens": vs["prefilled_tokens"],
        "hf_prefill_saved": hs["prefix_cache_hit_rate"],
        "hf_prompt_tokens": hs["prompt_tokens"],
        "baseline": "every prompt token prefilled (no prefix cache)",
    }


def _report(b: _Bench, m: _Measured) -> dict[str, Any]:
    """The JSON report: the run's set-up, (a), (b), (c), the stop check, targets and pass marks."""
    import torch

    report: dict[str, Any] = {
        "benchmark": "rollout",
        "quick": b.quick,
        "device": "cpu",
        "dtype": b.dtype,
        "torch_threads": torch.get_num_threads(),
        "vllm_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
        "load_avg_1m_at_start": round(m.load, 2) if m.load is not None else None,
        "split": b.tasks[0].split,
        "tasks": len(b.tasks),
        "group_size": b.size["group_size"],
        "episodes": len(b.episodes),
        "max_steps": b.settings.max_steps,
        "max_new_tokens": b.settings.max_new_tokens,
        "decoding": "greedy",
        "env_workers": b.workers,
        "seed_bank": b.seed_bank,
        "steps_per_s": _steps_report(m),
        "engine_start_s": {"vllm": round(m.vllm_start_s, 2)},
        "generation": {"vllm": m.vllm_generation, "hf": m.hf_generation},
        "prefix_cache": _prefix_report(m),
        "stop_check": m.stop_check,
        "skill_block_tokens": m.skill_block_tokens,
        "targets": {
            k: (">= " if k != "vllm_generation_ratio" else "<= ") + str(v) for k, v in TARGETS.items()
        },
    }
    report["pass"] = {
        "vllm_over_hf": report["steps_per_s"]["vllm_over_hf"] >= TARGETS["vllm_over_hf"],
        "vllm_over_naive": report["steps_per_s"]["vllm_over_naive"] >= TARGETS["vllm_over_naive"],
        "vllm_generation_ratio": m.vllm_generation["ratio"] <= TARGETS["vllm_generation_ratio"],
    }
    return report


def bench_rollout(
    quick: bool = False, model_dir: Path | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Run (a), (b) and (c) of the module doc in this process; the figures and ratios as a dict.

    ``threads`` sets torch's CPU threads for the transformers sides (None: torch's default).
    """
    bench = _set_up(quick, model_dir, threads)
    return _report(bench, _measure(bench))


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
            f"{report['max_new_tokens']} new tokens max, greedy, skills from {report['seed_bank'] or 'an empty bank'}",
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
