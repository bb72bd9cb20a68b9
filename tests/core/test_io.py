"""Crash-safe writes and schema-checked tables."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from skillmaster.errors import DataError
from skillmaster.io import TableSchema, atomic_dir, atomic_write_text

SCHEMA = TableSchema("demo", {"a": pl.Int32, "b": pl.Utf8, "c": pl.List(pl.Float64)})


def test_atomic_write_keeps_old_file_when_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    atomic_write_text(path, "old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_atomic_dir_swaps_only_on_success(tmp_path):
    out = tmp_path / "ckpt"
    with atomic_dir(out) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "w").write_text("2")
        raise RuntimeError("killed mid-write")
    assert (out / "w").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_table_roundtrip_and_validation(tmp_path):
    df = SCHEMA.from_rows([{"a": 1, "b": "x", "c": [0.5]}, {"a": 2, "b": "y", "c": []}])
    path = SCHEMA.write(df, tmp_path / "t.parquet")
    assert SCHEMA.read(path).equals(df)
    with pytest.raises(DataError, match="wrong columns"):
        SCHEMA.write(df.drop("c"), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="wrong column types: a: Int64"):
        SCHEMA.validate(df.with_columns(pl.col("a").cast(pl.Int64)))
    assert not (tmp_path / "bad.parquet").exists()
    (tmp_path / "corrupt.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot be read"):
        SCHEMA.read(tmp_path / "corrupt.parquet")
    with pytest.raises(DataError, match="run the stage that writes it first"):
        SCHEMA.read(tmp_path / "missing.parquet")


def test_columns_added_later_read_from_older_files(tmp_path):
    """A file written before a column existed reads with the column's declared value; writing still
    needs every column."""
    import math

    old = SCHEMA.write(SCHEMA.from_rows([{"a": 1, "b": "x", "c": [0.5]}]), tmp_path / "old.parquet")
    newer = TableSchema(
        "demo",
        {**SCHEMA.columns, "p": pl.Float64, "tag": pl.Utf8},
        added={"p": float("nan"), "tag": "none"},
    )
    df = newer.read(old)
    assert df.columns == ["a", "b", "c", "p", "tag"] and df.schema["p"] == pl.Float64
    assert math.isnan(df["p"][0]) and df["tag"][0] == "none"
    with pytest.raises(DataError, match="wrong columns"):
        newer.write(SCHEMA.read(old), tmp_path / "again.parquet")
    fresh = newer.write(df.with_columns(p=pl.lit(0.25)), tmp_path / "new.parquet")
    assert newer.read(fresh)["p"][0] == 0.25


def test_rows_that_leave_out_an_added_column_get_its_declared_value():
    """Code written before a column existed still builds rows of the table; any other column is required."""
    newer = TableSchema("demo", {**SCHEMA.columns, "n": pl.Int32}, added={"n": 0})
    df = newer.from_rows([{"a": 1, "b": "x", "c": [0.5]}, {"a": 2, "b": "y", "c": []}])
    assert df["n"].to_list() == [0, 0] and df.schema["n"] == pl.Int32
    assert newer.from_rows([{"a": 1, "b": "x", "c": [], "n": 3}])["n"].to_list() == [3]
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        newer.from_rows([{"a": 1, "c": []}])


def test_committed_counterfactual_tables_still_read(repo_root):
    """The edits and placebos tables of the committed experiments predate the gate's columns."""
    from skillmaster.tables import EDITS, PLACEBOS

    files = sorted((repo_root / "results").glob("*/*/pipeline/data/iter_*/counterfactual/edits.parquet"))
    assert files, "results/ holds the experiment's committed counterfactual tables"
    for path in files:
        edits = EDITS.read(path)
        assert (edits["control"] == "none").all() and edits["p_value"].is_nan().all()
        assert PLACEBOS.read(path.with_name("placebos.parquet"))["p_value"].is_nan().all()


# --------------------------------------------------------------------------- issue #21
FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    import polars as pl
    from pathlib import Path
    from skillmaster.io import TableSchema, atomic_dir, atomic_write_text

    SCHEMA = TableSchema("demo", {"a": pl.Int32, "b": pl.Utf8, "c": pl.List(pl.Float64)})
    folder = Path(sys.argv[1])
    big = SCHEMA.from_rows([{"a": i, "b": f"row {i} " * 20, "c": [i / 3]} for i in range(20000)])
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a full disk: writes past 4 KiB fail
    for name, write in [
        ("table", lambda: SCHEMA.write(big, folder / "t.parquet")),
        ("text", lambda: atomic_write_text(folder / "x.json", "y" * 100_000)),
    ]:
        try:
            write()
            print(name, "written")
        except OSError as exc:
            print(name, "OSError", exc.errno)
    try:
        with atomic_dir(folder / "ckpt") as tmp:
            big.write_parquet(tmp / "w.parquet")  # a library error that wraps the OS error
    except OSError as exc:
        print("dir", "OSError", exc.errno)
    """
)


def test_a_full_disk_is_an_os_error_and_keeps_the_previous_files(tmp_path):
    import errno

    SCHEMA.write(SCHEMA.from_rows([{"a": 1, "b": "old", "c": []}]), tmp_path / "t.parquet")
    atomic_write_text(tmp_path / "x.json", "old")
    with atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "w").write_text("old")
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    script = tmp_path.parent / f"{tmp_path.name}_full_disk.py"
    script.write_text(FULL_DISK)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [f"{w} OSError {errno.EFBIG}" for w in ("table", "text", "dir")]
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # previous versions kept, no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "t.parquet", "x.json"]


def test_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        SCHEMA.write(SCHEMA.from_rows([{"a": 1, "b": "x", "c": []}]), tmp_path / "t.parquet")
        atomic_write_text(tmp_path / "x.json", "1")
        with atomic_dir(tmp_path / "ckpt") as tmp:
            (tmp / "w").write_text("1")
            fd = os.open(tmp / "weights", os.O_CREAT | os.O_WRONLY, 0o600)  # as safetensors does
            os.close(fd)
            (tmp / "sub").mkdir(mode=0o700)
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "1")
    finally:
        os.umask(old)
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert mode == {"t.parquet": 0o644, "x.json": 0o644, "ckpt": 0o755, "private.json": 0o600}
    inside = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ckpt").iterdir()}
    assert inside == {"w": 0o644, "weights": 0o644, "sub": 0o755}


def test_null_values_in_a_table_are_a_clear_error(tmp_path):
    df = pl.DataFrame({"a": [1, None], "b": ["x", "y"], "c": [[0.5], []]}, schema=SCHEMA.polars_schema)
    df.write_parquet(tmp_path / "nulls.parquet")
    with pytest.raises(DataError, match=r"missing \(null\) values in \['a'\]"):
        SCHEMA.read(tmp_path / "nulls.parquet")


def test_deeply_nested_json_is_a_clear_error(tmp_path):
    from skillmaster.io import read_json

    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply"):
        read_json(tmp_path / "deep.json")
