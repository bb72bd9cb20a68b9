"""Lock-step multi-environment rollouts into the STEPS and TRAJECTORIES tables (METHOD.md §4).

All episodes of a collection advance together: per step, one batched ``generate`` over every live
episode, then one ``step_many`` over the worker pool; finished episodes drop out. Rewards follow
METHOD.md §4: the episode reward is ``success_reward · won`` (minus the malformed-output penalty
when the guard ended the episode), and each step carries its own format/invalid penalties.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

from skillmaster.agent.generation import Generation, prompt_budget
from skillmaster.agent.parsing import parse_action, step_penalty
from skillmaster.agent.prompts import fit_prompt, render_action_prompt
from skillmaster.bars import LoggedBar
from skillmaster.config import Config, PenaltyConfig
from skillmaster.envs.base import TaskSpec
from skillmaster.seeding import derive_seed
from skillmaster.skills.bank import Bank
from skillmaster.skills.retrieval import Retriever, render_skill_block
from skillmaster.tables import STEPS, TRAJECTORIES


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to play: which task, which group, and the bank whose skills the agent is shown
    (None: no skills, the GRPO baseline)."""

    traj_id: str
    task: TaskSpec
    group_id: int
    iteration: int
    bank: Bank | None = None
    condition: str = "train"
    probe_of: str = ""
    """Probe episodes: the review (traj_id) whose edit they score."""
    probe: int = -1
    """Probe episodes: the probe task's index k among the edit's K."""
    seed_key: str | None = None
    """Names the episode's sampling stream (None: ``traj_id``): episodes with the same key draw the
    same random numbers at every step, e.g. a probe's runs with bank B and B′ (paired probes)."""


@dataclass(frozen=True)
class RolloutSettings:
    env_name: str
    max_steps: int
    temperature: float
    top_p: float
    max_new_tokens: int
    history_length: int
    max_obs_chars: int | None
    end_on_malformed: bool
    penalties: PenaltyConfig
    success_reward: float
    seed: int

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        stage: str = "collect",
        temperature: float | None = None,
        max_steps: int | None = None,
        seed: int | None = None,
    ) -> RolloutSettings:
        """The settings of ``stage``'s episodes; the step limit is the stage's
        (:func:`~skillmaster.envs.limits.step_limit`) unless ``max_steps`` gives one."""
        from skillmaster.envs.limits import step_limit

        r = cfg.rollout
        return cls(
            env_name=cfg.env.name,
            max_steps=max_steps or step_limit(cfg, stage),
            temperature=r.temperature if temperature is None else temperature,
            top_p=r.top_p,
            max_new_tokens=r.max_new_tokens,
            history_length=r.history_length,
            max_obs_chars=r.max_obs_chars,
            end_on_malformed=r.end_on_malformed,
            penalties=r.penalties,
            success_reward=r.success_reward,
            seed=cfg.seed if seed is None else seed,
        )

    @classmethod
    def for_replay(cls, cfg: Config, *, max_steps: int) -> RolloutSettings:
        """Settings of a scripted replay (SFT traces): the prompt is rendered as in rollouts, nothing
        is sampled, and no reply is cut or penalised for its format."""
        r = cfg.rollout
        return cls(
            env_name=cfg.env.name,
            max_steps=max_steps,
            temperature=0.0,
            top_p=1.0,
            max_new_tokens=1,
            history_length=r.history_length,
            max_obs_chars=r.max_obs_chars,
            end_on_malformed=False,
            penalties=PenaltyConfig(),
            success_reward=1.0,
            seed=cfg.seed,
        )


@dataclass
class _Live:
    spec: EpisodeSpec
    obs: str
    info: dict
    initial_obs: str = ""
    skills_block: str | None = None
    skills_shown: tuple[str, ...] = ()
    history: list[tuple[str, str]] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    done: bool = False
    won: bool = False
    score: float = 0.0
    penalty_total: float = 0.0
    invalid: int = 0
    shortened: int = 0
    end_reason: str = ""
    error: str = ""


