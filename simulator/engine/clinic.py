"""The specialist pain clinic (P9): capacity as a rate, its slot calendar or servers, and its queue.

Capacity is given as a *rate*, consults per week, that does not depend on how many patients are simulated:
per 1,000 patients of a closed cohort, or per 100,000 people of the population an open scenario serves
(:class:`CapacitySpec`, the scenario's ``specialist:`` block). The rate may change over time (``changes``:
e.g. doubled from week 26). It is realised exactly, without rounding a server count:

* **slot calendar** (the default): consult slots are laid out on the calendar so that the number of slots
  offered by day ``t`` is the capacity accumulated by ``t`` (slot ``k`` starts when the cumulative capacity
  reaches ``k - 1/2``). Each slot is given to the longest-waiting patient (first come, first served); a
  slot nobody waits for is lost (it lowers utilisation). 2.5 consults a week is 2.5 consults a week.
* **servers**: ``c`` clinicians, each seeing one patient at a time for a service time (fixed, or
  exponential with the given mean). This is the textbook M/M/c queue when arrivals are Poisson and
  service exponential; ``tests/test_clinic.py`` checks the simulated clinic against Erlang C.

The queue is first come, first served; a patient who leaves the queue (drop-out, loss to follow-up)
cancels the request and is never counted as waiting afterwards. The clinic knows nothing about drugs,
the pathway or patients beyond an index: the engine's ``_specialist`` step asks it for a consult.

Care while waiting and after the consult (issue 10, item 3) is decided by the policy (``policy.referral``)
and carried out by the engine; the clinic only schedules consults.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import simpy
from pydantic import Field, model_validator

from ..inputs.errors import InputError
from ..inputs.schema import Strict
from ..population.arrivals import integrate_rate

DAYS_PER_WEEK = 7.0


# ------------------------------------------------------------------------------------------------
# Scenario block (validated input)
# ------------------------------------------------------------------------------------------------


class CapacityChange(Strict):
    """From ``from_week`` on, capacity is ``factor`` times the base rate (e.g. 2.0: doubled)."""

    from_week: float = Field(ge=0, le=5200, allow_inf_nan=False)
    factor: float = Field(ge=0, le=100, allow_inf_nan=False)


class CapacitySpec(Strict):
    """P9: pain-clinic capacity as a rate of consults per week.

    Closed cohorts use ``slots_per_week_per_1000`` (consults a week per 1,000 patients in the cohort);
    open populations use ``slots_per_week_per_100k`` (consults a week per 100,000 people served). The
    default, 2 consults a week per 1,000 patients, is an assumption (no published UK pain-clinic capacity
    figure was found; calibration.md section 6, "Referral and waiting times", [NF]); change it per scenario.
    """

    slots_per_week_per_1000: float = Field(
        2.0, ge=0, le=1000, allow_inf_nan=False,
        description="closed cohorts: consults the pain clinic can start per week per 1,000 patients in the cohort")
    slots_per_week_per_100k: float | None = Field(
        None, ge=0, le=100000, allow_inf_nan=False,
        description="open populations: consults the pain clinic can start per week per 100,000 people served")
    changes: list[CapacityChange] = Field(
        default_factory=list, max_length=100,
        description="capacity changes over time: from_week, factor (times the base rate)")
    realisation: Literal["calendar", "servers"] = Field(
        "calendar", description="calendar: exact slot calendar at the rate; servers: clinicians with service times")
    servers: int = Field(1, ge=1, le=10000, description="servers only: clinicians seeing patients in parallel")
    service: Literal["fixed", "exponential"] = Field("fixed", description="servers only: service-time distribution")

    @model_validator(mode="after")
    def _consistent(self) -> CapacitySpec:
        weeks = [c.from_week for c in self.changes]
        if weeks != sorted(weeks):
            raise ValueError("changes must be in order of from_week; sort them by from_week")
        if self.realisation == "servers" and self.changes:
            raise ValueError("capacity changes apply to the slot calendar; use realisation: calendar with changes, "
                             "or drop the changes")
        return self

    def slots(self, patients: int) -> float:
        """Closed cohort: consults per week for a cohort of ``patients`` (a rate; never rounded)."""
        return self.slots_per_week_per_1000 * patients / 1000.0

    def config(self, *, patients: int | None = None, population: float | None = None,
               service_days: float = 7.0) -> ClinicConfig:
        """The engine's plain clinic settings, for a closed cohort of ``patients`` or an open ``population``.

        ``service_days``: for servers, the mean time a clinician spends on one consult (the clinical model's
        ``specialist.consult_days``).
        """
        if population is not None:
            if self.slots_per_week_per_100k is None:
                raise InputError("an open population needs its clinic capacity per 100,000 people served",
                                 field="specialist.slots_per_week_per_100k",
                                 fix="give specialist.slots_per_week_per_100k, e.g. 1.5")
            per_week = self.slots_per_week_per_100k * population / 100000.0
        else:
            per_week = self.slots(int(patients or 0))
        changes = tuple((DAYS_PER_WEEK * c.from_week, c.factor) for c in self.changes)
        if self.realisation == "servers":
            return ClinicConfig(per_week, changes, servers=self.servers, service=self.service,
                                service_days=service_days)
        return ClinicConfig(per_week, changes)


# ------------------------------------------------------------------------------------------------
# Plain settings (engine side) and the capacity the clinic offers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicConfig:
    """The clinic as the engine runs it (plain values, no validation).

    ``consults_per_week``: base rate of the slot calendar. ``changes``: ``(from_day, factor)`` pairs,
    sorted; from ``from_day`` the rate is ``factor * consults_per_week``. ``servers`` > 0 switches to
    servers mode (``service`` 'fixed' or 'exponential' with mean ``service_days``); the calendar is then
    unused and the capacity is ``servers * 7 / service_days`` consults a week.
    """

    consults_per_week: float
    changes: tuple[tuple[float, float], ...] = ()
    servers: int = 0
    service: str = "fixed"
    service_days: float = 7.0

    def segments(self) -> list[tuple[float, float]]:
        """``(from_day, consults per day)`` pieces of the capacity rate, from day 0."""
        if self.servers > 0:
            return [(0.0, self.servers / self.service_days)]
        base = self.consults_per_week / DAYS_PER_WEEK
        out = [(0.0, base)]
        for day, factor in self.changes:
            if day <= 0:
                out[0] = (0.0, base * factor)
            else:
                out.append((day, base * factor))
        return out

    def offered(self, t0: float, t1: float) -> float:
        """Consults the clinic can start in days ``[t0, t1)``.

        Slot calendar: the number of slots starting in the window (slot k starts when the accumulated
        capacity reaches ``k - 1/2``, :func:`slot_times`), a whole number, so a full clinic's utilisation is
        exactly 1 (the integral of the rate gave 1.0006 at saturation). Servers mode: the integral of the
        rate (consults start whenever a server frees)."""
        if self.servers > 0:
            return integrate_rate(self.segments(), t0, t1)
        segs = self.segments()
        lo = integrate_rate(segs, 0.0, t0) if t0 > 0 else 0.0
        hi = integrate_rate(segs, 0.0, t1) if t1 > 0 else 0.0
        return float(max(0, math.ceil(hi - 0.5 - 1e-12) - math.ceil(lo - 0.5 - 1e-12)))

    def rate_per_week(self, day: float) -> float:
        """Consults a week the clinic offers on ``day``."""
        rate = 0.0
        for start, r in self.segments():
            if start <= day:
                rate = r
        return rate * DAYS_PER_WEEK


def slot_times(cfg: ClinicConfig, horizon: float) -> np.ndarray:
    """Start days of the calendar's slots up to ``horizon``: slot k (1, 2, ...) starts on the day the
    cumulative capacity reaches ``k - 1/2``, so slots offered by day t = cumulative capacity rounded."""
    segs = cfg.segments()
    out: list[np.ndarray] = []
    cum = 0.0  # capacity accumulated at the start of the segment
    for k, (start, rate) in enumerate(segs):
        end = min(segs[k + 1][0] if k + 1 < len(segs) else horizon, horizon)
        if end <= start:
            continue
        if rate > 0:
            top = cum + rate * (end - start)
            first = math.ceil(cum + 0.5 - 1e-12)  # smallest k with k - 1/2 >= cum
            ks = np.arange(first, math.floor(top + 0.5 + 1e-12) + 1, dtype=float)
            days = start + (ks - 0.5 - cum) / rate
            out.append(days[(days >= start) & (days < end)])
            cum = top
    return np.concatenate(out) if out else np.zeros(0)


# ------------------------------------------------------------------------------------------------
# The clinic in SimPy time
# ------------------------------------------------------------------------------------------------


class Request:
    """A patient's place in the queue; ``event`` succeeds (value: the consult's start day) when seen."""

    __slots__ = ("patient", "queued", "event", "cancelled", "service_u")

    def __init__(self, patient: int, queued: float, event: simpy.Event, service_u: float) -> None:
        self.patient = patient
        self.queued = queued
        self.event = event
        self.cancelled = False
        self.service_u = service_u


class Clinic:
    """A first-come-first-served pain clinic in a SimPy environment.

    ``request(i, service_u)`` puts patient ``i`` in the queue and returns a :class:`Request` whose event
    fires when the consult starts; ``cancel(req)`` takes a patient out of the queue (drop-out). In servers
    mode ``service_u`` (a uniform of the patient's own stream) sets the service time, so service times
    follow the patient, not the order of events (common random numbers).
    """

    def __init__(self, env: simpy.Environment, cfg: ClinicConfig, horizon: float) -> None:
        self.env = env
        self.cfg = cfg
        self.queue: deque[Request] = deque()
        self.started = 0  # consults started
        self.free = cfg.servers
        if cfg.servers <= 0:
            self._slots = slot_times(cfg, horizon)
            if len(self._slots):
                env.process(self._calendar())

    def request(self, patient: int, service_u: float = 0.5) -> Request:
        req = Request(patient, self.env.now, self.env.event(), service_u)
        if self.cfg.servers > 0 and self.free > 0 and not self.queue:
            self.free -= 1
            self._start(req)
        else:
            self.queue.append(req)
        return req

    def cancel(self, req: Request) -> None:
        """The patient left the queue before a consult (the slot goes to the next patient)."""
        req.cancelled = True

    def _next(self) -> Request | None:
        q = self.queue
        while q:
            req = q.popleft()
            if not req.cancelled:
                return req
        return None

    def _start(self, req: Request) -> None:
        self.started += 1
        req.event.succeed(self.env.now)
        if self.cfg.servers > 0:
            if self.cfg.service == "exponential":
                days = -math.log1p(-req.service_u) * self.cfg.service_days
            else:
                days = self.cfg.service_days
            self.env.timeout(days).callbacks.append(self._release)

    def _release(self, _event: simpy.Event) -> None:
        nxt = self._next()
        if nxt is None:
            self.free += 1
        else:
            self._start(nxt)

    def _calendar(self):
        env = self.env
        for day in self._slots:
            if day > env.now:
                yield env.timeout(day - env.now)
            req = self._next()
            if req is not None:
                self._start(req)
