"""Crash-safe bank store, clear errors for broken files, diff, and the `skillmaster skills` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillmaster.cli import app
from skillmaster.errors import DataError
from skillmaster.skills.bank import Edit, apply_edit
from skillmaster.skills.diff import diff_banks, format_diff
from skillmaster.skills.store import load_bank, prev_path, save_bank


def test_save_load_round_trip_keeps_previous_version(tmp_path, tiny_bank):
    path = tmp_path / "banks" / "iter_001.json"
    save_bank(tiny_bank, path)
    assert load_bank(path) == tiny_bank
    assert not prev_path(path).exists()
    new, _ = apply_edit(
        tiny_bank, Edit(kind="propose", category="heat", title="Wait", principle="Wait for the beep.")
    )
    save_bank(new, path)
    assert load_bank(path) == new
    assert prev_path(path) == tmp_path / "banks" / "iter_001.prev.json"
    assert load_bank(prev_path(path)) == tiny_bank
    assert sorted(p.name for p in path.parent.iterdir()) == ["iter_001.json", "iter_001.prev.json"]


def test_crash_between_write_and_rename_leaves_old_bank_intact(tmp_path, tiny_bank, monkeypatch):
    path = tmp_path / "iter_001.json"
    save_bank(tiny_bank, path)
    new, _ = apply_edit(
        tiny_bank, Edit(kind="propose", category="general", title="New", principle="Brand new.")
    )
    real_replace = os.replace

    def crash(src, dst, *a, **k):
        if Path(dst) == path:
            raise OSError("simulated crash before rename")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_bank(new, path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert load_bank(path) == tiny_bank
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the temp file was cleaned up


def test_hard_kill_between_write_and_rename_leaves_old_bank_intact(tmp_path, tiny_bank):
    """A real process dies (os._exit, no cleanup) right before the rename of the new bank."""
    path = tmp_path / "iter_002.json"
    save_bank(tiny_bank, path)
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from skillmaster.skills.bank import Edit, apply_edit
        from skillmaster.skills.store import load_bank, save_bank
        path = Path({str(path)!r})
        real = os.replace
        def die(src, dst, *a, **k):
            if Path(dst) == path:
                os._exit(9)
            return real(src, dst, *a, **k)
        os.replace = die
        bank, _ = apply_edit(load_bank(path), Edit(kind="keep"))
        bank, _ = apply_edit(bank, Edit(kind="propose", category="general", title="N", principle="P"))
        save_bank(bank, path)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the crash should have happened after the temp file was written"
    assert "dyn_001" in leftovers[0].read_text()
    assert load_bank(path) == tiny_bank  # old bank intact and loadable
    new, _ = apply_edit(tiny_bank, Edit(kind="propose", category="general", title="N", principle="P"))
    save_bank(new, path)  # the next save works despite the leftover temp file
    assert load_bank(path) == new


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ('{"general_skills": [', "is not valid JSON"),
        (b"\xff\xfe\x00garbage", "is not valid JSON"),
        (
            '{"general_skills": [{"skill_id": "a", "title": "t"}]}',
            "general_skills[0].principle: Field required",
        ),
        ('{"common_mistakes": "none"}', "common_mistakes"),
        ('{"metadata": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001, "nested too deeply"),  # issue #21
    ],
)
def test_corrupt_bank_gives_clear_error_and_is_never_overwritten(tmp_path, tiny_bank, content, fault):
    path = tmp_path / "iter_003.json"
    raw = content.encode() if isinstance(content, str) else content
    path.write_bytes(raw)
    with pytest.raises(DataError) as exc:
        load_bank(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and fault in msg
    with pytest.raises(DataError, match="refusing to overwrite"):
        save_bank(tiny_bank, path)
    assert path.read_bytes() == raw
    assert not prev_path(path).exists()


def test_missing_bank_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"iter_009\.json: skill bank not found"):
        load_bank(tmp_path / "iter_009.json")


def _changed_pair(tiny_bank):
    b, _ = apply_edit(
        tiny_bank,
        Edit(
            kind="update",
            skill_id="g2",
            title="Search new places",
            principle="Visit new places first.",
            when_to_apply="While searching.",
        ),
    )
    b, _ = apply_edit(
        b,
        Edit(
            kind="propose",
            category="heat",
            title="Wait",
            principle="Wait for the beep.",
            when_to_apply="After heating.",
        ),
    )
    cats = dict(b.task_specific_skills)
    cats["clean"] = ()
    return b.model_copy(update={"task_specific_skills": cats})


EXPECTED_DIFF = """\
A → B: 1 added, 1 updated, 1 removed

~ updated g2 [general]
    title:
      - Search  unseen places
      + Search new places

+ added dyn_001 [heat]
    title: Wait
    principle: Wait for the beep.
    when_to_apply: After heating.

- removed c1 [clean]
    title: Use the sink
    principle: Clean the object at a sinkbasin."""


def test_diff_of_a_known_pair(tiny_bank):
    changes = diff_banks(tiny_bank, _changed_pair(tiny_bank))
    assert [(c.kind, c.item_id) for c in changes] == [
        ("updated", "g2"),
        ("added", "dyn_001"),
        ("removed", "c1"),
    ]
    assert format_diff(changes) == EXPECTED_DIFF
    assert format_diff(diff_banks(tiny_bank, tiny_bank)) == "A → B: no changes"


def test_cli_show_and_diff(tmp_path, tiny_bank):
    banks = tmp_path / "data" / "banks"
    save_bank(tiny_bank, banks / "iter_000.json")
    save_bank(_changed_pair(tiny_bank), banks / "iter_002.json")
    runner = CliRunner()
    latest = runner.invoke(app, ["skills", "show", "--root", str(tmp_path)])
    assert latest.exit_code == 0, latest.output
    assert "iter_002.json" in latest.output and "[dyn_001] Wait: Wait for the beep." in latest.output
    first = runner.invoke(app, ["skills", "show", "--iteration", "0", "--root", str(tmp_path), "--json"])
    assert json.loads(first.output)["general_skills"][1]["title"] == "Search  unseen places"
    diff = runner.invoke(app, ["skills", "diff", "0", "2", "--root", str(tmp_path)])
    assert diff.exit_code == 0
    assert "1 added, 1 updated, 1 removed" in diff.output and "+ Search new places" in diff.output
    by_path = runner.invoke(
        app, ["skills", "diff", str(banks / "iter_002.json"), str(banks / "iter_000.json")]
    )
    assert "1 added, 1 updated, 1 removed" in by_path.output  # reversed: c1 comes back, dyn_001 goes


def test_cli_reports_a_corrupt_bank_in_one_sentence(tmp_path):
    bad = tmp_path / "bank.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "skillmaster.cli", "skills", "show", "--file", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {bad}: skill bank is not valid JSON")
    assert "Traceback" not in proc.stderr
    assert bad.read_text() == "{not json"
