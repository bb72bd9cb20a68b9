"""Heuristic checks of a review reply behind the shaping flags (METHOD.md §5): an environment
action instead of a tool (:func:`is_env_action`, :func:`has_action_tag`), placeholder text
(:func:`has_placeholder`) and object ids in a skill's text (:func:`has_instance_id`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from skillmaster.skills.tool_schema import TOOL_ARGS

_ACTION_TAG = re.compile(r"<action>.*?</action>", re.IGNORECASE | re.DOTALL)


def has_action_tag(text: str) -> bool:
    """Whether a reply holds an agent-style ``<action>…</action>`` (the rule "no environment actions")."""
    return _ACTION_TAG.search(text) is not None


def is_env_action(name: str | None, env: str | None = None) -> bool:
    """Whether a "tool" name is an environment action: one of the forms of environment ``env``'s
    profile (``env_actions``), or of any environment when ``env`` is None (ALFWorld's verbs, the
    released list, and beyond the released code WebShop's ``search[…]``/``click[…]`` forms and page
    buttons)."""
    from skillmaster.envs.registry import profile, profiles

    if not name:
        return False
    n = name.strip().lower()
    if n in TOOL_ARGS:
        return False
    return any(p.env_actions.matches(n) for p in (profiles() if env is None else [profile(env)]))


_PLACEHOLDER_VALUES = {
    "...", "…", "[...]", "<th>", "<think>", "</think>", "<tool_call>", "</tool_call>", "todo", "tbd",
    "placeholder", "<placeholder>", "n/a", "none", "null", "string", "text", "xxx", "x",
}  # fmt: skip
_TEMPLATE_TOKEN = re.compile(r"^[<\[{]\s*[\w .\-/|]*\s*[>\]}]$")
_PLACEHOLDER_SUBSTR = ("...", "…", "[...]", "<placeholder>")
_TODO = re.compile(r"\bTODO\b")


def has_placeholder(response: str, args: Mapping[str, Any] | None) -> bool:
    """Placeholder text (METHOD.md §5): the released checks (stray ``<th>``, doubled ``<think>``,
    an argument that is just "..." or a tag) plus: an argument that is a filler word ("todo",
    "n/a", "string", its own name), a whole template token (``<title>``, ``[reason]``), or contains
    an ellipsis / ``<placeholder>`` / ``TODO``. Template tokens *inside* a sentence
    (``'heat <object> with <microwave>'``) are generic wording, not placeholders."""
    low = response.lower()
    if "<th>" in low or "<think><think>" in low:
        return True
    for key, value in (args or {}).items():
        if not isinstance(value, str):
            continue
        v = value.strip().lower()
        if (
            v in _PLACEHOLDER_VALUES
            or v == str(key).lower()
            or _TEMPLATE_TOKEN.match(v)
            or any(s in v for s in _PLACEHOLDER_SUBSTR)
            or _TODO.search(value)
        ):
            return True
    return False


_INSTANCE_ID = re.compile(r"\b([a-z]+) \d{1,3}\b")
_NOT_INSTANCE = {
    "step", "steps", "top", "least", "most", "than", "to", "of", "about", "after", "within", "first",
    "last", "every", "each", "up", "over", "under", "and", "or", "the", "with", "for", "k", "level",
    "size", "score", "reward", "page", "all", "only", "take", "takes", "needs", "need", "use", "uses",
}  # fmt: skip


def has_instance_id(args: Mapping[str, Any] | None) -> bool:
    """An object or receptacle id such as "desk 1" in a stored text field (informational flag).

    METHOD.md §5 lists "no object or receptacle ids" as a rule of the prompt, not as a shaping
    term, so this only sets the flag ``instance_id`` (no penalty). Heuristic: a lower-case word
    followed by a small number, minus common quantity words ("step 3", "top 5")."""
    for key in ("title", "principle", "when_to_apply"):
        value = (args or {}).get(key)
        if isinstance(value, str):
            for m in _INSTANCE_ID.finditer(value.lower()):
                if m.group(1) not in _NOT_INSTANCE:
                    return True
    return False
