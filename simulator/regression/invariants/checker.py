"""The Checker: replays each patient's rows in time order and asks every rule again (:class:`Checker`).

Owns the replay (grouping the event table by patient, the rule-id check of every decision row, the state
kept per drug line) and dispatches each row to the checks of its concern: :mod:`.doses`, :mod:`.decisions`,
:mod:`.course`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from .course import CourseChecks
from .decisions import DecisionChecks
from .doses import DoseChecks
from .report import InvariantResult
from .rules import (
    BRIDGE_RULE,
    DECISION_EVENTS,
    DOSE_EVENTS,
    EPS,
    FAILED_OUTCOMES,
    FALL_RULES,
    INTOLERANCE_RULES,
    OWN_STOP_RULE,
    RELAPSE_RULE,
    REOFFER_RULES,
    RISE_RULES,
    TAPER_REVERSED_RULE,
    TOL,
    Facts,
)
from .trajectory import Line, Trajectory, column, patient_facts


class Checker(DoseChecks, DecisionChecks, CourseChecks):
    """Checks trajectories against :data:`~.registry.INVARIANTS` for one policy."""

    def check(self, events: pd.DataFrame, patients: pd.DataFrame) -> list[InvariantResult]:
        facts = patient_facts(patients)
        cols = {c: column(events, c) for c in ("event", "drug", "dose", "pain_nrs", "outcome", "check", "rule",
                                                 "state")}
        reps = events["replication"].astype(int).tolist()
        pats = events["patient"].astype(int).tolist()
        days = events["day"].astype(float).tolist()
        n = len(reps)
        start = 0
        keys_seen: set[tuple[int, int]] = set(facts)
        while start < n:
            end = start
            key = (reps[start], pats[start])
            while end < n and reps[end] == key[0] and pats[end] == key[1]:
                end += 1
            keys_seen.add(key)
            f = facts.get(key)
            if f is None:
                raise ValueError(f"events of replication {key[0]} patient {key[1]} have no row in the patients table")
            self._replay(key, f, range(start, end), days, cols)
            start = end
        for name, res in self.results.items():
            res.checked = len(keys_seen)
            res.applicable = len(self._applicable[name])
        return list(self.results.values())

    def _replay(self, key: tuple[int, int], f: Facts, rows: Iterable[int], days: list[float],
                cols: dict[str, list[Any]]) -> None:
        cat = self.catalog.drugs
        t = Trajectory()
        ev_c, dr_c, do_c, pn_c = cols["event"], cols["drug"], cols["dose"], cols["pain_nrs"]
        out_c, ch_c, ru_c, st_c = cols["outcome"], cols["check"], cols["rule"], cols["state"]
        for k in rows:
            ev, name, dose, rule, day = ev_c[k], dr_c[k], do_c[k], ru_c[k], days[k]
            self._own_stop_watch(key, t, ev, name, rule, st_c[k], day)
            self._check_recorded(key, ev, name, dose, day, rule)
            if ev in ("assessment", "evaluation", "maintenance_visit") and pn_c[k] is not None:  # issue 10 visits
                t.last_nrs = float(pn_c[k])
            if ev in DECISION_EVENTS:
                self._touch("rule_ids", key)
                if rule is None or not self.rules.is_resolvable(rule):
                    self._flag("rule_ids", key, day, ev, name, rule, f"{ev} row without a resolvable rule id")
            if ev == "safety_check":
                t.checks.append((ch_c[k], name, day))
                continue
            if ev == "maintenance_visit":
                t.visit_outcome = out_c[k]
                b = t.bridge
                if b is not None and out_c[k] in FAILED_OUTCOMES and b.name in t.active \
                        and day >= self._trial_due(f, b)[2] - EPS:
                    t.tramadol_failed = True  # the bridge had its adequate trial (P3) and did not relieve (P8 gate)
            elif ev == "transition" and rule == RELAPSE_RULE:
                self._on_relapse(t)
            if ev == "dose_change" and rule is not None and name in t.active and dose is not None:
                prev = t.active[name].dose
                fits = (RISE_RULES if dose > prev else FALL_RULES if dose < prev else None)
                if fits is not None and not any(rule == r or rule.startswith(r + ".") for r in fits):
                    self._flag("rule_ids", key, day, ev, name, rule,
                               f"{name} {'raised' if dose > prev else 'lowered'} from {prev:g} to {dose:g} citing {rule}")
            d = cat.get(name) if name is not None else None
            if d is None:
                continue
            if ev in ("drug_start", "dose_change"):
                self._touch("dose_finite", key)
                if dose is None or not math.isfinite(dose) or dose <= 0:
                    self._flag("dose_finite", key, day, ev, name, rule, f"{name} {ev} with dose {dose!r}")
                    dose = None
            if dose is not None and ev in DOSE_EVENTS:
                self._check_caps(key, f, d, name, dose, day, ev, rule)
            if dose is not None and ev in ("drug_start", "dose_change"):
                self._check_floor(key, t, d, name, dose, day, ev, rule)
                self._check_givable(key, d, name, dose, day, ev, rule)
            if ev in ("taper_start", "drug_stop") and d.drug_class == "weak_opioid" and name in t.active \
                    and rule in INTOLERANCE_RULES:
                t.tramadol_failed = True  # tramadol (or a bridge) not tolerated has failed (P8 gate)
            if ev in ("taper_start", "drug_stop") and dose is not None:  # P4.restart_dose, P4.taper_reversed
                if rule == OWN_STOP_RULE and st_c[k] == "relieved":
                    t.relieved_stop[name] = dose
                elif rule == TAPER_REVERSED_RULE:
                    t.reversed_stop[name] = (day, dose)
            if ev == "drug_start":
                relief = t.relieved_stop.pop(name, None)
                back = t.reversed_stop.pop(name, None)
                t.restart_from = None  # P4.restart_dose: its exact first dose is the restart_dose invariant's
                if relief is not None and rule in REOFFER_RULES:
                    if self.pol.restart_at_relief:
                        t.restart_from = relief
                    elif back is not None and abs(back[0] - day) < TOL:
                        t.restart_from = min(back[1], relief)
                self._on_start(key, f, t, d, name, day, rule, dose)
                line = Line(name, d, day, dose if dose is not None else 0.0)
                if relief is not None and rule in REOFFER_RULES:
                    line.aim = relief
                    line.restart_from = t.restart_from
                t.active[name] = line
                if rule == BRIDGE_RULE:
                    t.bridge = line
                self._check_titration(key, f, line, day, line.dose, rule, "drug_start")
            elif ev == "dose_change":
                line = t.active.get(name)
                if line is not None and dose is not None:
                    self._on_dose(key, f, line, day, dose, rule)
            elif ev == "evaluation":
                self._on_evaluation(key, f, t, d, name, day, rule, out_c[k])
            elif ev == "taper_start":
                line = t.active.get(name)
                if line is not None:
                    line.taper_day = day
                    line.taper_from = len(line.doses)
                    self._on_stop_decided(t, line, rule)
            elif ev == "drug_stop":
                self._on_stop(key, t, d, name, day, rule)
