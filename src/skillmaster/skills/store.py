"""The crash-safe bank store (docs/ARCHITECTURE.md, "Skill bank"): load and validate, save atomically.

A bank file is one JSON document (:class:`~skillmaster.skills.bank.Bank`). :func:`load_bank`
validates it and raises a :class:`DataError` naming the file and the first fault;
:func:`save_bank` writes atomically (temporary file, then rename) and keeps the version it
replaced beside it (``iter_001.prev.json``), never overwriting a file that is not a valid bank.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from skillmaster.errors import DataError
from skillmaster.io import atomic_write_bytes, atomic_write_text
from skillmaster.skills.bank import Bank


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    parts: list[str] = []
    for p in first["loc"]:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    where = "".join(parts)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {msg}{tail}" if where else f"{msg}{tail}"


def parse_bank(data: Any, source: str = "<bank>") -> Bank:
    """Validate a decoded JSON document as a bank; a :class:`DataError` names the source and fault."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: a skill bank must be a JSON object, got {type(data).__name__}")
    try:
        return Bank.model_validate(data)
    except ValidationError as err:
        raise DataError(f"{source}: not a valid skill bank: {_describe(err)}") from None
    except RecursionError:
        raise DataError(f"{source}: not a valid skill bank: nested too deeply") from None


def load_bank(path: str | Path) -> Bank:
    """Read and validate a bank file. Missing, non-JSON or schema-invalid files raise a
    :class:`DataError` naming the file and the fault; the file is left untouched."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: skill bank not found (check the path, or run the stage that writes it)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: skill bank is not valid JSON ({exc}); fix or remove the file") from None
    except RecursionError:
        raise DataError(
            f"{path}: skill bank is nested too deeply to be a bank; fix or remove the file"
        ) from None
    return parse_bank(data, str(path))


def prev_path(path: str | Path) -> Path:
    """Where :func:`save_bank` keeps the version it replaced: ``iter_001.json`` → ``iter_001.prev.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix or '.json'}")


def save_bank(bank: Bank, path: str | Path) -> Path:
    """Write ``bank`` atomically (temp file + rename), keeping the replaced version at :func:`prev_path`.

    The bank is re-validated first. An existing file that is not a valid bank is never
    overwritten: a :class:`DataError` asks the user to fix or move it.
    """
    path = Path(path)
    text = parse_bank(json.loads(bank.to_json()), str(path)).to_json()  # round-trip check
    if path.exists():
        try:
            load_bank(path)
        except DataError as err:
            raise DataError(
                f"{err}; refusing to overwrite it (move it away to save a new bank there)"
            ) from None
        old = path.read_bytes()
        if old.decode("utf-8") == text:
            return path
        atomic_write_bytes(prev_path(path), old)
    return atomic_write_text(path, text)
