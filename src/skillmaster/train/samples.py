"""Training samples: from the iteration's tables to token ids, micro-batches and tensors.

One sample is (prompt ids, response ids, advantage, kind, group). METHOD.md §7:

- an **action sample** per environment step: reward = the trajectory's ``episode_reward``
  (which already includes the malformed-output −1) + that step's ``penalty`` (+ the dense progress
  bonus of ``train.progress_reward``, not in the paper, when it is on);
- a **review sample** per trajectory: reward = the review's ``shaping`` + the edit's ``utility``
  (0 when the review made no scored edit).

Advantages are computed on all samples (:mod:`skillmaster.algo.advantages`), *then* action
samples may be subsampled (``train.max_samples``), so the group statistics are always those of
the full group; review samples are always kept.

Token ids: the prompt is tokenised exactly as the policy saw it
(:func:`skillmaster.agent.tokens.encode_prompt`, prefix and suffix separately); the response
ids are the stored sampled ids. Only response tokens carry loss.

Micro-batches: samples are sorted by length and packed greedily under a padded-token budget
(``train.micro_batch_tokens``), so neighbours have similar lengths and padding stays small.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from skillmaster.agent.greedy import scoring_temperature
from skillmaster.agent.tokens import encode_prompt, encode_response
from skillmaster.algo.advantages import get_advantage_fn
from skillmaster.errors import DataError

KINDS = ("action", "review")


@dataclass(frozen=True, slots=True)
class Sample:
    """One training sequence. Only ``response_ids`` carry loss."""

    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float = 0.0
    kind: str = "action"
    group: int = 0
    reward: float = 0.0
    temperature: float = 1.0
    """Sampling temperature of the response: log-probs are taken of softmax(logits / T)."""

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


# --------------------------------------------------------------------------- tables → sample frame
def rl_sample_frame(
    steps: pl.DataFrame,
    trajectories: pl.DataFrame,
    reviews: pl.DataFrame | None = None,
    edits: pl.DataFrame | None = None,
    step_bonus: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per sample with its reward (METHOD.md §7), from the STEPS/TRAJECTORIES/REVIEWS/EDITS tables.

    ``step_bonus`` (columns traj_id, step, bonus) adds a per-step bonus to action samples (the
    dense progress reward; missing steps get 0). Columns: kind, group_id, traj_id, step, prompt,
    prefix_chars, response_ids, temperature (what the response was sampled at), reward.
    """
    episode = trajectories.select("traj_id", "episode_reward").unique("traj_id", keep="first")
    actions = steps.join(episode, on="traj_id", how="left")
    orphans = actions.filter(pl.col("episode_reward").is_null())
    if orphans.height:
        raise DataError(
            f"{orphans.height} step rows have a traj_id missing from the trajectories table "
            f"(e.g. {orphans['traj_id'][0]!r}); re-run the collect stage"
        )
    columns = [
        "kind",
        "group_id",
        "traj_id",
        "step",
        "prompt",
        "prefix_chars",
        "response_ids",
        "temperature",
        "reward",
    ]
    if step_bonus is not None:
        actions = actions.join(
            step_bonus.select("traj_id", "step", "bonus"), on=["traj_id", "step"], how="left"
        )
    else:
        actions = actions.with_columns(bonus=pl.lit(0.0))
    actions = actions.with_columns(
        kind=pl.lit("action"),
        reward=pl.col("episode_reward") + pl.col("penalty") + pl.col("bonus").fill_null(0.0),
    ).select(columns)
    if reviews is None or reviews.height == 0:
        return actions
    review_rows = reviews.with_columns(step=pl.lit(-1, dtype=pl.Int32))
    if edits is not None and edits.height:
        dupes = edits.group_by("traj_id").len().filter(pl.col("len") > 1)
        if dupes.height:
            raise DataError(
                f"the edits table has {dupes.height} trajectories with several edits (e.g. "
                f"{dupes['traj_id'][0]!r}); one review makes at most one edit, re-run the counterfactual stage"
            )
        review_rows = review_rows.join(edits.select("traj_id", "utility"), on="traj_id", how="left")
    else:
        review_rows = review_rows.with_columns(utility=pl.lit(None, dtype=pl.Float64))
    review_rows = review_rows.with_columns(
        kind=pl.lit("review"), reward=pl.col("shaping") + pl.col("utility").fill_null(0.0)
    ).select(columns)
    return pl.concat([actions, review_rows], how="vertical")


