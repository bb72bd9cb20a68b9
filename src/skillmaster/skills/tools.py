"""The review turn's three tools: definitions, tool-call parsing, status and shaping (METHOD.md §5).

Pure functions only. :func:`score_review` takes the generated reply and the bank the review
edits, and returns everything the review table needs: tool, arguments, status, the format-shaping
reward with its flags, the edited (scratch) bank and the :class:`~skillmaster.skills.bank.Edit`.

Parsing (:func:`parse_tool_call`) is tolerant about the wrapping and strict about the content:

- the payload is the first ``<tool_call>…</tool_call>`` block (a missing closing tag reads to the
  end); without tags, the first balanced JSON object in the reply that has a ``"name"`` key;
- whitespace and Markdown code fences (```` ``` ```` / ```` ```json ````) inside or around the
  payload are ignored, and the first complete JSON object in it is taken (trailing text ignored);
- ``arguments`` may be an object or a JSON string holding one (the OpenAI convention);
- the tool name must match exactly (after stripping spaces); arguments are checked by name, type
  and non-emptiness against the tool's pydantic model (:data:`TOOLS`); anything else is
  ``invalid_arguments``.

It never raises. More than one tool call: the first is used, and the informational flag
``multiple_tool_calls`` (no penalty: METHOD.md §5 has none) is set.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from skillmaster.config import ShapingConfig
from skillmaster.skills.bank import GENERAL, Bank, Edit, apply_edit_detailed, find_skill

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


# --------------------------------------------------------------------------- tool arguments (METHOD.md §5 table)
def _non_blank(value: str) -> str:
    text = value.strip()
    if not text:
        raise PydanticCustomError("blank", "must be a non-empty string")
    return text


Text = Annotated[str, Strict(), AfterValidator(_non_blank)]
"""A tool argument: a non-empty JSON string (nothing is coerced), stored stripped."""
Category = Annotated[
    Text, Field(description='The task\'s skill category, or "general" for a lesson that spans task types.')
]
SkillRef = Annotated[Text, Field(description="Id or exact title of a shown skill.")]
Title = Annotated[Text, Field(description="Short canonical name of the skill.")]
Principle = Annotated[Text, Field(description="The reusable rule, one or two sentences.")]
WhenToApply = Annotated[Text, Field(description="The situation in which the rule applies.")]
Evidence = Annotated[Text, Field(description="What in this episode shows the lesson is missing.")]
Reason = Annotated[Text, Field(description="Why, based on this episode.")]


class ToolArguments(BaseModel):
    """The arguments of one review tool: every one required, a non-empty string; no other names."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: ClassVar[str]
    """What the tool does (its JSON schema's description)."""


class ProposeSkill(ToolArguments):
    """``propose_skill``. Validate with ``context={"category": <the task's category>}``: the
    proposal's category must be that one or ``"general"`` (without a context only the form is checked)."""

    description: ClassVar[str] = "Add a new reusable skill to the skill bank."
    category: Category
    title: Title
    principle: Principle
    when_to_apply: WhenToApply
    evidence: Evidence

    @field_validator("category")
    @classmethod
    def _own_category_or_general(cls, value: str, info: ValidationInfo) -> str:
        own = (info.context or {}).get("category")
        # a category is a closed lower-case name: "General" and "Pick and place" are written forms
        # of "general" and "pick_and_place", not other categories
        folded = re.sub(r"[\s-]+", "_", value.lower())
        for name in (own, GENERAL):
            if name is not None and folded == name:
                return name
        if own is not None:
            raise PydanticCustomError(
                "wrong_category",
                "category must be {own} or 'general' (got {got})",
                {"own": repr(own), "got": repr(value)},
            )
        return value


class UpdateSkill(ToolArguments):
    """``update_skill``: ``skill_id`` names a shown skill by id or exact title (resolved against the bank)."""

    description: ClassVar[str] = "Revise a shown skill (its title, principle and when_to_apply are replaced)."
    skill_id: SkillRef
    title: Title
    principle: Principle
    when_to_apply: WhenToApply
    reason: Reason


class KeepSkill(ToolArguments):
    """``keep_skill``."""

    description: ClassVar[str] = (
        "Leave the skill bank unchanged: the shown skills already cover this episode."
    )
    reason: Reason


TOOLS: dict[str, type[ToolArguments]] = {
    "propose_skill": ProposeSkill,
    "update_skill": UpdateSkill,
    "keep_skill": KeepSkill,
}
"""Tool name → the model of its arguments."""
TOOL_ARGS: dict[str, tuple[str, ...]] = {name: tuple(model.model_fields) for name, model in TOOLS.items()}
"""Tool name → its arguments; all are required non-empty strings."""
TOOL_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": model.description,
            "parameters": {
                "type": "object",
                "properties": {
                    a: {"type": "string", "description": f.description} for a, f in model.model_fields.items()
                },
                "required": list(model.model_fields),
            },
        },
    }
    for name, model in TOOLS.items()
]
"""JSON schemas of the tools, for chat templates that take ``tools=`` (e.g. Qwen)."""


