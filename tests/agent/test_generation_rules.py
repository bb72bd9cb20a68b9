"""The one rule for greedy decoding and the temperature training scores a reply at (hand-checked)."""

import pytest

from skillmaster.agent.greedy import is_greedy, scoring_temperature


@pytest.mark.parametrize(
    ("t", "greedy", "scored"), [(0.0, True, 1.0), (0.4, False, 0.4), (1.0, False, 1.0), (None, None, 1.0)]
)
def test_temperature_zero_is_greedy_and_scored_at_one(t, greedy, scored):
    if t is not None:
        assert is_greedy(t) is greedy
    assert scoring_temperature(t) == scored
