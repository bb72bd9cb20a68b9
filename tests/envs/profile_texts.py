"""The environment-specific texts generic code renders, for the golden comparison in
``test_profiles.py``. Only APIs that existed before environments owned their knowledge are called,
so the same function produced ``golden/profile_texts.json`` from the code before the move.

Regenerate (only when a wording change is intended):
``python -m tests.envs.profile_texts > tests/envs/golden/profile_texts.json``.
"""

from __future__ import annotations

import json

ENVS = ("alfworld", "webshop", "no-such-env")
"""The registered environments and a name nobody registered (the fallbacks)."""

OBSERVATION = (
    "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room.   Looking quickly around you, "
    "you see a cabinet 1, a countertop 1,\n and a sinkbasin 1.\n\nYour task is to: put a clean mug in coffeemachine."
)
ENV_ACTION_NAMES = (
    "go to desk 1", "go_to_desk", "take apple 1 from table 1", "put mug in sink", "look", "inventory",
    "done", "help", "examine mug 1", "toggle lamp", "drop it", "slice apple", "use desklamp 1",
    "search[blue shirt]", "Click [Buy Now]", "click[< prev]", "buy", "buy now", "back to search", "next",
    "next >", "previous", "< prev", "keep_skill", "propose_skill", "update_skill", "delete_skill",
    "  LOOK  ", "searching", "clicks", "", None,
)  # fmt: skip
FAMILIES = (
    "pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place",
    "apparel", "beauty", "unknown_family",
)  # fmt: skip


def render_all() -> dict:
    from skillmaster.agent.prompts import render_action_prompt
    from skillmaster.plots import FAMILY_LABELS, label
    from skillmaster.skills.review import ReviewStep, render_review_prompt, system_prompt
    from skillmaster.skills.tools import is_env_action

    out: dict = {"action_prompt": {}, "review_system": {}, "review_prompt": {}}
    for env in ENVS:
        parts = render_action_prompt(
            env_name=env,
            task_text="put a clean mug in coffeemachine.",
            skills_block="General principles:\n- Look first.",
            step=2,
            history=[("go to desk 1", OBSERVATION), ("take mug 1 from desk 1", "You pick up\n the mug 1.  ")],
            observation=OBSERVATION,
            admissible=["go to sinkbasin 1", "help", "look"],
            history_length=3,
            max_obs_chars=80,
        )
        out["action_prompt"][env] = [parts.system, parts.prefix, parts.suffix]
        for style in ("method", "released"):
            out["review_system"][f"{env}/{style}"] = system_prompt(env, style)
        review = render_review_prompt(
            task_text="put a clean mug in coffeemachine.",
            category="clean",
            won=False,
            episode_reward=0.0,
            skills_block="- Look first.",
            final_feedback="Nothing happens.",
            steps=[ReviewStep(0, OBSERVATION, "go to desk 1"), ReviewStep(1, "You arrive.", "look")],
            env=env,
            style="released",
        )
        out["review_prompt"][env] = [review.system, review.user]
    out["is_env_action"] = {str(n): is_env_action(n) for n in ENV_ACTION_NAMES}
    out["label"] = {f: label(f) for f in FAMILIES}
    out["family_labels"] = list(FAMILY_LABELS.items())
    return out


if __name__ == "__main__":
    print(json.dumps(render_all(), indent=1, ensure_ascii=False, sort_keys=True))