GRAMMAR_THINK_CHARS = 480
"""Longest think text the review grammar admits (the longest SFT target's is 332 characters).

Unbounded, a 135M policy sampling at T = 1 can ramble until the token budget cuts the reply off
(a parse error); bounded, the grammar closes the think and moves on to the call."""
GRAMMAR_ARGUMENT_CHARS: dict[str, int] = {
    "title": 80,
    "principle": 320,
    "when_to_apply": 200,
    "evidence": 240,
    "reason": 240,
}
"""Longest run of characters the review grammar admits per free-text argument, without a ``<`` (the
SFT targets' longest values: 42, 237,
81, 99, 193). With :data:`GRAMMAR_THINK_CHARS` a constrained edit call stays near 1,300
characters, within a 384-token budget for ordinary text."""

_GRAMMAR_TEXT = (
    r'text_first ::= [^"\\<\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]',
    r'text_tag ::= "<" [^/"\\\x00-\x1f]',
)
"""A tool argument in the review grammar: a JSON string that starts with a visible character (an
argument must not be blank), without escapes or control characters (JSON forbids them raw), where
a ``<`` never opens a closing tag (so ``</tool_call>`` cannot occur inside; ``<object>`` can): at
most two ``<`` after the first character (the SFT targets have two: ``<object>``, ``<receptacle>``), and at most :data:`GRAMMAR_ARGUMENT_CHARS` characters before, between and after
them. The runs between are single bounded character classes on purpose: a bounded repetition of an
alternation made xgrammar's per-token mask 40x slower (250 vs 6 ms per token, measured)."""


def _text_rules(arg: str) -> tuple[str, str]:
    seg = f"seg_{arg}"
    return (
        f'text_{arg} ::= "\\"" (text_first | text_tag) {seg} (text_tag {seg} (text_tag {seg})?)? "\\""',
        f'{seg} ::= [^"\\\\<\\x00-\\x1f]{{0,{GRAMMAR_ARGUMENT_CHARS[arg] - 1}}}',
    )


