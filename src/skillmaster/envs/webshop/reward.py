"""WebShop's purchase score (Yao et al. 2022, ``web_agent_site/engine/goal.py``), as pure functions.

For a purchase of ``product`` with ``options`` at ``price`` against ``goal``::

    score = r_type · (n_attr + n_option + [price ≤ price_upper]) / (|attributes| + |goal options| + 1)

- ``n_attr``: goal attributes matched by a product attribute with ``token_set_ratio > 85``, or
  found verbatim in the title, the bullet points or the description;
- ``n_option``: option matches (:data:`OPTION_SCORERS`: WebShop's main-branch rule by default);
- ``r_type`` ∈ {0, 0.1, 0.5, 1}: from the query match, the product-category match (two shared
  ``›`` levels) and ``title_score``, the share of the goal title's nouns found among the bought
  title's nouns (:func:`type_reward`).

SkillMaster's episode reward is 10 when ``score == 1`` (METHOD.md §4, "Episode reward"); the
score itself is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from thefuzz.fuzz import token_set_ratio

from skillmaster.envs.webshop.data import Product
from skillmaster.envs.webshop.goals import Goal

FUZZY_THRESHOLD = 85
EXACT_MATCH_OPTIONS = ("size",)
COLOR_SET = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black", "blue", "blush",
    "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne", "charcoal", "cheetah",
    "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper", "coral", "cranberry", "cream", "crystal",
    "dark", "denim", "eggplant", "elephant", "espresso", "fuchsia", "gold", "granite", "grape", "graphite",
    "grass", "gray", "green", "grey", "heather", "indigo", "ivory", "ivy", "khaki", "lavender", "lemon",
    "leopard", "light", "lilac", "lime", "magenta", "maroon", "mauve", "merlot", "midnight", "mint", "mocha",
    "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive", "orange", "peach", "pewter", "pink",
    "plum", "purple", "rainbow", "red", "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver",
    "skull", "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal", "tiger", "turquoise",
    "violet", "walnut", "wheat", "white", "wine", "yellow",
)  # fmt: skip
"""WebShop's ``normalize.COLOR_SET``, in its order (the first color found in a value wins)."""

NounFn = Callable[[str], list[str]]


@dataclass(frozen=True)
class Score:
    score: float
    r_type: float
    r_attr: float
    r_option: float | None
    r_price: bool
    query_match: bool
    category_match: bool
    title_score: float
    n_attr: int
    n_option: int


def normalize_color(value: Any) -> Any:
    """The first WebShop color contained in ``value``, else ``value`` unchanged."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


def _in_text(needle: str, product: Product) -> bool:
    return (
        needle in product.title.lower()
        or needle in " ".join(product.bullets).lower()
        or needle in product.description.lower()
    )


def _fuzzy(a: Any, b: Any) -> bool:
    return token_set_ratio(a, b) > FUZZY_THRESHOLD


def type_reward(product: Product, goal: Goal, nouns: NounFn) -> tuple[float, bool, bool, float]:
    """(r_type, query_match, category_match, title_score) of buying ``product`` for ``goal``."""
    query_match = product.query == goal.query
    bought = {x.strip() for x in product.product_category.split("›")}
    wanted = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(bought & wanted) >= 2
    bought_nouns, wanted_nouns = nouns(product.title), nouns(goal.name)
    title_score = 0.2 if not wanted_nouns else len(set(bought_nouns) & set(wanted_nouns)) / len(wanted_nouns)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, query_match, category_match, title_score


def attribute_matches(product: Product, goal: Goal) -> int:
    """Goal attributes matched fuzzily by a product attribute, or verbatim in the product's text."""
    return sum(
        any(_fuzzy(p_attr, g_attr) for p_attr in product.attributes) or _in_text(g_attr, product)
        for g_attr in goal.attributes
    )


def _goal_option_values(goal: Goal) -> list[Any]:
    opts = goal.goal_options
    return list(opts.values()) if isinstance(opts, Mapping) else list(opts)


def option_matches_webshop(product: Product, goal: Goal, options: Mapping[str, str]) -> int:
    """WebShop's rule (princeton-nlp/WebShop main branch, and the copy inside verl-agent that
    SkillMaster's runs used): each goal option counts once if some bought value matches it
    fuzzily (``token_set_ratio > 85``). ``get_reward`` passes ``goal_options.items()``, so a
    synthetic goal's option is the pair ``(name, value)``: its value when that value is exactly a
    WebShop color, else the pair's text ``"('size', 'large')"``, whose tokens include the option
    name. Human goals' option lists are compared value by value."""
    opts = goal.goal_options
    wanted = [normalize_color(x) for x in (opts.items() if isinstance(opts, Mapping) else opts)]
    bought = [normalize_color(v) for v in options.values()]
    return sum(any(_fuzzy(b, w) for b in bought) for w in wanted)


def option_matches_unmerged_pr(product: Product, goal: Goal, options: Mapping[str, str]) -> int:
    """The variant of an unmerged WebShop pull request (never on WebShop's main branch): each
    *bought* option counts once if it matches a goal option value — exactly for ``size``, fuzzily
    otherwise — or appears verbatim in the product's text. It scores every goal's own product and
    options 1, which the main-branch rule does not always do (a color inside a value such as
    "peppermint" normalises on one side only)."""
    wanted = [normalize_color(v) for v in _goal_option_values(goal)]
    n = 0
    for name, value in options.items():
        value = normalize_color(value)
        if name.lower() in EXACT_MATCH_OPTIONS:
            matched = value in wanted
        else:
            matched = any(_fuzzy(w, value) for w in wanted)
        n += matched or _in_text(value, product)
    return n


OPTION_SCORERS: dict[str, Callable[[Product, Goal, Mapping[str, str]], int]] = {
    "webshop": option_matches_webshop,
    "verl-agent": option_matches_webshop,
    "unmerged-pr-exact-size": option_matches_unmerged_pr,
}
"""Option rule by name: ``webshop`` (the default) is WebShop's main branch, which verl-agent's copy
equals (``verl-agent`` is the same rule under the name of that copy); ``unmerged-pr-exact-size`` is
the unmerged pull request's variant (:func:`option_matches_unmerged_pr`)."""


def score_purchase(
    product: Product,
    goal: Goal,
    price: float,
    options: Mapping[str, str],
    nouns: NounFn,
    option_scorer: str = "webshop",
) -> Score:
    """WebShop's score of a purchase (module doc)."""
    r_type, query_match, category_match, title_score = type_reward(product, goal, nouns)
    r_price = goal.price_upper > 0 and price <= goal.price_upper
    n_attr = attribute_matches(product, goal)
    n_goal_options = len(goal.goal_options)
    n_option = OPTION_SCORERS[option_scorer](product, goal, options)
    total = (n_attr + n_option + int(r_price)) / (len(goal.attributes) + n_goal_options + 1)
    return Score(
        score=total * r_type,
        r_type=r_type,
        r_attr=n_attr / len(goal.attributes),
        r_option=n_option / n_goal_options if n_goal_options else None,
        r_price=bool(r_price),
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
        n_attr=n_attr,
        n_option=n_option,
    )
