"""The review prompt (METHOD.md §5): fields, rules, tools, last-N steps and the length cuts."""

from __future__ import annotations

from skillmaster.config import ReviewConfig
from skillmaster.skills.review import (
    CUT_MARK,
    ReviewStep,
    cut,
    render_from_config,
    render_review_prompt,
    system_prompt,
)
from skillmaster.skills.tools import TOOL_ARGS


def _episode(n_steps: int = 20, **kw):
    steps = [
        ReviewStep(i, f"obs {i} " + "x" * (1000 if i == n_steps - 1 else 5), f"go to place {i}")
        for i in range(n_steps)
    ]
    base = dict(
        task_text="Your task is to: put a clean mug in coffeemachine.",
        category="clean",
        won=False,
        episode_reward=-1.0,
        skills_block="General principles:\n- Go first: Move before acting.",
        final_feedback="Nothing happens.",
        steps=steps,
    )
    base.update(kw)
    return base


def test_user_message_holds_every_field_of_method_5():
    p = render_review_prompt(**_episode())
    u = p.user
    for piece in (
        "put a clean mug in coffeemachine",
        "Skill category: clean",
        "Outcome: failure",
        "Episode reward: -1",
        "- Go first: Move before acting.",
        "Final feedback: Nothing happens.",
    ):
        assert piece in u
    assert "Last 12 of 20 steps:" in u
    assert (
        "Step 8\n" not in u and "Step 9\nObservation: obs 8" in u and "Step 20\n" in u
    )  # steps 9..20 (1-based)
    assert u.index("Step 9\n") < u.index("Step 20\n") < u.index("Final feedback:")
    long_obs = u.split("Step 20\nObservation: ")[1].split("\nAction:")[0]
    assert len(long_obs) == 900 + len(CUT_MARK) and long_obs.endswith(CUT_MARK)


def test_system_message_has_tools_and_rules_and_is_constant():
    a = render_review_prompt(**_episode()).system
    b = render_review_prompt(**_episode(category="heat", won=True, episode_reward=10.0)).system
    assert a == b == system_prompt("alfworld")
    for name, args in TOOL_ARGS.items():
        assert f"{name}({', '.join(args)})" in a
    for rule in (
        "At most one tool call",
        "genuinely new",
        "revise a shown skill",
        "already cover",
        "Success alone is no reason to keep; failure alone is no reason to edit",
        "no object or receptacle ids",
        "No placeholders",
        "environment action",
        "<think>",
        "<tool_call>",
    ):
        assert rule in a
    assert "search[" in system_prompt("webshop") and "search[" not in a


def test_cuts_and_history_setting():
    assert cut("  abc  ", 5) == "abc"
    assert cut("abcdef", 3) == "abc" + CUT_MARK
    p = render_from_config(
        ReviewConfig(history_steps=2, obs_chars=4, action_chars=3),
        **_episode(n_steps=3, final_feedback="You won the game, well done."),
    )
    assert "Last 2 of 3 steps:" in p.user and "Step 1\n" not in p.user
    assert "Observation: obs" + CUT_MARK in p.user and "Action: go" + CUT_MARK in p.user
    assert "Final feedback: You" + CUT_MARK in p.user  # cut like an observation by default
    short = render_review_prompt(**_episode(n_steps=2))
    assert "All 2 steps:" in short.user
    none = render_review_prompt(**_episode(n_steps=0, skills_block=""), history_steps=0)
    assert "No steps shown." in none.user and "Skills shown to the agent:\n(none)" in none.user
    assert [m["role"] for m in short.messages()] == ["system", "user"]


def test_released_style_adds_the_evidence_cues_and_filled_in_templates():
    method = render_review_prompt(**_episode())
    released = render_review_prompt(**_episode(), style="released")
    assert method.system == system_prompt("alfworld") and released.system == system_prompt(
        "alfworld", "released"
    )
    assert released.system.startswith(method.system.split("- Write household rules")[0])
    assert "'Nothing happens.'" in released.system and "'Nothing happens.'" not in method.system
    assert "strong evidence for propose_skill or update_skill" in released.system
    # one template per tool, the task's category written into the proposal's
    for name in TOOL_ARGS:
        assert f'"name": "{name}"' in released.user and f'"name": "{name}"' not in method.user
    assert '"category": "clean"' in released.user
    assert released.user.rstrip().endswith("one <tool_call> JSON.")
    cfg = ReviewConfig(prompt="released")
    assert render_from_config(cfg, **_episode()).user == released.user
