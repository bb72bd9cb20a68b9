"""Stage ``sft-data``: the cold start's samples from expert walkthroughs (METHOD.md §8).

``sft-data`` replays the ``walkthrough`` of ``sft.num_games`` training games (stratified over
families) through the real engine with the rollout collector itself, so every sample is rendered
by the very function rollouts use (same skills shown, same history window); the reply is the
expert action with a generated ``<think>``. With ``sft.search_detours`` > 0 the expert first checks
up to that many other places before each place the walkthrough visits to find something (the
environment's searching expert, its profile's walkthrough kit; ALFWorld's:
:class:`~skillmaster.envs.alfworld.expert.SearchingExpert`), so the traces show searching. The
cold start needs an environment with expert walkthroughs.

Review-turn examples (``sft.review_examples``) are derived from evidence, for all three tools:
the won replays and ``sft.mistake_episodes`` episodes per game played with one scripted mistake
(the kit's mistake expert, ALFWorld's :class:`~skillmaster.envs.alfworld.expert.MistakeExpert`,
whose action rows are never targets) are read for mistakes and working tactics (the kit's
``findings``: :mod:`skillmaster.envs.alfworld.evidence`), each becomes a lesson, and
``sft.reviews_per_episode`` targets per episode are made (about 40% propose, 30% update, 30% keep),
each with the review prompt rendered from the bank it is correct for
(:mod:`skillmaster.skills.lessons`). Stage ``sft`` (:mod:`skillmaster.stages.sft`) trains on them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated

import polars as pl

from skillmaster.config import EnvConfig, ReviewConfig, SftConfig, SkillsConfig
from skillmaster.envs.limits import step_limit
from skillmaster.errors import ConfigError
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes
from skillmaster.seeding import derive_seed
from skillmaster.stages import StageContext, register
from skillmaster.stages.common import (
    check_env_errors,
    load_bank_at,
    make_pool,
    retriever_of,
    stratified_tasks,
    suite_of,
)
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import From, StageView
from skillmaster.tables import SFT_SAMPLES, TRAJECTORIES

REVIEW_TOKEN_MARGIN = 16
"""Every review target is at least this many tokens shorter than ``review.max_new_tokens``."""


class SftDataView(StageView):
    """Named as the config's sections, so ``view.sft.split`` reads as ``sft.split``."""

    seed: Annotated[int, From("seed")]
    env: Annotated[EnvConfig, From("env")]
    sft: Annotated[SftConfig, From("sft")]
    history_length: Annotated[int, From("rollout.history_length")]
    """With ``max_obs_chars``: how replayed prompts are rendered (as in rollouts)."""
    max_obs_chars: Annotated[int | None, From("rollout.max_obs_chars")]
    skills: Annotated[SkillsConfig, From("skills")]
    review: Annotated[ReviewConfig, From("review")]


def _replay(ctx: StageContext, tasks, make_expert, limit: int, prefix: str, desc: str):
    """Play one expert episode per entry of ``tasks`` through the collector; returns (steps, trajectories)."""
    from skillmaster.modeling import load_tokenizer

    view = ctx.view
    bank = load_bank_at(ctx, 0) if view.skills.enabled else None
    episodes = [
        EpisodeSpec(f"{prefix}-{i:04d}", t, i, 0, bank=bank, condition="sft") for i, t in enumerate(tasks)
    ]
    experts = {e.traj_id: make_expert(e) for e in episodes}

    def expert(spec: EpisodeSpec, step: int, observation: str, admissible: list[str]) -> str | None:
        return experts[spec.traj_id].reply(observation, admissible)

    # reads seed, env.name, rollout.history_length and rollout.max_obs_chars (all in the view)
    settings = RolloutSettings.for_replay(ctx.cfg, max_steps=limit)
    holder = SimpleNamespace(tokenizer=load_tokenizer(ctx.paths.base_model))
    with make_pool(ctx, len(episodes), limit) as pool:
        return collect_episodes(holder, pool, episodes, settings, retriever_of(ctx), expert=expert, desc=desc)


def walkthrough_kit(ctx: StageContext):
    """The environment's experts, evidence and lessons (its profile's walkthrough kit)."""
    from skillmaster.envs.registry import profile

    kit = profile(ctx.view.env.name).walkthrough_kit
    if kit is None:
        raise ConfigError(
            f"sft.enabled: the cold start replays expert walkthroughs, which env '{ctx.view.env.name}' "
            "does not have; set sft.enabled: false"
        )
    return kit


