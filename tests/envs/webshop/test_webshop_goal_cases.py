"""WebShop's own reward test cases (``tests/web-agent-site/engine/test_goal.py`` of
princeton-nlp/WebShop, main branch), with their inputs and expected values, run on this project's
score with its default option rule (issue #21: the default must be WebShop's main-branch rule).

WebShop's purchased-product dicts map onto :class:`Product` as ``name``/``Title`` → ``title`` (the
type reward compares ``name``; the attribute and option rules search ``Title``: in these cases the
two never differ in a way that matters, noted where they are not the same), ``Attributes`` →
``attributes``, ``BulletPoints`` → ``bullets``, ``Description`` → ``description``.

The title scores of ``test_get_type_reward`` (0.85, 0.31, 0.17, < 0.05) come from spaCy's
``en_core_web_sm`` tagger, which WebShop's main branch loads; they run where that pipeline is
installed (it is not on PyPI). Everything else holds for any noun extractor.
"""

from __future__ import annotations

import importlib.util
from math import isclose
from typing import Any

import pytest

from skillmaster.envs.webshop.data import Product
from skillmaster.envs.webshop.goals import Goal
from skillmaster.envs.webshop.nouns import content_words
from skillmaster.envs.webshop.reward import (
    OPTION_SCORERS,
    attribute_matches,
    option_matches_webshop,
    score_purchase,
    type_reward,
)

HAS_SM = (
    importlib.util.find_spec("spacy") is not None and importlib.util.find_spec("en_core_web_sm") is not None
)
needs_sm = pytest.mark.skipif(not HAS_SM, reason="spaCy's en_core_web_sm (WebShop's tagger) is not installed")


def sm_nouns():
    from skillmaster.envs.webshop.nouns import _spacy_nouns

    return _spacy_nouns("en_core_web_sm")


def purchased(d: dict[str, Any]) -> Product:
    bullets = d.get("BulletPoints", [])
    return Product(
        asin="P", title=d.get("name", d.get("Title", "")), description=d.get("Description", ""),
        bullets=bullets,  # WebShop's test once passes a string here; " ".join then spaces its letters
        price_tag="$1.00", pricing=[1.0], options={}, attributes=list(d.get("Attributes", [])), category="c",
        query=d.get("query", ""), product_category=d.get("product_category", ""),
    )  # fmt: skip


def goal_of(d: dict[str, Any]) -> Goal:
    return Goal(
        asin="G", category="c", query=d.get("query", ""), name=d.get("name", ""),
        product_category=d.get("product_category", ""), instruction_text="",
        attributes=tuple(d.get("attributes", ("unused",))), price_upper=d.get("price_upper", 1_000_000.0),
        goal_options=d.get("goal_options", {}),
    )  # fmt: skip


def test_the_default_option_rule_is_webshops_main_branch():
    assert OPTION_SCORERS["webshop"] is option_matches_webshop
    assert OPTION_SCORERS["verl-agent"] is option_matches_webshop  # verl-agent's copy is the same rule
    import inspect

    assert inspect.signature(score_purchase).parameters["option_scorer"].default == "webshop"


# --------------------------------------------------------------------------- test_get_type_reward
def test_get_type_reward_matches():
    goal = {"query": "Query 1", "product_category": "a › b › c", "name": "Name 1"}
    bought = {"query": "Query 1", "product_category": "a › b › c", "name": "Name 1"}
    r_type, query_match, category_match, title_score = type_reward(
        purchased(bought), goal_of(goal), content_words
    )
    assert (r_type, query_match, category_match, title_score) == (1.0, True, True, 1)

    bought["query"] = "Query 2"
    assert type_reward(purchased(bought), goal_of(goal), content_words)[1] is False

    # out of order / non-matching / partially matching / duplicate categories
    for category, match in [
        ("b › c › a", True),
        ("d › e › f", False),
        ("a › d › b", True),
        ("a › a › b", True),
        ("a › a › d", False),
    ]:
        bought["product_category"] = category
        assert type_reward(purchased(bought), goal_of(goal), content_words)[2] is match, category


@needs_sm
@pytest.mark.parametrize(
    ("goal_name", "bought_name", "expected"),
    [
        ("adidas Unisex-Adult D.o.n. Issue 2 Basketball Shoe", "adidas Unisex-Adult D.o.n. Issue 2 Indoor Court Shoe",
         0.85),
        ("Saireed UL Listed 2 Prong Power Cord for JBL Bar 3.1 Bar 2.1 Channel 4K Ultra HD Soundbar Home Theater "
         "System Subwoofer", "BRST AC Power Cord Outlet Socket Cable Plug Lead for Panasonic SC-HT830V DVD/VCR Combo "
         "Home Theater System", 0.31),
        ("Saireed UL Listed 2 Prong Power Cord for JBL Bar 3.1 Bar 2.1 Channel 4K Ultra HD Soundbar",
         "BRST AC Power Cord Outlet Socket Cable Plug Lead for Panasonic SC-HT830V DVD/VCR Combo Home Theater System",
         0.17),
    ],
)  # fmt: skip
def test_get_type_reward_title_scores(goal_name, bought_name, expected):
    base = {"query": "Query 2", "product_category": "a › a › d"}
    score = type_reward(
        purchased(base | {"name": bought_name}), goal_of(base | {"name": goal_name}), sm_nouns()
    )[3]
    assert isclose(score, expected, abs_tol=1e-2)


