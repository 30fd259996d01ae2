"""The dose checks of the Checker: caps (P2.max_dose_cap, P5.tca_cardiac_cap), the smallest marketed dose
(P2.min_dose), doses marketed units can give (P2.givable_dose), the titration schedule and pace (P13) with the renal scaling (P5.renal_dose), the smallest
effective strong-opioid dose (P8.titrate_to_response) and reductions for intolerance (P4.intolerance_reduce)."""

from __future__ import annotations

import math

from ...model.catalog import Drug
from .base import CheckerBase
from .rules import (
    CARDIAC_DISEASE,
    EPS,
    NAMED_DOSE_EVENTS,
    RENAL_IMPAIRMENT_BELOW,
    STRONG_OPIOID_RENAL,
    TCA_OLDER_CARDIAC_BELOW,
    TOL,
    UNDOSED_EVENTS,
    VISIT_EVENTS,
    Facts,
    earliest_offset,
    fastest_dose,
    givable,
    is_older,
    label_renal_max,
    legal_start,
    lowest_dose,
    max_allowed,
    renal_factor,
)
from .trajectory import Line, Trajectory


class DoseChecks(CheckerBase):
    """Every dose against the catalogue's caps, floors and schedules, re-derived by :mod:`.rules`."""

    def _check_recorded(self, key: tuple[int, int], ev: str | None, name: str | None, dose: float | None,
                        day: float, rule: str | None) -> None:
        """``dose_recorded``: a row that names a dose besides the doses given (a stop, a taper start, a limit, an
        adverse event, an evaluation, a visit on a drug) carries a finite one above 0; a kind outside the
        catalogues of rules.py is flagged (a new event kind must say whether it carries a dose)."""
        if dose is not None and math.isnan(dose):
            dose = None  # the log's empty dose
        if ev in ("drug_start", "dose_change") or (ev in UNDOSED_EVENTS and dose is None):
            return  # the doses given: dose_finite
        self._touch("dose_recorded", key)
        if ev in NAMED_DOSE_EVENTS or (ev in VISIT_EVENTS and name is not None):
            if dose is None or math.isinf(dose) or dose <= 0:
                self._flag("dose_recorded", key, day, str(ev), name, rule, f"{name} {ev} with dose {dose!r}")
        elif ev in UNDOSED_EVENTS or ev in VISIT_EVENTS:
            if dose is not None:
                self._flag("dose_recorded", key, day, str(ev), name, rule,
                           f"{ev} row with dose {dose!r} (its kind carries no dose)" if ev in UNDOSED_EVENTS
                           else f"{ev} row with dose {dose!r} but no drug")
        else:
            self._flag("dose_recorded", key, day, str(ev), name, rule,
                       f"event kind {ev!r} is in no catalogue of rules.py (with or without a dose)")

    def _check_caps(self, key: tuple[int, int], f: Facts, d: Drug, name: str, dose: float, day: float,
                    ev: str, rule: str | None) -> None:
        self._touch("max_dose", key)
        cap = min(max_allowed(d, f), label_renal_max(name, f))
        if dose > cap * (1 + EPS):
            self._flag("max_dose", key, day, ev, name, rule,
                       f"{name} {dose:g} {d.unit} above the adjusted maximum {cap:g} "
                       f"(age {f.age:.0f}, CrCl {f.crcl:.0f})")
        if d.drug_class == "tca" and (is_older(d, f) or any(c in f.flags for c in CARDIAC_DISEASE)):
            self._touch("tca_older_cardiac", key)
            if dose >= TCA_OLDER_CARDIAC_BELOW:
                why = f"age {f.age:.0f}" if is_older(d, f) else "cardiac disease"
                self._flag("tca_older_cardiac", key, day, ev, name, rule,
                           f"{name} {dose:g} mg/day with {why}; must stay below {TCA_OLDER_CARDIAC_BELOW:g}")

    def _check_floor(self, key: tuple[int, int], t: Trajectory, d: Drug, name: str, dose: float, day: float,
                     ev: str, rule: str | None) -> None:
        """P2.min_dose: a treating dose (not a taper step) is at least the drug's smallest marketed dose."""
        line = t.active.get(name)
        if rule == "P5.taper_step" or (ev == "dose_change" and line is not None and line.taper_day is not None):
            return
        floor = lowest_dose(name, d)
        if floor <= 0:
            return
        self._touch("min_dose", key)
        if dose < floor * (1 - EPS):
            self._flag("min_dose", key, day, ev, name, rule,
                       f"{name} {dose:g} {d.unit}, below its smallest marketed daily dose {floor:g}")

    def _check_givable(self, key: tuple[int, int], d: Drug, name: str, dose: float, day: float, ev: str,
                       rule: str | None) -> None:
        """P2.givable_dose: every start, titration, optimisation, reduction and taper dose is a sum of whole units
        of the drug's marketed strengths (drugs.yaml ``strengths``, ``units_per_day``; :func:`.rules.givable`)."""
        self._touch("givable_dose", key)
        if not givable(d, dose):
            self._flag("givable_dose", key, day, ev, name, rule,
                       f"{name} {dose:g} {d.unit} cannot be given with the marketed strengths "
                       f"{', '.join(f'{s:g}' for s in d.strengths)} (at most {d.units_per_day} units a day)")

    def _check_titration(self, key: tuple[int, int], f: Facts, line: Line, day: float, dose: float,
                         rule: str | None, event: str) -> bool:
        """P13 from the start of the line, and P5.renal_dose; True when the titration was too fast."""
        d = line.drug
        offset = day - line.start
        # a restart's first dose (P4.restart_dose), as given: in normal-clearance terms like the schedule's
        start = line.restart_from / renal_factor(d, f) if line.restart_from is not None else \
            legal_start(line.name, d, self.pol.start_doses.get(line.name))
        allowed = fastest_dose(d, f, offset, start)
        self._touch("titration_schedule", key)
        fast = dose > allowed * (1 + EPS)
        if fast:
            when = "at the start" if event == "drug_start" else f"on day {offset:g} of the line"
            reach = earliest_offset(d, f, dose)
            sched = "never" if math.isinf(reach) else f"not before day {reach:g}"
            self._flag("titration_schedule", key, day, event, line.name, rule,
                       f"{line.name} {dose:g} {d.unit} {when}; the schedule allows {allowed:g} "
                       f"(reaches {dose:g} {sched})")
        if d.drug_class == "gabapentinoid" and f.crcl < RENAL_IMPAIRMENT_BELOW:
            self._touch("renal_dose", key)
            factor = renal_factor(d, f)
            limit = max(allowed * factor, lowest_dose(line.name, d))  # P2.min_dose: a floor, not a rise
            if factor >= 1.0:
                self._flag("renal_dose", key, day, event, line.name, rule,
                           f"{line.name} at CrCl {f.crcl:.0f} with no renal reduction in the data")
            elif dose > limit * (1 + EPS):
                self._flag("renal_dose", key, day, event, line.name, rule,
                           f"{line.name} {dose:g} {d.unit} on day {offset:g} of the line at CrCl {f.crcl:.0f}: "
                           f"the band scales the whole schedule by {factor:g}, allowing {limit:g}")
        below, share = STRONG_OPIOID_RENAL
        if d.drug_class == "strong_opioid" and f.crcl < below:
            self._touch("strong_opioid_renal", key)
            limit = max(allowed * share, lowest_dose(line.name, d))
            if dose > limit * (1 + EPS):
                self._flag("strong_opioid_renal", key, day, event, line.name, rule,
                           f"{line.name} {dose:g} {d.unit} on day {offset:g} of the line at CrCl {f.crcl:.0f}: below "
                           f"CrCl {below:g} at most {share:g} x the normal-clearance schedule, {limit:g}")
        return fast

    def _check_pace(self, key: tuple[int, int], f: Facts, line: Line, day: float, prev: float, dose: float,
                    rule: str | None) -> None:
        """P13: one increase takes at least as long as the schedule takes between the two doses (in
        normal-clearance terms), so dose optimisation after a trial goes no faster than titration."""
        d = line.drug
        factor = renal_factor(d, f)
        need = earliest_offset(d, f, dose / factor) - earliest_offset(d, f, prev / factor)
        gap = day - line.level_day
        if math.isfinite(need) and gap < need - TOL:
            self._flag("titration_schedule", key, day, "dose_change", line.name, rule,
                       f"{line.name} raised from {prev:g} to {dose:g} {d.unit} after {gap:g} days; the schedule "
                       f"takes {need:g} days between them")

    def _on_dose(self, key: tuple[int, int], f: Facts, line: Line, day: float, dose: float,
                 rule: str | None) -> None:
        prev, since = line.dose, line.level_day
        line.doses.append((day, dose))
        if dose > prev * (1 + EPS):
            if not self._check_titration(key, f, line, day, dose, rule, "dose_change"):
                self._check_pace(key, f, line, day, prev, dose, rule)
            line.level_day = day
            if line.drug.drug_class == "strong_opioid":
                self._touch("opioid_smallest_dose", key)
                if line.relieved:
                    self._flag("opioid_smallest_dose", key, day, "dose_change", line.name, rule,
                               f"{line.name} raised to {dose:g} {line.drug.unit} after it had given relief")
                # S000, S004 "smallest effective dose": each rise answers an evaluation of the response on this
                # drug since the last dose level (P8.titrate_to_response, outcome not relief); held by the oracle
                # for every strong opioid, whatever drugs.yaml's titrate_to_response says
                self._touch("opioid_titrated_to_response", key)
                if not line.step_judged:
                    self._flag("opioid_titrated_to_response", key, day, "dose_change", line.name, rule,
                               f"{line.name} raised from {prev:g} to {dose:g} {line.drug.unit} with no evaluation of "
                               f"its response (P8.titrate_to_response, no relief) since day {since:g}")
                line.step_judged = False
            line.peak = max(line.peak, dose)
            line.tapered = False
        elif dose < prev * (1 - EPS):
            if line.taper_day is None and rule is not None and rule.startswith("P4.intolerance"):
                line.ceiling = dose  # the highest tolerated dose (P3: TCAs "at the highest tolerated dosage")
                self._touch("intolerance_reduction", key)
                floor = (line.drug.min_effective_dose or 0.0) * renal_factor(line.drug, f)
                if dose < floor * (1 - EPS):
                    self._flag("intolerance_reduction", key, day, "dose_change", line.name, rule,
                               f"{line.name} lowered to {dose:g} {line.drug.unit}, below its lowest effective dose "
                               f"{floor:g}: it should have been stopped")
            else:
                line.tapered = True
