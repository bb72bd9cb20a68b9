"""Stage ``counterfactual``: score each skill edit on probe tasks and build bank N (METHOD.md §6).

For every review whose status is added or updated (at most ``counterfactual.max_edits``, a seeded
random subset), K probe tasks of the same family are drawn from the training split (or from a fixed
per-family pool, ``counterfactual.probe_pool``, that leaves out the cold start's SFT games); the
current policy plays each probe once with the control bank and once with B' (B plus the edit). The
control bank is B (``counterfactual.control: none``, METHOD.md §6) or B plus a content-free placebo
of the edit's size in the edit's place (``placebo``: :func:`placebo_edit`), so that Δ_k measures the
edit's content rather than its mere extra prompt text. With ``counterfactual.paired`` the two runs of
a probe share their sampling stream, so their difference comes from the banks. Each run is scored by
``counterfactual.score`` (``success``: METHOD.md §6; ``progress``: walkthrough milestones for non-won
probes). U follows METHOD.md §6 and each edit's K deltas get a one-sided sign test
(:func:`~skillmaster.skills.utility.sign_test_p`); the commit rule (``threshold``: U above the
threshold; ``test``: p < alpha; ``all``; ``off``) picks the edits committed to the next bank.

``counterfactual.placebo_edits`` placebo contrasts, on the probes of randomly drawn reviews, are
scored in the same batch: B against B' = B or B plus a skill that gives no advice (``placebo_kind``,
control none), or one placebo against a second, different placebo of the same size and place
(control placebo). How often the commit rule fires on them is the measured false-commit rate
(``false_commit_rate``, reported beside ``alpha``).
All probe episodes of all edits and placebos run in one lock-step batch, or
``counterfactual.probe_chunk`` at a time with each finished chunk kept for a resume.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

import polars as pl

from skillmaster.config import (
    CounterfactualConfig,
    EnvConfig,
    ModelConfig,
    RolloutConfig,
    SkillsConfig,
)
from skillmaster.errors import DataError
from skillmaster.io import atomic_dir
from skillmaster.rollout.collector import EpisodeSpec, RolloutSettings, collect_episodes
from skillmaster.seeding import derive_seed
from skillmaster.skills.bank import GENERAL, Bank, Edit, Skill, apply_edit, apply_edit_detailed, find_skill
from skillmaster.skills.tools import EDIT_STATUSES
from skillmaster.stages import StageContext, register
from skillmaster.stages.common import (
    check_env_errors,
    chunk_slices,
    keep_episodes,
    kept_episodes,
    load_bank_at,
    load_policy,
    make_pool,
    retriever_of,
    stratified_tasks,
    suite_of,
    write_metrics,
)
from skillmaster.stages.contract import StageContract
from skillmaster.stages.views import Computing, From, StageView
from skillmaster.tables import EDITS, PLACEBOS, REVIEWS, STEPS, TRAJECTORIES

NEUTRAL_SKILL = {
    "title": "Placebo note",
    "principle": "This note is a placebo and gives no advice about the task.",
    "when_to_apply": "Never.",
}
"""The skill a ``neutral`` placebo edit adds: it changes the prompt, not the knowledge."""

PLACEBO_NOTES: tuple[dict[str, str], ...] = (
    NEUTRAL_SKILL,
    {
        "title": "Neutral remark",
        "principle": "This remark is neutral and says nothing about what to do here.",
        "when_to_apply": "Not at all.",
    },
)
"""The texts placebo variants 0 and 1 are cut from (:func:`placebo_edit`): two different notes
without advice. Variant 0 is the control arm of an edit; variant 1 the second placebo of a
placebo-vs-placebo contrast."""

NEUTRAL_EDIT = Edit(kind="propose", category=GENERAL, **NEUTRAL_SKILL)
"""The template of a placebo contrast drawn on a review without an edit (control placebo)."""

SKILL_FIELDS = ("title", "principle", "when_to_apply")


def placebo_bank(bank, kind: str):
    """B′ of a placebo edit: B itself (``identical``) or B plus :data:`NEUTRAL_SKILL` (``neutral``)."""
    if kind == "identical":
        return bank
    return apply_edit(bank, NEUTRAL_EDIT)[0]


def filler(text: str, n: int) -> str:
    """Exactly ``n`` characters of ``text`` repeated (space-separated), with no whitespace at either
    end (a bank strips its fields, which would change the length): a placebo's stand-in for a field
    of ``n`` characters. ``n ≤ 0`` → ``""``."""
    if n <= 0:
        return ""
    out = ((text + " ") * (n // (len(text) + 1) + 1))[:n]
    return out[:-1] + "." if out.endswith(" ") else out


def line_chars(skill: Skill, section: str) -> int:
    """Characters of ``skill``'s line in the agent's skill block when shown in ``section`` (the
    general principles, or a category's skills, whose lines also show when_to_apply)."""
    from skillmaster.skills.retrieval import SkillSelection, render_skill_block

    selection = (
        SkillSelection(general=(skill,)) if section == GENERAL else SkillSelection(task_specific=(skill,))
    )
    return len(render_skill_block(selection)[0])


def placebo_edit(bank: Bank, edit: Edit, variant: int = 0) -> Edit | None:
    """The content-free counterpart of ``edit`` on ``bank`` (``counterfactual.control: placebo``):
    the same size in characters, in the same place of the prompt, from note ``PLACEBO_NOTES[variant]``.

    - a proposal → a proposal to the same category whose title, principle and when_to_apply are
      :func:`filler` of the note's fields, each as long as the edit's (so its prompt line is too);
    - an update of skill S → S with ``d`` characters of the note's principle appended to its
      principle, where ``d`` is how much the update lengthens S's prompt line (:func:`line_chars`):
      the control keeps S's content and matches the edit's length; None (the control is B) when the
      update does not lengthen the line, since content cannot be removed without loss;
    - ``keep`` → None.
    """
    note = PLACEBO_NOTES[variant]
    if edit.kind == "propose":
        fields = {f: filler(note[f], len(getattr(edit, f).strip())) for f in SKILL_FIELDS}
        return Edit(kind="propose", category=edit.category.strip(), **fields)
    if edit.kind != "update":
        return None
    hit = find_skill(bank, edit.skill_id)
    if hit is None:
        raise DataError(f"the update of {edit.skill_id!r} names no skill of the bank it was reviewed against")
    section_name, old = hit
    new = old.model_copy(update={f: getattr(edit, f).strip() for f in SKILL_FIELDS})
    d = line_chars(new, section_name) - line_chars(old, section_name)
    if d <= 0:
        return None
    pad = "." if d == 1 else " " + filler(note["principle"], d - 1)
    return Edit(
        kind="update",
        skill_id=old.skill_id,
        title=old.title,
        principle=old.principle + pad,
        when_to_apply=old.when_to_apply,
    )


def with_edit(bank: Bank, edit: Edit | None) -> Bank:
    """``bank`` with the placebo ``edit`` applied (``bank`` itself for None); an error when it does not
    apply (a placebo text that collides with a skill of the bank)."""
    if edit is None:
        return bank
    res = apply_edit_detailed(bank, edit)
    if res.status not in EDIT_STATUSES:
        raise DataError(f"placebo edit {edit.model_dump_json()} does not apply to the bank ({res.status})")
    return res.bank


Arm = Literal["edit", "placebo"]
"""What a contrast scores: a review's ``edit``, or a ``placebo`` (an edit without content)."""

STEM_LETTER: dict[Arm, str] = {"edit": "p", "placebo": "q"}
"""The letter of a contrast's id stem (``{iteration:03d}-p{e:03d}``, ``-q{q:03d}``): part of the probe
runs' ids and sampling keys, so it stays as it was; nothing reads the arm back from it."""

CONDITION_PREFIX: dict[Arm, str] = {"edit": "probe", "placebo": "placebo"}
"""A probe run's ``condition`` column: ``{prefix}_before`` or ``{prefix}_after``."""


@dataclass(frozen=True)
class Contrast:
    """One scored comparison: each of the K ``probes`` played with bank ``before`` (the control arm)
    and with bank ``after`` (the edit's, or a placebo's), as ``{stem}-{k:02d}-before`` / ``-after``."""

    arm: Arm
    stem: str
    row: dict
    """The review row (traj_id, group_id, family, ...)."""
    probes: list[str]
    before: Bank
    after: Bank
    control_edit: Edit | None = None
    """The placebo edit that makes ``before`` from B (None: ``before`` is B)."""

    @property
    def placebo(self) -> bool:
        return self.arm == "placebo"

    @property
    def review(self) -> str:
        """The traj_id of the review the contrast was drawn on (its runs' ``probe_of``)."""
        return self.row["traj_id"]

    def condition(self, tag: str) -> str:
        """The ``condition`` of its runs with bank ``tag`` (before or after)."""
        return f"{CONDITION_PREFIX[self.arm]}_{tag}"


@dataclass(frozen=True)
class ContrastPlan:
    """What the stage scores: the reviews with an edit (traj_id order), the contrasts of the chosen
    ones by their index there, and the placebo contrasts."""

    candidates: list[dict]
    edits: dict[int, Contrast]
    """In the order the edits were chosen (the order their probes are played)."""
    placebos: list[Contrast]

    @property
    def contrasts(self) -> list[Contrast]:
        return [*self.edits.values(), *self.placebos]


@dataclass(frozen=True)
class ProbeRuns:
    """The probe episodes of every contrast and the score s of each run."""

    steps: pl.DataFrame
    trajectories: pl.DataFrame
    scores: dict[str, float]
    """The probe score of each run, by trajectory id (:func:`run_scores`)."""

    @cached_property
    def _by_run(self) -> dict[tuple[str, str, int], float]:
        """(condition, probe_of, probe) -> s, from the runs' own columns."""
        rows = self.trajectories.select("traj_id", "condition", "probe_of", "probe").iter_rows(named=True)
        return {(r["condition"], r["probe_of"], r["probe"]): self.scores[r["traj_id"]] for r in rows}

    def arm_scores(self, contrast: Contrast, tag: str) -> list[float]:
        """The scores of ``contrast``'s K runs with bank ``tag`` (before or after), in probe order."""
        condition = contrast.condition(tag)
        return [self._by_run[(condition, contrast.review, k)] for k in range(len(contrast.probes))]


@dataclass(frozen=True)
class ContrastResult:
    """A scored contrast: its paired probe scores, U and the sign test's p."""

    contrast: Contrast
    before: list[float]
    after: list[float]
    utility: float
    p_value: float


class CounterfactualView(StageView):
    seed: Annotated[int, From("seed")]
    env: Annotated[EnvConfig, From("env")]
    model: Annotated[ModelConfig, From("model")]
    rollout: Annotated[RolloutConfig, Computing("rollout")]
    skills: Annotated[SkillsConfig, From("skills")]
    review_enabled: Annotated[bool, From("review.enabled")]
    """An empty reviews table is an error."""
    counterfactual: Annotated[CounterfactualConfig, Computing("counterfactual")]
    """All of it; ``probe_chunk`` (how the probes are batched) is an execution setting."""
    sft_enabled: Annotated[bool, From("sft.enabled")]
    """The policy base is ``models/sft``, and the cold start's games leave the probe pools."""
    sft_num_games: Annotated[int, From("sft.num_games")]
    """With ``sft_split``: the games a probe pool leaves out (``counterfactual.probe_pool``)."""
    sft_split: Annotated[str, From("sft.split")]


def sft_task_ids(ctx: StageContext) -> set[str]:
    """The training games the cold-start SFT replays (none without it): the same draw as
    :func:`skillmaster.stages.sft_data.sft_games`, ``sft.num_games`` of ``sft.split`` stratified
    over families."""
    view = ctx.view
    if not view.sft_enabled:
        return set()
    return {
        t.task_id
        for t in stratified_tasks(suite_of(ctx).tasks(view.sft_split), view.sft_num_games, view.seed)
    }


def probe_candidates(ctx: StageContext) -> list:
    """The tasks probes are drawn from: the training split, or with ``counterfactual.probe_pool`` its
    fixed per-family pools less the cold start's games (:func:`~skillmaster.skills.probes.probe_pools`)."""
    from skillmaster.envs.registry import profile
    from skillmaster.skills.probes import probe_pools

    view = ctx.view
    tasks = suite_of(ctx).tasks(view.env.train_split)
    if view.counterfactual.probe_pool is None:
        return tasks
    match = profile(view.env.name).probe_match
    pools = probe_pools(tasks, view.counterfactual.probe_pool, view.seed, sft_task_ids(ctx), match=match)
    keep = {t for ids in pools.values() for t in ids}
    return [t for t in tasks if t.task_id in keep]


def probe_ids(ctx: StageContext, row: dict, candidates: list | None = None) -> list[str]:
    """The K probe tasks of the review ``row`` (METHOD.md §6 step 1), drawn from ``candidates``
    (default :func:`probe_candidates`)."""
    from skillmaster.envs.registry import profile
    from skillmaster.skills.probes import draw_probes

    view = ctx.view
    tasks = probe_candidates(ctx) if candidates is None else candidates
    match = profile(view.env.name).probe_match  # the task family, or the category (WebShop)
    return draw_probes(
        row["task_id"], row[match], tasks, view.counterfactual.probes_per_edit, view.seed, match=match
    )


def edit_contrast(ctx: StageContext, stem: str, row: dict, bank: Bank, candidates: list) -> Contrast:
    """The contrast that scores the edit of review ``row``: B' = B + edit against B (control none) or
    against B + :func:`placebo_edit` (control placebo)."""
    edit = Edit.model_validate_json(row["edit"])
    control = placebo_edit(bank, edit) if ctx.view.counterfactual.control == "placebo" else None
    return Contrast(
        arm="edit",
        stem=stem,
        row=row,
        probes=probe_ids(ctx, row, candidates),
        before=with_edit(bank, control),
        after=apply_edit(bank, edit)[0],
        control_edit=control,
    )


def placebo_contrast(ctx: StageContext, stem: str, row: dict, bank: Bank, candidates: list) -> Contrast:
    """A contrast of edits without content on the probes of review ``row``: control none, B against
    :func:`placebo_bank`; control placebo, placebo variant 0 against variant 1 of the row's edit (of
    :data:`NEUTRAL_EDIT` when the row has none), so the two arms have the same size and place."""
    cf = ctx.view.counterfactual
    ids = probe_ids(ctx, row, candidates)
    if cf.control != "placebo":
        after = placebo_bank(bank, cf.placebo_kind)
        return Contrast(arm="placebo", stem=stem, row=row, probes=ids, before=bank, after=after)
    template = Edit.model_validate_json(row["edit"]) if row["status"] in EDIT_STATUSES else NEUTRAL_EDIT
    first, second = placebo_edit(bank, template, 0), placebo_edit(bank, template, 1)
    return Contrast(
        arm="placebo",
        stem=stem,
        row=row,
        probes=ids,
        before=with_edit(bank, first),
        after=with_edit(bank, second),
        control_edit=first,
    )


def contrast_stem(iteration: int, index: int, arm: Arm) -> str:
    """Id stem of the probes of candidate edit ``index`` (or placebo ``index``): probe ``k``'s runs
    are ``{stem}-{k:02d}-before`` and ``{stem}-{k:02d}-after``."""
    return f"{iteration:03d}-{STEM_LETTER[arm]}{index:03d}"


def plan_contrasts(ctx: StageContext, bank: Bank, reviews: pl.DataFrame) -> ContrastPlan:
    """The contrasts of iteration N: a seeded random subset of the reviews with an edit (at most
    ``counterfactual.max_edits``), and ``counterfactual.placebo_edits`` placebos on randomly drawn
    reviews (:func:`edit_contrast`, :func:`placebo_contrast`)."""
    from skillmaster.skills.probes import choose_edits

    view, it = ctx.view, ctx.iteration
    cf = view.counterfactual
    candidates = list(
        reviews.filter(pl.col("status").is_in(EDIT_STATUSES)).sort("traj_id").iter_rows(named=True)
    )
    chosen = (
        choose_edits([r["traj_id"] for r in candidates], cf.max_edits, derive_seed(view.seed, "edits", it))
        if cf.enabled
        else []
    )
    tasks = probe_candidates(ctx) if cf.enabled and (chosen or cf.placebo_edits) else []
    edits = {e: edit_contrast(ctx, contrast_stem(it, e, "edit"), candidates[e], bank, tasks) for e in chosen}
    placebos = []
    if cf.enabled and cf.placebo_edits and reviews.height:
        rng = random.Random(derive_seed(view.seed, "placebo", it))
        pool = list(reviews.sort("traj_id").iter_rows(named=True))
        for q, row in enumerate(rng.sample(pool, min(cf.placebo_edits, len(pool)))):
            placebos.append(placebo_contrast(ctx, contrast_stem(it, q, "placebo"), row, bank, tasks))
    return ContrastPlan(candidates, edits, placebos)


def probe_episodes(
    plan: list[Contrast], tasks_by_id: dict, iteration: int, paired: bool
) -> list[EpisodeSpec]:
    """The episodes of every probe of every contrast: probe ``k`` of a contrast is played as
    ``{stem}-{k:02d}-before`` (bank ``before``) and ``-after`` (bank ``after``) on the same task,
    sharing the sampling stream ``{stem}-{k:02d}`` when ``paired``. Each run records what it scores
    in its own columns: ``condition`` (probe or placebo, before or after), ``probe_of`` (the review's
    traj_id) and ``probe`` (k)."""
    episodes = []
    for c in plan:
        for k, task_id in enumerate(c.probes):
            key = f"{c.stem}-{k:02d}"
            for tag, b in (("before", c.before), ("after", c.after)):
                episodes.append(
                    EpisodeSpec(
                        f"{key}-{tag}",
                        tasks_by_id[task_id],
                        c.row["group_id"],
                        iteration,
                        bank=b,
                        condition=c.condition(tag),
                        probe_of=c.review,
                        probe=k,
                        seed_key=key if paired else None,
                    )
                )
    return episodes


def probe_settings(ctx: StageContext) -> RolloutSettings:
    """Rollout settings of probe episodes: the probe seed offset, and ``counterfactual.probe_temperature``
    (None: the rollout temperature)."""
    view = ctx.view
    cf = view.counterfactual
    return RolloutSettings.from_config(
        ctx.cfg,  # reads env.name, the step limit (env.max_steps, counterfactual.max_steps) and rollout
        stage="counterfactual",
        temperature=cf.probe_temperature,
        seed=derive_seed(view.seed, cf.probe_seed_offset, ctx.iteration),
    )


def run_probes(ctx: StageContext, plan: list[Contrast]) -> ProbeRuns:
    """Play every probe of every contrast in ``plan`` with both banks (:func:`probe_episodes`), in
    one batch or ``counterfactual.probe_chunk`` at a time (:func:`play_probe_chunk`), and score each
    run (:func:`run_scores`)."""
    view, it = ctx.view, ctx.iteration
    by_id = {t.task_id: t for t in suite_of(ctx).tasks(view.env.train_split)}
    episodes = probe_episodes(plan, by_id, it, view.counterfactual.paired)
    if not episodes:
        steps, trajs = STEPS.empty(), TRAJECTORIES.empty()
    else:
        settings = probe_settings(ctx)
        policy = load_policy(ctx, it - 1)
        chunk = view.counterfactual.probe_chunk
        slices = chunk_slices(len(episodes), chunk)
        context = [repr(settings), view_params(ctx), policy_stamp(ctx)]
        parts = [
            play_probe_chunk(ctx, policy, episodes[r.start : r.stop], context, settings, k, len(slices))
            for k, r in enumerate(slices)
        ]
        steps, trajs = pl.concat([p[0] for p in parts]), pl.concat([p[1] for p in parts])
        check_env_errors(trajs, f"counterfactual probes (iteration {it})")
    return ProbeRuns(steps, trajs, run_scores(ctx, steps, trajs))


def view_params(ctx: StageContext) -> dict[str, Any]:
    """The values of the stage's DVC params (its view's settings, less the execution settings)."""
    from pydantic import BaseModel

    from skillmaster.stages.views import lookup

    values = {k: lookup(ctx.cfg, k) for k in type(ctx.view).params()}
    return {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in values.items()}


def policy_stamp(ctx: StageContext) -> list:
    """The policy's folders (base and adapter) as file names, sizes and modification times: a
    retrained checkpoint in the same place makes another stamp."""
    from pathlib import Path

    stamp = []
    for folder in (ctx.resources.policy_weights or (None, None))[:2]:
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file()) if folder else []
        stamp.append([str(folder), [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]])  # fmt: skip
    return stamp