def collect_episodes(
    policy,
    pool,
    episodes: Sequence[EpisodeSpec],
    settings: RolloutSettings,
    retriever: Retriever | None = None,
    *,
    expert: Callable[[EpisodeSpec, int, str, list[str]], str] | None = None,
    progress: bool = True,
    desc: str = "collect",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Play ``episodes`` in lock-step; ``pool`` must hold at least ``len(episodes)`` environments.

    ``retriever`` selects each episode's skills from its bank once the task text is known (after
    reset). ``expert(spec, step, observation, admissible_actions)``, when given, writes the replies
    instead of the policy (walkthrough replay for SFT: same prompts, same loop; ``policy`` then only
    needs a tokenizer); a None reply ends that episode before the step (end reason ``stopped``).
    Each episode samples from its own stream, seeded by ``(settings.seed, seed_key or traj_id,
    step)``. A step prompt longer than the engine takes (its ``max_model_len`` less
    ``max_new_tokens``) is shortened by :data:`~skillmaster.agent.prompts.PROMPT_FIT_RULE` and counted
    in its trajectory's ``prompts_shortened``. Returns
    ``(steps, trajectories)`` frames with the STEPS and TRAJECTORIES schemas.
    """
    if not episodes:
        return STEPS.empty(), TRAJECTORIES.empty()
    resets = pool.reset_many(
        [(i, {"task_id": ep.task.task_id, "split": ep.task.split}) for i, ep in enumerate(episodes)]
    )
    live = [
        _Live(spec=ep, obs=obs, info=info, initial_obs=obs)
        for ep, (obs, info) in zip(episodes, resets, strict=True)
    ]
    blocks: dict[tuple[int, str, str], tuple[str, list[str]]] = {}
    for state in live:
        bank = state.spec.bank
        if bank is not None and retriever is not None:
            key = (id(bank), state.spec.task.category, state.info.get("task_text", ""))
            if key not in blocks:
                blocks[key] = render_skill_block(retriever(bank, key[2], key[1]))
            state.skills_block, shown = blocks[key]
            state.skills_shown = tuple(shown)
        if state.info.get("error"):
            _end(state, "error", str(state.info["error"]))
    bar = LoggedBar(total=len(live), desc=desc, unit="ep", disable=not progress, dynamic_ncols=True)
    bar.update(sum(s.done for s in live))
    started, env_steps, step = time.perf_counter(), 0, 0
    engine = "expert" if expert is not None else getattr(policy, "engine", "hf")
    max_prompt = None if expert is not None else prompt_budget(policy, settings.max_new_tokens)
    while True:
        active = [i for i, s in enumerate(live) if not s.done]
        if not active:
            break
        if expert is not None:
            replies = {
                i: expert(live[i].spec, step, live[i].obs, live[i].info.get("admissible_actions", []))
                for i in active
            }
            for i in [i for i in active if replies[i] is None]:  # the expert ends its episode here
                _end(live[i], "stopped")
            active = [i for i in active if replies[i] is not None]
        prompts = []
        for i in active:
            text, prefix_chars, shortened = fit_step_prompt(
                policy.tokenizer, live[i], step, settings, max_prompt
            )
            live[i].shortened += shortened
            prompts.append((text, prefix_chars))
        if expert is not None:
            gens = [
                _expert_generation(policy.tokenizer, replies[i], text, n)
                for i, (text, n) in zip(active, prompts, strict=True)
            ]
        else:
            gens = policy.generate(
                prompts,
                max_new_tokens=settings.max_new_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                stop="</action>",
                seeds=[
                    derive_seed(settings.seed, live[i].spec.seed_key or live[i].spec.traj_id, step)
                    for i in active
                ],
            )
        requests, stepped = [], []
        for i, (text, prefix_chars), gen in zip(active, prompts, gens, strict=True):
            state = live[i]
            admissible = state.info.get("admissible_actions", [])
            parsed = parse_action(gen.text, admissible, truncated=gen.truncated)
            faults = list(parsed.faults)
            guard = settings.end_on_malformed and parsed.malformed
            if guard:
                faults.append("malformed")
            row = {
                "iteration": state.spec.iteration,
                "task_id": state.spec.task.task_id,
                "group_id": state.spec.group_id,
                "traj_id": state.spec.traj_id,
                "step": step,
                "prompt": text,
                "prefix_chars": prefix_chars,
                "response": gen.text,
                "response_ids": gen.token_ids,
                "action": "",
                "valid": parsed.valid,
                "faults": faults,
                "penalty": step_penalty(faults, settings.penalties),
                "observation": "",
                "env_reward": 0.0,
                "done": False,
                "prompt_tokens": gen.prompt_tokens,
                "response_tokens": len(gen.token_ids),
                "temperature": settings.temperature,
                "top_p": settings.top_p,
                "engine": engine,
            }
            state.steps.append(row)
            state.penalty_total += row["penalty"]
            state.invalid += not parsed.valid
            if guard:
                row["done"] = True
                _end(state, "malformed")
                continue
            action = parsed.action or gen.text.strip()[:200]
            row["action"] = action
            requests.append((i, action))
            stepped.append(i)
        results = pool.step_many(requests) if requests else []
        env_steps += len(requests)
        for i, (obs, reward, terminated, truncated, info) in zip(stepped, results, strict=True):
            state = live[i]
            row = state.steps[-1]
            row.update(observation=obs, env_reward=float(reward))
            state.history.append((row["action"], obs))
            state.obs, state.info = obs, info
            state.won = bool(info.get("won", False))
            state.score = float(info.get("score", 1.0 if state.won else 0.0))
            if info.get("error"):
                row["done"] = True
                _end(state, "error", str(info["error"]))
            elif terminated or state.won:
                row["done"] = True
                _end(state, "won" if state.won else "terminated")
            elif truncated or len(state.steps) >= settings.max_steps:
                row["done"] = True
                _end(state, "step_limit")
        step += 1
        finished = sum(s.done for s in live)
        bar.update(finished - bar.n)
        elapsed = max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(
            steps_per_s=f"{env_steps / elapsed:.2f}",
            success=f"{sum(s.won for s in live if s.done)}/{finished}",
        )
    bar.close()
    step_rows = [row for s in live for row in s.steps]
    traj_rows = [_trajectory_row(s, settings) for s in live]
    return STEPS.from_rows(step_rows), TRAJECTORIES.from_rows(traj_rows)


def render_step_prompt(tokenizer, state: _Live, step: int, settings: RolloutSettings) -> tuple[str, int]:
    """The chat-templated step prompt (and its prefix length): the one renderer of rollouts and SFT."""
    text, prefix_chars, _ = fit_step_prompt(tokenizer, state, step, settings, None)
    return text, prefix_chars


def fit_step_prompt(
    tokenizer, state: _Live, step: int, settings: RolloutSettings, max_tokens: int | None
) -> tuple[str, int, bool]:
    """:func:`render_step_prompt` within ``max_tokens`` tokens (None: no limit), shortened by
    :data:`~skillmaster.agent.prompts.PROMPT_FIT_RULE`: ``(text, prefix_chars, shortened)``."""

    def render(history_length: int):
        return render_action_prompt(
            env_name=settings.env_name,
            task_text=state.info.get("task_text", ""),
            skills_block=state.skills_block,
            step=step,
            history=state.history,
            observation=state.obs,
            admissible=state.info.get("admissible_actions", []),
            history_length=history_length,
            max_obs_chars=settings.max_obs_chars,
        )

    shown = min(settings.history_length, len(state.history))
    return fit_prompt(tokenizer, render, shown, max_tokens)


def _expert_generation(tokenizer, reply: str, prompt: str, prefix_chars: int) -> Generation:
    from skillmaster.agent.tokens import encode_prompt, encode_response

    p, s = encode_prompt(tokenizer, prompt, prefix_chars)
    ids = encode_response(tokenizer, reply)
    return Generation(
        text=reply, token_ids=ids, prompt_tokens=len(p) + len(s), prefilled_tokens=0, truncated=False
    )


def _end(state: _Live, reason: str, error: str = "") -> None:
    state.done, state.end_reason, state.error = True, reason, error


def _trajectory_row(state: _Live, settings: RolloutSettings) -> dict:
    spec, info = state.spec, state.info
    reward = settings.success_reward * float(state.won)
    if state.end_reason == "malformed":
        reward += settings.penalties.malformed
    return {
        "iteration": spec.iteration,
        "task_id": spec.task.task_id,
        "group_id": spec.group_id,
        "traj_id": spec.traj_id,
        "split": spec.task.split,
        "family": spec.task.family,
        "category": spec.task.category,
        "task_text": info.get("task_text", ""),
        "won": state.won,
        "score": state.score,
        "episode_reward": reward,
        "penalty_total": state.penalty_total,
        "length": len(state.steps),
        "invalid_count": state.invalid,
        "end_reason": state.end_reason,
        "error": state.error,
        "skills_shown": list(state.skills_shown),
        "skills_block": state.skills_block or "",
        "initial_observation": state.initial_obs,
        "final_observation": state.obs,
        "condition": spec.condition,
        "probe_of": spec.probe_of,
        "probe": spec.probe,
        "temperature": settings.temperature,
        "prompts_shortened": state.shortened,
    }
