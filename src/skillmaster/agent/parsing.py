"""Reading the agent's reply: the action, its validity, and the format faults (METHOD.md §4).

Pure functions; they never raise on any text. A fault's name is the field of
:class:`~skillmaster.config.PenaltyConfig` holding its penalty:

=====================  ==========================================================================
``empty``              the reply is blank
``truncated``          generation hit the token budget before ``</action>``
``missing_action_tag`` ``<action>`` or ``</action>`` is absent
``missing_think_end``  ``<think>`` opened but never closed
``repetitive``         a filler phrase repeated ``REPEAT_THRESHOLD`` times, or one line repeated 4+ times
``invalid_action``     no action could be read, or it is not admissible
``malformed``          empty, a broken ``<think`` prefix, or a claim that the task is complete: the episode
                       ends (``rollout.end_on_malformed``); its penalty goes to the episode reward
=====================  ==========================================================================

The detection rules follow the authors' released code (docs/skill-mastery.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from skillmaster.config import PenaltyConfig

ACTION_RE = re.compile(r"<action>(.*?)</action>", re.IGNORECASE | re.DOTALL)
OPEN_ACTION_RE = re.compile(r"<action>(.*)$", re.IGNORECASE | re.DOTALL)
COMPLETION_CLAIM_RE = re.compile(r"task complete|all goals satisfied|goal satisfied", re.IGNORECASE)
FILLER_PHRASES = ("i'm stuck", "i am stuck", "maybe", "but ", "i think", "perhaps", "nothing happens")
REPEAT_THRESHOLD = 8
LINE_REPEAT_THRESHOLD = 4
STEP_FAULTS = (
    "empty",
    "truncated",
    "missing_action_tag",
    "missing_think_end",
    "repetitive",
    "invalid_action",
)


@dataclass(frozen=True)
class ParsedAction:
    action: str
    """Text to send to the environment: the matched admissible action, else the raw action text."""
    valid: bool
    """The action is admissible."""
    faults: tuple[str, ...]
    """Fault names (see module doc), in a fixed order."""
    malformed: bool
    """The reply is broken enough to end the episode."""


def normalise_action(text: str) -> str:
    """Lower-case, collapse whitespace, drop surrounding quotes/brackets and a trailing full stop."""
    text = " ".join(text.lower().split())
    text = text.strip(" \t'\"`*[]")
    return text.rstrip(".").strip()


def extract_action(response: str) -> str | None:
    """The text inside the first ``<action>…</action>``, else after a lone ``<action>``; None if absent."""
    match = ACTION_RE.search(response)
    if match:
        return match.group(1).strip()
    match = OPEN_ACTION_RE.search(response)
    if match:
        return match.group(1).strip().splitlines()[0].strip() if match.group(1).strip() else ""
    return None


TEMPLATE_RE = re.compile(r"^(\w+)\[<[^>]*>\]$")
"""An admissible entry such as ``search[<your query>]`` stands for any ``search[...]`` (WebShop)."""


def match_admissible(candidate: str, admissible: Sequence[str]) -> str | None:
    """The admissible action ``candidate`` denotes: exact match first, then the normalised form, then
    a template entry (``verb[<...>]`` admits ``verb[anything non-empty]``, kept as written)."""
    concrete = [a for a in admissible if not TEMPLATE_RE.match(a)]
    if candidate in concrete:
        return candidate
    want = normalise_action(candidate)
    if not want:
        return None
    for action in concrete:
        if normalise_action(action) == want:
            return action
    for action in admissible:
        template = TEMPLATE_RE.match(action)
        if template:
            verb = template.group(1).lower()
            filled = re.match(
                rf"^\s*{re.escape(verb)}\s*\[(.*\S.*)\]\s*$", candidate, re.IGNORECASE | re.DOTALL
            )
            if filled and "<" not in filled.group(1):
                return f"{verb}[{filled.group(1).strip()}]"
    return None


def is_repetitive(text: str) -> bool:
    low = text.lower()
    if any(low.count(p) >= REPEAT_THRESHOLD for p in FILLER_PHRASES):
        return True
    lines = [line.strip() for line in low.splitlines() if line.strip()]
    return bool(lines) and Counter(lines).most_common(1)[0][1] >= LINE_REPEAT_THRESHOLD


def is_malformed(text: str) -> bool:
    """Released-code guard: empty reply, a broken ``<th…`` opening, or a false completion claim."""
    low = text.strip().lower()
    if not low:
        return True
    if "<th><th>" in low or (low.startswith("<th") and not low.startswith("<think>")):
        return True
    return bool(COMPLETION_CLAIM_RE.search(low))


def parse_action(response: str, admissible: Sequence[str], truncated: bool = False) -> ParsedAction:
    """Parse one reply against the admissible actions. Never raises."""
    text = response if isinstance(response, str) else ""
    low = text.lower()
    faults: list[str] = []
    if not text.strip():
        faults.append("empty")
    if truncated and "</action>" not in low:
        faults.append("truncated")
    if "<action>" not in low or "</action>" not in low:
        faults.append("missing_action_tag")
    if "<think>" in low and "</think>" not in low:
        faults.append("missing_think_end")
    if is_repetitive(text):
        faults.append("repetitive")
    raw = extract_action(text)
    matched = match_admissible(raw, admissible) if raw else None
    if matched is None:
        faults.append("invalid_action")
    return ParsedAction(
        action=matched if matched is not None else (raw or ""),
        valid=matched is not None,
        faults=tuple(faults),
        malformed=is_malformed(text),
    )


def step_penalty(faults: Sequence[str], penalties: PenaltyConfig) -> float:
    """Sum of this step's penalties (METHOD.md §4); ``malformed`` is charged to the episode instead."""
    return float(sum(getattr(penalties, f) for f in faults if f in STEP_FAULTS))