def chunk_key(episodes: list[EpisodeSpec], context: list) -> str:
    """A digest of what a chunk plays (its episodes, their tasks, banks and sampling streams) and of
    ``context`` (probe settings, the stage's params, the policy's stamp): a kept chunk is reused
    only for the very same episodes of the same policy."""
    import hashlib
    import json

    rows = [
        [e.traj_id, e.task.task_id, e.condition, e.probe_of, e.probe, e.seed_key,
         e.bank.model_dump_json() if e.bank is not None else None]
        for e in episodes
    ]  # fmt: skip
    return hashlib.sha256(json.dumps([rows, context], default=str).encode()).hexdigest()[:12]


def play_probe_chunk(
    ctx: StageContext,
    policy,
    episodes: list[EpisodeSpec],
    context: list,
    settings: RolloutSettings,
    k: int,
    n: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Chunk ``k`` of ``n``: read from ``.skillmaster/resume/`` when a killed run finished it, else
    played, and kept there when there are several chunks and its environments mostly worked (the
    stage checks all chunks together, :func:`check_env_errors`)."""
    it = ctx.iteration
    state = ctx.paths.stage_state("counterfactual", it) / f"chunk_{k:03d}_{chunk_key(episodes, context)}"
    if (kept := kept_episodes(state)) is not None:
        return kept
    desc = f"probes it{it}" + (f" {k + 1}/{n}" if n > 1 else "")
    with make_pool(ctx, len(episodes), settings.max_steps) as pool:
        steps, trajs = collect_episodes(policy, pool, episodes, settings, retriever_of(ctx), desc=desc)
    if n > 1:
        keep_episodes(state, steps, trajs)
    return steps, trajs


def run_scores(ctx: StageContext, steps: pl.DataFrame, trajs: pl.DataFrame) -> dict[str, float]:
    """The probe score s of every run (``counterfactual.score``), by trajectory id."""
    from skillmaster.envs.limits import step_limit
    from skillmaster.envs.registry import profile
    from skillmaster.rollout.progress import episode_progress, progress_score
    from skillmaster.skills.utility import probe_score

    cf = ctx.view.counterfactual
    t_max = step_limit(ctx.cfg, "counterfactual")  # counterfactual.max_steps, else env.max_steps
    if cf.score == "success":
        return {r["traj_id"]: probe_score(r["won"], r["length"], t_max) for r in trajs.iter_rows(named=True)}
    # walkthrough milestones; without walkthroughs (WebShop) the episode's own [0, 1] score
    kit = profile(ctx.view.env.name).walkthrough_kit
    shares, _ = episode_progress(steps, trajs, suite_of(ctx).walkthrough, kit)
    return {
        r["traj_id"]: progress_score(r["won"], r["length"], t_max, min(1.0, max(0.0, shares[r["traj_id"]])))
        for r in trajs.iter_rows(named=True)
    }


def utility_stats(utilities: list[float], prefix: str = "utility_") -> dict[str, float]:
    """The distribution of U over scored edits: how many are non-zero, positive, and the range."""
    n = len(utilities)
    return {
        f"{prefix}nonzero_share": sum(u != 0 for u in utilities) / n if n else 0.0,
        f"{prefix}positive_share": sum(u > 0 for u in utilities) / n if n else 0.0,
        f"{prefix}min": min(utilities, default=0.0),
        f"{prefix}max": max(utilities, default=0.0),
    }


def check_reviews(ctx: StageContext, reviews: pl.DataFrame) -> None:
    """The reviews table is one the review stage wrote: not empty when reviews are on, and every
    added/updated row carries a readable edit (checked before any model loads)."""
    from pydantic import ValidationError

    from skillmaster.skills.bank import Edit

    source = ctx.paths.reviews(ctx.iteration)
    if ctx.view.review_enabled and reviews.height == 0:
        raise DataError(
            f"{source}: the reviews table is empty while review.enabled is true; rerun the review stage"
        )
    for row in reviews.filter(pl.col("status").is_in(EDIT_STATUSES)).iter_rows(named=True):
        try:
            Edit.model_validate_json(row["edit"])
        except ValidationError:
            raise DataError(
                f"{source}: review {row['traj_id']!r} has status {row['status']} but no readable edit; "
                "rerun the review stage"
            ) from None


def contrast_stats(
    before: list[float], after: list[float], cf, size_before: int, size_after: int
) -> tuple[float, float]:
    """(U, p) of one contrast's paired probe scores: U of METHOD.md §6 step 4 (gamma, clip and size
    penalty of ``cf``, the counterfactual settings) and the one-sided sign-test p of its deltas."""
    from skillmaster.skills.utility import probe_deltas, sign_test_p, utility

    u = utility(before, after, cf.gamma, cf.clip, cf.size_penalty, size_before, size_after)
    return u, sign_test_p(probe_deltas(before, after))


def score_contrast(contrast: Contrast, runs: ProbeRuns, cf, size_before: int) -> ContrastResult:
    """``contrast``'s paired scores, U and p (:func:`contrast_stats`); the size term as for an edit:
    |B'| - |B|, B' being the "after" arm's bank."""
    from skillmaster.skills.diff import bank_size

    before, after = runs.arm_scores(contrast, "before"), runs.arm_scores(contrast, "after")
    u, p = contrast_stats(before, after, cf, size_before, bank_size(contrast.after).total)
    return ContrastResult(contrast, before, after, u, p)


