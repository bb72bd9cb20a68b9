"""The environment registry and profiles: every environment is complete, texts are unchanged.

Generic code (prompts, review, shaping, probes, plots, cold start, progress) asks an environment's
profile instead of naming it. The texts it renders for ALFWorld and WebShop, and for an unknown
name (the fallbacks), must be byte for byte those of the code before environments owned their
knowledge (``golden/profile_texts.json``, rendered by ``profile_texts.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from profile_texts import render_all

from skillmaster.config import EnvConfig
from skillmaster.envs.profile import ActionForms, EnvProfile
from skillmaster.envs.registry import available, find_profile, make_suite, module_of, profile, profiles
from skillmaster.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden" / "profile_texts.json"


def test_the_registry_finds_every_environment_package():
    assert available() == ["alfworld", "webshop"]
    assert [p.name for p in profiles()] == available()
    assert {name: module_of(name) for name in available()} == {
        "alfworld": "skillmaster.envs.alfworld",
        "webshop": "skillmaster.envs.webshop",
    }


@pytest.mark.parametrize("name", available())
def test_every_environment_has_a_complete_profile(name):
    p = profile(name)
    assert isinstance(p, EnvProfile) and p.name == name
    assert p.prompt.system.strip() and callable(p.prompt.observation_cleaner)
    assert p.prompt.observation_cleaner("  a \n b  ") == "a b"
    assert p.review_rules.no_ids.strip() and p.review_rules.no_env_actions.strip()
    assert isinstance(p.env_actions, ActionForms) and p.env_actions  # at least one form
    assert p.probe_match in ("family", "category")
    assert p.default_max_steps >= 1
    assert isinstance(p.family_labels, Mapping) and all(
        isinstance(v, str) and v for v in p.family_labels.values()
    )
    with pytest.raises(TypeError):
        p.family_labels["x"] = "y"  # read-only
    kit = p.walkthrough_kit
    assert (kit is not None) == p.has_walkthroughs
    if kit is not None:
        for field in ("milestones", "milestone_hits", "searching_expert", "mistake_expert", "mistakes_for",
                      "target_of", "findings"):  # fmt: skip
            assert callable(getattr(kit, field)), field
        assert (
            callable(kit.lessons.lesson_for)
            and callable(kit.lessons.evidence_sentence)
            and kit.lessons.tactics
        )


def test_what_each_environment_knows():
    alf, web = profile("alfworld"), profile("webshop")
    assert (alf.probe_match, web.probe_match) == ("family", "category")
    assert (alf.default_max_steps, web.default_max_steps) == (50, 15)  # METHOD.md §4
    assert list(alf.family_labels.values()) == ["Pick", "Look", "Clean", "Heat", "Cool", "Pick2"]
    assert dict(web.family_labels) == {}
    assert alf.has_walkthroughs and not web.has_walkthroughs
    assert alf.env_actions.matches("go to desk 1") and not web.env_actions.matches("go to desk 1")
    assert web.env_actions.matches("click [buy now]") and not alf.env_actions.matches("click [buy now]")


def test_texts_are_those_before_environments_owned_them():
    expected = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(render_all()))
    for key in expected:
        assert got[key] == expected[key], key
    assert got == expected


def test_env_action_detection_per_environment():
    from skillmaster.skills.tools import is_env_action

    assert (
        is_env_action("look") and is_env_action("look", "alfworld") and not is_env_action("look", "webshop")
    )
    assert is_env_action("search[x]", "webshop") and not is_env_action("search[x]", "alfworld")
    assert not is_env_action("keep_skill", "alfworld")


def test_unknown_names_are_one_clear_error():
    for ask in (profile, module_of, lambda n: make_suite(EnvConfig.model_construct(name=n))):
        with pytest.raises(
            ConfigError,
            match=r"env.name 'nope' is not a registered environment; choose one of: alfworld, webshop",
        ):
            ask("nope")
    assert find_profile("nope") is None


def test_a_profile_lookup_imports_no_engine_and_no_search_index():
    code = (
        "import sys\n"
        "from skillmaster.envs.registry import profiles\n"
        "from skillmaster.plots import FAMILY_LABELS\n"
        "from skillmaster.skills.tools import is_env_action\n"
        "assert [p.name for p in profiles()] == ['alfworld', 'webshop'] and is_env_action('buy now')\n"
        "heavy = [m for m in ('textworld', 'alfworld', 'fast_downward', 'bm25s', 'numba', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