def add_advantages(
    frame: pl.DataFrame, estimator: str, review_weight: float
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Add an ``advantage`` column with the named estimator (``train.advantage``); returns its metrics."""
    if frame.height == 0:
        return frame.with_columns(advantage=pl.lit(0.0)), {}
    scores = torch.tensor(frame["reward"].to_list(), dtype=torch.float64)
    groups = torch.tensor(frame["group_id"].to_list(), dtype=torch.int64)
    is_review = torch.tensor((frame["kind"] == "review").to_list(), dtype=torch.bool)
    adv, metrics = get_advantage_fn(estimator)(scores, groups, is_review, review_weight)
    return frame.with_columns(advantage=pl.Series(adv.tolist(), dtype=pl.Float64)), metrics


def subsample_actions(frame: pl.DataFrame, max_samples: int | None, seed: int | str) -> pl.DataFrame:
    """Keep at most ``max_samples`` action rows (seeded, order kept) and every review row."""
    actions = frame.filter(pl.col("kind") == "action")
    if max_samples is None or actions.height <= max_samples:
        return frame
    keep = sorted(random.Random(seed).sample(range(actions.height), max_samples))
    return pl.concat([actions[keep], frame.filter(pl.col("kind") != "action")], how="vertical")


# --------------------------------------------------------------------------- tokenisation
def tokenize_frame(frame: pl.DataFrame, tokenizer) -> list[Sample]:
    """Samples from a frame with prompt, prefix_chars, response_ids, advantage, kind, group_id, reward
    and (for sampled responses) the temperature they were sampled at.

    Rows whose response is empty carry no token to train on and are dropped.
    """
    prefix_cache: dict[str, list[int]] = {}
    samples = []
    for row in frame.iter_rows(named=True):
        response = list(row["response_ids"] or [])
        if not response:
            continue
        prompt, cut = row["prompt"], int(row["prefix_chars"])
        prefix = prompt[:cut]
        if prefix not in prefix_cache:
            prefix_cache[prefix] = encode_prompt(tokenizer, prefix, len(prefix))[0]
        prompt_ids = prefix_cache[prefix] + encode_prompt(tokenizer, prompt[cut:], 0)[1]
        if not prompt_ids:
            raise DataError(f"a {row['kind']} sample of trajectory {row['traj_id']!r} has an empty prompt")
        samples.append(
            Sample(
                prompt_ids=prompt_ids,
                response_ids=response,
                advantage=float(row.get("advantage") or 0.0),
                kind=row["kind"],
                group=int(row["group_id"]),
                reward=float(row["reward"]),
                temperature=scoring_temperature(row.get("temperature")),
            )
        )
    return samples


def build_rl_samples(
    cfg,
    steps: pl.DataFrame,
    trajectories: pl.DataFrame,
    reviews: pl.DataFrame | None,
    edits: pl.DataFrame | None,
    tokenizer,
    seed: int | str = 0,
    progress: pl.DataFrame | None = None,
) -> tuple[list[Sample], dict[str, Any]]:
    """The iteration's DualAdv-GRPO samples (METHOD.md §7) and their metrics.

    ``cfg`` is the root :class:`~skillmaster.config.Config`. Review samples are used only when
    ``review.enabled``. ``seed`` makes the ``train.max_samples`` subsample reproducible; each
    response's log-probs are taken at the temperature its table row records.
    ``progress`` (traj_id, step, progress_to_go; :func:`skillmaster.rollout.progress.episode_progress`)
    adds ``train.progress_reward`` × progress_to_go to action rewards when that setting is above 0.
    """
    use_reviews = reviews if cfg.review.enabled else None
    bonus = None
    if cfg.train.progress_reward > 0 and progress is not None:
        bonus = progress.with_columns(bonus=pl.col("progress_to_go") * cfg.train.progress_reward)
    frame = rl_sample_frame(steps, trajectories, use_reviews, edits, bonus)
    if frame.height == 0:
        raise DataError("there is nothing to train on: the steps table of this iteration is empty")
    frame, metrics = add_advantages(frame, cfg.train.advantage, cfg.train.review_adv_weight)
    frame = subsample_actions(frame, cfg.train.max_samples, seed)
    samples = tokenize_frame(frame, tokenizer)
    if bonus is not None:
        metrics["samples/mean_progress_bonus"] = float(bonus["bonus"].mean()) if bonus.height else 0.0
    metrics["samples/trained"] = float(len(samples))
    metrics["samples/dropped_empty"] = float(frame.height - len(samples))
    return samples, metrics


def build_sft_samples(frame: pl.DataFrame, tokenizer) -> list[Sample]:
    """SFT samples (METHOD.md §8) from a frame with prompt, prefix_chars and target ``response`` text.

    The target ids are the response text's tokens followed by the end-of-turn token (the
    tokenizer's EOS) unless the text already ends with it, so the policy learns to stop.
    """
    eos = tokenizer.eos_token_id
    samples = []
    for row in frame.iter_rows(named=True):
        ids = encode_response(tokenizer, row["response"])
        if eos is not None and (not ids or ids[-1] != eos):
            ids = [*ids, eos]
        prefix, suffix = encode_prompt(tokenizer, row["prompt"], int(row["prefix_chars"]))
        samples.append(Sample(prompt_ids=prefix + suffix, response_ids=ids, kind=row.get("kind") or "action"))
    return samples


# --------------------------------------------------------------------------- micro-batches
def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Pack sample indices into micro-batches of at most ``token_budget`` padded tokens.

    Samples are sorted by length (longest first) and added greedily while
    ``count × longest ≤ token_budget``; a sample longer than the budget gets a micro-batch alone.
    Returns lists of indices into ``lengths``, longest micro-batch first.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def padding_share(lengths: Sequence[int], micro_batches: Sequence[Sequence[int]]) -> float:
    """Share of padding tokens among all tokens fed to the model (right padding per micro-batch)."""
    padded = sum(len(mb) * max(lengths[i] for i in mb) for mb in micro_batches if mb)
    real = sum(lengths[i] for mb in micro_batches for i in mb)
    return 0.0 if padded == 0 else 1.0 - real / padded


def plan_steps(
    lengths: Sequence[int], mini_batch_size: int | None, epochs: int, token_budget: int, seed: int | str = 0
) -> list[list[list[int]]]:
    """Optimizer steps → micro-batches → sample indices, deterministic in ``seed``.

    Each epoch splits a seeded shuffle of the samples into mini-batches of ``mini_batch_size``
    (None: one mini-batch holding every sample, so one step per epoch); each mini-batch is packed by
    :func:`plan_micro_batches`.
    """
    n = len(lengths)
    plan = []
    for epoch in range(epochs):
        order = list(range(n))
        size = mini_batch_size or n
        if size < n:
            random.Random(f"{seed}-epoch{epoch}").shuffle(order)
        for start in range(0, n, size):
            chunk = order[start : start + size]
            packed = plan_micro_batches([lengths[i] for i in chunk], token_budget)
            plan.append([[chunk[j] for j in mb] for mb in packed])
    return plan


def shard(
    micro_batches: Sequence[Sequence[int]], lengths: Sequence[int], rank: int, world: int
) -> list[list[int]]:
    """The micro-batches of ``rank`` among ``world`` processes (deterministic, balanced by padded tokens).

    When there are fewer micro-batches than processes, the largest are split in halves first.
    Returns an empty list when a rank gets nothing (it must then still join the gradient sync).
    """
    mbs = [list(mb) for mb in micro_batches]
    while len(mbs) < world:
        i = max(range(len(mbs)), key=lambda k: len(mbs[k]), default=None)
        if i is None or len(mbs[i]) < 2:
            break
        big = mbs.pop(i)
        mbs[i:i] = [big[: len(big) // 2], big[len(big) // 2 :]]
    cost = [len(mb) * max(lengths[j] for j in mb) for mb in mbs]
    load = [0] * world
    owned: list[list[list[int]]] = [[] for _ in range(world)]
    for k in sorted(range(len(mbs)), key=lambda k: (-cost[k], k)):
        r = min(range(world), key=lambda r: (load[r], r))
        owned[r].append(mbs[k])
        load[r] += cost[k]
    return owned[rank]


def shard_even(
    micro_batches: Sequence[Sequence[int]], lengths: Sequence[int], rank: int, world: int
) -> list[tuple[list[int], float]]:
    """``rank``'s micro-batches as (indices, weight), padded so that every rank runs the same number.

    Under FSDP and DeepSpeed ZeRO-3 every forward gathers the sharded weights from all ranks, so a
    rank that ran one forward more than another would wait forever. Each rank therefore gets as many
    micro-batches as the busiest rank (:func:`shard` decides the real ones): the missing ones repeat
    the shortest sample with weight 0 (their loss and metrics count nothing). Deterministic: every
    rank computes every rank's share.
    """
    shares = [shard(micro_batches, lengths, r, world) for r in range(world)]
    count = max(1, *(len(s) for s in shares)) if shares else 1
    everything = [i for mb in micro_batches for i in mb]
    filler = [min(everything, key=lambda i: (lengths[i], i))] if everything else []
    mine: list[tuple[list[int], float]] = [(mb, 1.0) for mb in shares[rank]]
    mine += [(list(filler), 0.0)] * (count - len(mine))
    return mine


# --------------------------------------------------------------------------- tensors
@dataclass
class MicroBatch:
    """Right-padded tensors of one micro-batch (B samples, L tokens, R response positions)."""

    index: torch.Tensor  # (B,) indices into the sample list
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    positions: torch.Tensor  # (B, R) position whose logits predict each response token
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R) bool
    advantages: torch.Tensor  # (B,)
    temperature: torch.Tensor  # (B,)

    def to(self, device) -> MicroBatch:
        return MicroBatch(**{k: v.to(device) for k, v in vars(self).items()})

    @property
    def tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.attention_mask.sum())


def collate(samples: Sequence[Sample], indices: Sequence[int], pad_id: int) -> MicroBatch:
    """Right-pad the samples ``indices`` into a :class:`MicroBatch`."""
    chosen = [samples[i] for i in indices]
    width = max(s.length for s in chosen)
    resp = max(len(s.response_ids) for s in chosen)
    b = len(chosen)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    positions = torch.zeros((b, resp), dtype=torch.long)
    response_ids = torch.full((b, resp), pad_id, dtype=torch.long)
    response_mask = torch.zeros((b, resp), dtype=torch.bool)
    for row, s in enumerate(chosen):
        p, r = len(s.prompt_ids), len(s.response_ids)
        input_ids[row, : p + r] = torch.tensor(s.prompt_ids + s.response_ids)
        attention[row, : p + r] = 1
        # logits at position t predict token t + 1; padded response slots repeat the last position
        positions[row] = torch.clamp(torch.arange(resp) + p - 1, max=p + r - 2)
        response_ids[row, :r] = torch.tensor(s.response_ids)
        response_mask[row, :r] = True
    return MicroBatch(
        index=torch.tensor(list(indices), dtype=torch.long),
        input_ids=input_ids,
        attention_mask=attention,
        positions=positions,
        response_ids=response_ids,
        response_mask=response_mask,
        advantages=torch.tensor([s.advantage for s in chosen], dtype=torch.float32),
        temperature=torch.tensor([s.temperature for s in chosen], dtype=torch.float32),
    )
