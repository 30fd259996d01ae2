"""Guideline invariants checked on every simulated trajectory (``painpath check``): an independent oracle.

The checks read only three things: a run's **event table**, its **patients table**, and the guideline's
**data** (the drug catalogue ``simulator/data/drugs.yaml`` through :func:`simulator.model.catalog.load_catalog`,
the rulebook through :func:`simulator.model.rules.load_rules`). Where a seed states a rule or a number outright
(an ECG over 40, a tricyclic below 100 mg/day in older adults and cardiac disease, NRS >= 4 for a strong
opioid, two failed first-line classes, no tricyclic or gabapentinoid in CIPN, which drugs are tapered),
the oracle holds it itself, citing the seed, so that a wrong number in the data is caught too.

This package never imports the engine or its helpers (``simulator.engine.simulation``, ``simulator.model.safety``,
``simulator.model.patient``, ``simulator.model.policy``, ``simulator.model.pathway``, ``simulator.model.clinical``): a test
inspects its imports. The policy is read as plain data (its declared departures and the few options that
change what the guideline allows, e.g. ``target_doses``), never through the engine's decision functions.
A trajectory is replayed row by row and each rule is asked again.

A policy may depart from the guideline on purpose by listing the departure in
``policy.declared_departures``. Violations of an invariant whose departure is declared are reported as
*declared departures* and do not fail the check.

Reading choices where the seeds leave room are written next to each check and in ``docs/invariants.md``.

The package, by what each module owns: :mod:`.registry` (the invariants: name, rule, seeds, what each reads),
:mod:`.report` (violations, per-invariant results, the report), :mod:`.rules` (the oracle's own numbers and
rules, the patient and policy as plain data, caps and schedules from the catalogue), :mod:`.trajectory` (the
state replayed per patient), :mod:`.checker` (the replay, dispatching to the checks of :mod:`.doses`,
:mod:`.decisions` and :mod:`.course`), and here :func:`check_events` and :func:`check_run`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ...model.catalog import Catalog, load_catalog
from .checker import Checker
from .registry import BY_NAME, DEPARTURE_BY_RULE, INVARIANTS, OPIOID_REASSESSED, Invariant
from .report import CheckReport, InvariantResult, Violation
from .rules import (
    EPS,
    TOL,
    Facts,
    PolicyView,
    earliest_offset,
    fastest_dose,
    judged_target,
    max_allowed,
    renal_factor,
)

__all__ = ["BY_NAME", "DEPARTURE_BY_RULE", "EPS", "INVARIANTS", "OPIOID_REASSESSED", "TOL", "CheckReport", "Checker",
           "Facts", "Invariant", "InvariantResult", "PolicyView", "Violation", "check_events", "check_run",
           "earliest_offset", "fastest_dose", "judged_target", "max_allowed", "renal_factor"]


def _opioid_reassessment(events: pd.DataFrame, patients: pd.DataFrame, policy: Any, n: int) -> InvariantResult:
    """The ``strong_opioid_reassessed`` invariant (simulator/regression/opioid_check.py): event log and policy only."""
    from ..opioid_check import unreassessed_opioid_gaps

    if "followup_days" in patients and len(patients):
        horizon = float(patients["followup_days"].max())
    else:
        horizon = float(events["day"].max()) if len(events) else 0.0
    strong = [name for name, d in load_catalog().drugs.items() if d.drug_class == "strong_opioid"]
    starts = events[(events["event"] == "drug_start") & events["drug"].astype(str).isin(strong)]
    res = InvariantResult(OPIOID_REASSESSED, checked=n,
                          applicable=starts[["replication", "patient"]].drop_duplicates().shape[0])
    for g in unreassessed_opioid_gaps(events, policy, horizon):
        res.violations.append(Violation(OPIOID_REASSESSED.name, int(g.replication), int(g.patient), round(g.to_day, 3),
                                        "drug_stop" if g.to_day < horizon else "horizon", g.drug,
                                        OPIOID_REASSESSED.rule, g.detail, False))
    return res


def check_events(events: pd.DataFrame, patients: pd.DataFrame, policy: Any = None, scenario: str = "",
                 catalog: Catalog | None = None) -> CheckReport:
    """Check every trajectory in ``events`` (patient attributes from ``patients``) against the invariants.

    ``events``: one row per event with columns replication, patient, day, event, drug, dose, pain_nrs,
    outcome, check, rule (as :class:`~simulator.analysis.runner.RunResult.events`), sorted by replication and patient,
    in time order within a patient. ``patients``: replication, patient, age, crcl, etiology and the boolean
    flags. ``policy``: the scenario's policy (read as data). Raises ValueError when events name a patient the
    patients table lacks.
    """
    checker = Checker(policy, catalog)
    results = checker.check(events, patients)
    n = len(patients[["replication", "patient"]].drop_duplicates())
    if policy is not None:
        results = [_opioid_reassessment(events, patients, policy, n) if r.invariant is OPIOID_REASSESSED else r
                   for r in results]
    return CheckReport(scenario=scenario, trajectories=n,
                       declared_departures=tuple(sorted(checker.pol.declared)), results=results)


def check_run(result: Any) -> CheckReport:
    """Check a :class:`~simulator.analysis.runner.RunResult`."""
    return check_events(result.events, result.patients, result.scenario.policy, result.scenario.name)
