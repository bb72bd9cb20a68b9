"""Stage ``review``: the trajectory-informed skill review of iteration N (METHOD.md §5).

Every finished trajectory gets one more turn of the same policy: the review prompt (outcome,
reward, shown skills, last steps), one batched generation over all trajectories, then the tool
call is parsed, applied to a scratch copy of the bank and shaped. The bank itself is not changed
here; the counterfactual stage decides what is committed.
"""

from __future__ import annotations

import logging
from typing import Annotated

import polars as pl

from skillmaster.agent.generation import prompt_budget
from skillmaster.agent.prompts import PromptParts, apply_chat_template, fit_prompt
from skillmaster.config import ModelConfig, ReviewConfig
from skillmaster.seeding import derive_seed
from skillmaster.stages import StageContext, register
from skillmaster.stages.common import check_collection, load_bank_at, load_policy, write_metrics
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import From, StageView
from skillmaster.tables import REVIEWS, STEPS, TRAJECTORIES

log = logging.getLogger(__name__)


def review_prompts(
    ctx: StageContext, trajs: pl.DataFrame, steps: pl.DataFrame, tokenizer
) -> list[tuple[str, int]]:
    """Chat-templated review prompts, one per trajectory row, in order."""
    return [apply_chat_template(tokenizer, parts) for parts in review_parts(ctx, trajs, steps)]


def review_parts(ctx: StageContext, trajs: pl.DataFrame, steps: pl.DataFrame) -> list[PromptParts]:
    """The review prompts' texts (system text, user message), one per trajectory row, in order."""
    from skillmaster.skills.review import ReviewStep, render_from_config

    by_traj = {key[0]: frame.sort("step") for key, frame in steps.group_by("traj_id")}
    prompts = []
    for t in trajs.iter_rows(named=True):
        frame = by_traj.get(t["traj_id"])
        shown: list[ReviewStep] = []
        before = t["initial_observation"]
        for s in frame.iter_rows(named=True) if frame is not None else []:
            shown.append(ReviewStep(s["step"], before, s["action"] or s["response"]))
            before = s["observation"]
        review = render_from_config(
            ctx.cfg.review,
            ctx.cfg.env.name,
            task_text=t["task_text"],
            category=t["category"],
            won=t["won"],
            episode_reward=t["episode_reward"],
            skills_block=t["skills_block"],
            final_feedback=t["final_observation"],
            steps=shown,
        )
        prompts.append(PromptParts(review.system, "", review.user))
    return prompts


def constrained_decoding(wanted: bool) -> bool:
    """``review.constrained``, where xgrammar is installed; else free text with a one-line notice."""
    from skillmaster.agent.generation import xgrammar_installed

    if wanted and not xgrammar_installed():
        log.warning("review.constrained is on but xgrammar is not installed; review replies are free text")
        return False
    return wanted


def review_grammars(trajs: pl.DataFrame, bank) -> list[str]:
    """The tools' grammar for each trajectory's review (``review.constrained``): its category, and
    the titles of the skills it was shown as update targets."""
    from skillmaster.skills.bank import iter_skills
    from skillmaster.skills.tools import review_grammar

    titles = {s.skill_id: s.title for _, s in iter_skills(bank)}
    return [
        review_grammar(t["category"], [titles[i] for i in t["skills_shown"] or [] if i in titles])
        for t in trajs.iter_rows(named=True)
    ]


class ReviewView(StageView):
    seed: Annotated[int, From("seed")]
    env_name: Annotated[str, From("env.name")]
    model: Annotated[ModelConfig, From("model")]
    review: Annotated[ReviewConfig, From("review")]
    top_p: Annotated[float, From("rollout.top_p")]
    engine: Annotated[str, From("rollout.engine")]
    """The generation engine the policy is served on."""
    sft_enabled: Annotated[bool, From("sft.enabled")]
    """The policy base is ``models/sft``."""


