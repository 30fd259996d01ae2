"""The engine's hot-path shortcuts give exactly what the plain formulas give (they are speed-ups, not changes):
the visit noise's inverse normal CDF, the latent reads from packed records, a drug's schedule and dose.
Each check computes the reference its own way (no shared code with what it checks)."""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine.lines import Dosing, Line
from simulator.model import streams
from simulator.model.overrides import model_tables
from simulator.model.response import DRIFT_FEATURES, RESPONSE_COLUMNS, draw_latents
from simulator.model.safety import Plan

_U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


@given(_U64, st.integers(min_value=0, max_value=10**9))
def test_slot_normal_is_the_inverse_normal_cdf_of_the_slot_uniform(stream: int, slot: int) -> None:
    """The visit noise calls the C inverse CDF directly: the same number as ``NormalDist().inv_cdf``."""
    assert streams.slot_normal(stream, slot) == NormalDist().inv_cdf(streams.slot_uniform(stream, slot))


@given(_U64, st.floats(min_value=0.0, max_value=5000.0))
def test_visit_normal_is_the_slot_normal_of_the_day_slot(stream: int, day: float) -> None:
    assert streams.visit_normal(stream, day) == streams.slot_normal(stream, streams.day_slot(day))


def _latents(n: int = 40, seed: int = 3):
    tables = model_tables(None)
    u = streams.block(seed, 0, streams.RESPONSE, n, RESPONSE_COLUMNS)
    etiology = np.arange(n) % 6
    return tables, draw_latents(tables, etiology, u)


def _reference_latent(lat, i: int, j: int, day: float) -> float:
    """Latent normal j of patient i on ``day``, from the record fields (Latents' docstring formula)."""
    x = float(lat.static[i, j])
    s = lat.drift_share
    if s <= 0.0:
        return x
    om, ph = lat.omega[i, j], lat.phase[i, j]
    f = sum(math.cos(float(om[k]) * day + float(ph[k])) for k in range(DRIFT_FEATURES))
    return math.sqrt(1.0 - s) * x + math.sqrt(s * 2.0 / DRIFT_FEATURES) * f


@settings(max_examples=60)
@given(st.integers(min_value=0, max_value=39), st.floats(min_value=0.0, max_value=1500.0), st.booleans())
def test_scalar_latent_reads_equal_the_formula(i: int, day: float, drift: bool) -> None:
    """``u_scalar`` / ``ns_scalar`` (byte offsets into the packed records, the drift test hoisted) equal the
    formula evaluated latent by latent from the record fields, bit for bit, with and without drift."""
    tables, lat = _latents()
    if not drift:
        lat = dataclasses.replace(lat, drift_share=0.0)
    for d in tables.drugs:
        w = lat.loadings[d.index]
        z = 0.0
        for j in np.flatnonzero(w):
            z += float(w[j]) * _reference_latent(lat, i, int(j), day)
        assert lat.u_scalar(i, d.index, day) == 0.5 * math.erfc(-z / math.sqrt(2.0))
    member = 0.5 * math.erfc(-_reference_latent(lat, i, 0, day) / math.sqrt(2.0)) < lat.ns_share[i]
    expected = (float(lat.ns_resp[i]) if member else float(lat.ns_non[i])) if drift else float(lat.ns_reduction[i])
    assert lat.ns_scalar(i, day) == expected


