"""The course checks of the Checker: evaluations and the adequate trial (P3, P8.time_limited), failures and
relapses (P4.relapse) that open tramadol and the strong-opioid gate (P7, P8), and stops with their taper
(P5.taper_step)."""

from __future__ import annotations

from ...model.catalog import Drug
from .base import CheckerBase
from .rules import (
    ANTIDEPRESSANTS,
    EPS,
    FAILED_OUTCOMES,
    FIRST_LINE,
    INTERIM_RULE,
    INTOLERANCE_RULES,
    NO_TAPER_RULES,
    TAPERED,
    TOL,
    Facts,
    judged_target,
)
from .trajectory import Line, Trajectory


class CourseChecks(CheckerBase):
    """How a drug's course goes on: judged after an adequate trial, failed, relapsed, tapered and stopped."""

    def _on_evaluation(self, key: tuple[int, int], f: Facts, t: Trajectory, d: Drug, name: str, day: float,
                       rule: str | None, outcome: str | None) -> None:
        active = list(t.active.values())
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
        if line.taper_day is None or not line.tapered:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} stopped at {line.dose:g} {d.unit} without a taper (no lowered dose before the stop)")
            return
        need = len(d.taper.steps) * d.taper.interval_days if d.taper is not None else 0
        if day - line.taper_day < need - TOL:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} tapered over {day - line.taper_day:g} days, faster than its schedule ({need} days)")

    def _check_trial(self, key: tuple[int, int], f: Facts, t: Trajectory, d: Drug, name: str, day: float,
                     rule: str | None) -> None:
        self._touch("adequate_trial", key)
        line = t.active.get(name)
        if line is None:
            self._flag("adequate_trial", key, day, "evaluation", name, rule, f"{name} judged while not running")
            return
        need = min(judged_target(d, f, self.pol, name), line.ceiling)
        if line.dose < need * (1 - EPS):
            self._flag("adequate_trial", key, day, "evaluation", name, rule,
                       f"{name} judged failed at {line.dose:g} {d.unit}, below its target {need:g}")
            return
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
        if day < due - TOL:
            self._flag("adequate_trial", key, day, "evaluation", name, rule,
                       f"{name} judged failed on day {day:g}, before the adequate trial ends on day {due:g} "
                       f"(at {need:g} {d.unit} since day {since:g} + {d.adequate_trial_days} d, "
                       f"min {d.min_trial_days} d from the start)")
