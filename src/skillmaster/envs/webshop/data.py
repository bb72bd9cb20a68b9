"""Reading and cleaning the standard WebShop data files (the 1,000-product setting).

The folder (``env.data_dir``, else ``$WEBSHOP_DATA``) holds the files WebShop's ``setup.sh -d
small`` downloads into its ``data/`` folder:

- ``items_shuffle_1000.json`` (required): the catalog, a list of scraped products;
- ``items_ins_v2_1000.json`` (required): per ASIN its ``attributes`` and, for some, a synthetic
  ``instruction`` with ``instruction_attributes``;
- ``items_human_ins.json`` (optional): human-written instructions (only for ``goals="human"``);
- ``reviews.json`` (optional): product reviews and ratings (the verl-agent copy of WebShop that
  SkillMaster ran on reads none, so every item shows ``Rating: N.A.`` and no reviews).

Products are cleaned as WebShop's ``load_products`` does: rows whose ASIN is ``nan`` or longer
than 10 characters and repeated ASINs are skipped; the price string becomes one price or a
``[low, high]`` range (no price → ``$100.0``); option names and values are lower-cased, with
``/`` in a value written `` | ``; attributes come from the attribute file (``DUMMY_ATTR`` for an
ASIN it lacks); the search query is lower-cased.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from skillmaster.errors import DataError
from skillmaster.io import read_json

CATALOG_FILE = "items_shuffle_1000.json"
ATTRIBUTES_FILE = "items_ins_v2_1000.json"
HUMAN_INSTRUCTIONS_FILE = "items_human_ins.json"
REVIEWS_FILE = "reviews.json"
REQUIRED_FILES = (CATALOG_FILE, ATTRIBUTES_FILE)
DATA_ENV_VAR = "WEBSHOP_DATA"
DEFAULT_PRICE = 100.0
WHERE_TO_GET = (
    f"download {CATALOG_FILE} and {ATTRIBUTES_FILE} (the WebShop repository's `./setup.sh -d small` "
    "fetches them from its Google Drive into WebShop's data/ folder) and point env.data_dir or "
    f"${DATA_ENV_VAR} at the folder holding them (docs/install.md, 'WebShop data')"
)


@dataclass
class Review:
    title: str
    score: Any
    body: str


@dataclass
class Product:
    """One cleaned catalog entry (WebShop's product dict after ``load_products``)."""

    asin: str
    title: str
    """``name`` in the file; WebShop's ``Title`` (and the ``name`` the type reward compares)."""
    description: str
    bullets: list[str]
    """``small_description`` as a list (WebShop's ``BulletPoints``, shown under Features)."""
    price_tag: str
    """The price as shown: ``$12.99`` or ``$10.99 to $20.99``."""
    pricing: list[float]
    """One price, or ``[low, high]``."""
    options: dict[str, list[str]]
    """Option name (lower-case) → values (lower-case), in file order."""
    attributes: list[str]
    category: str
    """WebShop's top category (beauty, electronics, fashion, food, furniture)."""
    query: str
    """The search query the product was scraped with (lower-case); part of the type reward."""
    product_category: str
    """Amazon breadcrumb, ``A › B › C``; part of the type reward."""
    main_image: str | None = None
    rating: Any = "N.A."
    reviews: list[Review] = field(default_factory=list)
    instruction_text: str | None = None
    instruction_attributes: list[str] | None = None
    human_instructions: list[dict[str, Any]] | None = None


# --------------------------------------------------------------------------- the folder
def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The configured folder (``env.data_dir``, else ``$WEBSHOP_DATA``), checked for the required files."""
    raw = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV_VAR)
    if not raw:
        raise DataError(
            f"WebShop data folder not set (env.data_dir is null and ${DATA_ENV_VAR} is empty): {WHERE_TO_GET}"
        )
    folder = Path(raw).expanduser()
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"WebShop data folder {folder} lacks {', '.join(missing)}: {WHERE_TO_GET}")
    return folder


# --------------------------------------------------------------------------- cleaning (pure)
def parse_pricing(raw: Any) -> tuple[list[float], str]:
    """WebShop's price cleaning: ``"$1,299.00"`` → ``([1299.0], "$1299.0")``; a range keeps two ends.

    Each ``$``-piece loses every character but digits and ``.``; pieces that leave no number are
    skipped (WebShop would crash on them). No price at all gives ``$100.0``.
    """
    if isinstance(raw, list):
        raw = " ".join(str(x) for x in raw)
    prices: list[float] = []
    for piece in str(raw or "").split("$")[1:]:
        try:
            prices.append(float(Decimal(re.sub(r"[^\d.]", "", piece))))
        except InvalidOperation:
            continue
    if not prices:
        return [DEFAULT_PRICE], f"${DEFAULT_PRICE}"
    if len(prices) == 1:
        return prices, f"${prices[0]}"
    return prices[:2], f"${prices[0]} to ${prices[1]}"


def clean_options(raw: Any) -> dict[str, list[str]]:
    """``customization_options`` → ``{name: [value, ...]}``, lower-cased, ``/`` → `` | ``."""
    options: dict[str, list[str]] = {}
    for name, contents in (raw or {}).items():
        if contents is None:
            continue
        options[name.lower()] = [str(c["value"]).strip().replace("/", " | ").lower() for c in contents]
    return options


def clean_product(raw: dict[str, Any], attributes: dict[str, Any]) -> Product:
    """One raw catalog row → :class:`Product` (KeyError for a missing required field)."""
    asin = raw["asin"]
    bullets = raw.get("small_description")
    bullets = bullets if isinstance(bullets, list) else [bullets if bullets is not None else ""]
    pricing, price_tag = parse_pricing(raw.get("pricing"))
    attr_entry = attributes.get(asin) or {}
    images = raw.get("images") or []
    return Product(
        asin=asin,
        title=raw["name"],
        description=raw.get("full_description") or "",
        bullets=[str(b) for b in bullets],
        price_tag=price_tag,
        pricing=pricing,
        options=clean_options(raw.get("customization_options")),
        attributes=list(attr_entry["attributes"]) if "attributes" in attr_entry else ["DUMMY_ATTR"],
        category=raw["category"],
        query=str(raw["query"]).lower().strip(),
        product_category=raw["product_category"],
        main_image=images[0] if images else None,
        instruction_text=attr_entry.get("instruction"),
        instruction_attributes=attr_entry.get("instruction_attributes"),
    )


def clean_catalog(
    rows: list[dict[str, Any]], attributes: dict[str, Any], source: str = CATALOG_FILE
) -> list[Product]:
    """Clean every row in file order, skipping bad and repeated ASINs as WebShop does."""
    products: list[Product] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        asin = str(row.get("asin", "nan")) if isinstance(row, dict) else "nan"
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        try:
            products.append(clean_product(row, attributes))
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"{source}: product {i} ({asin}) does not follow the WebShop catalog schema ({exc!r})"
            ) from None
    return products


# --------------------------------------------------------------------------- loading (shell)
def _attach_reviews(products: list[Product], rows: list[dict[str, Any]]) -> None:
    by_asin = {p.asin: p for p in products}
    for row in rows:
        product = by_asin.get(row.get("asin"))
        if product is None:
            continue
        product.rating = row.get("average_rating", "N.A.")
        product.reviews = [
            Review(
                title=r.get("title", ""), score=r.get("score", r.get("stars", 0)), body=r.get("review", "")
            )
            for r in row.get("reviews") or []
        ]


def load_catalog(folder: Path, *, human: bool = False) -> list[Product]:
    """Read and clean the catalog in ``folder`` (see module doc); optional files are used when present."""
    rows = read_json(folder / CATALOG_FILE, "WebShop catalog")
    attributes = read_json(folder / ATTRIBUTES_FILE, "WebShop attribute file")
    if not isinstance(rows, list) or not isinstance(attributes, dict):
        raise DataError(
            f"{folder}: {CATALOG_FILE} must hold a list of products and {ATTRIBUTES_FILE} a mapping ASIN → attributes"
        )
    products = clean_catalog(rows, attributes, str(folder / CATALOG_FILE))
    if (folder / REVIEWS_FILE).is_file():
        _attach_reviews(products, read_json(folder / REVIEWS_FILE, "WebShop reviews file"))
    if human:
        path = folder / HUMAN_INSTRUCTIONS_FILE
        if not path.is_file():
            raise DataError(
                f"{path}: human instructions not found; download {HUMAN_INSTRUCTIONS_FILE} with WebShop's setup.sh"
            )
        human_rows = read_json(path, "WebShop human instructions")
        for p in products:
            if p.asin in human_rows:
                p.human_instructions = human_rows[p.asin]
    return products


def file_stamp(folder: Path) -> str:
    """A cheap fingerprint of the data files (names, sizes, mtimes): keys the per-process cache."""
    parts = []
    for name in (CATALOG_FILE, ATTRIBUTES_FILE, HUMAN_INSTRUCTIONS_FILE, REVIEWS_FILE):
        path = folder / name
        if path.is_file():
            st = path.stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return json.dumps(parts)
