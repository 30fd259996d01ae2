"""The engine's light wake-ups (``simulation._Wake`` on its ``_Calendar``) order every event as SimPy processes do.

Protects results against the engine's run loop: the reference runs the same patient generators as plain SimPy
processes (``env.process`` waking on ``env.timeout``, ``env.run``), so SimPy itself decides the order of
same-day events, the clinic's queue included; the event logs must be identical row for row.
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.analysis.runner import replication_setup
from simulator.engine.clinic import ClinicConfig
from simulator.engine.simulation import NCOL, EngineConfig, Simulation, _Calendar
from simulator.model.overrides import model_tables
from simulator.model.policy_context import PolicyContext
from simulator.population.cohort import generate_cohort
from simulator.scenario import load_scenario


def _simulation(name: str, patients: int, seed: int, clinic: ClinicConfig | None = None) -> Simulation:
    sc = load_scenario(f"scenarios/{name}.yaml")
    if sc.population is not None:  # --patients does not apply: a population bringing about `patients` in
        size = patients / (sc.population.incidence_per_100k / 1e5 * sc.horizon_days / 365.25)
        sc = sc.with_overrides(seed=seed, population={**sc.population.model_dump(), "size": size})
    else:
        sc = sc.with_overrides(patients=patients, seed=seed)
    tables = model_tables(sc.clinical_overrides)
    ctx = PolicyContext.build(sc.policy, tables)
    n, entry, setup_clinic = replication_setup(sc, 0, tables.specialist["consult_days"])
    cohort = generate_cohort(sc.cohort_spec, n, sc.seed, 0)
    clinic = clinic or setup_clinic
    config = EngineConfig(float(sc.horizon_days), clinic.consults_per_week, sc.seed, clinic=clinic, entry_days=entry)
    return Simulation(ctx, cohort, config, 0)


def _as_simpy_process(env, gen):
    """A patient generator driven by SimPy: a yielded delay becomes ``env.timeout``, and it resumes with env.now."""
    value = None
    while True:
        try:
            wait = gen.send(value)
        except StopIteration:
            return
        yield env.timeout(wait) if isinstance(wait, float) else wait
        value = env.now


def _reference_run(sim: Simulation) -> np.ndarray:
    env = sim.env
    for i in range(sim.cohort.n):
        env.process(_as_simpy_process(env, sim._patient(i)))
    horizon = sim.config.horizon_days
    env.run(until=horizon)
    for i, (p, lines) in sim._regimens.items():  # as Simulation.run ends
        sim._log_doses(i, p, lines, horizon, before=True)
    return np.frombuffer(sim.buf, dtype=np.float64).reshape(-1, NCOL)


@pytest.mark.parametrize("name, clinic", [
    ("guideline", ClinicConfig(0.5)),  # a scarce slot calendar: many patients wait, many on the same day
    ("early-referral", ClinicConfig(1.0, servers=1, service="exponential", service_days=14.0)),
    ("open-population", None),  # patients enter on their own days
])
def test_wakes_order_events_as_simpy_processes(name: str, clinic: ClinicConfig | None) -> None:
    fast = _simulation(name, 400, 13, clinic).run()
    reference = _reference_run(_simulation(name, 400, 13, clinic))
    queued = int(np.sum(reference[:, 2] == 9))  # referral_queued rows: the clinic is exercised
    assert queued > 5
    assert fast.shape == reference.shape
    assert np.array_equal(fast, reference)  # same rows in the same order, same-day rows and the clinic's included


@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.0, 9.5, 1e-6, 3.25]) | st.floats(0, 15),
                          st.integers(0, 1), st.integers(0, 3)), min_size=1, max_size=60))
def test_calendar_pops_in_heap_order(ops: list[tuple[float, int, int]]) -> None:
    """The calendar gives its entries in the order SimPy's heap would, however pushes and pops interleave: waits
    within the bucket being taken, ties on the day (priority, then event id), days past the last bucket."""
    eid = itertools.count()
    cal = _Calendar(10.0, eid)
    heap: list[tuple] = []
    now = 0.0
    got, want = [], []
    for wait, priority, pops in ops:
        entry = (now + wait, priority, next(eid), None)
        cal.push(entry)
        heapq.heappush(heap, entry)
        for _ in range(pops):
            first = cal.first()
            if first is None:
                break
            cal.pos += 1
            got.append(first)
            want.append(heapq.heappop(heap))
            now = first[0]
    while (first := cal.first()) is not None:
        cal.pos += 1
        got.append(first)
    assert got == want + sorted(heap)


@given(st.lists(st.floats(0, 15), max_size=40), st.lists(st.floats(0, 15), max_size=40), st.integers(0, 5))
def test_push_all_is_push_each(before: list[float], batch: list[float], pops: int) -> None:
    """Pushing a batch at once (the patients' starts) leaves the calendar giving what pushing each would."""
    eid = itertools.count()
    one, many = _Calendar(10.0, eid), _Calendar(10.0, itertools.count())
    for day in before:
        entry = (day, 1, next(eid), None)
        one.push(entry)
        many.push(entry)
    for cal in (one, many):
        for _ in range(pops):
            if cal.first() is None:
                break
            cal.pos += 1
    entries = [(day, 0, next(eid), None) for day in batch]
    for entry in entries:
        one.push(entry)
    many.push_all(entries)

    def drain(cal: _Calendar) -> list[tuple]:
        out = []
        while (first := cal.first()) is not None:
            cal.pos += 1
            out.append(first)
        return out

    assert drain(many) == drain(one)


def test_calendar_orders_priorities_on_the_same_later_day() -> None:
    """A later bucket is sorted by day alone (stable: event-id order on ties) only while all its entries have one
    priority; given an urgent entry after a normal one on the same day, it comes first, as on SimPy's heap."""
    eid = itertools.count()
    cal = _Calendar(10.0, eid)
    normal = (5.0, 1, next(eid), "normal")
    urgent = (5.0, 0, next(eid), "urgent")
    later = (5.5, 1, next(eid), "later")
    for entry in (later, normal, urgent):
        cal.push(entry)
    got = []
    while (first := cal.first()) is not None:
        cal.pos += 1
        got.append(first[3])
    assert got == ["urgent", "normal", "later"]
