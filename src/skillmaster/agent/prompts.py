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
