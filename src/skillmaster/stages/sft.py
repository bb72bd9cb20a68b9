"""Stages ``sft-data`` and ``sft``: the cold start from expert walkthroughs (METHOD.md §8).

``sft-data`` replays the ``walkthrough`` of ``sft.num_games`` training games (stratified over
families) through the real engine with the rollout collector itself, so every sample is rendered
by the very function rollouts use (same skills shown, same history window); the reply is the
expert action with a generated ``<think>``. With ``sft.search_detours`` > 0 the expert first checks
up to that many other places before each place the walkthrough visits to find something
(:class:`~skillmaster.agent.expert.SearchingExpert`), so the traces show searching. Optional review-turn examples teach the tool-call
format. ``sft`` trains on them with the RL trainer's code path (loss on response tokens only);
the checkpoint becomes iteration 1's starting policy.
"""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl

from skillmaster.agent.expert import SearchingExpert, expert_review
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
from skillmaster.tables import SFT_SAMPLES


def replay_walkthroughs(ctx: StageContext, split: str, num_games: int | None):
    """Play the expert walkthroughs of ``num_games`` games of ``split``; returns (steps, trajectories)."""
    from skillmaster.modeling import load_tokenizer

    cfg = ctx.cfg
    probe = suite_of(ctx)
    tasks = stratified_tasks(probe.tasks(split), num_games, cfg.seed)
    walkthroughs = {t.task_id: probe.walkthrough(t.task_id, t.split) for t in tasks}
    longest = max((len(w) for w in walkthroughs.values()), default=1)
    bank = load_bank_at(ctx, 0) if cfg.skills.enabled else None
    episodes = [EpisodeSpec(f"sft-{i:04d}", t, i, 0, bank=bank, condition="sft") for i, t in enumerate(tasks)]

    detours = cfg.sft.search_detours
    experts = {
        e.traj_id: SearchingExpert(
            walkthroughs[e.task.task_id], detours, derive_seed(cfg.seed, "sft", e.traj_id)
        )
        for e in episodes
    }

    def expert(spec: EpisodeSpec, step: int, observation: str, admissible: list[str]) -> str:
        return experts[spec.traj_id].reply(observation, admissible)

    # each search visit (at most one per walkthrough step) may add `detours` go-to's and as many opens
    limit = longest * (1 + 2 * detours) + 1
    settings = RolloutSettings.from_config(cfg, max_steps=limit)
    holder = SimpleNamespace(tokenizer=load_tokenizer(ctx.paths.base_model))
    with make_pool(ctx, len(episodes), limit) as pool:
        return collect_episodes(
            holder, pool, episodes, settings, retriever_of(ctx), expert=expert, desc="replay walkthroughs"
        )


@register("sft-data")
def sft_data_stage(ctx: StageContext) -> dict:
    from skillmaster.modeling import load_tokenizer
    from skillmaster.stages.review import review_prompts

    cfg = ctx.cfg
    steps, trajs = replay_walkthroughs(ctx, cfg.sft.split, cfg.sft.num_games)
    check_env_errors(trajs, "sft-data (walkthrough replay)")
    won = trajs.filter(pl.col("won"))
    steps = steps.join(won.select("traj_id", "family"), on="traj_id")
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
        for r in steps.iter_rows(named=True)
    ]
    if cfg.sft.review_examples and cfg.review.enabled and won.height:
        bank = load_bank_at(ctx, 0)
        tokenizer = load_tokenizer(ctx.paths.base_model)
        prompts = review_prompts(ctx, won, steps.drop("family"), tokenizer)
        for t, (prompt, prefix_chars) in zip(won.iter_rows(named=True), prompts, strict=True):
            has = bool(bank.task_specific_skills.get(t["category"]))
            rows.append(
                {
                    "task_id": t["task_id"],
                    "family": t["family"],
                    "kind": "review",
                    "step": t["length"],
                    "prompt": prompt,
                    "prefix_chars": prefix_chars,
                    "response": expert_review(t["family"], t["category"], has),
                }
            )
    samples = SFT_SAMPLES.from_rows(rows)
    SFT_SAMPLES.write(samples, ctx.paths.sft_data)
    return {
        "games": trajs.height,
        "walkthroughs_won": won.height,
        "action_samples": int((samples["kind"] == "action").sum()),
        "review_samples": int((samples["kind"] == "review").sum()),
    }


@register("sft")
def sft_stage(ctx: StageContext) -> dict:
    """LoRA (or full) SFT on the replayed samples with the RL trainer's loop; ``models/sft`` is the
    merged model, so the RL iterations' adapters and KL reference sit on the SFT policy."""
    import shutil

    from skillmaster.io import read_json, write_json
    from skillmaster.modeling import MANIFEST, load_tokenizer
    from skillmaster.train.checkpoint import export_merged
    from skillmaster.train.grpo import TrainSettings, train_on_samples
    from skillmaster.train.samples import build_sft_samples

    cfg, paths = ctx.cfg, ctx.paths
    frame = SFT_SAMPLES.read(paths.sft_data)
    samples = build_sft_samples(frame, load_tokenizer(paths.base_model))
    lora = cfg.train.lora.enabled
    scratch = paths.stage_state("sft") / "adapter"
    metrics = train_on_samples(
        samples,
        TrainSettings.for_sft(cfg, seed=cfg.seed),
        model_cfg=cfg.model,
        base_model_dir=paths.base_model,
        init_policy=None,
        out_dir=scratch if lora else paths.sft_model,
        state_dir=paths.stage_state("sft") / "steps",
        tracker=ctx.tracker,
        metric_prefix="sft",
    )
    if lora:
        export_merged(paths.base_model, scratch, paths.sft_model)
    base_manifest = paths.base_model / MANIFEST
    if base_manifest.is_file():  # keep the measured CPU dtype for the merged model
        write_json(paths.sft_model / MANIFEST, read_json(base_manifest) | {"sft_from": str(paths.sft_data)})
    shutil.rmtree(paths.stage_state("sft"), ignore_errors=True)
    out = {k.removeprefix("sft/"): v for k, v in metrics.items()} | {
        "samples": len(samples),
        "action_samples": int((frame["kind"] == "action").sum()),
        "review_samples": int((frame["kind"] == "review").sum()),
    }
    write_json(paths.metrics(0, "sft"), out)
    return out
