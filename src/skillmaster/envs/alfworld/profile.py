"""ALFWorld's profile: prompt wording, review rules, its actions, probe matching, plot labels, and
the walkthrough kit (experts, milestones, review evidence; :mod:`.expert`, :mod:`.milestones`,
:mod:`.evidence`, :mod:`.lessons`, imported on first use)."""

from __future__ import annotations

from functools import cache

from skillmaster.envs.profile import (
    OUTPUT_FORMAT,
    ActionForms,
    EnvProfile,
    PromptStyle,
    ReviewRules,
    WalkthroughKit,
    labels,
)

ACTION_PREFIXES = (
    "go to ", "go_to_", "take ", "move ", "put ", "open ", "close ", "examine ", "clean ", "heat ",
    "cool ", "use ", "toggle ", "drop ", "slice ", "look", "inventory",
)  # fmt: skip
"""ALFWorld's actions by their verbs (the released code's list): the review's ``env_action`` flag."""


def clean_observation(obs: str) -> str:
    """The engine's text without its banner, on one line."""
    return " ".join(obs.replace("-= Welcome to TextWorld, ALFRED! =-", "").split())


@cache
def walkthrough_kit() -> WalkthroughKit:
    from skillmaster.envs.alfworld import evidence, expert, lessons, milestones

    return WalkthroughKit(
        milestones=milestones.milestones,
        milestone_hits=milestones.milestone_hits,
        searching_expert=lambda plan, max_detours, seed: expert.SearchingExpert(plan, max_detours, seed),
        mistake_expert=lambda plan, mistake, give_up, seed: expert.MistakeExpert(
            plan, mistake, give_up=give_up, seed=seed
        ),
        mistakes_for=expert.mistakes_for,
        target_of=evidence.target_of,
        findings=lambda episode: evidence.find_mistakes(episode) + evidence.find_tactics(episode),
        lessons=lessons.BOOK,
    )


PROFILE = EnvProfile(
    name="alfworld",
    prompt=PromptStyle(
        system=(
            "You are an agent in a text-based household (ALFWorld). Each turn you get the task, "
            "skills learned so far, recent history, the current observation and the admissible actions. "
            "Trust the latest observation. Reply in exactly this format: " + OUTPUT_FORMAT + " "
            "Keep the thinking to one or two short sentences and copy the action exactly from the list."
        ),
        observation_cleaner=clean_observation,
    ),
    review_rules=ReviewRules(
        no_ids="Write household rules, not instances: no object or receptacle ids (say 'a drawer', not 'drawer 2').",
        no_env_actions="Do not answer with an environment action (go to, take, move, open, clean, heat, cool, use, look).",
    ),
    env_actions=ActionForms(words=frozenset({"done", "help"}), prefixes=ACTION_PREFIXES),
    probe_match="family",
    default_max_steps=50,
    family_labels=labels(
        {
            "pick_and_place_simple": "Pick",
            "look_at_obj_in_light": "Look",
            "pick_clean_then_place_in_recep": "Clean",
            "pick_heat_then_place_in_recep": "Heat",
            "pick_cool_then_place_in_recep": "Cool",
            "pick_two_obj_and_place": "Pick2",
        }
    ),  # the column names of the paper's tables (METHOD.md §9)
    walkthrough_kit_loader=walkthrough_kit,
)