class _Doses(Dosing):
    """Just enough of the simulation for ``_log_doses``: its rows are collected."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float]] = []

    def _log(self, i, day, ev, state, drug=-1, dose=-1.0, pain=-1.0, detail=-1, rule=None) -> None:
        self.rows.append((day, dose))


class _P:
    state = "first_line"


_STEPS = st.lists(st.tuples(st.floats(min_value=0.0, max_value=200.0), st.floats(min_value=1.0, max_value=600.0)),
                  min_size=1, max_size=8).map(lambda s: tuple(sorted(s)))


@given(_STEPS, st.floats(min_value=0.0, max_value=50.0),
       st.lists(st.floats(min_value=0.0, max_value=300.0), min_size=1, max_size=6), st.integers(0, 7))
def test_titration_steps_logged_are_those_reached(steps, start, days, cut) -> None:
    """A schedule set with ``Line.set_steps``: ``_log_doses`` logs exactly the steps after the first whose day
    ``start + offset`` is reached by a call, each once, in order, none after the schedule is cut short at the steps
    reached (as a dose reduction or a titration stopped at response does); ``dose_at`` (the last step kept by
    set_steps) answers from the schedule as set."""
    plan = Plan(steps=steps, target=steps[-1][1], maximum=steps[-1][1], factor=1.0, increment=1.0, interval=7.0,
                limits=())
    line = Line(0, start, plan)
    sim = _Doses()
    days = sorted(days)
    for k, now in enumerate(days):
        if k == cut:
            line.set_steps(line.steps[:line.next_step], line.next_step)
        sim._log_doses(0, _P(), [line], start + now)
        # Line.due, the day _log_doses tests, is the day of the first step not logged yet (inf when none is left)
        assert line.due == (line.start + line.steps[line.next_step][0] if line.next_step < len(line.steps)
                            else math.inf)
    last = days[min(cut, len(days)) - 1] if cut > 0 else -math.inf  # the last call before the cut
    expected = [(start + off, d) for off, d in steps[1:] if start + off <= (start + last) + 1e-9]
    assert sim.rows == expected
    for now in days:  # dose_at (its last step kept by set_steps): the dose of the last step reached, else the first
        reached_doses = [d for off, d in line.steps if line.start + off <= (start + now) + 1e-9]
        assert line.dose_at(start + now) == (reached_doses[-1] if reached_doses else line.steps[0][1])


def test_the_plan_cache_gives_each_patient_the_plan_computed_for_him() -> None:
    """``Dosing._plan`` keys its cache by what a plan depends on (age band, CrCl band, the flags of the drug's
    cautions, goal, start dose): for every patient of a cohort, drug and goal, the cached plan is the one
    :func:`~simulator.model.safety.plan` computes from the patient's own facts."""
    from pathlib import Path

    from simulator.analysis.runner import replication_setup
    from simulator.engine.simulation import EngineConfig, Simulation
    from simulator.model.policy_context import PolicyContext
    from simulator.model.safety import PatientFacts, plan
    from simulator.population.cohort import generate_cohort
    from simulator.scenario import load_scenario

    sc = load_scenario(Path(__file__).parent.parent / "scenarios" / "guideline.yaml").with_overrides(patients=400,
                                                                                                   seed=3)
    tables = model_tables(sc.clinical_overrides)
    ctx = PolicyContext.build(sc.policy, tables)
    n, entry, clinic = replication_setup(sc, 0, tables.specialist["consult_days"])
    c = generate_cohort(sc.cohort_spec, n, sc.seed, 0)
    sim = Simulation(ctx, c, EngineConfig(float(sc.horizon_days), clinic.consults_per_week, sc.seed, clinic=clinic,
                                          entry_days=entry), 0)
    speed = ctx.policy.titration_speed
    cautioned = 0
    for i in range(c.n):
        facts = PatientFacts(age=float(c.age[i]), etiology=int(c.etiology[i]), localized=bool(c.localized[i]),
                             crcl=float(c.crcl[i]), flags=sim.flags[i])
        patient = type("P", (), {"facts": facts})()
        for d in tables.drugs:
            cautioned += any(flag in facts.flags for flag, *_ in sim.extras[d.index].cautions)
            for goal in (None, d.target_dose * 0.5, d.max_dose * 2):
                assert sim._plan(patient, d.index, goal) == plan(d, facts, speed, goal, ctx.start_doses.get(d.index))
    assert cautioned > 20  # the cohort exercises the flags the key keeps


def test_every_eligible_drug_and_topical_of_a_patient_has_no_contraindication() -> None:
    """``_start_step`` skips ``contraindication`` for a drug in ``p.eligible`` or the patient's topical (both
    passed it at the first visit, from the same facts): for every patient of a cohort, ``contraindication``
    indeed finds none for them; and it finds some for the other drugs (the check is not vacuous)."""
    from pathlib import Path

    from simulator.engine.events import flag_sets
    from simulator.model.patient import PatientModel
    from simulator.model.policy_context import PolicyContext
    from simulator.model.safety import PatientFacts, contraindication
    from simulator.population.cohort import generate_cohort
    from simulator.scenario import load_scenario

    sc = load_scenario(Path(__file__).parent.parent / "scenarios" / "guideline.yaml")
    tables = model_tables(sc.clinical_overrides)
    ctx = PolicyContext.build(sc.policy, tables)
    c = generate_cohort(sc.cohort_spec, 400, 3, 0)
    flags = flag_sets(c)
    excluded = 0
    for i in range(c.n):
        facts = PatientFacts(age=float(c.age[i]), etiology=int(c.etiology[i]), localized=bool(c.localized[i]),
                             crcl=float(c.crcl[i]), flags=flags[i])
        p = PatientModel(i, facts, 6.0, False, ctx)
        for j in (*p.eligible, *([p.topical] if p.topical >= 0 else [])):
            assert contraindication(tables.drugs[j], facts) is None
        excluded += sum(contraindication(d, facts) is not None for d in tables.drugs)
    assert excluded > 20
