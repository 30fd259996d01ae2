"""A taper's rows carry the patient's state on their own day (docs/event-log.md, column ``state``).

The engine logs all of a taper's rows when the taper starts, with their later days; v0.2's event log kept the
state of that moment on every one of them, so a taper begun before a switch, a referral or a discharge showed
the patient still in the old state weeks later (topical-first, 20,000 patients, seed 11, patient 8519: a
``P5.taper_complete`` row on day 634.8 in ``specialist_referral`` while he waited, discharged, in primary care;
``painpath check`` flagged it as a re-referral deferral on the clinic's list). The reference here walks each
patient's rows and reads the state of the latest transition row before the taper row.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.analysis.outcomes import events_frame
from simulator.engine.simulation import EngineConfig, Simulation
from simulator.model.clinical_tables import compile_model
from simulator.model.policy import Policy
from simulator.model.policy_context import PolicyContext
from simulator.population.cohort import generate_cohort
from simulator.population.cohort_spec import load_cohort_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def events():
    tables = compile_model()
    cohort = generate_cohort(load_cohort_spec(ROOT / "cohorts" / "mixed-primary-care.yaml"), 1500, 11)
    sim = Simulation(PolicyContext.build(Policy(), tables), cohort,
                     EngineConfig(horizon_days=730, specialist_slots_per_week=2, seed=11), 0)
    return events_frame([sim.run()], tables)


def test_taper_rows_carry_the_state_of_their_day(events):
    state = None
    patient = None
    checked = 0
    for row in events[["patient", "event", "state", "rule"]].itertuples(index=False):
        if row.patient != patient:
            patient, state = row.patient, None
        if row.event in ("transition", "assessment"):
            state = row.state
            continue
        if row.rule in ("P5.taper_step", "P5.taper_complete"):
            assert row.state == state, f"patient {row.patient}: taper row in {row.state}, patient in {state}"
            checked += 1
    assert checked > 1000  # the run has tapers to check (duloxetine, TCAs, opioids, gabapentinoids)
    # and tapers that outlive a change of state (the rows v0.2 left in the old state)
    transitions_during_taper = 0
    for _, g in events.groupby("patient", observed=True):
        starts = g.loc[g["event"] == "taper_start", "day"]
        ends = g.loc[g["rule"] == "P5.taper_complete", "day"]
        tr = g.loc[g["event"] == "transition", "day"]
        if len(starts) and len(ends):
            transitions_during_taper += int(((tr > starts.min()) & (tr < ends.max())).sum())
    assert transitions_during_taper > 100
