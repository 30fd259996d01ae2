"""The small helpers shared across layers by the module split: the piecewise-rate integral (open-population
arrivals and the specialist clinic's offered consults) and the share-mix validator (cohort etiology mix,
usual care's index drugs)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.inputs.schema import check_shares
from simulator.population.arrivals import integrate_rate

pieces = st.lists(st.tuples(st.integers(0, 50), st.floats(0.0, 10.0)), min_size=1, max_size=5)


def _segments(raw: list[tuple[int, float]]) -> list[tuple[float, float]]:
    starts = sorted({s for s, _ in raw})
    return [(float(s), r) for s, (_, r) in zip(starts, raw, strict=False)]


def _by_days(segments: list[tuple[float, float]], t0: int, t1: int) -> float:
    """Independent check: add the rate of each whole day (the pieces start on whole days)."""
    total = 0.0
    for day in range(t0, t1):
        rate = 0.0
        for start, r in segments:
            if start <= day:
                rate = r
        total += rate
    return total


@settings(max_examples=80, deadline=None)
@given(pieces, st.integers(0, 60), st.integers(0, 60))
def test_integrate_rate_adds_the_rate_of_every_day(raw: list[tuple[int, float]], a: int, b: int) -> None:
    """Protects the integral both the arrivals and the clinic use: on whole-day pieces it equals the sum of the
    daily rates between the two days, and it is 0 for an empty or reversed interval."""
    segs = _segments(raw)
    t0, t1 = min(a, b), max(a, b)
    assert integrate_rate(segs, t0, t1) == pytest.approx(_by_days(segs, t0, t1), abs=1e-9)
    assert integrate_rate(segs, t1, t0) == 0.0


def test_integrate_rate_runs_the_last_piece_to_infinity() -> None:
    """Protects the open end: the last piece's rate goes on past every start (here 2/day from day 10)."""
    assert integrate_rate([(0.0, 1.0), (10.0, 2.0)], 5.0, 1000.0) == 5.0 + 2.0 * 990.0
    assert integrate_rate([(0.0, 1.0)], 0.0, math.inf) == math.inf


def test_check_shares_names_the_field_and_the_fix() -> None:
    """Protects the mixes' validation: unknown names, a share outside [0, 1] and a sum other than 1 are errors."""
    assert check_shares({"a": 0.25, "b": 0.75}, ("a", "b"), "thing", "mix") == {"a": 0.25, "b": 0.75}
    with pytest.raises(ValueError, match="unknown thing 'c'"):
        check_shares({"c": 1.0}, ("a", "b"), "thing", "mix")
    with pytest.raises(ValueError, match=r"mix\.a is 1\.5, a probability outside \[0, 1\]"):
        check_shares({"a": 1.5}, ("a", "b"), "thing", "mix", sums_to_one=False)
    with pytest.raises(ValueError, match="mix must sum to 1, got 0.9"):
        check_shares({"a": 0.4, "b": 0.5}, ("a", "b"), "thing", "mix")
    assert check_shares({"a": 0.4}, ("a", "b"), "thing", "mix", sums_to_one=False) == {"a": 0.4}
