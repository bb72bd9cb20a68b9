"""Scoring a review reply (METHOD.md §5): its status, the format-shaping reward with its flags,
the edited scratch bank (:func:`score_review`), and the statistics of a batch of reviews."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from skillmaster.config import ShapingConfig
from skillmaster.skills.bank import Bank, Edit, apply_edit_detailed, find_skill
from skillmaster.skills.tool_checks import has_action_tag, has_instance_id, has_placeholder, is_env_action
from skillmaster.skills.tool_parsing import ParsedCall, parse_tool_call
from skillmaster.skills.tool_schema import TOOL_ARGS, KeepSkill, ProposeSkill, validate_arguments

STATUSES = (
    "added",
    "updated",
    "kept",
    "duplicate",
    "not_found",
    "invalid_arguments",
    "parse_error",
    "unknown_tool",
)
"""Every review outcome (METHOD.md §5)."""
EDIT_STATUSES = ("added", "updated")
"""Statuses whose edit is scored by counterfactual utility (METHOD.md §6)."""
VALID_STATUSES = ("added", "updated", "kept", "duplicate", "not_found")
"""Statuses that earn the valid-call bonus (released code: not_found and duplicate count as valid)."""


_BASE = {
    "parse_error": "parse_error",
    "invalid_arguments": "invalid_arguments",
    "unknown_tool": "unknown_tool",
}  # status → ShapingConfig field of the base reward; every other status earns ``valid_call``
PENALTY_FLAGS = ("missing_think", "missing_tool_call_tags", "env_action", "placeholder", "duplicate")
"""Stacking flags, each named after its :class:`~skillmaster.config.ShapingConfig` field."""
INFO_FLAGS = ("multiple_tool_calls", "instance_id")
"""Flags recorded without a penalty."""


def shaping_reward(status: str, flags: Iterable[str], cfg: ShapingConfig) -> float:
    """Format-shaping reward of a review turn (METHOD.md §5): base by status + stacked penalties."""
    base = getattr(cfg, _BASE.get(status, "valid_call"))
    return float(base + sum(getattr(cfg, f) for f in flags if f in PENALTY_FLAGS))


@dataclass(frozen=True)
class ReviewOutcome:
    """Everything the review table records about one reply (METHOD.md §5)."""

    tool: str
    """The parsed tool name ("" when none could be read)."""
    arguments: dict[str, Any]
    status: str
    detail: str
    """Why the status (parse or argument problem, duplicate_of, …); "" when nothing to say."""
    shaping: float
    flags: list[str]
    """Penalty flags (:data:`PENALTY_FLAGS`) then informational ones (:data:`INFO_FLAGS`)."""
    new_bank: Bank
    """The bank after the edit (the input bank unless added/updated)."""
    skill_id: str = ""
    """Skill added or updated ("" otherwise)."""
    edit: Edit | None = None
    """The edit as applied (update: ``skill_id`` resolved to the id); None unless added/updated."""
    duplicate_of: str = ""

    def edit_json(self) -> str:
        return self.edit.model_dump_json() if self.edit is not None else ""

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False, sort_keys=True, default=str)


class _Decision(NamedTuple):
    status: str
    detail: str = ""
    bank: Bank | None = None  # None: the input bank, unchanged
    skill_id: str = ""
    edit: Edit | None = None
    duplicate_of: str = ""


def _decide(call: ParsedCall, bank: Bank, category: str) -> _Decision:
    """Status of a parsed call, and the edited scratch bank when it changes anything."""
    if call.error or call.name is None or call.arguments is None:
        return _Decision("parse_error", call.error or "no tool call")
    if call.name not in TOOL_ARGS:
        return _Decision("unknown_tool", f"unknown tool {call.name[:60]!r}")
    args, problem = validate_arguments(call.name, call.arguments, category)
    if args is None:
        return _Decision("invalid_arguments", problem)
    if isinstance(args, KeepSkill):
        return _Decision("kept")
    fields = {"title": args.title, "principle": args.principle, "when_to_apply": args.when_to_apply}
    if isinstance(args, ProposeSkill):
        edit = Edit(kind="propose", category=args.category, **fields)
    else:
        ref = args.skill_id
        hit = find_skill(bank, ref)
        if hit is None:
            return _Decision("not_found", f"no skill with id or title {ref[:60]!r}")
        edit = Edit(kind="update", skill_id=hit[1].skill_id, category=hit[0], **fields)
    res = apply_edit_detailed(bank, edit)
    if res.status not in EDIT_STATUSES:
        detail = f"duplicate of {res.duplicate_of}" if res.duplicate_of else res.status
        return _Decision(res.status, detail, duplicate_of=res.duplicate_of)
    if edit.kind == "propose":
        edit = edit.model_copy(update={"skill_id": res.skill_id})
    return _Decision(res.status, "", res.bank, res.skill_id, edit)


def score_review(response: str, bank: Bank, category: str, shaping: ShapingConfig) -> ReviewOutcome:
    """Parse a review reply, apply its tool call to a scratch copy of ``bank``, and shape it.

    ``category`` is the task's skill category (the allowed proposal category besides
    ``"general"``). The stacking flags follow METHOD.md §5; ``env_action`` also fires when the
    reply holds an agent-style ``<action>…</action>`` (the rule "no environment actions"), not only
    when the tool name is one. Pure and total: any string gives an outcome.
    """
    text = response if isinstance(response, str) else str(response)
    call = parse_tool_call(text)
    d = _decide(call, bank, category)
    status = d.status
    low = text.lower()
    flags: list[str] = []
    if "<think>" not in low or "</think>" not in low:
        flags.append("missing_think")
    if not call.tagged:
        flags.append("missing_tool_call_tags")
    if is_env_action(call.name) or has_action_tag(text):
        flags.append("env_action")
    if has_placeholder(text, call.arguments):
        flags.append("placeholder")
    if status == "duplicate":
        flags.append("duplicate")
    info = []
    if call.n_calls > 1:
        info.append("multiple_tool_calls")
    if status in EDIT_STATUSES and has_instance_id(call.arguments):
        info.append("instance_id")
    return ReviewOutcome(
        tool=call.name or "",
        arguments=dict(call.arguments or {}),
        status=status,
        detail=d.detail,
        shaping=shaping_reward(status, flags, shaping),
        flags=flags + info,
        new_bank=d.bank if d.bank is not None else bank,
        skill_id=d.skill_id,
        edit=d.edit,
        duplicate_of=d.duplicate_of,
    )


def review_stats(statuses: Iterable[str], prefix: str = "reviews_") -> dict[str, int]:
    """Counts of review outcomes for MLflow / DVC metrics (every status present, zeros included)."""
    counts = Counter(statuses)
    out = {f"{prefix}{s}": int(counts.get(s, 0)) for s in STATUSES}
    out[f"{prefix}total"] = int(sum(counts.values()))
    return out


def review_shares(tools: Iterable[str], statuses: Iterable[str]) -> dict[str, float]:
    """Skill-bank analytics of one review batch (METHOD.md §9): replies by tool (``none`` when no
    tool could be read, ``other`` for an unknown one) and the shares of valid edit calls
    (added/updated), valid keeps, valid calls of any kind and parse errors."""
    tools, statuses = list(tools), list(statuses)
    n = len(statuses)
    by_tool = Counter(t if t in TOOL_ARGS else ("none" if not t else "other") for t in tools)
    out: dict[str, float] = {f"tool_{t}": int(by_tool.get(t, 0)) for t in (*TOOL_ARGS, "other", "none")}
    count = Counter(statuses)

    def share(k: int) -> float:
        return k / n if n else 0.0

    out["valid_edit_share"] = share(count["added"] + count["updated"])
    out["valid_keep_share"] = share(count["kept"])
    out["valid_call_share"] = share(sum(count[s] for s in VALID_STATUSES))
    out["parse_error_share"] = share(count["parse_error"])
    return out
