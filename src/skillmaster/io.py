"""Crash-safe file writing and schema-checked tables.

Every file the project writes goes through :func:`atomic_write_bytes` / :func:`atomic_dir`: the
content lands in a temporary sibling first and is renamed into place, so a crash never leaves a
half-written file that looks complete. Every table is a :class:`TableSchema`, declared once next
to the code that produces it, and validated when written and when read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from skillmaster.errors import DataError


# --------------------------------------------------------------------------- atomic files
def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: read it by setting it (not thread-safe, but brief)
    os.umask(mask)
    return mask


def _default_mode(fd: int, folder: bool = False) -> None:
    """Give a ``mkstemp``/``mkdtemp`` result (created 0600/0700) the mode a plain ``open``/``mkdir``
    would: 0666/0777 less the umask, so outputs on a shared file system stay readable by others."""
    os.fchmod(fd, (0o777 if folder else 0o666) & ~current_umask())


def _umask_tree(folder: Path) -> None:
    """Give everything under ``folder`` the umask's mode: some writers (safetensors through
    transformers) create their files 0600 whatever the umask, which other users of a shared file
    system then cannot read."""
    mask = current_umask()
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        executable = path.is_dir() or path.stat().st_mode & 0o111
        os.chmod(path, (0o777 if executable else 0o666) & ~mask)


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def as_os_error(exc: BaseException, path: str | Path) -> BaseException:
    """An :class:`OSError` for a library error that wraps one (polars, safetensors: ``… (os error
    28)``), so a full disk reads the same wherever it happens; other errors are returned unchanged."""
    if isinstance(exc, OSError):  # a failed write() names no file: name the output
        return exc if exc.filename or exc.errno is None else OSError(exc.errno, exc.strerror, str(path))
    m = _OS_ERROR.search(str(exc))
    if m is None:
        return exc
    code = int(m.group(1))
    return OSError(code, os.strerror(code), str(path))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """Yield a temporary sibling of ``path`` (created with the usual file mode) for the caller to
    write; on success it is fsynced and renamed onto ``path``, on any error removed, with a library's
    wrapped OS error re-raised as an :class:`OSError` naming ``path`` (:func:`as_os_error`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _default_mode(fd)
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        wrapped = as_os_error(exc, path)
        if wrapped is not exc:
            raise wrapped from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file + fsync + rename."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def check_writable(outputs: list[Path], files: bool = False) -> None:
    """Fail now, with the folder's name, when an output could not be written later: the folder that
    receives it (its nearest existing ancestor) and an existing output folder must take a new file
    (outputs are replaced by a rename, so an existing output file itself need not be writable; with
    ``files``, as for a database written in place, it must be). A read-only folder then costs
    seconds, not the stage's whole run."""
    for out in map(Path, outputs):
        if files and out.is_file():
            with open(out, "ab"):  # appends nothing: only asks whether it could
                pass
        folders = [out.parent, *([out] if out.is_dir() else [])]
        for folder in folders:
            probe = folder
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            try:
                tempfile.TemporaryFile(dir=probe).close()
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(probe)) from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: {what} is nested too deeply to read") from None


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it in on success.

    On an exception the temporary folder is removed and ``path`` is untouched. An existing
    ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            _default_mode(fd, folder=True)
        finally:
            os.close(fd)
        yield tmp
        _umask_tree(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        wrapped = as_os_error(exc, path)
        if wrapped is not exc:
            raise wrapped from exc
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class TableSchema:
    """A parquet table's name and column types, declared once and checked on write and read."""

    name: str
    columns: Mapping[str, pl.DataType | type[pl.DataType]]
    added: Mapping[str, Any] = field(default_factory=dict)
    """Columns added after files of this table were written: name → the value the rows of an older
    file (one without the column) get on :meth:`read`. Writing always needs every column."""

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema(dict(self.columns))

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema)

    def from_rows(self, rows: list[dict[str, Any]]) -> pl.DataFrame:
        """Build a frame from row dicts, in schema order, with the declared types. A column of
        :attr:`added` that the rows leave out gets its declared value, as on :meth:`read`."""
        if not rows:
            return self.empty()
        late = {c: v for c, v in self.added.items() if c not in rows[0]}
        if late:
            rows = [{**row, **late} for row in rows]
        missing = [c for c in self.columns if c not in rows[0]]
        extra = [c for c in rows[0] if c not in self.columns]
        if missing or extra:
            raise ValueError(
                f"{self.name} rows do not match the schema: missing {missing}, unexpected {extra}"
            )
        return pl.DataFrame(rows, schema=self.polars_schema, orient="row", strict=False)

    def validate(self, df: pl.DataFrame, source: str = "") -> pl.DataFrame:
        where = f"{source}: " if source else ""
        got = dict(df.schema)
        want = dict(self.polars_schema)
        missing = [c for c in want if c not in got]
        extra = [c for c in got if c not in want]
        if missing or extra:
            raise DataError(
                f"{where}{self.name} table has the wrong columns (missing {missing}, unexpected {extra})"
            )
        wrong = [f"{c}: {got[c]} (want {want[c]})" for c in want if got[c] != want[c]]
        if wrong:
            raise DataError(f"{where}{self.name} table has wrong column types: {', '.join(wrong)}")
        return df.select(list(want))

    def write(self, df: pl.DataFrame, path: str | Path) -> Path:
        """Validate and write atomically (parquet, zstd)."""
        df = self.validate(df, str(path))
        with atomic_file(path) as tmp:
            df.write_parquet(tmp, compression="zstd")
        return Path(path)

    def read(self, path: str | Path) -> pl.DataFrame:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: {self.name} table not found (run the stage that writes it first)")
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises several error types for corrupt files
            raise DataError(f"{path}: {self.name} table cannot be read ({exc})") from None
        late = [c for c in self.added if c not in df.columns]
        if late:  # a file written before these columns existed
            df = df.with_columns(pl.lit(self.added[c], dtype=self.columns[c]).alias(c) for c in late)
        df = self.validate(df, str(path))
        nulls = [c for c, n in df.null_count().row(0, named=True).items() if n]
        if nulls:  # the pipeline never writes nulls: the file was edited or written by something else
            raise DataError(
                f"{path}: {self.name} table has missing (null) values in {nulls}; rerun the stage that writes it"
            )
        return df
