"""The review turn's three tools as data (METHOD.md §5 table): the pydantic models of their
arguments (:data:`TOOLS`), their JSON schemas for chat templates (:data:`TOOL_SCHEMAS`), and
:func:`validate_arguments`, which checks a parsed call's arguments against them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

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

from skillmaster.skills.bank import GENERAL


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