CONTRACT = StageContract(
    name="review",
    view=ReviewView,
    reads=lambda w: [
        *w.policy(w.iteration - 1),
        w.paths.bank(w.iteration - 1),
        w.paths.collect_dir(w.iteration),
    ],
    writes=lambda w: [w.paths.reviews(w.iteration).parent],
    metrics=lambda w: [w.paths.metrics(w.iteration, "review")],
    iterated=True,
    env_code=True,
)


@register(CONTRACT)
def review_stage(ctx: StageContext) -> dict:
    from skillmaster.skills.tools import review_shares, review_stats, score_review

    view, it = ctx.view, ctx.iteration
    review = view.review
    out = ctx.paths.reviews(it)
    if not review.enabled:
        REVIEWS.write(REVIEWS.empty(), out)
        metrics = {"enabled": False, **review_stats([]), **review_shares([], [])}
        write_metrics(ctx, "review", metrics)
        return metrics
    trajs = TRAJECTORIES.read(ctx.paths.trajectories(it))
    steps = STEPS.read(ctx.paths.steps(it))
    check_collection(trajs, steps, ctx.paths.collect_dir(it))  # before the model loads
    bank = load_bank_at(ctx, it - 1)
    policy = load_policy(ctx, it - 1)
    # a prompt over the engine's limit is cut from the left after the system text (PROMPT_FIT_RULE)
    limit = prompt_budget(policy, review.max_new_tokens)
    fitted = [
        fit_prompt(policy.tokenizer, lambda _shown, parts=parts: parts, 0, limit)
        for parts in review_parts(ctx, trajs, steps)
    ]
    prompts = [(text, prefix_chars) for text, prefix_chars, _ in fitted]
    gen_seconds = policy.stats.seconds
    constrained = constrained_decoding(review.constrained)
    gens = policy.generate(
        prompts,
        max_new_tokens=review.max_new_tokens,
        temperature=review.temperature,
        top_p=view.top_p,
        stop="</tool_call>",
        seeds=[derive_seed(view.seed, "review", it, t) for t in trajs["traj_id"]],
        grammars=review_grammars(trajs, bank) if constrained else None,
    )
    rows = []
    for t, (prompt, prefix_chars), gen in zip(trajs.iter_rows(named=True), prompts, gens, strict=True):
        outcome = score_review(gen.text, bank, t["category"], review.shaping)
        rows.append(
            {
                "iteration": it,
                "task_id": t["task_id"],
                "group_id": t["group_id"],
                "traj_id": t["traj_id"],
                "family": t["family"],
                "category": t["category"],
                "prompt": prompt,
                "prefix_chars": prefix_chars,
                "response": gen.text,
                "response_ids": gen.token_ids,
                "prompt_tokens": gen.prompt_tokens,
                "response_tokens": len(gen.token_ids),
                "temperature": review.temperature,
                "top_p": view.top_p,
                "tool": outcome.tool,
                "arguments": outcome.arguments_json(),
                "status": outcome.status,
                "shaping": outcome.shaping,
                "shaping_flags": outcome.flags,
                "skill_id": outcome.skill_id,
                "edit": outcome.edit_json(),
            }
        )
    reviews = REVIEWS.from_rows(rows)
    REVIEWS.write(reviews, out)
    metrics = {
        "enabled": True,
        **review_stats(reviews["status"].to_list()),
        **review_shares(reviews["tool"].to_list(), reviews["status"].to_list()),
        "mean_shaping": float(reviews["shaping"].mean()) if reviews.height else 0.0,
        "mean_response_tokens": float(reviews["response_tokens"].mean()) if reviews.height else 0.0,
        "constrained": constrained,  # the tools' grammar was applied (review.constrained and xgrammar present)
        "prompts_shortened": sum(shortened for _, _, shortened in fitted),
        "generation_seconds": round(policy.stats.seconds - gen_seconds, 2),
    }
    write_metrics(ctx, "review", metrics)
    return metrics