def would_commit(cf, utility: float, p_value: float) -> bool:
    """Whether ``cf.commit`` (the counterfactual settings' rule) fires on a scored contrast with this
    U and p, before any conflict with other edits: how a placebo's false commit is counted."""
    from skillmaster.skills.commit import COMMIT_POLICIES, ScoredEdit

    eligible = COMMIT_POLICIES[cf.commit]
    null = ScoredEdit("", Edit(kind="keep"), utility, p_value=p_value)
    return eligible is not None and eligible(null, cf.commit_threshold, cf.alpha)


CONTRACT = StageContract(
    name="counterfactual",
    view=CounterfactualView,
    reads=lambda w: [
        *w.policy(w.iteration - 1),
        w.paths.bank(w.iteration - 1),
        w.paths.reviews(w.iteration).parent,
    ],
    writes=lambda w: [w.paths.counterfactual_dir(w.iteration), w.paths.bank(w.iteration)],
    metrics=lambda w: [w.paths.metrics(w.iteration, "counterfactual")],
    iterated=True,
    env_code=True,
)


def edit_row(iteration: int, row: dict, result: ContrastResult | None, control: str) -> dict:
    """The EDITS row of review ``row`` (``result``: its scored contrast; None: not scored), before
    the commit decision fills committed, commit_reason and committed_id."""
    return {
        "iteration": iteration,
        "task_id": row["task_id"],
        "group_id": row["group_id"],
        "traj_id": row["traj_id"],
        "family": row["family"],
        "status": row["status"],
        "skill_id": row["skill_id"],
        "edit": row["edit"],
        "scored": result is not None,
        "probe_task_ids": result.contrast.probes if result else [],
        "scores_before": result.before if result else [],
        "scores_after": result.after if result else [],
        "utility": result.utility if result else 0.0,
        "committed": False,
        "commit_reason": "",
        "committed_id": "",
        "control": control,
        "control_edit": (
            result.contrast.control_edit.model_dump_json()
            if result and result.contrast.control_edit is not None
            else ""
        ),
        "p_value": result.p_value if result else 1.0,
    }