def sft_games(ctx: StageContext, split: str, num_games: int | None):
    """The cold start's games (stratified over families) and their walkthroughs."""
    probe = suite_of(ctx)
    tasks = stratified_tasks(probe.tasks(split), num_games, ctx.view.seed)
    return tasks, {t.task_id: probe.walkthrough(t.task_id, t.split) for t in tasks}


def replay_walkthroughs(ctx: StageContext, split: str, num_games: int | None):
    """Play the expert walkthroughs of ``num_games`` games of ``split``; returns (steps, trajectories)."""
    view = ctx.view
    kit = walkthrough_kit(ctx)
    tasks, walkthroughs = sft_games(ctx, split, num_games)
    longest = max((len(w) for w in walkthroughs.values()), default=1)
    detours = view.sft.search_detours
    return _replay(
        ctx,
        tasks,
        lambda e: kit.searching_expert(
            walkthroughs[e.task.task_id], detours, derive_seed(view.seed, "sft", e.traj_id)
        ),
        step_limit(ctx.cfg, "sft", walkthrough_steps=longest),
        "sft",
        "replay walkthroughs",
    )


def replay_mistakes(ctx: StageContext, split: str, num_games: int | None, per_game: int):
    """``per_game`` episodes of each cold-start game played with one scripted mistake each
    (the walkthrough kit's mistake expert; half of them give up after it). Returns
    (steps, trajectories, the mistake each episode was scripted to make)."""
    import random

    view = ctx.view
    kit = walkthrough_kit(ctx)
    games, walkthroughs = sft_games(ctx, split, num_games)
    tasks = [t for t in games for _ in range(per_game)]
    rng = random.Random(derive_seed(view.seed, "sft-mistakes"))
    plans = []
    for i, t in enumerate(tasks):
        kinds = kit.mistakes_for(t.family)
        plans.append((kinds[(i + rng.randrange(len(kinds))) % len(kinds)], rng.random() < 0.5))
    intended = {f"mis-{i:04d}": plan[0] for i, plan in enumerate(plans)}
    longest = max((len(w) for w in walkthroughs.values()), default=1)
    steps, trajs = _replay(
        ctx,
        tasks,
        lambda e: kit.mistake_expert(
            walkthroughs[e.task.task_id],
            plans[e.group_id][0],
            plans[e.group_id][1],
            derive_seed(view.seed, "sft-mistake", e.traj_id),
        ),
        step_limit(ctx.cfg, "sft-mistakes", walkthrough_steps=longest),
        "mis",
        "replay with mistakes",
    )
    return steps, trajs, intended


