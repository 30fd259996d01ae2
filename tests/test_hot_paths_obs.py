"""The observation hot path's shortcuts give exactly what the plain formulas give (speed-ups, not changes): the
observed NRS rounded to a tenth. Each check computes the reference its own way (no shared code with what it checks)."""

from __future__ import annotations

import math
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from simulator.model.response import observed_pain


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _near_half_tenths() -> list[float]:
    """Doubles at and beside every half tenth in [0, 10] (where rounding to a tenth is decided by the last bit)."""
    out = []
    for k in range(100):
        h = (k + 0.5) / 10.0
        out += [math.nextafter(h, -1.0), h, math.nextafter(h, 11.0)]
    return out


@given(st.one_of(st.floats(min_value=0.0, max_value=10.0), st.sampled_from(_near_half_tenths())))
@example(0.0)
@example(-0.0)
@example(10.0)
@example(0.05)
@example(0.04999999999999999)
def test_observed_pain_rounds_like_round_to_one_digit(x: float) -> None:
    """With no reduction and no noise the observed NRS is the baseline rounded to a tenth: bit for bit what
    ``round(x, 1)`` gives (the engine rounds by an integer rounding of tenths, round() only near a half tenth)."""
    assert _bits(observed_pain(x, 0.0, 1.0, 0.0, [], 0.0, 0.0)) == _bits(round(x + 0.0, 1))