def placebo_row(iteration: int, result: ContrastResult, cf) -> dict:
    """The PLACEBOS row of a scored placebo contrast, with whether ``cf.commit`` would commit it."""
    c = result.contrast
    return {
        "iteration": iteration,
        "traj_id": c.review,
        "family": c.row["family"],
        "probe_task_ids": c.probes,
        "scores_before": result.before,
        "scores_after": result.after,
        "kind": "placebo_vs_placebo" if cf.control == "placebo" else cf.placebo_kind,
        "utility": result.utility,
        "would_commit": would_commit(cf, result.utility, result.p_value),
        "p_value": result.p_value,
    }


def write_tables(ctx: StageContext, edits: list[dict], placebos: list[dict], runs: ProbeRuns) -> None:
    """The edits and placebos tables and the probe runs (the edits' and the placebos'), all or none."""
    it, paths = ctx.iteration, ctx.paths
    folder = paths.counterfactual_dir(it)
    with atomic_dir(folder) as tmp:
        EDITS.write(EDITS.from_rows(edits), tmp / paths.edits(it).relative_to(folder))
        PLACEBOS.write(PLACEBOS.from_rows(placebos), tmp / paths.placebos(it).relative_to(folder))
        TRAJECTORIES.write(runs.trajectories, tmp / paths.probe_trajectories(it).relative_to(folder))
        STEPS.write(runs.steps, tmp / paths.probe_steps(it).relative_to(folder))


