"""Reading a tool call out of a review reply: JSON scanning (:func:`parse_tool_call`).

Tolerant about the wrapping and strict about the content:

- the payload is the first ``<tool_call>…</tool_call>`` block (a missing closing tag reads to the
  end); without tags, the first balanced JSON object in the reply that has a ``"name"`` key;
- whitespace and Markdown code fences (```` ``` ```` / ```` ```json ````) inside or around the
  payload are ignored, and the first complete JSON object in it is taken (trailing text ignored);
- ``arguments`` may be an object or a JSON string holding one (the OpenAI convention).

It never raises. The tool name and the arguments are checked afterwards
(:func:`skillmaster.skills.tool_schema.validate_arguments`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

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
