"""WebShop's profile: prompt wording, review rules, its actions and probe matching. WebShop has no
expert walkthroughs (its suite's ``walkthrough`` gives None): no experts, milestones or review
evidence; the progress score and dense reward use the episode's own score instead."""

from __future__ import annotations

import re

from skillmaster.envs.profile import OUTPUT_FORMAT, ActionForms, EnvProfile, PromptStyle, ReviewRules


def clean_observation(obs: str) -> str:
    """The page text on one line."""
    return " ".join(obs.split())


PROFILE = EnvProfile(
    name="webshop",
    prompt=PromptStyle(
        system=(
            "You are a shopping agent on a text-based web shop (WebShop). Each turn you get the "
            "instruction, skills learned so far, recent history, the current page and the available actions. "
            "Find the product that matches every attribute, option and the price limit, then buy it. "
            "Reply in exactly this format: " + OUTPUT_FORMAT + " "
            "Keep the thinking short; the action is search[query] or one click[...] from the list."
        ),
        observation_cleaner=clean_observation,
    ),
    review_rules=ReviewRules(
        no_ids="Write shopping rules, not instances: no product titles, ids, prices or page positions.",
        no_env_actions="Do not answer with an environment action (search[...], click[...], buy, next, back to search).",
    ),
    env_actions=ActionForms(  # beyond the released code: search[…]/click[…] and the page buttons
        words=frozenset({"buy", "buy now", "back to search", "next", "next >", "previous", "< prev"}),
        patterns=(re.compile(r"^(search|click)\s*\[", re.IGNORECASE),),
    ),
    probe_match="category",
    default_max_steps=15,
)