@needs_sm
def test_get_type_reward_completely_different_names():
    goal = goal_of({"name": "Rusticware 921ORB Kitchen and Bath Cabinet Knob"})
    bought = purchased(
        {
            "name": "Minkissy 2pcs Stainless Steel Eyebrow Tweezers Blackhead Acne Remover Portable Makeup Tweezers (Silver)"
        }
    )
    assert type_reward(bought, goal, sm_nouns())[3] < 0.05


# --------------------------------------------------------------------------- test_get_attribute_reward
@pytest.mark.parametrize(
    ("bought", "n"),
    [
        ({"Attributes": ["tea tree", "essential oil", "natural ingredients"]}, 3),  # exact match
        ({"Attributes": ["essential oil", "natural ingredients"], "Title": "", "BulletPoints": [], "Description": ""}, 2),
        ({"Attributes": [], "Title": "", "BulletPoints": ["This shampoo has essential oils and smells like lemons"],
          "Description": "Best shampoo on the market, made with natural ingredients"}, 2),  # found in the text
        ({"Attributes": ["tea bag", "earl gray", "lipton"], "Title": "English tea for breakfast",
          "BulletPoints": ["Soothing aroma", "Calming, great feeling"],
          "Description": "Best tea made by Lipton, great to pair with breakfast"}, 0),  # no match
    ],
)  # fmt: skip
def test_get_attribute_reward(bought, n):
    goal = goal_of({"attributes": ["tea tree", "essential oils", "natural ingredients"]})
    got = attribute_matches(purchased(bought), goal)
    assert got == n
    assert got / len(goal.attributes) == pytest.approx(n / 3)  # r_attr


# --------------------------------------------------------------------------- test_get_option_reward
@pytest.mark.parametrize(
    ("goal_options", "bought", "matches", "r_option"),
    [
        (["grey", "XL", "pack of 12"], ["pack of 12", "grey", "XL"], 3, 1.0),  # exact match
        (["grey", "XL", "pack of 12"], ["pack of 12", "blue", "XL"], 2, 2 / 3),  # partial match
        (
            ["cool powder snow", "XL", "pack of 12"],
            ["pack of 12", "powder snow", "XL"],
            3,
            1.0,
        ),  # fuzzy match
        ([], ["goal 1", "goal 2"], 0, None),  # empty goal options
        (["goal 1", "goal 2"], [], 0, 0.0),  # empty purchased options
    ],
)
def test_get_option_reward(goal_options, bought, matches, r_option):
    goal = goal_of({"goal_options": goal_options})
    options = {f"option {i}": v for i, v in enumerate(bought)}
    assert option_matches_webshop(purchased({}), goal, options) == matches
    got = score_purchase(purchased({}), goal, 1.0, options, content_words)  # the default rule
    assert (got.n_option, got.r_option) == (matches, r_option)


# --------------------------------------------------------------------------- test_get_reward
@pytest.mark.parametrize(
    "nouns", [pytest.param("content-words"), pytest.param("en_core_web_sm", marks=needs_sm)]
)
def test_get_reward(nouns):
    extract = content_words if nouns == "content-words" else sm_nouns()
    goal = {
        "query": "Query 1",
        "product_category": "a › b › c",
        "name": "Mens D.O.N. Issue 2 Gca Basketball Sneakers Shoes Casual - Off White",
        "attributes": ["tea tree", "essential oils", "natural ingredients"],
        "goal_options": {"color": "grey", "size": "XL"},
        "price_upper": 40.00,
    }
    # WebShop's purchased dict has this name and Title "": the title holds none of the attributes
    bought = {
        "query": "Query 1",
        "product_category": "a › b › c",
        "name": "Mens D.O.N. Issue 2 Gca Basketball Sneakers Shoes Casual - Off White",
        "Attributes": ["tea tree", "essential oil", "natural ingredients"],
        "Title": "",
        "BulletPoints": [],
        "Description": "",
    }
    options = {"color": "grey", "size": "XL"}

    def reward() -> float:
        return score_purchase(purchased(bought), goal_of(goal), 35, options, extract).score

    assert reward() == 1  # exact match

    # variation in the attribute reward (BulletPoints is a string in WebShop's test, as here)
    bought |= {
        "Attributes": [],
        "Title": "",
        "BulletPoints": "This shampoo has essential oils and smells like lemons",
        "Description": "Best shampoo on the market, made with natural ingredients",
    }
    assert isclose(reward(), 2.0 / 3.0, abs_tol=1e-2)

    # variation in the option reward
    goal["goal_options"] = {"color": "grey", "size": "XL", "amount": "pack of 12"}
    assert isclose(reward(), 0.5714, abs_tol=1e-2)

    # variation in the type reward
    goal["name"] = "Saireed UL Listed 2 Prong Power Cord for JBL Bar 3.1 Bar 2.1 Channel 4K Ultra HD Soundbar"
    bought |= {
        "name": "BRST AC Power Cord Outlet Socket Cable Plug Lead for Panasonic SC-HT830V DVD/VCR Combo Home Theater System",
        "query": "Query 2",
        "product_category": "a › d › e",
    }
    assert isclose(reward(), 0.2857, abs_tol=1e-2)
