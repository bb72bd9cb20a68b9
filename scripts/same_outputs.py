"""Did a change alter what the pipeline produces? Compare two finished `dvc repro` projects.

    .venv/bin/python scripts/same_outputs.py BEFORE_PROJECT AFTER_PROJECT

Run the same settings in both (e.g. `make run` in a fresh clone of each commit, with the same
`skillmaster config override`), then compare every file of every output DVC recorded in
`dvc.lock`: JSON files value by value, leaving out timings and sizes (keys naming seconds, time,
wall, rss, memory, bytes or a rate per second) and reading each project's own path as the same;
other files (tables, weights, plots) byte for byte. Prints what differs; exits 1 when anything does.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import yaml

TIMING = re.compile(r"second|time|wall|rss|memory|bytes|per_s|_s$", re.I)


def output_files(project: Path) -> list[str]:
    """Every file of every stage output in ``dvc.lock`` (relative paths)."""
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    files = []
    for out in (o["path"] for s in stages.values() for o in s.get("outs", [])):
        path = project / out
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files += [p.relative_to(project).as_posix() for p in found if p.is_file()]
    return sorted(set(files))


def flat(obj, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flat(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def content(project: Path, rel: str) -> dict[str, object] | str:
    """A JSON file's values (timings left out, the project's path as ``<project>``), else a digest."""
    path = project / rel
    if path.suffix == ".json":
        root = str(project.resolve())
        return {
            k: v.replace(root, "<project>") if isinstance(v, str) else v
            for k, v in flat(json.loads(path.read_text()))
            if not TIMING.search(k)
        }
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(before: Path, after: Path) -> dict[str, list[str]]:
    a, b = output_files(before), output_files(after)
    same, differ, values = [], [], 0
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            differ.append(f"{rel} (only in {'after' if rel in b else 'before'})")
            continue
        x, y = content(before, rel), content(after, rel)
        values += len(x) if isinstance(x, dict) else 1
        if x == y:
            same.append(rel)
        elif isinstance(x, dict) and isinstance(y, dict):
            keys = sorted(k for k in set(x) | set(y) if x.get(k, "<absent>") != y.get(k, "<absent>"))
            differ += [f"{rel}:{k} {x.get(k, '<absent>')!r} -> {y.get(k, '<absent>')!r}" for k in keys]
        else:
            differ.append(f"{rel} (other bytes)")
    return {"same": same, "differ": differ, "compared": [str(values)]}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all((Path(p) / "dvc.lock").is_file() for p in argv):
        print(
            "usage: same_outputs.py BEFORE_PROJECT AFTER_PROJECT (each a finished dvc repro with its dvc.lock)"
        )
        return 2
    r = compare(Path(argv[0]), Path(argv[1]))
    print(
        f"{len(r['same'])} output files identical ({r['compared'][0]} values and digests compared); {len(r['differ'])} differences"
    )
    for line in r["differ"][:60]:
        print(f"  {line}")
    return 1 if r["differ"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
