"""Drug lines: one drug being taken, its titration schedule, starting it, re-dosing it and finding what comes next.

Owns :class:`Line` (a drug's dose steps, target, maximum and pending adverse events) and :class:`Dosing`, the
mixin of :class:`simulator.engine.simulation.Simulation` that plans a drug's schedule (P2, from
:func:`simulator.model.safety.plan`), starts it with its safety checks (P5) and potential adverse events,
adds a topical alongside (P6), optimises (P3) or adjusts doses, logs the titration steps reached, and finds a
regimen's next event. A mixin keeps the hot path's ``self._log_doses(...)``, ``self._next_event(...)`` plain
method calls on the one simulation object (no delegate object, no extra attribute hop per event).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import replace
from functools import cached_property

import numpy as np

from ..model import streams
from ..model.care import stop_day
from ..model.catalog import FIRST_LINE_CLASSES
from ..model.clinical_tables import interp
from ..model.patient import PatientModel
from ..model.policy_context import Decision
from ..model.response import onset_days
from ..model.safety import Plan, contraindication, plan, required_checks, to_givable
from .events import CHECKS, E_CHECK, E_DOSE, E_EXCLUDE, E_LIMIT, E_START


class Line:
    """One drug being taken: its schedule and pending adverse events."""

    __slots__ = ("drug", "start", "steps", "target", "maximum", "factor", "inc", "interval", "next_step", "aes",
                 "target_day", "reduced", "optimised", "opt_from", "topical_addon", "seen", "to_response", "stop_at",
                 "next_apply", "n_applied", "terms", "held", "last_day", "last_dose", "due")

    def __init__(self, drug: int, start: float, plan: Plan, topical_addon: bool = False,
                 to_response: bool = False) -> None:
        self.drug = drug
        self.start = start
        steps = plan.steps
        target = self.target = plan.target
        self.maximum = plan.maximum
        self.factor = plan.factor  # renal exposure: a dose x acts like x / factor (P5.renal_dose)
        self.inc = plan.increment
        self.interval = plan.interval
        self.set_steps(steps, 1)
        self.aes: list[tuple[float, int, float, int]] = []  # (day, ae type code, inc uniform, serious index)
        target_off = steps[-1][0]
        for off, d in steps:  # the first step at the target dose (a loop: no generator per drug start)
            if d >= target:
                target_off = off
                break
        self.target_day = start + target_off
        self.reduced = False
        self.optimised = False
        self.opt_from = 1 << 30  # index of the first P3.dose_optimisation step
        self.topical_addon = topical_addon
        self.seen = 0  # bit k: adverse-event type k of the drug is scheduled or has occurred
        self.to_response = to_response
        self.stop_at = math.inf  # day the patient stops it for reasons other than adverse events (issue 10)
        self.next_apply = math.inf  # day of the next application (capsaicin 8%, P6.capsaicin_reapply)
        self.n_applied = 1
        self.terms: tuple | None = None  # (dose, *response.effect_terms at that dose), kept by Evaluation._pain
        self.held: tuple = ()  # P8.titrate_to_response: steps given only once an evaluation asks (Evaluation._trial)

    def set_steps(self, steps: tuple[tuple[float, float], ...], next_step: int) -> None:
        """Set the schedule (``(day offset, dose)`` steps), the index of its first step not logged yet (and its
        day, ``due``), and the last step's day and dose, :meth:`dose_at`'s common answer. Every change of ``steps``
        goes through here."""
        self.steps = steps
        self.next_step = next_step
        # the day of the first step not logged yet: Dosing._log_doses's test at each wake-up (inf: none left)
        self.due = self.start + steps[next_step][0] if next_step < len(steps) else math.inf
        last_off, self.last_dose = steps[-1]  # the schedule's last step, its day: dose_at's common answer
        self.last_day = self.start + last_off

    def dose_at(self, day: float) -> float:
        if self.last_day <= day + 1e-9:  # steps are in day order: past the last, its dose (most calls)
            return self.last_dose
        dose = self.steps[0][1]
        for off, d in self.steps:
            if self.start + off <= day + 1e-9:
                dose = d
            else:
                break
        return dose



_CHECK_CODE = {check: k for k, check in enumerate(CHECKS)}  # a check's code in the log (CHECKS.index, looked up once)

# Checks a declared departure skips (teaching: the trainee meets the consequence of skipping them).
_NO_SKIP: frozenset[str] = frozenset()
SKIPPED_CHECKS: dict[str, frozenset[str]] = {"no_serotonin_check": frozenset({"serotonin_check"}),
                                             "no_misuse_screen": frozenset({"misuse_screen", "treatment_agreement"})}


class Dosing:
    """Mixin: planning, starting and re-dosing drug lines, and the next event of a running regimen."""

    @cached_property
    def _caution_flags(self) -> tuple[frozenset[str], ...]:
        """Per drug, the patient flags its plan depends on (its catalogue cautions, :func:`~simulator.model.safety.plan`)."""
        return tuple(frozenset(c[0] for c in x.cautions) for x in self.extras)

    def _plan(self, p: PatientModel, j: int, goal: float | None) -> Plan:
        d = self.tables.drugs[j]
        f = p.facts
        start = self.ctx.start_doses.get(j)
        # The renal exposure factor and caps depend on CrCl only through how many of the drug's CrCl thresholds
        # it is below (the thresholds, ascending: Simulation.renal_bands).
        bands = self.renal_bands[j]
        # ... and on the flags only through the drug's cautions (few keys: the cache fills within small runs too).
        key = (j, f.age >= d.older_min_age, len(bands) - bisect_right(bands, f.crcl), f.flags & self._caution_flags[j],
               goal, start)
        cached = self._plan_cache.get(key)
        if cached is None:  # few distinct combinations: compute each once
            cached = self._plan_cache[key] = plan(d, f, self.ctx.policy.titration_speed, goal, start)
        return cached

    def _start_drug(self, p: PatientModel, j: int, now: float, rule: str, adv: np.ndarray,
                    lines: list[Line], target: float = 0.0, topical_addon: bool = False,
                    departure: str = "") -> Line:
        t = self.tables
        d = t.drugs[j]
        i = p.idx
        serotonergic_with = tramadol_with = False
        if d.serotonergic:  # only a serotonergic drug's checks and serious events look at what else is taken
            # Drugs taken or tapering: a taper that ends this very day still counts (the oracle orders same-day
            # stops after starts).
            sero, weak = self.serotonergic, self.weak_opioid
            serotonergic_with = "ssri_use" in p.facts.flags
            for ln in lines:
                serotonergic_with = serotonergic_with or sero[ln.drug]
                tramadol_with = tramadol_with or weak[ln.drug]
            for k, end in p.tapering:
                if end >= now - 1e-9:
                    serotonergic_with = serotonergic_with or sero[k]
                    tramadol_with = tramadol_with or weak[k]
        if d.safety_checks:  # (most starts need no check)
            skipped = SKIPPED_CHECKS.get(departure, _NO_SKIP)
            for check, check_rule in required_checks(d, p.facts, serotonergic_with, tramadol_with):
                if check in skipped:
                    continue
                self._log(i, now, E_CHECK, p.state, drug=j, detail=_CHECK_CODE[check], rule=check_rule)
        goal = target if target > 0 else self.ctx.target_doses.get(j)
        pl = self._plan(p, j, goal)
        relief = 0.0  # P4.restart_dose: the dose that relieved him, when this start restarts it after his own stop
        if p.relief_dose:
            stopped = p.relief_dose.pop(j, None)  # any start of the drug uses up its own stop's dose
            if stopped is not None and p.restarts_own_stop(j, rule):
                relief, back = stopped
                pl = self._restart_plan(p, j, pl, relief, back)
        persist = self.persist  # .item(row, column): no numpy row view per drug start
        nd = len(t.drugs)
        if self.under[j] > 0 and persist.item(i, 2 + nd + j) < self.under[j]:  # usual care: X.under_titration
            pl = self._plan(p, j, pl.steps[0][1] / pl.factor)  # stays at its first dose
        line = Line(j, now, pl, topical_addon, self.extras[j].to_response)
        line.stop_at = stop_day(now, self.non_ae_stop[j], self.early_stop_mult, self.early_days, persist.item(i, 2 + j))
        if self.extras[j].reapply > 0:
            line.next_apply = now + self.extras[j].reapply
        restart = j in p.reopen_first  # a working regimen restarted: not a new first-line regimen (P4)
        if j in p.reopen:  # P4.reoffer_own_stop: the one re-offer after the patient's own stop (its start cites it)
            rule = "P4.reoffer_own_stop"
            p.reopen = p.reopen - {j}
            p.reopen_first = p.reopen_first - {j}
            p.reoffered = p.reoffered | {j}
        p.tried.add(j)
        cls = d.drug_class
        if cls in FIRST_LINE_CLASSES and not restart:
            p.n_first_line += 1
        elif cls == "weak_opioid" and rule != "P9.tramadol_bridge":  # a bridge counts once judged (_judge_bridge)
            if p.tramadol_tried:  # P7.tramadol_reoffer: started again after the patient's own stop
                p.tramadol_reoffered = True
            p.tramadol_tried = True
        elif cls == "strong_opioid":
            p.strong_tried = True
            p.assessed = now  # its start is the trial's first documented assessment (P8)
        elif cls == "topical":
            p.topical_tried = True
        self._log(i, now, E_START, p.state, j, pl.steps[0][1], -1.0, -1.0, rule)  # positional (see _log)
        for lim_rule, lim_dose in pl.limits:
            self._log(i, now, E_LIMIT, p.state, j, lim_dose, -1.0, -1.0, lim_rule)  # positional (see _log)
        if relief > 0:  # what the restart aims at and why (policy restart_dose)
            self._log(i, now, E_LIMIT, p.state, drug=j, dose=relief, rule="P4.restart_dose")
        # Potential adverse events of this exposure, from the patient's fixed draws for this drug; incidence
        # follows exposure (dose / renal factor).
        for k, slot in enumerate(d.ae_slots):
            u_inc = adv.item(2 * slot)  # .item: the float32 draw as a Python float (exact), no numpy scalar
            if u_inc >= d.ae_max_incidence[k]:  # cannot occur at any dose: skip the onset draw
                continue
            day = now + onset_days(d.ae_onset_median, adv.item(2 * slot + 1))
            if u_inc < interp(d.ae_incidence[k], line.dose_at(day) / line.factor):
                line.aes.append((day, d.ae_types[k], u_inc, -1))
                line.seen |= 1 << k
        self._serious_events(p, d, line, adv, serotonergic_with)
        line.aes.sort()
        if line.to_response:  # P8.titrate_to_response: no step without its evaluation, wherever the line runs on
            line.held = line.steps[1:]
            line.set_steps(line.steps[:1], line.next_step)
        return line

    def _restart_plan(self, p: PatientModel, j: int, pl: Plan, relief: float, taper_dose: float) -> Plan:
        """P4.restart_dose: the schedule of drug ``j`` restarted after the patient's own stop, aiming at ``relief``
        (the daily dose he was on when he stopped it while relieved, as given): policy ``restart_dose``
        'retitrate' climbs by the usual schedule from ``pl``'s first dose, or from ``taper_dose`` (> 0: the taper
        step he is on, P4.taper_reversed), up to ``relief``; 'relieving_dose' starts at ``relief``. Assumption
        (the seeds are silent on restarts; policy.py names its source). ``pl``: the drug's usual plan for him."""
        if self.ctx.policy.restart_dose == "relieving_dose":
            first = relief
        elif taper_dose > 0:
            first = min(taper_dose, relief)
        else:
            return self._plan(p, j, relief / pl.factor)
        new = plan(self.tables.drugs[j], p.facts, self.ctx.policy.titration_speed, relief / pl.factor, first / pl.factor)
        return replace(new, limits=tuple(lim for lim in new.limits if lim[0] != "P2.start_dose_policy"))

    def _add_alongside(self, p: PatientModel, decision: Decision, lines: list[Line], now: float, adv: np.ndarray,
                       at: int) -> None:
        """P6.topical_add (S004, any stage): the decision's topicals start at the same visit as its own step,
        placed before that step's drug in ``lines`` so the trial is still judged on the oral step."""
        for j in decision.also:
            why = contraindication(self.tables.drugs[j], p.facts)
            if why is not None:
                self._log(p.idx, now, E_EXCLUDE, p.state, drug=j, rule=why)
                continue
            lines.insert(at, self._start_drug(p, j, now, "P6.topical_add", adv, lines, 0.0, True, decision.departure))
            at += 1
        if decision.also:
            p.active = [ln.drug for ln in lines]

    def _optimise(self, p: PatientModel, line: Line, now: float, adv: np.ndarray) -> None:
        """P3.dose_optimisation: raise the dose by the schedule's increment per interval up to the maximum.

        Each raise is at most one increment per interval above the dose given before it (P13: optimisation is
        no faster than titration); a step that marketed units cannot give waits for the next interval, so the
        increments of the waiting intervals add up, and the count starts again from the dose given."""
        d = self.tables.drugs[line.drug]
        cur = line.dose_at(now)
        reached = line.steps[:line.next_step]
        off = now - line.start
        dose = raw = cur
        new: list[tuple[float, float]] = []
        givable = self.extras[line.drug].givable
        while raw < line.maximum - 1e-9:
            raw = min(raw + line.inc, line.maximum)
            g = to_givable(raw, givable)  # P2.givable_dose: a step marketed units cannot give waits for the next
            if g > dose + 1e-9:
                dose = raw = g  # the next increment counts from the dose given, not from the unrounded step
                new.append((round(off, 3), dose))
            off += line.interval
        if not new:  # no givable dose between the current one and the maximum
            line.optimised = True
            return
        line.opt_from = len(reached)
        line.set_steps(reached + tuple(new), len(reached))
        line.held = ()  # a dose raised by decision (the tutor's) replaces what titration to response still held
        line.target = line.maximum
        line.target_day = line.start + new[-1][0]
        line.optimised = True
        self._log_doses(p.idx, p, [line], now)
        # Adverse events that the higher exposure makes possible (same draws: more events at higher dose).
        for k, slot in enumerate(d.ae_slots):
            if line.seen & (1 << k):
                continue
            u_inc = adv.item(2 * slot)  # the float32 draw as a Python float (exact)
            if u_inc < interp(d.ae_incidence[k], line.maximum / line.factor):
                day = line.start + onset_days(d.ae_onset_median, adv.item(2 * slot + 1))
                if day <= now:
                    day = now + onset_days(d.ae_onset_median, adv.item(2 * slot + 1))
                line.aes.append((day, d.ae_types[k], u_inc, -1))
                line.seen |= 1 << k
        line.aes.sort()

    def _adjust(self, p: PatientModel, lines: list[Line], now: float, decision: Decision, adv: np.ndarray) -> None:
        """Re-dose running drugs (tutor: raise, lower, taper off one drug); same draws, so same luck.

        A higher dose is dose optimisation (:meth:`_optimise`, up to the patient's maximum); a lower dose
        applies at once, like a dose reduction for a side effect; 0 stops the drug (tapered when its
        catalogue entry has a taper)."""
        t = self.tables
        for j, dose in decision.adjust:
            line = next((ln for ln in lines if ln.drug == j), None)
            if line is None:
                continue
            if dose <= 0:
                self._stop_line(p, line, now, decision.rule)
                lines.remove(line)
                continue
            if dose > line.dose_at(now) + 1e-9:
                self._optimise(p, line, now, adv)
                continue
            d = t.drugs[j]
            dose = to_givable(dose, self.extras[j].givable)  # P2.givable_dose
            kept = tuple(s for s in line.steps[:line.next_step] if s[1] <= dose + 1e-9)
            if not kept or abs(kept[-1][1] - dose) > 1e-9:
                kept += ((round(now - line.start, 3), dose),)
            line.set_steps(kept, len(kept))
            line.target = dose
            line.reduced = True
            self._log(p.idx, now, E_DOSE, p.state, drug=j, dose=dose, rule=decision.rule)
            low = dose / line.factor
            line.aes = [a for a in line.aes if a[3] >= 0 or a[2] < interp(d.ae_incidence[d.ae_types.index(a[1])], low)]
        p.active = [ln.drug for ln in lines]

    def _next_event(self, lines: list[Line], eval_day: float, ltfu_day: float):
        """The first of: the evaluation, loss to follow-up, a line's next adverse event or its stop (ties: in
        that order): ``(day, kind, line, adverse event)``."""
        day, kind, line, ae = eval_day, "eval", None, None
        if ltfu_day < day:
            day, kind = ltfu_day, "dropout"
        for ln in lines:
            aes = ln.aes
            if aes and aes[0][0] < day:
                ae = aes[0]
                day, kind, line = ae[0], "ae", ln
            if ln.stop_at < day:
                day, kind, line, ae = ln.stop_at, "stop", ln, None
            if ln.next_apply < day:
                day, kind, line, ae = ln.next_apply, "apply", ln, None
        return day, kind, line, ae

    def _reapply(self, p: PatientModel, line: Line, now: float) -> bool:
        """P6.capsaicin_reapply: the application is repeated when the last one's effect wanes (drugs.yaml
        ``reapply_days``; S002 "effect lasting up to 90 days", S004 "up to 12 weeks") while the patient continues
        the drug, logged on its due day (a process waiting for a taper wakes later) as a dose change at the same
        dose; its application-site adverse events are drawn again for this application (keyed draws: application
        number and adverse-event slot).

        Only a patch that has shown benefit is applied again (P6.capsaicin_no_benefit, an assumption): the
        patient's most recent evaluation or visit on a day after the patch's start, up to its due day, found
        relief or a partial response. Otherwise (no response, or no evaluation since the start) the patch stops
        on its due day, as the last application wears off: ``drug_stop`` citing P6.capsaicin_no_benefit, and
        False is returned (the caller removes the line); True when it was applied again."""
        d = self.tables.drugs[line.drug]
        i = p.idx
        day = line.next_apply
        if not (p.judged_benefit and p.judged_day > line.start + 1e-9):
            line.next_apply = math.inf
            self._stop_line(p, line, day, "P6.capsaicin_no_benefit")
            return False
        dose = line.dose_at(day)
        self._log(i, day, E_DOSE, p.state, drug=line.drug, dose=dose, rule="P6.capsaicin_reapply")
        base = 2 * self.tables.n_ae_slots * line.n_applied
        line.n_applied += 1
        line.next_apply = day + self.extras[line.drug].reapply
        for k, slot in enumerate(d.ae_slots):
            u_inc = streams.keyed_uniform(self.reapply_key, i, base + 2 * slot)
            if u_inc < interp(d.ae_incidence[k], dose / line.factor):
                u_on = streams.keyed_uniform(self.reapply_key, i, base + 2 * slot + 1)
                line.aes.append((day + onset_days(d.ae_onset_median, u_on), d.ae_types[k], u_inc, -1))
        line.aes.sort()
        return True

    def _log_doses(self, i: int, p: PatientModel, lines: list[Line], now: float, before: bool = False) -> None:
        """Record titration (P2) and optimisation (P3) steps reached up to ``now``; with ``before``, only those
        strictly before ``now`` (the horizon: the run simulates days < horizon)."""
        limit = now - 1e-9 if before else now + 1e-9
        for ln in lines:
            while ln.due <= limit:  # (most calls: no step reached since the last)
                k = ln.next_step
                steps = ln.steps
                off, dose = steps[k]
                if k >= ln.opt_from:
                    rule = "P3.dose_optimisation"
                else:
                    rule = "P2.target_reached" if dose >= ln.target else "P2.titration_step"
                self._log(i, ln.due, E_DOSE, p.state, ln.drug, dose, -1.0, -1.0, rule)  # positional (see _log)
                k += 1
                ln.next_step = k
                ln.due = ln.start + steps[k][0] if k < len(steps) else math.inf
