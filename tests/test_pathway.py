"""The pathway has one definition; the compiled hot-path table must behave exactly like transitions.

These tests protect the claim in pathway.py: the engine's compiled ``(state, trigger)`` table and a
``transitions.Machine`` built from the same definition give identical trajectories, both trigger by
trigger on random patients and for a whole simulated cohort.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.engine.simulation as engine_mod
from simulator.engine.simulation import EngineConfig, Simulation
from simulator.model.clinical_tables import compile_model
from simulator.model.pathway import STATES, TRANSITIONS, TRIGGERS, build_machine, compile_table, fire
from simulator.model.patient import PatientModel
from simulator.model.policy import Policy
from simulator.model.policy_context import PolicyContext
from simulator.model.safety import PatientFacts
from simulator.population.cohort import generate_cohort
from simulator.scenario import load_scenario

TABLES = compile_model()
FLAGS = ("hepatic_disease", "recent_mi", "arrhythmia", "cardiovascular_disease", "ssri_use", "high_misuse_risk")


def test_definition_is_consistent() -> None:
    """Every edge names known states, and every guard is a method of the patient model."""
    for e in TRANSITIONS:
        assert e.dest in STATES
        assert all(s in STATES for s in e.source)
        for c in e.conditions:
            assert callable(getattr(PatientModel, c)), c


patient_st = st.builds(
    lambda age, crcl, loc, flags, fails, combo, tram, order: (age, crcl, loc, flags, fails, combo, tram, order),
    st.floats(18, 95), st.floats(5, 140), st.booleans(), st.frozensets(st.sampled_from(FLAGS)),
    st.integers(0, 4), st.booleans(), st.booleans(),
    st.permutations(["pregabalin", "duloxetine", "gabapentin", "nortriptyline"]),
)


@settings(max_examples=150, deadline=None)
@given(patient_st, st.lists(st.sampled_from(TRIGGERS), min_size=1, max_size=12),
       st.sampled_from(["add", "switch"]), st.sampled_from(["second_line", "third_line", "never"]))
def test_compiled_table_matches_machine(pat, triggers, on_partial, tramadol) -> None:
    """Random patients and trigger sequences: the compiled table and the Machine reach the same states."""
    age, crcl, loc, flags, fails, combo, tram, order = pat
    ctx = PolicyContext.build(Policy(on_partial=on_partial, tramadol=tramadol, order=list(order)), TABLES)
    facts = PatientFacts(age, 0, loc, crcl, flags - {"high_misuse_risk"})

    def make() -> PatientModel:
        p = PatientModel(0, facts, 6.0, "high_misuse_risk" in flags, ctx)
        p.n_failed = fails
        p.combination_failed = combo
        p.tramadol_tried = tram
        p.failed_classes = {"gabapentinoid", "snri"} if fails >= 2 else ({"gabapentinoid"} if fails else set())
        if p.eligible:
            p.active = [p.eligible[0]]
        return p

    machine = build_machine()
    table = compile_table(PatientModel)
    a, b = make(), make()
    for t in triggers:
        ok_a = machine.events[t].trigger(a)
        ok_b = fire(table, b, t)
        assert a.state == b.state
        assert bool(ok_a) == ok_b


def test_whole_cohort_identical_with_machine(monkeypatch) -> None:
    """A full simulated cohort gives the same event log when every trigger goes through transitions."""
    sc = load_scenario("scenarios/guideline.yaml")
    cohort = generate_cohort(sc.cohort_spec, 400, 11, 0)
    ctx = PolicyContext.build(sc.policy, TABLES)
    cfg = EngineConfig(730.0, sc.specialist.slots(400), 11)
    compiled = Simulation(ctx, cohort, cfg, 0).run()
    machine = build_machine()
    calls = []

    def machine_fire(_table, patient, trigger):
        calls.append(trigger)
        return bool(machine.events[trigger].trigger(patient))

    monkeypatch.setattr(engine_mod, "fire", machine_fire)
    via_machine = Simulation(ctx, cohort, cfg, 0).run()
    assert len(calls) > 400  # the Machine really drove the run
    np.testing.assert_array_equal(compiled, via_machine)
