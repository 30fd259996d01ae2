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
from .care import care_checks, restart_checks, restart_dose_checks
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
from .trajectory import column

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


def _specialist_relief(events: pd.DataFrame, patients: pd.DataFrame, policy: Any, n: int) -> list[InvariantResult]:
    """The ``specialist_relief_followed_up`` and ``managed_relief_regimen`` invariants (issue 10): after a consult,
    from the event log and the policy's maintenance interval only.

    A relief transition citing P9.specialist_consult must be followed, within ``maintenance.visit_interval_days``
    (default 91, P4.maintenance_visit), by a maintenance visit, a P4.relapse or a drop-out, unless the horizon
    comes first (relief is not absorbing). After a ``conservative_relief`` consult dated earlier than the relief,
    every drug taken at the consult's outcome row must still run (no ``drug_stop`` nor ``taper_start``) when the
    relief is dated (drug management relieves only through the managed regimen)."""
    interval = float(getattr(getattr(policy, "maintenance", None), "visit_interval_days", 91.0))
    if "followup_days" in patients and len(patients):
        horizon = float(patients["followup_days"].max())
    else:
        horizon = float(events["day"].max()) if len(events) else 0.0
    follow = InvariantResult(BY_NAME["specialist_relief_followed_up"], checked=n)
    managed = InvariantResult(BY_NAME["managed_relief_regimen"], checked=n)
    if not len(events):
        return [follow, managed]
    ev = events
    rows = zip(ev["replication"].astype(int), ev["patient"].astype(int), ev["day"].astype(float),
               ev["event"].astype(str), column(ev, "state"), column(ev, "drug"), column(ev, "rule"),
               column(ev, "consult_outcome"), strict=True)
    key = None
    running: set[str] = set()
    managed_drugs: set[str] | None = None  # drugs at a conservative_relief consult's outcome, until relief
    consult_day = 0.0
    open_relief: float | None = None  # day of a specialist relief awaiting its first follow-up
    seen_f: set[tuple[int, int]] = set()
    seen_m: set[tuple[int, int]] = set()

    def close(k: tuple[int, int] | None, until: float) -> None:
        if k is not None and open_relief is not None and until > open_relief + interval + TOL:
            follow.violations.append(Violation(follow.invariant.name, k[0], k[1], round(open_relief, 3), "transition",
                                               None, "P9.specialist_consult",
                                               f"relieved by the specialist on day {open_relief:g}, then no maintenance "
                                               f"visit, relapse or drop-out within {interval:g} days", False))

    for rep, pat, day, kind, state, drug, rule, outcome in rows:
        if (rep, pat) != key:
            close(key, horizon)
            key, running, managed_drugs, open_relief = (rep, pat), set(), None, None
        if open_relief is not None and (kind in ("maintenance_visit", "dropout") or rule == "P4.relapse"):
            close(key, day)
            open_relief = None
        if kind == "drug_start" and drug is not None:
            running.add(str(drug))
        elif kind in ("drug_stop", "taper_start") and drug is not None:
            running.discard(str(drug))
            if managed_drugs is not None and rule == "P9.tramadol_bridge":  # the bridge stops at the consult
                managed_drugs.discard(str(drug))
            elif managed_drugs is not None and str(drug) in managed_drugs:
                managed_drugs = set()  # a managed drug stopped: relief from the plan can no longer be dated
        elif kind == "consult" and outcome is not None:
            managed_drugs = set(running) if str(outcome) == "conservative_relief" else None
            consult_day = day
        elif kind == "transition" and state == "relieved" and rule == "P9.specialist_consult":
            seen_f.add(key)
            open_relief = day
            if managed_drugs is not None and day > consult_day + 1e-9:
                seen_m.add(key)
                if not managed_drugs:
                    managed.violations.append(Violation(
                        managed.invariant.name, rep, pat, round(day, 3), "transition", None, str(rule),
                        f"relief after specialist drug management (consult day {consult_day:g}) although a drug of "
                        "the managed regimen had stopped", False))
            managed_drugs = None
    close(key, horizon)
    follow.applicable, managed.applicable = len(seen_f), len(seen_m)
    return [follow, managed]


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
    after = {r.invariant.name: r for r in _specialist_relief(events, patients, policy, n)}
    after.update({r.invariant.name: r for r in care_checks(events, patients, policy, n)})
    restart = restart_checks(events, policy, n)
    after[restart.invariant.name] = restart
    dose = restart_dose_checks(events, policy, n)
    after[dose.invariant.name] = dose
    results = [after.get(r.invariant.name, r) for r in results]
    return CheckReport(scenario=scenario, trajectories=n,
                       declared_departures=tuple(sorted(checker.pol.declared)), results=results)


def check_run(result: Any) -> CheckReport:
    """Check a :class:`~simulator.analysis.runner.RunResult`."""
    return check_events(result.events, result.patients, result.scenario.policy, result.scenario.name)
