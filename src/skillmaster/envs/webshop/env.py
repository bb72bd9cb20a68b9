"""The WebShop text environment and its suite (docs/ARCHITECTURE.md, "Environment").

One episode: the search page with the instruction → ``search[...]`` → results (10 a page, 50 in
all, ``next >``/``< prev``) → ``click[<asin>]`` → the item page (options, description, features,
reviews) → ``click[buy now]`` ends the episode with WebShop's score (:mod:`.reward`); reward 10
when the score is 1, else 0 (METHOD.md §4). Transitions follow WebShop's text env (``SimServer``):

- ``search[q]`` runs from any page (WebShop accepts it everywhere; only the search page lists it);
- ``click[x]`` needs ``x`` among the page's clickables (lower-case) and ``x != "search"``;
- anything else changes nothing and is reported with ``info["valid"] = False``;
- ``< prev`` goes results page − 1 / item → results (options cleared) / sub-page → item;
  ``back to search`` clears the query, item, options and visited items.

``info`` carries the protocol keys plus ``score`` (0 until the purchase), ``valid`` (the action
was carried out), ``page`` and ``purchase`` (None until bought, then ASIN, options, hidden price
and the parts of the score). ``admissible_actions`` lists actions as verl-agent shows them:
``search[<your query>]`` is a template (any non-empty ``search[...]`` is valid), and the search
page also lists ``click[search]``, which WebShop refuses; ``info["valid"]`` is the ground truth.
"""

from __future__ import annotations

import os
import random
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skillmaster.config import EnvConfig
from skillmaster.envs.base import TaskSpec
from skillmaster.envs.webshop import pages
from skillmaster.envs.webshop.categories import CATEGORIES, infer_category
from skillmaster.envs.webshop.data import DATA_ENV_VAR, Product, file_stamp, load_catalog, resolve_data_dir
from skillmaster.envs.webshop.goals import DEFAULT_GOAL_SEED, TEST_GOALS, Goal, build_goals, split_indices
from skillmaster.envs.webshop.nouns import noun_extractor
from skillmaster.envs.webshop.profile import PROFILE
from skillmaster.envs.webshop.reward import OPTION_SCORERS, Score, score_purchase
from skillmaster.envs.webshop.search import PRODUCT_WINDOW, SearchEngine
from skillmaster.errors import ConfigError, DataError

TASK_PREFIX = "goal_"
_ACTION = re.compile(r"(.+)\[(.+)\]")


def parse_action(action: str) -> tuple[str, str | None]:
    """WebShop's parse: ``name[arg]`` (greedy ``(.+)\\[(.+)\\]``, matched from the start), else no arg."""
    m = _ACTION.match(action.strip())
    if m is None:
        return action.strip().lower(), None
    return m.group(1).strip().lower(), m.group(2).lower()


# --------------------------------------------------------------------------- the shared world
@dataclass(repr=False)
class WebshopWorld:
    """Catalog, prices and goals of one data folder; the search index is built on first use."""

    folder: Path
    products: list[Product]
    prices: dict[str, float]
    goals: list[Goal]
    goal_categories: list[str]
    by_asin: dict[str, Product] = field(init=False)
    _engine: SearchEngine | None = field(default=None, init=False, repr=False)
    _results: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_asin = {p.asin: p for p in self.products}

    def __repr__(self) -> str:
        return f"WebshopWorld({self.folder}: {len(self.products)} products, {len(self.goals)} goals)"

    @property
    def engine(self) -> SearchEngine:
        if self._engine is None:
            self._engine = SearchEngine(self.products)
        return self._engine

    def search(self, query: str) -> list[str]:
        """Top 50 ASINs for ``query`` (cached: WebShop re-runs the search on every page turn)."""
        if query not in self._results:
            if len(self._results) > 4096:
                self._results.clear()
            self._results[query] = self.engine.search(query)
        return self._results[query]


_WORLDS: dict[tuple, WebshopWorld] = {}
_WORLDS_LOCK = threading.Lock()


def load_world(
    data_dir: str | None, goal_seed: int = DEFAULT_GOAL_SEED, goals: str = "synthetic"
) -> WebshopWorld:
    """The world of ``data_dir`` (``$WEBSHOP_DATA`` when None), cached per process."""
    folder = resolve_data_dir(data_dir)
    key = (str(folder.resolve()), file_stamp(folder), goal_seed, goals)
    with _WORLDS_LOCK:
        if key not in _WORLDS:
            products = load_catalog(folder, human=goals == "human")
            prices, goal_list = build_goals(products, goal_seed, goals)
            if not goal_list:
                raise DataError(
                    f"{folder}: the WebShop catalog yields no goals (no product has an instruction)"
                )
            categories = [infer_category(g.instruction_text) for g in goal_list]
            _WORLDS[key] = WebshopWorld(folder, products, prices, goal_list, categories)
        return _WORLDS[key]


