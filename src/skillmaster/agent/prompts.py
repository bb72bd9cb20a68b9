"""Rendering of the agent's step prompt (METHOD.md §3). Pure functions, no model.

The prompt is split into a *prefix* that stays constant for a whole episode (system text, task,
skill block) and a *suffix* that changes every step (history, observation, admissible actions).
The policy caches the prefix's KV once and reuses it, so keep everything that varies in the
suffix. Layout (METHOD.md §3): general principles, the category's skills, mistakes to avoid (the
skill block, rendered by :mod:`skillmaster.skills.retrieval`), then the last N steps of history,
the current observation and the admissible actions, with the required output format. The system
text and the observation cleaner are the environment's (its profile's
:class:`~skillmaster.envs.profile.PromptStyle`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skillmaster.envs.profile import OUTPUT_FORMAT


@dataclass(frozen=True)
class PromptParts:
    """The three texts of a step prompt; ``prefix + suffix`` is the user message."""

    system: str
    prefix: str
    suffix: str


def cut(text: str, limit: int | None) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 3)].rstrip() + "..."


def render_prefix(task_text: str, skills_block: str | None) -> str:
    """The constant part of the user message: the task and the skill block (None = skills off)."""
    parts = [f"Your task is to: {task_text.strip()}"]
    if skills_block:
        parts.append("## Skills\n" + skills_block.strip())
    return "\n\n".join(parts) + "\n\n"


def render_suffix(
    *,
    step: int,
    history: Sequence[tuple[str, str]],
    observation: str,
    admissible: Sequence[str],
    history_length: int,
    max_obs_chars: int | None,
    clean: Callable[[str], str] = str.strip,
) -> str:
    """The per-step part: last ``history_length`` (action, resulting observation) pairs, the current
    observation and the admissible actions. ``step`` is the 0-based index of the step to take."""
    lines = [f"## Progress (step {step + 1})"]
    shown = list(history)[-history_length:] if history_length > 0 else []
    if shown:
        first = step - len(shown) + 1
        lines.append(f"Your last {len(shown)} of {step} actions and what followed:")
        for offset, (action, obs) in enumerate(shown):
            lines.append(f"[{first + offset}] {action} -> {cut(clean(obs), max_obs_chars)}")
    lines.append(f"Current observation: {clean(observation)}")
    lines.append("Admissible actions: " + " | ".join(a for a in admissible if a != "help"))
    lines.append(f"Now reply with {OUTPUT_FORMAT}.")
    return "\n".join(lines)


def render_action_prompt(
    *,
    env_name: str,
    task_text: str,
    skills_block: str | None,
    step: int,
    history: Sequence[tuple[str, str]],
    observation: str,
    admissible: Sequence[str],
    history_length: int,
    max_obs_chars: int | None = None,
) -> PromptParts:
    """The step prompt of METHOD.md §3 in the wording of environment ``env_name`` (its profile's
    :class:`~skillmaster.envs.profile.PromptStyle`; an unknown name gets the default environment's)."""
    from skillmaster.envs.registry import DEFAULT_ENV, find_profile

    style = (find_profile(env_name) or find_profile(DEFAULT_ENV)).prompt
    return PromptParts(
        system=style.system,
        prefix=render_prefix(task_text, skills_block),
        suffix=render_suffix(
            step=step,
            history=history,
            observation=observation,
            admissible=admissible,
            history_length=history_length,
            max_obs_chars=max_obs_chars,
            clean=style.observation_cleaner,
        ),
    )


def apply_chat_template(tokenizer, parts: PromptParts) -> tuple[str, int]:
    """Full prompt text with the model's chat template, and the length of its constant prefix.

    The prefix is everything up to where ``parts.suffix`` starts in the rendered text (the
    template's header, the system message and ``parts.prefix``). When the template does not keep
    the suffix verbatim, the prefix length is 0 (no reuse, still correct).
    """
    messages = [
        {"role": "system", "content": parts.system},
        {"role": "user", "content": parts.prefix + parts.suffix},
    ]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    at = text.rfind(parts.suffix) if parts.suffix else -1
    return text, max(at, 0)


# --------------------------------------------------------------------------- prompts that do not fit
CUT_MARK = "..."
"""Stands where :func:`cut_left` removed the start of a user message."""

PROMPT_FIT_RULE = """\
A prompt longer than the engine allows is shortened, never refused, by one rule. The budget is the
engine's length limit (vLLM: rollout.vllm.max_model_len; transformers: the model's
max_position_embeddings) less the reply's max_new_tokens, so the reply always has its full room.
1. Drop the oldest step of the history, one step at a time, until the prompt fits or no history is
   left (rollout prompts; a review prompt has no history to drop).
2. Still too long: cut the user message from the left, keeping the chat template's header and the
   system text (the instructions) whole and marking the cut with CUT_MARK; the end of the prompt
   (current observation, admissible actions, reply format) stays. The kept head is then the
   prompt's prefix.
Every shortened prompt is counted (the stage metric prompts_shortened), and the stored prompt is
the shortened one, so training sees exactly the ids the engine saw."""


def prompt_length(tokenizer, text: str, prefix_chars: int) -> int:
    """Tokens of a prompt as the engines and training encode it (prefix and suffix separately)."""
    from skillmaster.agent.tokens import encode_prompt

    prefix, suffix = encode_prompt(tokenizer, text, prefix_chars)
    return len(prefix) + len(suffix)


def cut_left(tokenizer, text: str, keep_chars: int, max_tokens: int) -> str:
    """``text[:keep_chars]`` whole, then :data:`CUT_MARK` and as much of the end of the rest as fits
    in ``max_tokens`` tokens (encoded with ``prefix_chars = keep_chars``, as :func:`prompt_length`).

    Raises :class:`~skillmaster.errors.ConfigError` when the kept head alone does not fit: every
    prompt shares it, so no prompt could be generated for."""
    from skillmaster.errors import ConfigError

    head, rest = text[:keep_chars], text[keep_chars:]
    head_tokens = prompt_length(tokenizer, head, len(head))
    offsets = tokenizer(rest, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    room = max_tokens - head_tokens - prompt_length(tokenizer, CUT_MARK, 0)
    keep = min(room, len(offsets))
    while keep > 0:  # the cut may join two tokens into a different number: verify, shrink by the excess
        out = head + CUT_MARK + rest[offsets[len(offsets) - keep][0] :]
        over = prompt_length(tokenizer, out, len(head)) - max_tokens
        if over <= 0:
            return out
        keep -= over
    raise ConfigError(
        f"a prompt's system text and template header take {head_tokens} tokens, more than the "
        f"{max_tokens} the engine leaves for a prompt (its length limit less the reply's "
        "max_new_tokens): raise rollout.vllm.max_model_len or lower max_new_tokens"
    )


def fit_prompt(
    tokenizer, render: Callable[[int], PromptParts], history_shown: int, max_tokens: int | None
) -> tuple[str, int, bool]:
    """The chat-templated prompt ``render(history_shown)`` (``render(k)``: the prompt parts showing
    the last ``k`` history steps), shortened by :data:`PROMPT_FIT_RULE` to ``max_tokens`` tokens
    (None: no limit). Returns ``(text, prefix_chars, shortened)``."""
    parts = render(history_shown)
    text, prefix_chars = apply_chat_template(tokenizer, parts)
    if max_tokens is None or prompt_length(tokenizer, text, prefix_chars) <= max_tokens:
        return text, prefix_chars, False
    for shown in range(history_shown - 1, -1, -1):  # 1. the oldest history step first
        parts = render(shown)
        text, prefix_chars = apply_chat_template(tokenizer, parts)
        if prompt_length(tokenizer, text, prefix_chars) <= max_tokens:
            return text, prefix_chars, True
    user = text.rfind(parts.prefix + parts.suffix)  # 2. from the left, after the system text
    keep = user if user >= 0 else 0  # a template that rewrites the message keeps nothing whole
    return cut_left(tokenizer, text, keep, max_tokens), keep, True
