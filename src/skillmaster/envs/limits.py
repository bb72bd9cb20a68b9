"""The step limit of an episode: :func:`step_limit` decides it for every stage that plays episodes.

The collector stops an episode at this limit (``RolloutSettings.max_steps``), the environment of
the same stage truncates at it (the stage's suite is built with it: ``stages.common.suite_of``),
and the counterfactual utility uses it as T_max (METHOD.md §6). ``env.max_steps`` (METHOD.md §4:
ALFWorld 50, WebShop 15, each environment's ``EnvProfile.default_max_steps``) is the limit unless
a stage has its own.
"""

from __future__ import annotations

from skillmaster.config import Config

SFT_MISTAKE_EXTRA_STEPS = 8
"""Steps a mistake replay may take beyond its walkthrough: the injected steps (at most 5) and a
short search after giving up."""


def step_limit(cfg: Config, stage: str = "collect", *, walkthrough_steps: int = 1) -> int:
    """Step limit of the episodes of ``stage``.

    - ``collect``: ``env.max_steps``;
    - ``evaluate``: ``eval.max_steps``, else ``env.max_steps``;
    - ``counterfactual`` (probes; also T_max of the utility): ``counterfactual.max_steps``, else
      ``env.max_steps``;
    - ``sft`` (expert walkthrough replays): the longest walkthrough (``walkthrough_steps``) with
      room for ``sft.search_detours`` detours, each a ``go to`` and an ``open``, at each of its steps,
      plus one;
    - ``sft-mistakes`` (replays with one scripted mistake): the longest walkthrough plus
      :data:`SFT_MISTAKE_EXTRA_STEPS`.

    A stage limit above ``env.max_steps`` is honoured: the stage's environments truncate at it too.
    """
    if stage == "collect":
        return cfg.env.max_steps
    if stage == "evaluate":
        return cfg.eval.max_steps or cfg.env.max_steps
    if stage == "counterfactual":
        return cfg.counterfactual.max_steps or cfg.env.max_steps
    if stage == "sft":
        return walkthrough_steps * (1 + 2 * cfg.sft.search_detours) + 1
    if stage == "sft-mistakes":
        return walkthrough_steps + SFT_MISTAKE_EXTRA_STEPS
    raise ValueError(
        f"no step limit for stage '{stage}' (choose from collect, evaluate, counterfactual, sft, sft-mistakes)"
    )
