"""Stage ``train``: the DualAdv-GRPO update of iteration N (METHOD.md §7).

Reads the iteration's step, trajectory, review and edit tables and continues the policy of
iteration N-1 (a LoRA adapter over the policy base, or full weights). The serving weights land in
``models/policy/iter_NNN`` atomically with a ``COMPLETE`` marker (what DVC versions); the full
training state (fp32 weights, optimizer, schedule, RNG) goes to ``.skillmaster/train-state/iter_NNN``
outside DVC, where iteration N+1 continues from it (the newest ``train.keep_states`` kept, and every
``train.keep_states_every``-th); a killed run resumes from the newest complete step state under
``.skillmaster/resume/``. ``train.enabled: false`` records
that the policy is unchanged (a pointer), so evaluation-only runs keep the same DAG. With
``train.progress_reward`` > 0 (not in the paper) action rewards gain a dense progress bonus: the
walkthrough milestones still ahead of each step (:mod:`skillmaster.rollout.progress`; WebShop: the
episode's score).
"""

from __future__ import annotations

from typing import Annotated

from skillmaster.config import EnvConfig, ModelConfig, TrainConfig
from skillmaster.io import write_json
from skillmaster.stages import StageContext, register
from skillmaster.stages.common import check_collection, policy_base, policy_dir_at, write_pointer
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import Computing, From, StageView
from skillmaster.tables import EDITS, REVIEWS, STEPS, TRAJECTORIES


def step_progress(ctx: StageContext, steps, trajs):
    """Per-step progress for ``train.progress_reward`` (None when it is off): walkthrough milestones
    reached from each step on (ALFWorld), or, without walkthroughs (WebShop), the episode's own
    [0, 1] score at every step."""
    if ctx.view.train.progress_reward <= 0:
        return None
    from skillmaster.envs.registry import profile
    from skillmaster.rollout.progress import episode_progress
    from skillmaster.stages.common import suite_of

    kit = profile(ctx.view.env.name).walkthrough_kit
    return episode_progress(steps, trajs, suite_of(ctx).walkthrough, kit)[1]


class TrainView(StageView):
    seed: Annotated[int, From("seed")]
    env: Annotated[EnvConfig, From("env")]
    model: Annotated[ModelConfig, From("model")]
    train: Annotated[TrainConfig, Computing("train")]
    review_enabled: Annotated[bool, From("review.enabled")]
    """Review advantages take part (the reviews table is read)."""
    sft_enabled: Annotated[bool, From("sft.enabled")]
    """The policy base is ``models/sft``."""


CONTRACT = StageContract(
    name="train",
    view=TrainView,
    reads=lambda w: [
        *w.policy(w.iteration - 1),
        w.paths.collect_dir(w.iteration),
        w.paths.reviews(w.iteration).parent,
        w.paths.counterfactual_dir(w.iteration),
    ],
    writes=lambda w: [w.paths.policy(w.iteration)],
    metrics=lambda w: [w.paths.metrics(w.iteration, "train")],
    iterated=True,
    env_code=True,
)


@register(CONTRACT)
def train_stage(ctx: StageContext) -> dict:
    from accelerate import PartialState

    from skillmaster.train.grpo import train_iteration
    from skillmaster.train.resume import iteration_state, prune_states

    view, it, paths = ctx.view, ctx.iteration, ctx.paths
    previous = policy_dir_at(ctx, it - 1)
    if not view.train.enabled:
        write_pointer(paths.policy(it), previous)
        metrics = {"enabled": False}
        write_json(paths.metrics(it, "train"), metrics)
        return metrics
    steps, trajs = STEPS.read(paths.steps(it)), TRAJECTORIES.read(paths.trajectories(it))
    check_collection(trajs, steps, paths.collect_dir(it))  # before the model loads
    states, keep = paths.state / "train-state", view.train.keep_states
    metrics = train_iteration(
        ctx.cfg,  # reads seed, model, train and review.enabled: all in the view
        steps,
        trajs,
        REVIEWS.read(paths.reviews(it)),
        EDITS.read(paths.edits(it)),
        init_policy=previous,
        base_model_dir=policy_base(ctx),
        out_dir=paths.policy(it),
        state_dir=paths.stage_state("train", it),
        tracker=ctx.tracker,
        iteration=it,
        progress=step_progress(ctx, steps, trajs),
        carry_from=iteration_state(states, it - 1) if keep else None,
        save_state_to=iteration_state(states, it) if keep else None,
    )
    if PartialState().is_main_process:  # train_iteration already logged these to MLflow
        prune_states(states, keep, view.train.keep_states_every)
        write_json(paths.metrics(it, "train"), {k.removeprefix("train/"): v for k, v in metrics.items()})
    return metrics