def _ebnf_literal(text: str) -> str:
    """``text`` as an EBNF string literal (xgrammar's GBNF dialect)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def review_grammar(category: str, skill_titles: Iterable[str]) -> str:
    """The EBNF grammar of a well-formed review reply for a task of ``category`` (``review.constrained``).

    ``<think>…</think>`` then one ``<tool_call>`` whose JSON names one of :data:`TOOLS` with exactly
    its arguments, in order, each a non-empty string; a proposal's ``category`` is ``category`` or
    ``"general"``, an update's ``skill_id`` one of ``skill_titles`` (the titles the review may
    revise). What the grammar admits parses back to a valid call (tested); whether it duplicates or
    adds anything is still decided by :func:`score_review`. Used as structured-output constraint
    by both engines (vLLM ``StructuredOutputsParams(grammar=…)``, xgrammar on transformers).
    """
    titles = sorted({t for t in skill_titles if t.strip()})
    values = {
        "category": " | ".join(_ebnf_literal(json.dumps(c)) for c in dict.fromkeys((category, GENERAL))),
        "skill_id": " | ".join(_ebnf_literal(json.dumps(t, ensure_ascii=False)) for t in titles),
    }
    rules, calls = [], []
    for name, args in TOOL_ARGS.items():
        if name == "update_skill" and not titles:
            continue
        parts = [_ebnf_literal(f'"{name}", "arguments": {{')]
        for i, arg in enumerate(args):
            sep = ", " if i else ""
            parts.append(_ebnf_literal(f'{sep}"{arg}": '))
            parts.append(f"v_{arg}" if arg in values else f"text_{arg}")
        parts.append(_ebnf_literal("}"))
        rules.append(f"{name} ::= " + " ".join(parts))
        calls.append(name)
    lines = [
        'root ::= "<think>" think "</think><tool_call>{\\"name\\": " call "}</tool_call>"',
        f"think ::= [^<>]{{1,{GRAMMAR_THINK_CHARS}}}",
        "call ::= " + " | ".join(calls),
        *rules,
        *(f"v_{k} ::= {v}" for k, v in values.items() if v),
        *(
            r
            for arg in GRAMMAR_ARGUMENT_CHARS
            if any(arg in TOOL_ARGS[c] for c in calls)
            for r in _text_rules(arg)
        ),
        *_GRAMMAR_TEXT,
    ]
    return "\n".join(lines) + "\n"


def validate_arguments(name: str, args: Mapping[str, Any], category: str) -> tuple[ToolArguments | None, str]:
    """``(arguments, "")`` when ``args`` fit tool ``name`` exactly, else ``(None, reason)`` (→ ``invalid_arguments``).

    The reason names the first kind of fault: unknown or missing names, then values that are not
    non-empty strings, then a proposal's category that is neither ``category`` (the task's) nor
    ``"general"``.
    """
    stripped = {k.strip() if isinstance(k, str) else k: v for k, v in args.items()}
    if len(stripped) == len(args):  # " evidence" is the argument evidence (when no other key clashes)
        args = stripped
    try:
        return TOOLS[name].model_validate(args, context={"category": category}), ""
    except ValidationError as err:
        return None, _problem(TOOL_ARGS[name], err)


def _problem(want: tuple[str, ...], err: ValidationError) -> str:
    errors = err.errors(include_url=False, include_context=False, include_input=False)
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    missing = [k for k in want if any(e["type"] == "missing" and e["loc"] == (k,) for e in errors)]
    if unknown or missing:
        return "; ".join(
            p for p in (f"unknown {unknown}" if unknown else "", f"missing {missing}" if missing else "") if p
        )
    bad = [k for k in want if any(e["type"] != "wrong_category" and e["loc"] == (k,) for e in errors)]
    if bad:
        return f"not non-empty strings: {bad}"
    return errors[0]["msg"]


# --------------------------------------------------------------------------- parsing
_TAG_OPEN = re.compile(r"<tool_call>", re.IGNORECASE)
_TAG_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"```[a-zA-Z]*")
_DECODER = json.JSONDecoder()
_MAX_SCAN = 64  # at most this many '{' positions are tried when looking for a bare JSON object


@dataclass(frozen=True)
class ParsedCall:
    """A tool call read from a reply. ``error`` is "" on success; otherwise ``name`` may be None."""

    name: str | None
    arguments: dict[str, Any] | None
    error: str = ""
    tagged: bool = False
    """Both ``<tool_call>`` and ``</tool_call>`` are present."""
    n_calls: int = 0
    """Number of ``<tool_call>`` blocks (0 when the bare-JSON fallback was used)."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(obj: Any) -> str | None:
    """The first string (key or value) in a decoded JSON value that holds half a surrogate pair.

    JSON's ``\\uXXXX`` escapes may encode one half of a pair (``"\\ud83d"``); the decoded string is
    then not valid Unicode and cannot be written as UTF-8 (parquet, JSON, the bank), so such a call
    is a parse error. Iterative, so deeply nested values cannot exhaust the stack."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _first_object(text: str, need_name: bool) -> tuple[Any, str]:
    """First JSON value decodable at a '{' of ``text`` (with a "name" key if ``need_name``)."""
    starts = [m.start() for m in re.finditer(r"\{", text)][:_MAX_SCAN]
    first_error = "no JSON object found"
    for i in starts:
        try:
            obj, _ = _DECODER.raw_decode(text, i)
        except (ValueError, RecursionError) as exc:
            if first_error == "no JSON object found":
                first_error = f"invalid JSON ({str(exc)[:80]})"
            if not need_name:
                break
            continue
        if not need_name or (isinstance(obj, dict) and "name" in obj):
            return obj, ""
    return None, first_error


def parse_tool_call(response: str) -> ParsedCall:
    """Read the first tool call of a review reply (module docstring). Never raises."""
    try:
        return _parse(response if isinstance(response, str) else str(response))
    except Exception as exc:  # a last guard: any input must give a parse_error, not a crash
        return ParsedCall(None, None, f"unreadable ({type(exc).__name__})")


def _parse(text: str) -> ParsedCall:
    tagged = "<tool_call>" in text.lower() and "</tool_call>" in text.lower()
    n_calls = len(_TAG_OPEN.findall(text))
    block = _TAG_BLOCK.search(text)
    if block is not None:
        payload = _FENCE.sub(" ", block.group(1)).strip()
        obj, err = _first_object(payload, need_name=False)
    else:
        obj, err = _first_object(_FENCE.sub(" ", text), need_name=True)
    if err:
        return ParsedCall(None, None, err, tagged, n_calls)
    if _lone_surrogate(obj) is not None:
        return ParsedCall(None, None, "invalid JSON (an unpaired surrogate escape)", tagged, n_calls)
    if not isinstance(obj, dict):
        return ParsedCall(None, None, "tool call is not a JSON object", tagged, n_calls)
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return ParsedCall(None, None, "tool call has no name", tagged, n_calls)
    args = obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return ParsedCall(name.strip(), None, "arguments string is not JSON", tagged, n_calls)
        if _lone_surrogate(args) is not None:
            return ParsedCall(name.strip(), None, "arguments string is not JSON", tagged, n_calls)
    if not isinstance(args, dict):
        return ParsedCall(name.strip(), None, "arguments are not a JSON object", tagged, n_calls)
    return ParsedCall(name.strip(), args, "", tagged, n_calls)


# --------------------------------------------------------------------------- shaping checks
_ACTION_TAG = re.compile(r"<action>.*?</action>", re.IGNORECASE | re.DOTALL)


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


# --------------------------------------------------------------------------- scoring
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
    if is_env_action(call.name) or _ACTION_TAG.search(text):
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