def stage_metrics(
    ctx: StageContext,
    plan: ContrastPlan,
    runs: ProbeRuns,
    edits: list[dict],
    scored_edits: list,
    decisions: list,
    placebos: list[dict],
    new_bank: Bank,
) -> dict[str, Any]:
    """The stage's metrics: commit and utility statistics of the scored edits, the probes', the
    placebos' false-commit rate, and the new bank's size."""
    from skillmaster.skills.commit import commit_stats
    from skillmaster.skills.diff import bank_stats

    cf = ctx.view.counterfactual
    real = runs.trajectories.filter(pl.col("condition").str.starts_with(f"{CONDITION_PREFIX['edit']}_"))
    scored_u = [e.utility for e in scored_edits if e.scored]
    scored_p = [e.p_value for e in scored_edits if e.scored]
    placebo_u = [p["utility"] for p in placebos]
    false_commits = sum(p["would_commit"] for p in placebos)
    false_commit_rate = false_commits / len(placebos) if placebos else 0.0
    return {
        **commit_stats(scored_edits, decisions),
        **utility_stats(scored_u),
        **{
            f"edits_committed_{status}": sum(
                d.committed and r["status"] == status for r, d in zip(edits, decisions, strict=True)
            )
            for status in EDIT_STATUSES
        },
        "commit": cf.commit,
        "control": cf.control,
        "alpha": cf.alpha,
        "edits_significant": sum(p < cf.alpha for p in scored_p),
        "p_value_min": min(scored_p, default=1.0),
        "p_values": scored_p,  # of the scored edits, in traj_id order
        "probe_episodes": real.height,
        "probe_episodes_per_scored_edit": real.height / len(plan.edits) if plan.edits else 0.0,
        "probe_temperature": probe_settings(ctx).temperature,
        "probe_success_rate": float(real["won"].mean()) if real.height else 0.0,
        "probe_mean_score": (
            sum(runs.scores[t] for t in real["traj_id"]) / real.height if real.height else 0.0
        ),
        "placebo_scored": len(placebos),
        "placebo_commits": false_commits,
        "placebo_commit_rate": false_commit_rate,
        "false_commit_rate": false_commit_rate,  # placebo commits / placebo scored, to read beside alpha
        "placebo_significant_rate": (
            sum(p["p_value"] < cf.alpha for p in placebos) / len(placebos) if placebos else 0.0
        ),
        "placebo_p_values": [p["p_value"] for p in placebos],
        **utility_stats(placebo_u, "placebo_utility_"),
        **bank_stats(new_bank),
    }