# --------------------------------------------------------------------------- one episode
class WebshopEnv:
    """WebShop in text mode, one goal per episode (see module doc)."""

    def __init__(
        self,
        world: WebshopWorld,
        *,
        max_steps: int = PROFILE.default_max_steps,
        success_reward: float = 10.0,
        obs_format: str = "verl-agent",
        option_scorer: str = "webshop",
        nouns: str = "auto",
        show_attrs: bool = False,
    ):
        if obs_format not in pages.OBSERVATION_FORMATS:
            raise ConfigError(
                f"unknown WebShop observation format '{obs_format}'; choose one of: {', '.join(pages.OBSERVATION_FORMATS)}"
            )
        if option_scorer not in OPTION_SCORERS:
            raise ConfigError(
                f"unknown WebShop option scorer '{option_scorer}'; choose one of: {', '.join(OPTION_SCORERS)}"
            )
        self.world = world
        self.max_steps = max_steps
        self.success_reward = success_reward
        self.option_scorer = option_scorer
        self.show_attrs = show_attrs
        self._format = pages.OBSERVATION_FORMATS[obs_format]
        self._nouns = noun_extractor(nouns)
        self._goal_idx: int | None = None

    # ------------------------------------------------------------------ protocol
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        """Start the goal ``options["task_id"]`` (``goal_<index>``); without it, a goal drawn with ``seed``."""
        task_id = (options or {}).get("task_id")
        if task_id is None:
            idx = random.Random(seed or 0).randrange(len(self.world.goals))
        else:
            idx = self._goal_index(str(task_id))
        self._goal_idx = idx
        self.goal = self.world.goals[idx]
        self.keywords: str | None = None
        self.page_num = 1
        self.asin: str | None = None
        self.options: dict[str, str] = {}
        self.visited: set[str] = set()
        self.steps = 0
        self.finished = False
        self.score: Score | None = None
        self.page = pages.search_page(self.goal.instruction_text)
        return self._format(self.page), self._info(valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._goal_idx is None or self.finished:
            raise RuntimeError("WebshopEnv.step() called before reset() or after the episode ended")
        self.steps += 1
        name, arg = parse_action(action)
        valid = terminated = False
        if name == "search" and arg:
            valid = True
            self._search(arg)
        elif name == "click" and arg in self.page.clickables and arg != "search":
            valid = True
            terminated = self._click(arg)
        won = self.score is not None and self.score.score >= 1.0
        reward = self.success_reward if terminated and won else 0.0
        truncated = not terminated and self.steps >= self.max_steps
        self.finished = terminated or truncated
        return self._format(self.page), reward, terminated, truncated, self._info(valid=valid)

    def close(self) -> None:
        self._goal_idx = None

    # ------------------------------------------------------------------ transitions
    def _search(self, query: str, page_num: int = 1) -> None:
        self.keywords, self.page_num = query, page_num
        self.asin, self.options = None, {}
        self._show_results()

    def _show_results(self) -> None:
        hits = self.world.search(self.keywords or "")
        start = (self.page_num - 1) * PRODUCT_WINDOW
        shown = [self.world.by_asin[a] for a in hits[max(start, 0) : self.page_num * PRODUCT_WINDOW]]
        self.page = pages.results_page(
            self.goal.instruction_text, shown, self.page_num, len(hits), frozenset(self.visited)
        )

    def _show_item(self) -> None:
        product = self.world.by_asin[self.asin or ""]
        self.page = pages.item_page(self.goal.instruction_text, product, self.options, self.show_attrs)

    def _click(self, arg: str) -> bool:
        """Apply a click; True when it ends the episode (``buy now``)."""
        here = self.page.name
        if arg == pages.BUY_NOW.lower():
            self._buy()
            return True
        if arg == pages.BACK_TO_SEARCH.lower():
            self.keywords, self.asin, self.options, self.visited = None, None, {}, set()
            self.page = pages.search_page(self.goal.instruction_text)
        elif arg == pages.NEXT_PAGE.lower() and here == "results":
            self._search(self.keywords or "", self.page_num + 1)
        elif arg == pages.PREV_PAGE.lower() and here == "results":
            self._search(self.keywords or "", self.page_num - 1)
        elif arg == pages.PREV_PAGE.lower() and here in {s.lower() for s in pages.SUB_PAGES}:
            self._show_item()
        elif arg == pages.PREV_PAGE.lower() and here == "item":
            self._search(self.keywords or "", self.page_num)
        elif arg in {s.lower() for s in pages.SUB_PAGES}:
            sub = next(s for s in pages.SUB_PAGES if s.lower() == arg)
            self.page = pages.sub_page(
                self.goal.instruction_text, sub, self.world.by_asin[self.asin or ""], self.options
            )
        else:
            clickable = self.page.clickables[arg]
            if clickable.kind == "product":
                self.asin = arg.upper()
                self.visited.add(self.asin)
            elif clickable.kind == "option" and clickable.option_name is not None:
                self.options[clickable.option_name] = arg
            self._show_item()
        return False

    def _buy(self) -> None:
        product = self.world.by_asin[self.asin or ""]
        price = self.world.prices[product.asin]
        self.score = score_purchase(product, self.goal, price, self.options, self._nouns, self.option_scorer)
        self.page = pages.done_page(product.asin, self.options, self.score.score)

    # ------------------------------------------------------------------ info
    def _goal_index(self, task_id: str) -> int:
        raw = task_id[len(TASK_PREFIX) :] if task_id.startswith(TASK_PREFIX) else ""
        if not raw.isdigit() or int(raw) >= len(self.world.goals):
            raise DataError(
                f"WebShop task '{task_id}' does not exist: task ids are {TASK_PREFIX}0..{TASK_PREFIX}{len(self.world.goals) - 1}"
            )
        return int(raw)

    def _info(self, valid: bool) -> dict[str, Any]:
        assert self._goal_idx is not None
        category = self.world.goal_categories[self._goal_idx]
        purchase = None
        if self.score is not None:
            purchase = {
                "asin": self.asin,
                "options": dict(self.options),
                "price": self.world.prices[self.asin or ""],
                **asdict(self.score),
            }
        return {
            "admissible_actions": self.page.available_actions(),
            "won": self.score is not None and self.score.score >= 1.0,
            "score": self.score.score if self.score is not None else 0.0,
            "task_id": f"{TASK_PREFIX}{self._goal_idx}",
            "task_family": category,
            "category": category,
            "task_text": self.goal.instruction_text,
            "valid": valid,
            "page": self.page.name,
            "purchase": purchase,
        }


# --------------------------------------------------------------------------- the suite
class WebshopSuite:
    """WebShop's goals as SkillMaster tasks (goals 0–499 ``test``, the rest ``train``); picklable."""

    name = "webshop"
    categories = CATEGORIES

    def __init__(
        self,
        cfg: EnvConfig,
        *,
        goal_seed: int = DEFAULT_GOAL_SEED,
        goals: str = "synthetic",
        test_goals: int = TEST_GOALS,
        success_reward: float = 10.0,
        obs_format: str = "verl-agent",
        option_scorer: str = "webshop",
        nouns: str = "auto",
        show_attrs: bool = False,
    ):
        # pin $WEBSHOP_DATA now, so worker processes rebuild the same world
        self.data_dir = cfg.data_dir or os.environ.get(DATA_ENV_VAR)
        self.max_steps = cfg.max_steps
        self.families = list(cfg.families) if cfg.families else None
        unknown = [f for f in self.families or [] if f not in CATEGORIES]
        if unknown:
            raise ConfigError(
                f"env.families: {unknown} are not WebShop categories; choose from: {', '.join(CATEGORIES)}"
            )
        self.goal_seed, self.goal_source, self.test_goals = goal_seed, goals, test_goals
        self.env_kwargs = {
            "success_reward": success_reward,
            "obs_format": obs_format,
            "option_scorer": option_scorer,
            "nouns": nouns,
            "show_attrs": show_attrs,
        }

    def world(self) -> WebshopWorld:
        return load_world(self.data_dir, self.goal_seed, self.goal_source)

    def tasks(self, split: str) -> list[TaskSpec]:
        world = self.world()
        specs = [
            TaskSpec(f"{TASK_PREFIX}{i}", world.goal_categories[i], world.goal_categories[i], split)
            for i in split_indices(split, len(world.goals), self.test_goals)
            if self.families is None or world.goal_categories[i] in self.families
        ]
        if not specs:
            raise DataError(
                f"WebShop split '{split}' is empty: {world.folder} yields {len(world.goals)} goals "
                f"(test = goals 0–{self.test_goals - 1}, train = the rest)"
                + (f", filtered to families {self.families}" if self.families else "")
            )
        return specs

    def walkthrough(self, task_id: str, split: str) -> None:
        """WebShop has no expert walkthroughs (its profile says so)."""
        return None

    def skipped(self, split: str) -> list[dict[str, str]]:
        return []  # every goal is a task

    def make_env(self) -> WebshopEnv:
        return WebshopEnv(self.world(), max_steps=self.max_steps, **self.env_kwargs)
