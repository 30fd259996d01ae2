"""The course checks of the Checker: evaluations and the adequate trial (P3, P8.time_limited), failures and
relapses (P4.relapse) that open tramadol and the strong-opioid gate (P7, P8), and stops with their taper
(P5.taper_step)."""

from __future__ import annotations

import math

from ...model.catalog import Drug
from .base import CheckerBase
from .rules import (
    ANTIDEPRESSANTS,
    EPS,
    FAILED_OUTCOMES,
    FIRST_LINE,
    INTERIM_RULE,
    INTOLERANCE_RULES,
    LABEL_TAPER_MIN_DAYS,
    NO_BENEFIT_RULE,
    NO_TAPER_RULES,
    OWN_STOP_RULE,
    SAME_MOMENT,
    TAPER_REVERSED_RULE,
    TAPERED,
    TOL,
    Facts,
    judged_target,
    smallest_givable,
)
from .trajectory import Line, Trajectory


class CourseChecks(CheckerBase):
    """How a drug's course goes on: judged after an adequate trial, failed, relapsed, tapered and stopped."""

    def _on_evaluation(self, key: tuple[int, int], f: Facts, t: Trajectory, d: Drug, name: str, day: float,
                       rule: str | None, outcome: str | None) -> None:
        active = list(t.active.values())
        titrated = t.active.get(name)
        if titrated is not None and rule == INTERIM_RULE and outcome in FAILED_OUTCOMES:
            titrated.step_judged = True  # P8.titrate_to_response: the next step is asked for (DoseChecks._on_dose)
        for ln in active:
            ln.last_outcome = outcome
            if outcome == "relief":
                ln.relieved = True
        if outcome not in FAILED_OUTCOMES:
            return
        line = t.active.get(name)
        interim = (rule == INTERIM_RULE and d.titrate_to_response and line is not None
                   and line.dose < judged_target(d, f, self.pol, name) * (1 - EPS))
        if interim:  # P8.titrate_to_response: judged at a titration step, titration goes on
            return
        self._check_trial(key, f, t, d, name, day, rule)
        self._on_failure(t, active, {d.drug_class})
        if d.drug_class == "weak_opioid" and line is not None and line is not t.bridge:  # judged inadequate
            # after its trial (S004); a bridge is judged at a review while queued (Checker._replay)
            t.tramadol_failed = True
        elif any(ln.drug.drug_class == "weak_opioid" and ln is not t.bridge for ln in active):  # a regimen with
            # tramadol judged inadequate at the trial of a drug restarted with it (started last): tramadol failed too
            t.tramadol_failed = True

    def _own_stop_watch(self, key: tuple[int, int], t: Trajectory, ev: str, name: str | None, rule: str | None,
                        state: str | None, day: float) -> None:
        """P4.reoffer_own_stop, P4.relapse: the patient's own stop of a drug while relieved (a ``taper_start`` or
        ``drug_stop`` citing X.patient_stop in state ``relieved``) decides nothing by itself: no transition, drug
        start or referral follows it until a visit measures his pain (an ``evaluation`` or ``maintenance_visit``);
        a drop-out ends the watch (he left; nothing was decided), and so does a later stop of a drug for
        intolerance or for no benefit (a reason of its own for a decision)."""
        if ev in ("taper_start", "drug_stop") and rule == OWN_STOP_RULE and state == "relieved":
            self._touch("own_stop_waits_for_visit", key)
            if t.own_stop is None:
                t.own_stop = (day, name or "")
        elif t.own_stop is not None:
            if ev in ("evaluation", "maintenance_visit", "dropout") or (
                    ev in ("taper_start", "drug_stop") and (rule in INTOLERANCE_RULES or rule == NO_BENEFIT_RULE)):
                t.own_stop = None
            elif ev in ("transition", "drug_start", "referral_queued"):
                stop_day, drug = t.own_stop
                self._flag("own_stop_waits_for_visit", key, day, ev, name, rule,
                           f"{ev} citing {rule} after the patient's own stop of {drug} on day {stop_day:g} while "
                           "relieved, with no visit measuring his pain since")
                t.own_stop = None

    def _on_relapse(self, t: Trajectory) -> None:
        """P4.relapse: relief lost after it was found, confirmed at a maintenance visit; the regimen is then
        decided on as after an evaluation with that visit's outcome (a failure of the drugs taken). No
        adequate-trial condition: the drugs already had their trial when they gave relief."""
        outcome = t.visit_outcome
        active = list(t.active.values())
        for ln in active:
            ln.last_outcome = outcome
        if outcome in FAILED_OUTCOMES:
            self._on_failure(t, active, {ln.drug.drug_class for ln in active})
            if any(ln.drug.drug_class == "weak_opioid" for ln in active):  # relief lost on tramadol (S004)
                t.tramadol_failed = True

    def _on_failure(self, t: Trajectory, active: list[Line], judged: set[str]) -> None:
        """A failed judgement of the regimen ``active``; ``judged``: the classes judged (the newest drug at
        an evaluation, every drug taken at a relapse)."""
        for ln in active:
            ln.failed = True
        classes = {ln.drug.drug_class for ln in active}
        if any(c in FIRST_LINE or c == "topical" for c in judged):
            t.first_line_failure = True
        if "gabapentinoid" in classes and any(c in classes for c in ANTIDEPRESSANTS):
            t.combination_failed = True

    def _on_stop_decided(self, t: Trajectory, line: Line, rule: str | None) -> None:
        line.stop_rule = rule or ""
        cls = line.drug.drug_class
        # P7 "documented failure": not tolerated (a failed evaluation counts in _on_failure); the patient's own
        # stop or a drop-out documents none
        if rule in INTOLERANCE_RULES and (cls in FIRST_LINE or cls == "topical"):
            t.first_line_failure = True

    def _on_stop(self, key: tuple[int, int], t: Trajectory, d: Drug, name: str, day: float,
                 rule: str | None) -> None:
        line = t.active.pop(name, None)
        if line is None:
            return
        t.ended.append(line)
        if line.taper_day is None:
            self._on_stop_decided(t, line, rule)
        if d.drug_class not in TAPERED or rule in NO_TAPER_RULES:
            return
        self._touch("taper", key)
        self._check_taper(key, line, d, name, day, rule)

    def _check_taper(self, key: tuple[int, int], line: Line, d: Drug, name: str, day: float,
                     rule: str | None) -> None:
        """P5.taper_step, P5.taper_short_use, P5.taper_smallest_dose, from the data and the labels.

        A course shorter than ``taper.after_days`` stops at once; a longer one is tapered unless it already is at
        the smallest marketed dose; each taper step is lower than the one before, never below the smallest
        marketed dose, none after the step that reached it, each held ``taper.interval_days``; a gabapentinoid
        taper lasts at least a week (the oracle's :data:`~.rules.LABEL_TAPER_MIN_DAYS`)."""
        taper = d.taper
        if taper is None:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} is a {d.drug_class}, which is tapered, but drugs.yaml gives it no taper schedule")
            return
        decided = line.taper_day if line.taper_day is not None else day
        taken = decided - line.start
        if taken < taper.after_days - TOL:
            if line.taper_day is not None:
                self._flag("taper", key, day, "drug_stop", name, rule,
                           f"{name} tapered after {taken:g} days; a course under {taper.after_days} days stops at "
                           "once (taper.after_days)")
            return
        floor = smallest_givable(d)
        if line.taper_day is None:
            if taken < taper.after_days + TOL:  # within the log's rounding of the threshold: either reading holds
                return
            if line.dose > floor * (1 + EPS):
                self._flag("taper", key, day, "drug_stop", name, rule,
                           f"{name} stopped at {line.dose:g} {d.unit} after {taken:g} days without a taper")
            return
        steps = line.doses[line.taper_from:]
        if not steps:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} stopped at {line.dose:g} {d.unit} without a taper (no lowered dose before the stop)")
            return
        prev, prev_day = line.doses[line.taper_from - 1][1], line.taper_day
        for k, (sday, sdose) in enumerate(steps):
            if sdose >= prev * (1 - EPS):
                self._flag("taper", key, sday, "dose_change", name, "P5.taper_step",
                           f"{name} taper step {sdose:g} {d.unit} is not below the dose before it ({prev:g})")
            if sdose < floor * (1 - EPS):
                self._flag("taper", key, sday, "dose_change", name, "P5.taper_step",
                           f"{name} taper step {sdose:g} {d.unit} below its smallest marketed dose {floor:g}")
            if k > 0 and prev <= floor * (1 + EPS):
                self._flag("taper", key, sday, "dose_change", name, "P5.taper_step",
                           f"{name} taper goes on after reaching its smallest marketed dose {floor:g}")
            if k > 0 and sday - prev_day < taper.interval_days - TOL:
                self._flag("taper", key, sday, "dose_change", name, "P5.taper_step",
                           f"{name} taper step after {sday - prev_day:g} days, faster than its interval "
                           f"({taper.interval_days} days)")
            prev, prev_day = sdose, sday
        if rule == TAPER_REVERSED_RULE:  # stopped at the step he is on: the drug goes back up (P4.taper_reversed)
            return
        if day - prev_day < taper.interval_days - TOL:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} stopped {day - prev_day:g} days after its last taper step, faster than its interval "
                       f"({taper.interval_days} days)")
        label = LABEL_TAPER_MIN_DAYS.get(d.drug_class)
        if label is not None and day - line.taper_day < label - TOL:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} tapered over {day - line.taper_day:g} days; its label asks for at least {label:g}")

    def _check_trial(self, key: tuple[int, int], f: Facts, t: Trajectory, d: Drug, name: str, day: float,
                     rule: str | None) -> None:
        """P3 (S000 "ensure target doses are reached before switching"; S002, S004), P8.time_limited: a failed
        judgement of drug ``name`` on ``day`` comes after its adequate trial, and after that of every other oral drug
        started at the same moment and still taken (not tapering): a regimen restarted together
        (P4.reoffer_own_stop) is judged once each of its drugs has had its own trial, whichever the evaluation row
        names (the newest). A topical is not waited for (it has its own trial, P6.topical_add)."""
        self._touch("adequate_trial", key)
        line = t.active.get(name)
        if line is None:
            self._flag("adequate_trial", key, day, "evaluation", name, rule, f"{name} judged while not running")
            return
        self._check_line_trial(key, f, line, day, rule, "")
        for other in t.active.values():
            if (other is not line and other.taper_day is None and other.drug.drug_class != "topical"
                    and abs(other.start - line.start) <= SAME_MOMENT):
                self._check_line_trial(key, f, other, day, rule,
                                       f" (started together with {name} on day {line.start:g}, judged with it)")

    def _trial_due(self, f: Facts, line: Line) -> tuple[float, float | None, float]:
        """P3: the adequate trial of a running ``line``: ``(target, since, due)``: the dose it is judged at (its
        judged target, or the highest tolerated dose, or a restart's relieving dose, P4.restart_dose), the day its
        latest run of doses at or above that target began (None: it is below it now) and the day the trial is
        complete (``since`` + ``adequate_trial_days``, at least ``min_trial_days`` from the start; a strong opioid by
        the end of its time-limited trial, policy ``strong_opioid.max_trial_days``, P8.time_limited, S004)."""
        d = line.drug
        need = min(judged_target(d, f, self.pol, line.name), line.ceiling, line.aim)
        if line.dose < need * (1 - EPS):
            return need, None, math.inf
        since: float | None = None  # the start of the latest run of doses at or above the target
        for dd, dose in line.doses:
            if dose < need * (1 - EPS):
                since = None
            elif since is None:
                since = dd
        since = line.doses[-1][0] if since is None else since
        due = max(since + d.adequate_trial_days, line.start + d.min_trial_days)
        limit = self.pol.strong_opioid_trial_days
        if d.drug_class == "strong_opioid" and limit is not None:  # P8.time_limited (S004): judged by its end
            due = min(due, line.start + float(limit))
        return need, since, due

    def _check_line_trial(self, key: tuple[int, int], f: Facts, line: Line, day: float, rule: str | None,
                          together: str) -> None:
        """One running ``line`` judged failed on ``day`` must be at its target and past its adequate trial
        (:meth:`_trial_due`). ``together``: said in the detail when the line is not the drug the evaluation row
        names."""
        d, name = line.drug, line.name
        need, since, due = self._trial_due(f, line)
        if since is None:
            self._flag("adequate_trial", key, day, "evaluation", name, rule,
                       f"{name} judged failed at {line.dose:g} {d.unit}, below its target {need:g}{together}")
            return
        if day < due - TOL:
            self._flag("adequate_trial", key, day, "evaluation", name, rule,
                       f"{name} judged failed on day {day:g}, before the adequate trial ends on day {due:g} "
                       f"(at {need:g} {d.unit} since day {since:g} + {d.adequate_trial_days} d, "
                       f"min {d.min_trial_days} d from the start){together}")
