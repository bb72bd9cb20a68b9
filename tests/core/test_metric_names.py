"""One MLflow name per number: the headline metrics' short names, ``/`` between parts."""

from __future__ import annotations

import json
from pathlib import Path

from skillmaster.tracking import metric_names

RUN = Path(__file__).resolve().parents[2] / "results" / "default-run" / "metrics"


def test_eval_headline_names_for_the_first_split_and_detail_names_for_the_rest():
    metrics = {
        "valid_seen": {
            "eval_skills": {
                "success_rate": 0.5,
                "mean_length": 20.0,
                "by_family": {"pick_and_place_simple": {"success_rate": 1.0, "episodes": 2}},
            },
            "eval_no_skills": {"success_rate": 0.25},
        },
        "valid_unseen": {"eval_skills": {"success_rate": 0.1}},
        "enabled": True,  # not a number
    }
    assert metric_names("eval", metrics, "valid_seen") == {
        "success": 0.5,
        "eval/valid_seen/eval_skills/mean_length": 20.0,
        "success/Pick": 1.0,
        "eval/valid_seen/eval_skills/by_family/pick_and_place_simple/episodes": 2.0,
        "success_no_skills": 0.25,
        "eval/valid_unseen/eval_skills/success_rate": 0.1,
    }


def test_counterfactual_and_bank_headlines_share_one_name():
    cf = {
        "edits_scored": 2,
        "edits_committed": 1,
        "mean_utility_scored": 0.05,
        "bank_total": 11,
        "bank_general": 3,
    }
    assert metric_names("counterfactual", cf) == {
        "edits/scored": 2.0,
        "edits/committed": 1.0,
        "edits/mean_utility": 0.05,
        "bank/size": 11.0,
        "bank/general": 3.0,
    }
    assert metric_names("bank", {"total": 11, "general": 3}) == {"bank/size": 11.0, "bank/general": 3.0}


def test_a_real_run_has_no_number_under_two_names_and_no_dot_separator():
    """Every metric of the committed default run, named as the stages and the report log them."""
    names: dict[str, tuple[str, str]] = {}
    for file in sorted(RUN.glob("iter_*/*.json")):
        it = file.parent.name
        for name in metric_names(file.stem, json.loads(file.read_text()), "valid_seen"):
            assert "." not in name, name
            assert (it, name) not in names, (name, names.get((it, name)), file)
            names[(it, name)] = (it, file.stem)
    short = {n for _, n in names}
    assert {"success", "success/Pick", "bank/size", "edits/scored", "edits/committed", "train/loss"} <= short
    assert not any(n.startswith("counterfactual/bank_") for n in short)