@register(CONTRACT)
def counterfactual_stage(ctx: StageContext) -> dict:
    from skillmaster.skills.commit import ScoredEdit, commit_edits
    from skillmaster.skills.diff import bank_size
    from skillmaster.skills.store import save_bank

    it, cf = ctx.iteration, ctx.view.counterfactual
    bank = load_bank_at(ctx, it - 1)
    reviews = REVIEWS.read(ctx.paths.reviews(it))
    check_reviews(ctx, reviews)
    plan = plan_contrasts(ctx, bank, reviews)
    runs = run_probes(ctx, plan.contrasts)
    size_before = bank_size(bank).total

    edits, scored_edits = [], []
    for e, row in enumerate(plan.candidates):
        result = score_contrast(plan.edits[e], runs, cf, size_before) if e in plan.edits else None
        edit = Edit.model_validate_json(row["edit"])
        u, p = (result.utility, result.p_value) if result else (0.0, 1.0)
        scored_edits.append(ScoredEdit(row["traj_id"], edit, u, scored=result is not None, p_value=p))
        edits.append(edit_row(it, row, result, cf.control))
    new_bank, decisions = commit_edits(bank, scored_edits, cf.commit, cf.commit_threshold, cf.alpha)
    for r, d in zip(edits, decisions, strict=True):
        r.update(committed=d.committed, commit_reason=d.reason, committed_id=d.skill_id)
    placebos = [placebo_row(it, score_contrast(c, runs, cf, size_before), cf) for c in plan.placebos]

    write_tables(ctx, edits, placebos, runs)
    save_bank(new_bank, ctx.paths.bank(it))  # atomic; the bank it replaces is kept (.prev.json)
    shutil.rmtree(ctx.paths.stage_state("counterfactual", it), ignore_errors=True)  # the kept chunks
    metrics = stage_metrics(ctx, plan, runs, edits, scored_edits, decisions, placebos, new_bank)
    write_metrics(ctx, "counterfactual", metrics)
    return metrics
