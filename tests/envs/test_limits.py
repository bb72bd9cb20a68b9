"""One owner of the step limit: :func:`~skillmaster.envs.limits.step_limit` decides it for every
stage; the collector's settings take it, and the stage's environments truncate at it."""

from __future__ import annotations

import pytest

from skillmaster.config import Config
from skillmaster.envs.limits import step_limit


def test_step_limit_is_decided_in_one_place():
    cfg = Config.model_validate({"env": {"max_steps": 7}, "sft": {"search_detours": 2}})
    assert step_limit(cfg) == step_limit(cfg, "collect") == 7
    assert step_limit(cfg, "evaluate") == step_limit(cfg, "counterfactual") == 7
    longer = cfg.model_copy(
        update={
            "eval": cfg.eval.model_copy(update={"max_steps": 30}),
            "counterfactual": cfg.counterfactual.model_copy(update={"max_steps": 12}),
        }
    )
    assert (step_limit(longer, "evaluate"), step_limit(longer, "counterfactual")) == (
        30,
        12,
    )  # above env's: honoured
    assert step_limit(cfg, "sft", walkthrough_steps=10) == 10 * (1 + 2 * 2) + 1
    assert step_limit(cfg, "sft-mistakes", walkthrough_steps=10) == 18
    with pytest.raises(ValueError, match="no step limit for stage 'review'"):
        step_limit(cfg, "review")


def test_rollout_settings_take_the_stage_limit():
    from skillmaster.rollout.collector import RolloutSettings

    cfg = Config.model_validate({"env": {"max_steps": 7}, "eval": {"max_steps": 30}})
    assert RolloutSettings.from_config(cfg).max_steps == 7
    assert RolloutSettings.from_config(cfg, stage="evaluate").max_steps == 30
    assert RolloutSettings.from_config(cfg, stage="counterfactual").max_steps == 7
    assert RolloutSettings.from_config(cfg, stage="evaluate", max_steps=3).max_steps == 3
