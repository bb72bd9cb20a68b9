"""The review grammar (``review.constrained``): the EBNF of a well-formed review reply, used as
the structured-output constraint by both generation engines (:func:`review_grammar`)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from skillmaster.skills.bank import GENERAL
from skillmaster.skills.tool_schema import TOOL_ARGS

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
