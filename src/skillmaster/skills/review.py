"""The trajectory-informed review prompt (METHOD.md §5). Pure rendering, no model.

The system message is constant per environment (the role, the reply format, the three tools, the
rules, two of them worded by the environment's profile), so its KV cache can be shared by every
review of a batch. The user message holds the episode: task, skill category, outcome, episode
reward, the skills the agent was shown, the last ``history_steps`` steps (observation cut to
``obs_chars``, action to ``action_chars``) and the final feedback. The wording is kept short: the
default policy is a 135M model on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skillmaster.config import ReviewConfig
from skillmaster.envs.profile import ReviewRules
from skillmaster.envs.registry import DEFAULT_ENV, find_profile

CUT_MARK = " [cut]"

GENERIC_RULES = ReviewRules(
    no_ids="Write general rules, not instances: no object, receptacle or item ids.",
    no_env_actions="Do not answer with an environment action.",
)
"""The "no ids" and "no environment actions" rules for an environment without a profile; a
registered one words them itself (its profile's ``review_rules``)."""


_EVIDENCE_CUES = (
    "- Compare what happened with the shown skills one by one; having some skills for this category "
    "is no reason to keep.",
    "- In a failed episode, an action sent again after 'Nothing happens.', an object walked past, a "
    "closed place left unopened, subgoals done in the wrong order or a lost count of objects is strong "
    "evidence for propose_skill or update_skill, unless a shown skill already states that rule.",
    "- In a successful episode, propose or update when the success rests on a tactic, an order of "
    "subgoals or a search habit that no shown skill states.",
)
"""The released code's failure-evidence cues (``review.prompt: released``), in our words."""

PROMPT_STYLES = ("method", "released")
"""``method``: METHOD.md §5's rules; ``released``: plus the released code's evidence cues and a
filled-in reply template per tool."""


def reply_templates(category: str) -> list[str]:
    """One filled-in reply template per tool (the released code's output formats), with the task's
    category written in."""
    return [
        'keep_skill: <think>…</think><tool_call>{"name": "keep_skill", "arguments": {"reason": "…"}}</tool_call>',
        'propose_skill: <think>…</think><tool_call>{"name": "propose_skill", "arguments": {"category": '
        f'"{category}", "title": "…", "principle": "…", "when_to_apply": "…", "evidence": "…"}}}}</tool_call>',
        'update_skill: <think>…</think><tool_call>{"name": "update_skill", "arguments": {"skill_id": '
        '"<exact title of a shown skill>", "title": "…", "principle": "…", "when_to_apply": "…", "reason": '
        '"…"}}</tool_call>',
    ]


def system_prompt(env: str = DEFAULT_ENV, style: str = "method") -> str:
    """Role, reply format, tools and rules of METHOD.md §5 (constant for one environment); the
    ``released`` style adds the released code's evidence cues."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown review prompt style {style!r} (choose from {PROMPT_STYLES})")
    env_profile = find_profile(env)
    rules = env_profile.review_rules if env_profile is not None else GENERIC_RULES
    cues = list(_EVIDENCE_CUES) if style == "released" else []
    return "\n".join(
        [
            "You review a finished episode and maintain a bank of short, reusable skills.",
            "Reply with <think>one to three sentences</think> followed by exactly one "
            '<tool_call>{"name": TOOL, "arguments": {...}}</tool_call> and nothing else.',
            "Tools (all arguments are required strings):",
            "- propose_skill(category, title, principle, when_to_apply, evidence): add a new skill; "
            'category is the task\'s skill category or "general".',
            "- update_skill(skill_id, title, principle, when_to_apply, reason): rewrite a shown skill; "
            "skill_id is its exact title.",
            "- keep_skill(reason): change nothing.",
            "Rules:",
            "- At most one tool call.",
            "- Propose only a genuinely new, reusable lesson.",
            "- Update only to revise a shown skill.",
            "- Keep only when the shown skills already cover what happened.",
            "- Success alone is no reason to keep; failure alone is no reason to edit.",
            *cues,
            f"- {rules.no_ids}",
            "- No placeholders or unfinished text.",
            f"- {rules.no_env_actions}",
        ]
    )


@dataclass(frozen=True)
class ReviewStep:
    """One episode step as the review shows it: its absolute number (0-based, shown 1-based), the
    observation the action was taken on, and the action (the ``<action>`` content, or the raw reply
    when none could be read)."""

    step: int
    observation: str
    action: str


@dataclass(frozen=True)
class ReviewPrompt:
    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        """Chat messages for ``tokenizer.apply_chat_template``."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def cut(text: str, limit: int) -> str:
    """``text`` stripped and cut to ``limit`` characters, marked when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + CUT_MARK


def render_review_prompt(
    *,
    task_text: str,
    category: str,
    won: bool,
    episode_reward: float,
    skills_block: str,
    final_feedback: str,
    steps: Sequence[ReviewStep],
    history_steps: int = 12,
    obs_chars: int = 900,
    action_chars: int = 220,
    feedback_chars: int | None = None,
    env: str = DEFAULT_ENV,
    style: str = "method",
) -> ReviewPrompt:
    """The review prompt of one finished trajectory (METHOD.md §5).

    ``steps`` is the whole episode in order; only the last ``history_steps`` are shown, each
    observation cut to ``obs_chars`` and each action to ``action_chars``. ``final_feedback`` (the
    last observation) is cut to ``feedback_chars`` (default: ``obs_chars``). ``style``:
    :data:`PROMPT_STYLES`.
    """
    shown = list(steps)[-history_steps:] if history_steps > 0 else []
    lines = [
        f"Task: {task_text.strip()}",
        f"Skill category: {category}",
        f"Outcome: {'success' if won else 'failure'}",
        f"Episode reward: {episode_reward:g}",
        "",
        "Skills shown to the agent:",
        skills_block.strip() or "(none)",
        "",
    ]
    if shown:
        first = len(steps) - len(shown)
        head = f"Last {len(shown)} of {len(steps)} steps:" if first else f"All {len(steps)} steps:"
        lines.append(head)
        for s in shown:
            lines.append(f"Step {s.step + 1}")
            lines.append(f"Observation: {cut(s.observation, obs_chars)}")
            lines.append(f"Action: {cut(s.action, action_chars)}")
    else:
        lines.append("No steps shown.")
    lines += ["", f"Final feedback: {cut(final_feedback, feedback_chars or obs_chars)}", ""]
    if style == "released":
        lines += ["Reply in one of these forms:", *reply_templates(category), ""]
    lines.append("Now reply with <think>…</think> and one <tool_call> JSON.")
    return ReviewPrompt(system_prompt(env, style), "\n".join(lines))


def render_from_config(cfg: ReviewConfig, env: str = DEFAULT_ENV, **episode) -> ReviewPrompt:
    """:func:`render_review_prompt` with the ``review`` settings (``history_steps``, ``obs_chars``,
    ``action_chars``, ``prompt``); ``episode`` holds the trajectory fields."""
    return render_review_prompt(
        history_steps=cfg.history_steps,
        obs_chars=cfg.obs_chars,
        action_chars=cfg.action_chars,
        env=env,
        style=cfg.prompt,
        **episode,
    )
