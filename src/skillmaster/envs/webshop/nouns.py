"""Nouns of a product title, for the type reward's ``title_score`` (see :mod:`.reward`).

WebShop tags titles with spaCy and keeps tokens tagged ``NOUN`` or ``PROPN`` (lower-cased).
spaCy's English pipelines are model weights that are not on PyPI, so the extractor is a registry:

- ``spacy``: WebShop's rule, with the first installed pipeline of ``en_core_web_sm`` (what
  ``goal.py`` loads on WebShop's main branch and in verl-agent's copy, and what WebShop's
  ``setup.sh`` downloads) and ``en_core_web_lg`` (what earlier revisions of ``goal.py``, and the
  unmerged pull request's version, load);
- ``content-words``: every alphabetic word of two or more letters that is not an English stop
  word. Titles are written in Title Case, which a tagger mostly tags ``PROPN``, so this keeps
  about the same words; it also keeps adjectives, which the tagger drops.
- ``auto`` (default): ``spacy`` when a pipeline is installed, else ``content-words``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from functools import lru_cache

from bm25s.stopwords import STOPWORDS_EN_PLUS

from skillmaster.errors import ConfigError

SPACY_MODELS = ("en_core_web_sm", "en_core_web_lg")
"""WebShop's main branch (``en_core_web_sm``) first, then its earlier pipeline."""
NOUN_TAGS = ("PNOUN", "NOUN", "PROPN")
_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(STOPWORDS_EN_PLUS)


def content_words(title: str) -> list[str]:
    return [w for w in _WORD.findall(title.lower()) if len(w) > 1 and w not in _STOP]


def installed_spacy_model() -> str | None:
    """The first installed spaCy English pipeline (looked up without importing spaCy, which is slow)."""
    if importlib.util.find_spec("spacy") is None:
        return None
    return next((m for m in SPACY_MODELS if importlib.util.find_spec(m) is not None), None)


@lru_cache(maxsize=2)
def _spacy_nouns(model: str) -> Callable[[str], list[str]]:
    import spacy

    nlp = spacy.load(model, disable=["parser", "ner", "lemmatizer"])

    def nouns(title: str) -> list[str]:
        return [t.text.lower() for t in nlp(title) if t.pos_ in NOUN_TAGS]

    return nouns


def _spacy() -> Callable[[str], list[str]]:
    model = installed_spacy_model()
    if model is None:
        raise ConfigError(
            f"noun extractor 'spacy' needs a spaCy English pipeline ({' or '.join(SPACY_MODELS)}) installed; "
            "use 'content-words' or 'auto' instead"
        )
    return _spacy_nouns(model)


def _auto() -> Callable[[str], list[str]]:
    return _spacy() if installed_spacy_model() else content_words


NOUN_EXTRACTORS: dict[str, Callable[[], Callable[[str], list[str]]]] = {
    "auto": _auto,
    "spacy": _spacy,
    "content-words": lambda: content_words,
}


def noun_extractor(name: str) -> Callable[[str], list[str]]:
    """The title → nouns function named ``name`` (results cached per title)."""
    if name not in NOUN_EXTRACTORS:
        raise ConfigError(
            f"unknown WebShop noun extractor '{name}'; choose one of: {', '.join(NOUN_EXTRACTORS)}"
        )
    return lru_cache(maxsize=20_000)(NOUN_EXTRACTORS[name]())
