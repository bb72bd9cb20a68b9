"""The README and docs/: every relative link resolves, every `skillmaster` command shown exists.

A renamed or removed command, option, file or heading fails here, not in a newcomer's terminal.
Commands are checked against the console script's own command tree and answer ``--help``; they are
not run (most of them train or evaluate for minutes to hours).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from skillmaster.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 220
SHELL_BLOCKS = {"bash", "sh", "shell", "zsh"}  # console blocks: only their `$ ` lines

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n\s*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HTML_TARGET = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
INPUT_FILE = re.compile(r"^(configs|src|flows|requirements)/\S+$")  # committed inputs a command reads
PLAIN_WORD = re.compile(r"^[a-z][a-z0-9-]*$")
STOP_TOKENS = {")", ";", ";;", "|", "||", "&", "&&", "<", ">", ">>", "(", "$"}


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@dataclass(frozen=True)
class Doc:
    path: Path
    prose: str  # the text with fenced blocks blanked out (line numbers kept)
    blocks: tuple[tuple[int, str, str], ...]  # (first line, language, body)


@cache
def parse(path: Path) -> Doc:
    prose: list[str] = []
    blocks: list[tuple[int, str, str]] = []
    fence = None  # (its character, its length, the language) while inside a fenced block
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        match = FENCE.match(line)
        if fence is None and match:
            fence = (match.group(1)[0], len(match.group(1)), match.group(2).lower())
            body, start = [], number + 1
        elif fence is not None and stripped and set(stripped) == {fence[0]} and len(stripped) >= fence[1]:
            blocks.append((start, fence[2], "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
        prose.append(line if fence is None and not match else "")
    assert fence is None, f"{rel(path)}: a fenced block is never closed"
    return Doc(path, "\n".join(prose), tuple(blocks))


def without_code_spans(text: str) -> str:
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# --------------------------------------------------------------------------- links
def links(doc: Doc) -> Iterator[tuple[int, str]]:
    text = without_code_spans(doc.prose)
    for pattern in (LINK, REFERENCE, HTML_TARGET):
        for match in pattern.finditer(text):
            yield line_of(text, match.start()), match.group(1)


def local_links(doc: Doc) -> Iterator[tuple[int, str]]:
    for number, target in links(doc):
        if not SCHEME.match(target) and not target.startswith("//"):
            yield number, target


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in parse(path).prose.splitlines():
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_relative_link_points_at_a_file_in_the_repository(path):
    broken = []
    for number, target in local_links(parse(path)):
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:
            continue
        resolved = (path.parent / file_part).resolve()
        if not resolved.is_relative_to(REPO):
            broken.append(f"{rel(path)}:{number}: {target} points outside the repository")
        elif not resolved.exists():
            broken.append(f"{rel(path)}:{number}: {target} does not exist")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_every_anchor_names_a_heading(path):
    broken = []
    for number, target in local_links(parse(path)):
        if "#" not in target:
            continue
        file_part, anchor = target.split("#", 1)
        page = (path.parent / file_part).resolve() if file_part else path
        if page.suffix != ".md" or not page.exists():
            continue  # the file part is the other test's
        if anchor.lower() not in anchors(page):
            broken.append(f"{rel(path)}:{number}: #{anchor} is no heading of {rel(page)}")
    assert not broken, "\n".join(broken)


def test_the_slugs_are_githubs():
    assert slug("MLflow: comparing runs") == "mlflow-comparing-runs"
    assert slug("The whole table: `skillmaster experiment`") == "the-whole-table-skillmaster-experiment"
    assert slug("Reliability: a kill, a full disk, bad input") == "reliability-a-kill-a-full-disk-bad-input"
    assert slug("Skill bank (`skills/bank.py`)") == "skill-bank-skillsbankpy"
    assert slug("Row by row: training, wall times, pairings") == "row-by-row-training-wall-times-pairings"


# --------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Shown:
    where: str
    args: tuple[str, ...]  # what follows `skillmaster`
    strict: bool  # a fenced shell block: the whole line is a command


def tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote: a fragment of prose, not a command
        return []


def invocations(line: str) -> Iterator[tuple[str, ...]]:
    """Each `skillmaster …` (or `python -m skillmaster.cli …`) in a shell line, up to `)`, `;`, `|`, `&&`."""
    parts = tokens(line)
    i = 0
    while i < len(parts):
        token, i = parts[i], i + 1
        if " " in token and re.search(r"(^|[\s(/])skillmaster\s", token):
            yield from invocations(token)  # eval "skillmaster loop $(…)"
        elif (
            token == "skillmaster"
            or token.endswith("/skillmaster")
            or (token == "skillmaster.cli" and i > 1 and parts[i - 2] == "-m")
        ):
            args = []
            while i < len(parts) and parts[i] not in STOP_TOKENS:
                args.append(parts[i])
                i += 1
            yield tuple(args)


def shell_lines(body: str) -> Iterator[tuple[int, str]]:
    joined, first = "", None
    for offset, line in enumerate(body.splitlines()):
        first = offset if first is None else first
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        yield first, joined + line
        joined, first = "", None
    if joined:
        yield first, joined


def shown_commands() -> list[Shown]:
    found = []
    for path in DOCS:
        doc = parse(path)
        for start, language, body in doc.blocks:
            for offset, line in shell_lines(body):
                if language not in SHELL_BLOCKS:
                    if not line.lstrip().startswith("$ "):
                        continue  # output, YAML, a file listing
                    line = line.lstrip()[2:]
                for args in invocations(line):
                    found.append(Shown(f"{rel(path)}:{start + offset}", args, strict=True))
        for match in CODE_SPAN.finditer(doc.prose):
            span = " ".join(match.group(2).split())
            if re.search(r"(^|[\s(/])skillmaster(\.cli)?(\s|$)", span):
                for args in invocations(span):
                    where = f"{rel(path)}:{line_of(doc.prose, match.start())}"
                    found.append(Shown(where, args, strict=False))
    return found


SHOWN = shown_commands()


@cache
def command_tree():
    return typer.main.get_command(app)


def resolve(shown: Shown) -> tuple[list[str], object, list[str]]:
    """(the command path, the command it names or None, problems) for a shown command line.

    In a fenced block every word after a command group must be one of its commands, and every option
    must be one of the command's. In prose (an inline code span) the path is followed only through
    plain words (`skillmaster stage <name>`, `skillmaster bench …` name no command)."""
    command, path, problems = command_tree(), [], []
    args = list(shown.args)
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        word = args[0]
        if not shown.strict and not PLAIN_WORD.match(word):
            return path, None, problems
        path.append(args.pop(0))
        if word not in command.commands:
            problems.append(f"{shown.where}: `skillmaster {' '.join(path)}`: no such command")
            return path, None, problems
        command = command.commands[word]
    if hasattr(command, "commands"):
        return path, command, problems
    for arg in args:
        value = arg.split("=", 1)[-1]
        if INPUT_FILE.match(value) and not any(REPO.glob(value)):
            problems.append(f"{shown.where}: {value} does not exist")
    known = {"--help"} | {o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}
    for arg in args:
        if re.match(r"^--?[A-Za-z]", arg) and arg.split("=", 1)[0] not in known:
            problems.append(
                f"{shown.where}: `skillmaster {' '.join(path)}` has no option {arg.split('=', 1)[0]}"
            )
    return path, command, problems


def test_the_docs_show_skillmaster_commands():
    assert sum(s.strict for s in SHOWN) >= 20, "the command extraction found (almost) nothing"
    assert any(s.args[:2] == ("experiment", "--dry-run") for s in SHOWN)
    assert any(s.args[:1] == ("stage",) for s in SHOWN)  # python -m skillmaster.cli stage …


def test_every_command_shown_names_a_real_command_and_real_options():
    problems = [problem for shown in SHOWN for problem in resolve(shown)[2]]
    assert not problems, "\n".join(problems)


COMMAND_PATHS = sorted({tuple(resolve(shown)[0]) for shown in SHOWN})


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(("skillmaster", *p)))
def test_every_command_path_shown_answers_help(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_a_renamed_command_or_option_would_be_caught():
    assert resolve(Shown("x", ("skills", "histroy"), strict=True))[2]
    assert resolve(Shown("x", ("compare", "--evalz", "results"), strict=True))[2]
    assert not resolve(Shown("x", ("skills", "history", "--all", "--root", "r"), strict=True))[2]
    assert not resolve(Shown("x", ("bench", "…", "--json"), strict=False))[2]
    assert resolve(Shown("x", ("config", "show", "-o", "configs/gone.yaml"), strict=True))[2]
    assert list(invocations("skillmaster experiment -r skillmaster -r grpo")) == [
        ("experiment", "-r", "skillmaster", "-r", "grpo")
    ]
    assert list(invocations("dvc exp run $(skillmaster config sets configs/baseline-grpo.yaml)")) == [
        ("config", "sets", "configs/baseline-grpo.yaml")
    ]
    assert list(invocations('eval "skillmaster loop $(skillmaster config sets x.yaml)"')) == [
        ("loop",),
        ("config", "sets", "x.yaml"),
    ]


def test_every_committed_file_a_shell_block_names_exists():
    missing = []
    for path in DOCS:
        for start, language, body in parse(path).blocks:
            if language not in SHELL_BLOCKS:
                continue
            for offset, line in shell_lines(body):
                for token in tokens(line):
                    for value in (token, token.split("=", 1)[-1]):
                        if INPUT_FILE.match(value) and not any(REPO.glob(value)):
                            missing.append(f"{rel(path)}:{start + offset}: {value} does not exist")
    assert not missing, "\n".join(sorted(set(missing)))


# --------------------------------------------------------------------------- size
def test_the_readme_stays_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"
