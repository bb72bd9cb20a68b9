"""The review turn's three tools (METHOD.md §5): one import for the names other code uses.

:func:`score_review` takes the generated reply and the bank the review edits, and returns
everything the review table needs: tool, arguments, status, the format-shaping reward with its
flags, the edited (scratch) bank and the :class:`~skillmaster.skills.bank.Edit`. It is pure and
total: any string gives an outcome. The work is split by concern:

- :mod:`~skillmaster.skills.tool_schema`: the tools' argument models (:data:`TOOLS`,
  :data:`TOOL_ARGS`), their JSON schemas (:data:`TOOL_SCHEMAS`) and :func:`validate_arguments`;
- :mod:`~skillmaster.skills.tool_grammar`: the EBNF grammar of a well-formed reply
  (:func:`review_grammar`, ``review.constrained``);
- :mod:`~skillmaster.skills.tool_parsing`: reading the first tool call out of a reply, tolerant
  about the wrapping, strict about the content (:func:`parse_tool_call`);
- :mod:`~skillmaster.skills.tool_checks`: the heuristics behind the shaping flags (environment
  actions, placeholder text, object ids);
- :mod:`~skillmaster.skills.tool_shaping`: statuses, the shaping reward, :func:`score_review` and the
  statistics of a batch of reviews.

More than one tool call: the first is used, and the informational flag ``multiple_tool_calls`` (no
penalty: METHOD.md §5 has none) is set.
"""

from __future__ import annotations

from skillmaster.skills.tool_checks import has_action_tag, has_instance_id, has_placeholder, is_env_action
from skillmaster.skills.tool_grammar import GRAMMAR_ARGUMENT_CHARS, GRAMMAR_THINK_CHARS, review_grammar
from skillmaster.skills.tool_parsing import ParsedCall, parse_tool_call
from skillmaster.skills.tool_schema import (
    TOOL_ARGS,
    TOOL_SCHEMAS,
    TOOLS,
    KeepSkill,
    ProposeSkill,
    ToolArguments,
    UpdateSkill,
    validate_arguments,
)
from skillmaster.skills.tool_shaping import (
    EDIT_STATUSES,
    INFO_FLAGS,
    PENALTY_FLAGS,
    STATUSES,
    VALID_STATUSES,
    ReviewOutcome,
    review_shares,
    review_stats,
    score_review,
    shaping_reward,
)

__all__ = [
    "EDIT_STATUSES",
    "GRAMMAR_ARGUMENT_CHARS",
    "GRAMMAR_THINK_CHARS",
    "INFO_FLAGS",
    "PENALTY_FLAGS",
    "STATUSES",
    "TOOLS",
    "TOOL_ARGS",
    "TOOL_SCHEMAS",
    "VALID_STATUSES",
    "KeepSkill",
    "ParsedCall",
    "ProposeSkill",
    "ReviewOutcome",
    "ToolArguments",
    "UpdateSkill",
    "has_action_tag",
    "has_instance_id",
    "has_placeholder",
    "is_env_action",
    "parse_tool_call",
    "review_grammar",
    "review_shares",
    "review_stats",
    "score_review",
    "shaping_reward",
    "validate_arguments",
]
