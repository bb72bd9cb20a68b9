"""Temperature 0 means greedy: the one rule the two engines and the trainer follow.

A module of its own so that training (``train/samples.py``) depends on this rule and not on the
generation code around it (a stage's DVC code dependencies are its module's imports).
"""

from __future__ import annotations


def is_greedy(temperature: float) -> bool:
    """Temperature 0 means greedy decoding: the one rule both engines and the trainer follow."""
    return temperature <= 0


def scoring_temperature(temperature: float | None) -> float:
    """The temperature a reply's log-probs are scored at in training: the one it was sampled at, 1
    for a greedy (or unrecorded) reply."""
    return 1.0 if temperature is None or is_greedy(temperature) else float(temperature)
