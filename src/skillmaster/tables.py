"""Every table the pipeline writes, declared once (docs/ARCHITECTURE.md, "Tables").

Ids tie the tables together: ``iteration``, ``task_id`` (stable across machines), ``group_id``
(the G rollouts of one task in one iteration share it) and ``traj_id`` (one episode).
"""

from __future__ import annotations

import polars as pl

from skillmaster.io import TableSchema

_IDS = {
    "iteration": pl.Int32,
    "task_id": pl.Utf8,
    "group_id": pl.Int32,
    "traj_id": pl.Utf8,
}

STEPS = TableSchema(
    "steps",
    {
        **_IDS,
        "step": pl.Int32,  # 0-based step index within the episode
        "prompt": pl.Utf8,  # full prompt text after the chat template
        "prefix_chars": pl.Int32,  # prompt[:prefix_chars] is the episode's constant (cacheable) prefix
        "response": pl.Utf8,  # generated text
        "response_ids": pl.List(pl.Int32),  # the sampled token ids (training uses exactly these)
        "action": pl.Utf8,  # action sent to the environment ("" when none was sent)
        "valid": pl.Boolean,  # action was admissible
        "faults": pl.List(pl.Utf8),  # format faults and invalid_action, by PenaltyConfig name
        "penalty": pl.Float64,  # sum of this step's penalties (METHOD.md §4)
        "observation": pl.Utf8,  # observation returned by the environment after this step
        "env_reward": pl.Float64,  # reward returned by the environment at this step
        "done": pl.Boolean,  # the episode ended at this step
        "prompt_tokens": pl.Int32,
        "response_tokens": pl.Int32,
        "temperature": pl.Float64,  # sampling settings of the response (0: greedy)
        "top_p": pl.Float64,
        "engine": pl.Utf8,  # vllm | hf | expert (a scripted reply)
    },
)

TRAJECTORIES = TableSchema(
    "trajectories",
    {
        **_IDS,
        "split": pl.Utf8,
        "family": pl.Utf8,
        "category": pl.Utf8,
        "task_text": pl.Utf8,
        "won": pl.Boolean,
        "score": pl.Float64,  # WebShop score in [0, 1]; ALFWorld: 1.0 if won else 0.0
        "episode_reward": pl.Float64,  # METHOD.md §4: success_reward · won (WebShop: score == 1)
        "penalty_total": pl.Float64,  # sum of step penalties
        "length": pl.Int32,  # steps taken
        "invalid_count": pl.Int32,
        "end_reason": pl.Utf8,  # won | step_limit | malformed | error | stopped (an expert replay ended it)
        "error": pl.Utf8,  # worker error message, "" if none
        "skills_shown": pl.List(pl.Utf8),  # ids of skills in the prompt
        "skills_block": pl.Utf8,  # the rendered skill block shown to the agent
        "initial_observation": pl.Utf8,  # observation after reset (what step 0 acted on)
        "final_observation": pl.Utf8,
        "condition": pl.Utf8,  # train | probe_before | probe_after | placebo_before | placebo_after | eval_skills | eval_no_skills | sft (probe_before: the control arm, B or B + placebo)
        "probe_of": pl.Utf8,  # probes: the review (traj_id) whose edit (or placebo) they score; "" otherwise
        "probe": pl.Int32,  # probes: k, the probe task's index among the edit's K; -1 otherwise
        "temperature": pl.Float64,  # sampling temperature of the episode's replies
        "prompts_shortened": pl.Int32,  # step prompts cut to the engine's length limit (agent.prompts.PROMPT_FIT_RULE)
    },
    added={"prompts_shortened": 0},  # 0: before the limit was enforced
)

REVIEWS = TableSchema(
    "reviews",
    {
        **_IDS,
        "family": pl.Utf8,
        "category": pl.Utf8,
        "prompt": pl.Utf8,
        "prefix_chars": pl.Int32,
        "response": pl.Utf8,
        "response_ids": pl.List(pl.Int32),
        "prompt_tokens": pl.Int32,
        "response_tokens": pl.Int32,
        "temperature": pl.Float64,  # sampling settings of the review reply
        "top_p": pl.Float64,
        "tool": pl.Utf8,  # propose_skill | update_skill | keep_skill | "" when none parsed
        "arguments": pl.Utf8,  # JSON of the parsed arguments ("{}" when none)
        "status": pl.Utf8,  # added | updated | kept | duplicate | not_found | invalid_arguments | parse_error | unknown_tool
        "shaping": pl.Float64,  # format-shaping reward (METHOD.md §5)
        "shaping_flags": pl.List(pl.Utf8),
        "skill_id": pl.Utf8,  # skill added or updated ("" otherwise)
        "edit": pl.Utf8,  # JSON of the edit as applied to the bank ("" when nothing changed)
    },
)

EDITS = TableSchema(
    "edits",
    {
        **_IDS,
        "family": pl.Utf8,
        "status": pl.Utf8,  # added | updated
        "skill_id": pl.Utf8,
        "edit": pl.Utf8,  # JSON of the edit
        "scored": pl.Boolean,  # False when over counterfactual.max_edits or counterfactual is off
        "probe_task_ids": pl.List(pl.Utf8),
        "scores_before": pl.List(pl.Float64),  # s_k of the control arm: B, or B + placebo
        "scores_after": pl.List(pl.Float64),  # s_k(B')
        "utility": pl.Float64,  # U (METHOD.md §6) of after vs before; 0 when unscored or counterfactual is off
        "committed": pl.Boolean,
        "commit_reason": pl.Utf8,  # committed | below_threshold | not_significant | policy_off | conflict | ...
        "committed_id": pl.Utf8,  # id of the skill in the next bank ("" when not committed)
        "control": pl.Utf8,  # counterfactual.control: none | placebo (what scores_before were played with)
        "control_edit": pl.Utf8,  # JSON of the placebo edit giving the control arm ("" when it is B)
        "p_value": pl.Float64,  # one-sided sign test of the K deltas (ties dropped); 1 when unscored
    },
    added={"control": "none", "control_edit": "", "p_value": float("nan")},  # NaN: before the gate existed
)

PLACEBOS = TableSchema(
    "placebos",
    {
        "iteration": pl.Int32,
        "traj_id": pl.Utf8,  # the review whose probes the placebo edit was scored on
        "family": pl.Utf8,
        "probe_task_ids": pl.List(pl.Utf8),
        "scores_before": pl.List(pl.Float64),
        "scores_after": pl.List(pl.Float64),
        "kind": pl.Utf8,  # identical (B' = B) | neutral (B' = B + a skill that gives no advice) |
        # placebo_vs_placebo (control placebo: B + placebo vs B + another placebo of the same size and place)
        "utility": pl.Float64,  # U of an edit without content: non-zero only by chance
        "would_commit": pl.Boolean,  # the commit rule fires on it
        "p_value": pl.Float64,  # one-sided sign test of its K deltas, as for edits
    },
    added={"p_value": float("nan")},  # NaN: before the gate existed
)

SFT_SAMPLES = TableSchema(
    "sft_samples",
    {
        "task_id": pl.Utf8,
        "family": pl.Utf8,
        "kind": pl.Utf8,  # action | review
        "step": pl.Int32,
        "prompt": pl.Utf8,
        "prefix_chars": pl.Int32,
        "response": pl.Utf8,  # target text
    },
)