def review_targets(
    ctx: StageContext, trajs: pl.DataFrame, steps: pl.DataFrame, intended: dict[str, str], tokenizer
) -> tuple[list[dict], dict]:
    """SFT review rows derived from the episodes' evidence (:mod:`skillmaster.skills.lessons`), and
    their metrics. ``intended``: traj id → the mistake its expert was scripted to make (tried first)."""
    import random
    from collections import Counter

    from skillmaster.agent.tokens import encode_response
    from skillmaster.envs.knowledge import Episode, Step
    from skillmaster.skills.lessons import assign_kinds, check_example, review_example
    from skillmaster.skills.retrieval import render_skill_block
    from skillmaster.stages.review import review_prompts

    view = ctx.view
    kit = walkthrough_kit(ctx)
    bank0 = load_bank_at(ctx, 0)
    retrieve = retriever_of(ctx)
    suite = suite_of(ctx)
    window = view.review.history_steps
    budget = view.review.max_new_tokens - REVIEW_TOKEN_MARGIN
    by_traj = {key[0]: frame.sort("step") for key, frame in steps.group_by("traj_id")}
    episodes = []
    for t in trajs.iter_rows(named=True):
        frame = by_traj.get(t["traj_id"])
        if frame is None:
            continue
        walkthrough = suite.walkthrough(t["task_id"], t["split"])
        episode = Episode(
            t["family"],
            t["won"],
            t["initial_observation"],
            tuple(Step(s["action"], s["valid"], s["observation"]) for s in frame.iter_rows(named=True)),
            kit.target_of(walkthrough),
        )
        first_shown = max(0, len(episode.steps) - window) if window > 0 else len(episode.steps)
        found = [f for f in kit.findings(episode) if f.step is None or f.step >= first_shown]
        found.sort(key=lambda f: f.kind != intended.get(t["traj_id"]))  # the scripted mistake first
        if found:
            episodes.append((t, found))
    kinds = assign_kinds([view.sft.reviews_per_episode] * len(episodes))
    made, rows, skipped, tokens = Counter(), [], Counter(), []
    findings = Counter(f.kind for _, found in episodes for f in found)
    examples = []
    for (t, found), wanted in zip(episodes, kinds, strict=True):
        for j, kind in enumerate(wanted):
            finding = found[j % len(found)]
            rng = random.Random(derive_seed(view.seed, "sft-review", t["traj_id"], j))

            def select(bank, t=t):
                sel = retrieve(bank, t["task_text"], t["category"])
                return (*sel.general, *sel.task_specific), sel.mistakes

            ex = review_example(
                kind, finding, book=kit.lessons, findings=found, bank=bank0, category=t["category"],
                family=t["family"], won=t["won"], select=select, rng=rng,
            )  # fmt: skip
            if ex is None or check_example(ex, t["category"], view.review.shaping):
                skipped[kind] += 1
                continue
            n = len(encode_response(tokenizer, ex.reply)) + 1  # + the end-of-turn token
            if n > budget:
                skipped[kind] += 1
                continue
            block, _ = render_skill_block(retrieve(ex.bank, t["task_text"], t["category"]))
            examples.append((t | {"skills_block": block}, ex))
            made[kind] += 1
            tokens.append(n)
    if examples:
        frame = TRAJECTORIES.from_rows([t for t, _ in examples])
        prompts = review_prompts(ctx, frame, steps, tokenizer)
        for (t, ex), (prompt, prefix_chars) in zip(examples, prompts, strict=True):
            rows.append(
                {
                    "task_id": t["task_id"],
                    "family": t["family"],
                    "kind": "review",
                    "step": t["length"],
                    "prompt": prompt,
                    "prefix_chars": prefix_chars,
                    "response": ex.reply,
                }
            )
    total = sum(made.values())
    metrics = {
        "review_episodes": len(episodes),
        "review_episodes_won": sum(t["won"] for t, _ in episodes),
        **{f"review_targets_{k}": made[k] for k in ("propose", "update", "keep")},
        **{
            f"review_share_{k}": round(made[k] / total, 4) if total else 0.0
            for k in ("propose", "update", "keep")
        },
        "review_targets_skipped": sum(skipped.values()),
        "review_target_tokens_max": max(tokens, default=0),
        "review_target_tokens_mean": round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
        "review_token_budget": budget,
        "findings": dict(sorted(findings.items())),
    }
    return rows, metrics


DATA_CONTRACT = StageContract(
    name="sft-data",
    view=SftDataView,
    reads=lambda w: [w.paths.base_model, w.paths.bank(0)],
    writes=lambda w: [w.paths.sft_data],
    metrics=lambda w: [w.paths.metrics(0, "sft_data")],
    env_code=True,
)


@register(DATA_CONTRACT)
def sft_data_stage(ctx: StageContext) -> dict:
    from skillmaster.io import write_json
    from skillmaster.modeling import load_tokenizer

    view = ctx.view
    steps, trajs = replay_walkthroughs(ctx, view.sft.split, view.sft.num_games)
    check_env_errors(trajs, "sft-data (walkthrough replay)")
    won = trajs.filter(pl.col("won"))
    won_steps = steps.join(won.select("traj_id", "family"), on="traj_id")
    rows = [
        {
            "task_id": r["task_id"],
            "family": r["family"],
            "kind": "action",
            "step": r["step"],
            "prompt": r["prompt"],
            "prefix_chars": r["prefix_chars"],
            "response": r["response"],
        }
        for r in won_steps.iter_rows(named=True)
    ]
    metrics: dict = {"games": trajs.height, "walkthroughs_won": won.height}
    if view.sft.review_examples and view.review.enabled and won.height:
        episodes, episode_steps, intended = won, won_steps.drop("family"), {}
        if view.sft.mistake_episodes:
            m_steps, m_trajs, intended = replay_mistakes(
                ctx, view.sft.split, view.sft.num_games, view.sft.mistake_episodes
            )
            episodes = pl.concat([won, m_trajs])
            episode_steps = pl.concat([episode_steps, m_steps])
            metrics |= {"mistake_episodes": m_trajs.height, "mistake_episodes_won": int(m_trajs["won"].sum())}
        review_rows, review_metrics = review_targets(
            ctx, episodes, episode_steps, intended, load_tokenizer(ctx.paths.base_model)
        )
        rows += review_rows
        metrics |= review_metrics
    samples = SFT_SAMPLES.from_rows(rows)
    SFT_SAMPLES.write(samples, ctx.paths.sft_data)
    metrics |= {
        "action_samples": int((samples["kind"] == "action").sum()),
        "review_samples": int((samples["kind"] == "review").sum()),
    }
    write_json(ctx.paths.metrics(0, "sft_data"), metrics)
    return metrics
