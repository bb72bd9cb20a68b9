"""Getting ALFWorld's games: unpack archives, else run alfworld's own downloader (``skillmaster env data``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from skillmaster.envs.alfworld.games import (
    ARCHIVES_ENV_VAR,
    DATA_ENV_VAR,
    GAME_FILE,
    GAMES_DIR,
    HOW_TO_GET_DATA,
)
from skillmaster.errors import DataError


def count_games(data_dir: Path) -> dict[str, int]:
    """Game files per split folder under ``data_dir`` (no parsing; empty when there are none)."""
    root = data_dir / GAMES_DIR
    if not root.is_dir():
        return {}
    counts = {
        d.name: sum(1 for _ in d.glob(f"*/*/{GAME_FILE}")) for d in sorted(root.iterdir()) if d.is_dir()
    }
    return {k: v for k, v in counts.items() if v}


def _summary(data_dir: Path, counts: dict[str, int]) -> str:
    return f"{data_dir}: ALFWorld games present (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"


def unpack_archives(archives: list[Path], data_dir: Path, progress: bool = True) -> dict[str, int]:
    """Unpack ``*.tar.xz`` archives of ``json_2.1.1/<split>/…`` into ``data_dir``.

    Everything is extracted into a temporary folder inside ``data_dir`` first; each split folder
    is then renamed into place, so an interruption leaves no half-unpacked split behind. Splits
    already present are kept.
    """
    from tqdm import tqdm

    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(".unpack-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=data_dir))
    try:
        for archive in archives:
            try:
                with tarfile.open(archive, "r:*") as tar:
                    for member in tqdm(tar, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                        tar.extract(member, tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(
                    f"{archive}: cannot unpack ALFWorld games ({exc}); replace the archive"
                ) from None
        (data_dir / GAMES_DIR).mkdir(exist_ok=True)
        for split in sorted((tmp / GAMES_DIR).glob("*")):
            target = data_dir / GAMES_DIR / split.name
            if split.is_dir() and not target.exists():
                os.replace(split, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count_games(data_dir)


def _downloader() -> str | None:
    beside = Path(sys.executable).parent / "alfworld-download"
    return str(beside) if beside.is_file() else shutil.which("alfworld-download")


def ensure_data(data_dir: Path, archives_dir: Path | None = None, progress: bool = True) -> str:
    """Make sure ``data_dir`` holds games; returns a one-line summary.

    Present → nothing to do. Else the ``*.tar.xz`` archives in ``archives_dir`` are unpacked. Else
    alfworld's own downloader (``alfworld-download --data-dir``) fetches them. When that fails
    (offline), one DataError says where we looked and how to get the data.
    """
    counts = count_games(data_dir)
    if counts:
        return _summary(data_dir, counts)
    archives = sorted(archives_dir.glob("*.tar.xz")) if archives_dir and archives_dir.is_dir() else []
    if archives:
        counts = unpack_archives(archives, data_dir, progress=progress)
        if counts:
            return _summary(data_dir, counts)
        raise DataError(
            f"the archives in {archives_dir} hold no ALFWorld games (json_2.1.1/<split>/…/{GAME_FILE})"
        )
    tool = _downloader()
    looked = f"no ALFWorld games in {data_dir}" + (
        f" and no *.tar.xz in {archives_dir}" if archives_dir else ""
    )
    if tool is None:
        raise DataError(f"{looked}, and alfworld-download is not installed: {HOW_TO_GET_DATA}")
    env = {**os.environ, DATA_ENV_VAR: str(data_dir)}
    done = subprocess.run(
        [tool, "--data-dir", str(data_dir)], env=env, capture_output=not progress, text=True
    )
    counts = count_games(data_dir)
    if done.returncode != 0 or not counts:
        tail = (done.stderr or "").strip().splitlines()
        last = tail[-1].split(" (Caused by", 1)[0] if tail else ""
        reason = f" ({last[:150]}{'…' if len(last) > 150 else ''})" if last else ""
        raise DataError(
            f"{looked}, and `alfworld-download --data-dir {data_dir}` failed{reason}: fetch the games on a "
            f"machine with internet access and copy them there, or set {ARCHIVES_ENV_VAR} to a folder of "
            f"*.tar.xz game archives, or point ALFWORLD_DATA at unpacked games"
        )
    return _summary(data_dir, counts)
