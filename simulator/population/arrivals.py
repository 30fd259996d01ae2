"""Open populations: patients who enter the pathway over time.

A scenario is a **closed cohort** by default: ``patients`` people all assessed on day 0 and followed to
the horizon. With a ``population:`` block it is an **open population**: a population of ``size`` people
in which new (incident) patients start treatment at ``incidence_per_100k`` a year per 100,000 people (a
Poisson process; a rate per year of the run may be given as ``incidence_by_year``), optionally with
``prevalent`` patients who start the pathway on day 0. Statistics of the steady state leave out the first
``warmup_days``, while the queue fills; the run lasts ``horizon_days`` (the scenario's run length).

Arrival days are drawn once per (seed, replication) from their own stream (:data:`streams.ARRIVALS`) by
inverting the cumulative arrival rate, so the k-th arrival is the same day whatever the horizon or policy;
patient ``k`` (in order of entry, prevalent patients first) then draws every other random number from row
``k`` of the (seed, replication, purpose) blocks as in a closed cohort. Two policies run on the same seed
therefore see the same people arriving on the same days with the same luck (common random numbers), and a
longer horizon only adds patients after the shorter one's.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from ..inputs.schema import Strict
from ..model import streams

DAYS_PER_YEAR = 365.25


def integrate_rate(segments: list[tuple[float, float]], t0: float, t1: float) -> float:
    """The integral from day ``t0`` to ``t1`` of a piecewise-constant rate.

    ``segments``: ``(from_day, rate per day)`` pieces in increasing order of day, the last running to infinity;
    before the first piece the rate is 0. Returns the expected count (rate x days); 0 when ``t1 <= t0``. Shared
    by the arrivals of an open population and the specialist clinic's offered consults."""
    total = 0.0
    for k, (start, rate) in enumerate(segments):
        end = segments[k + 1][0] if k + 1 < len(segments) else np.inf
        lo, hi = max(start, t0), min(end, t1)
        if hi > lo:
            total += rate * (hi - lo)
    return total


class PopulationSpec(Strict):
    """The scenario's ``population:`` block (an open population)."""

    size: float = Field(gt=0, le=1e9, allow_inf_nan=False, description="people the service covers")
    incidence_per_100k: float = Field(
        ge=0, le=100000, allow_inf_nan=False,
        description="new patients starting treatment per 100,000 people per year (Poisson arrivals)")
    incidence_by_year: list[Annotated[float, Field(ge=0, le=100000, allow_inf_nan=False)]] = Field(
        default_factory=list, max_length=100,
        description="optional: incidence per 100,000 per year for year 1, 2, ... of the run (the last one holds "
                    "after); replaces incidence_per_100k")
    prevalent: int = Field(0, ge=0, le=10_000_000, description="patients already starting the pathway on day 0")
    warmup_days: float = Field(365.0, ge=0, le=36500, allow_inf_nan=False,
                               description="days left out of steady-state statistics")
    source: str = Field("", description="where the incidence comes from, or 'assumption: ...'")

    @model_validator(mode="after")
    def _valid(self) -> PopulationSpec:
        if any(not (0 <= v <= 100000) for v in self.incidence_by_year):
            raise ValueError("incidence_by_year holds rates per 100,000 per year between 0 and 100000")
        return self

    def rate_segments(self) -> list[tuple[float, float]]:
        """``(from_day, arrivals per day)`` pieces of the arrival rate."""
        per_day = self.size / 100000.0 / DAYS_PER_YEAR
        if not self.incidence_by_year:
            return [(0.0, self.incidence_per_100k * per_day)]
        return [(DAYS_PER_YEAR * k, v * per_day) for k, v in enumerate(self.incidence_by_year)]

    def expected_arrivals(self, t0: float, t1: float) -> float:
        """Expected incident patients entering between days ``t0`` and ``t1``."""
        return integrate_rate(self.rate_segments(), t0, t1)


def _inverse_cumulative(segs: list[tuple[float, float]], levels: np.ndarray) -> np.ndarray:
    """Days at which the cumulative rate reaches ``levels`` (sorted); inf beyond the last finite piece."""
    out = np.full(levels.shape, np.inf)
    cum = 0.0
    for k, (start, rate) in enumerate(segs):
        end = segs[k + 1][0] if k + 1 < len(segs) else np.inf
        top = cum + rate * (end - start) if np.isfinite(end) else np.inf
        if rate > 0:
            inside = (levels >= cum) & (levels < top)
            out[inside] = start + (levels[inside] - cum) / rate
        cum = top
    return out


def entry_days(spec: PopulationSpec, seed: int, replication: int, horizon: float) -> np.ndarray:
    """Day each patient enters, in patient-index order: ``prevalent`` zeros, then the incident arrivals
    before ``horizon`` (sorted). Deterministic in (seed, replication); the first k arrivals do not depend
    on the horizon."""
    segs = spec.rate_segments()
    rng = streams.rng_for(seed, replication, streams.ARRIVALS)
    expected = spec.expected_arrivals(0.0, horizon)
    levels = np.zeros(0)
    total = 0.0
    # Unit-rate Poisson process (cumulative exponential gaps) in fixed-size chunks, so the k-th arrival is
    # the same whatever the horizon; mapped to days through the inverse cumulative rate.
    chunk = 4096
    while True:
        gaps = rng.standard_exponential(chunk)
        part = total + np.cumsum(gaps)
        levels = np.concatenate([levels, part])
        total = float(part[-1])
        if total > expected or expected == 0:
            break
    days = _inverse_cumulative(segs, levels)
    days = days[days < horizon]
    return np.concatenate([np.zeros(spec.prevalent), days])
