"""Progress bars log a line every tenth of the way (what the Prefect UI's log pane shows)."""

from __future__ import annotations

import logging

from skillmaster.bars import LoggedBar


def test_a_disabled_bar_still_logs_each_tenth_and_the_end(caplog):
    caplog.set_level(logging.INFO, logger="skillmaster.progress")
    bar = LoggedBar(total=25, desc="collect", unit="ep", disable=True)
    for _ in range(25):
        bar.update(1)
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "collect: 2/25 ep" and lines[-1] == "collect: 25/25 ep"
    assert len(lines) == 13  # every 2 episodes (round(2.5)), then the end


def test_an_iterated_bar_logs_each_step_with_its_postfix(caplog):
    caplog.set_level(logging.INFO, logger="skillmaster.progress")
    bar = LoggedBar(range(3), desc="train steps", disable=True)
    for step in bar:
        bar.set_postfix(loss=f"{step / 10:.2f}")
    bar.close()
    assert [r.getMessage() for r in caplog.records] == [
        "train steps: 1/3 it (loss=0.00)",
        "train steps: 2/3 it (loss=0.10)",
        "train steps: 3/3 it (loss=0.20)",
    ]
