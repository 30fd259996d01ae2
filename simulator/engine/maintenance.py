"""Care after the first answer: maintenance visits, relapse, a regimen that simply continues, usual care's index drug.

Owns :class:`Maintenance`, the mixin of :class:`simulator.engine.simulation.Simulation` for what happens
while a regimen runs outside a trial: maintenance visits after relief (P4.maintenance_visit,
P4.stable_discharge) until a confirmed loss of relief (P4.relapse), the regimen continuing after a discharge
or a specialist's relief with a strong opioid still reassessed in time (P8.reassessment, P8.time_limited),
the regimen carried on to a day or an event (the clinic's queue uses it), and usual care's observed choice
of index drug (X.usual_care_choice). A mixin, so the generators here are plain methods of the one
simulation object, delegated to with ``yield from``.
"""

from __future__ import annotations

import math

import simpy

from ..model.care import index_drug
from ..model.pathway import fire
from ..model.patient import PatientModel
from ..model.policy_context import Decision
from ..model.safety import contraindication
from .events import E_MAINT, E_TRANSITION, OUTCOME_CODE, TRIGGER_CODE
from .lines import Line

MAX_RELAPSES = 8  # relapse draws per patient (later relief episodes reuse the last; issue 10)
MAX_RETURNS = 16  # return-after-stop draws per patient (later lines reuse the last; issue 10)
_INDEX_TRIGGER = {"gabapentinoid": "start_first_line", "snri": "start_first_line", "tca": "start_first_line",
                  "topical": "start_topical", "weak_opioid": "escalate_tramadol",
                  "strong_opioid": "escalate_strong_opioid"}


class Maintenance:
    """Mixin: maintenance after relief, a continuing regimen, carrying a regimen on, usual care's index drug."""

    def _maintenance(self, p: PatientModel, lines: list[Line], obs: tuple, ltfu_day: float, held: str = ""):
        """After relief: the regimen continues with maintenance visits (P4.maintenance_visit), every
        ``opioid_visit_interval_days`` while an opioid runs (P8.reassessment, S004). Adverse events, stops
        for other reasons and loss to follow-up continue. At each visit the response is judged again; relief
        not found (confirmed at a visit one policy visit interval later) or no drug left sends the patient
        back to the state he was relieved in (P4.relapse).

        ``held``: relief the specialist brought, which the drug-response model does not carry ("intervention",
        "managed"; P9.specialist_consult). It holds until the patient's relapse draw (clinical
        persistence.relapse_per_year, as for drug relief), the visit logs no NRS, and for "managed" only while
        the managed regimen runs (a drug of it stopped loses it); an intervention's relief outlasts the drugs.

        Returns ``(outcome, pain)`` for the policy's next decision, or None (horizon, drop-out)."""
        env = self.env
        t = self.tables
        i = p.idx
        horizon = self.config.horizon_days
        mt = self.ctx.policy.maintenance
        u = self.persist.item(i, 2 + 2 * len(t.drugs) + min(p.n_relapses, MAX_RELAPSES - 1))
        rate = self.relapse_rate
        now = env.now
        relapse_day = now - math.log1p(-u) / rate * 365.0 if rate > 0 else math.inf
        retained = t.persistence["relapse_effect_retained"]
        last_visit = now
        confirming = False  # a visit without relief is confirmed at the next regular visit before any change
        discharge = mt.discharge_after_days  # P4.stable_discharge: days of relief held at every visit
        held_since = now
        own_stop = False  # the patient stopped a drug himself: nothing is decided until a visit (P4.reoffer_own_stop)
        classes = [t.drugs[ln.drug].drug_class for ln in lines]  # again when a drug stops (lines change only then)
        opioid = "weak_opioid" in classes or "strong_opioid" in classes
        while True:
            if confirming:
                visit_day = last_visit + self.ctx.policy.visit_interval_days
            else:
                visit_day = last_visit + (mt.opioid_visit_interval_days if opioid else mt.visit_interval_days)
            nxt, kind, line, ae = self._next_event(lines, visit_day, ltfu_day)
            if nxt >= horizon:
                yield horizon - now
                return None
            if nxt > now:
                now = yield nxt - now  # a wait yields its days; resumed with the day (simulation._Wake)
            self._log_doses(i, p, lines, now)
            if kind == "dropout":
                self._drop_out(p, lines, now)
                return None
            if kind == "apply" and self._reapply(p, line, now):  # P6.capsaicin_reapply
                continue
            if kind in ("ae", "stop", "apply"):  # "apply": stopped without benefit (P6.capsaicin_no_benefit)
                if kind == "ae":
                    if not self._adverse_event(p, line, ae, now, lines):
                        continue
                elif kind == "stop":
                    self._stop_line(p, line, now, "X.patient_stop")
                    p.last_relief_stop = line.drug  # restarted first on a relapse (P4.reoffer_own_stop)
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
                classes = [t.drugs[ln.drug].drug_class for ln in lines]
                opioid = "weak_opioid" in classes or "strong_opioid" in classes
                if (lines and held != "managed") or held == "intervention":  # judged at the next visit
                    continue
                if kind == "stop":  # his own stop of what relieved him decides nothing: the next visit measures his
                    own_stop, held = True, ""  # pain (relapse: the drug is restarted first, P4.reoffer_own_stop)
                    continue
                outcome, pain = "intolerable", -1.0
            else:
                last_visit = now
                if held:  # the specialist's relief: no NRS model for it, it lasts until the relapse draw
                    pain = -1.0
                    outcome = "relief" if now < relapse_day else "none"
                else:
                    pain = self._pain(p, lines, now, obs, retained if now >= relapse_day else 1.0)
                    p.last_pain = pain
                    outcome = self._judge(p, pain)
                p.assessed = now
                p.judged_day, p.judged_benefit = now, outcome != "none"  # P6.capsaicin_no_benefit
                leave = (outcome == "relief" and not confirming and not opioid and discharge is not None
                         and now - held_since >= discharge)
                on, on_dose = self._newest_taken(p, lines, now)  # a drug being tapered still runs (event-log.md)
                self._log(i, now, E_MAINT, p.state, on, on_dose, pain, OUTCOME_CODE[outcome],
                          "P8.reassessment" if "strong_opioid" in classes else
                          "P4.stable_discharge" if leave else "P4.maintenance_visit")
                if leave:  # discharged from scheduled follow-up: the regimen continues, no visit follows
                    yield from self._regimen_continues(p, lines, obs)
                    return None
                if outcome == "relief":
                    if confirming or opioid:
                        held_since = now  # relief held again from this visit (an opioid: reassessed, not held)
                    confirming = False
                    continue
                if not confirming and mt.confirm_loss:
                    confirming = True
                    continue
            if outcome != "intolerable" and "weak_opioid" in classes:  # relief lost on tramadol: it failed (P8)
                p.tramadol_failed = True
            if own_stop:  # pain back after his own stop: not a failed line (P7, P9.referral_criteria)
                p.n_self_stops += 1
            p.n_relapses += 1
            fire(self.table, p, "relapse")
            self._log(i, now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relapse"], rule="P4.relapse")
            return outcome, pain

    def _regimen_continues(self, p: PatientModel, lines: list[Line], obs: tuple):
        """After a specialist's relief, a discharge, or when nothing more is decided: the regimen continues;
        its adverse events and the patient's own stops are recorded. While a strong opioid runs it is
        reassessed every ``maintenance.opioid_visit_interval_days`` (P8.reassessment, S004), whatever the
        state, and tapered and stopped when the visit finds no relief (P8.stop_ineffective)."""
        env = self.env
        horizon = self.config.horizon_days
        if p.taper_rest:
            self._finish_tapers(p)
        while True:
            nxt, kind, line, ae = self._next_event(lines, self._reassess_by(p, lines, visits=True), math.inf)
            if nxt >= horizon:
                return
            if nxt > env.now:
                yield nxt - env.now
            now = env.now
            self._log_doses(p.idx, p, lines, now)
            if kind == "eval":  # P8.reassessment of the strong opioid still running
                pain = self._pain(p, lines, now, obs, 1.0)
                p.last_pain = pain
                p.assessed = now
                outcome = self._judge(p, pain)
                p.judged_day, p.judged_benefit = now, outcome != "none"  # P6.capsaicin_no_benefit
                strong = [ln for ln in lines if self.tables.drugs[ln.drug].drug_class == "strong_opioid"]
                self._log(p.idx, now, E_MAINT, p.state, drug=strong[-1].drug, dose=strong[-1].dose_at(now), pain=pain,
                          detail=OUTCOME_CODE[outcome], rule="P8.reassessment")
                if outcome != "relief":
                    for ln in strong:
                        self._stop_line(p, ln, now, "P8.stop_ineffective", failed=True)
                        lines.remove(ln)
            elif kind == "stop":
                self._stop_line(p, line, now, "X.patient_stop")
                lines.remove(line)
            elif kind == "apply":  # P6.capsaicin_reapply, or stopped without benefit (P6.capsaicin_no_benefit)
                if not self._reapply(p, line, now):
                    lines.remove(line)
            elif self._adverse_event(p, line, ae, now, lines):
                lines.remove(line)
            p.active = [ln.drug for ln in lines]
            if p.taper_rest:  # a taper begun here is logged to the horizon (no loss to follow-up from here)
                self._finish_tapers(p)

    def _reassess_by(self, p: PatientModel, lines: list[Line], visits: bool = False) -> float:
        """Day by which a running strong opioid must be reassessed (P8.time_limited, P8.reassessment; S004):
        its last documented assessment plus the trial period (``strong_opioid.max_trial_days``), or with
        ``visits`` plus the reassessment interval (``maintenance.opioid_visit_interval_days``); inf when no
        strong opioid runs. Every loop of the engine that lets a regimen run waits at most until this day."""
        strong = self.strong_opioid
        for ln in lines:  # a loop, not any(generator): called at every visit of every patient
            if strong[ln.drug]:
                pol = self.ctx.policy
                return p.assessed + (pol.maintenance.opioid_visit_interval_days if visits
                                     else pol.strong_opioid.max_trial_days)
        return math.inf

    def _carry_on(self, p: PatientModel, lines: list[Line], until: float, ltfu_day: float,
                  event: simpy.Event | None = None, on_stop: bool = False):
        """The regimen continues (titration steps, adverse events) until day ``until``, until ``event`` fires,
        or until loss to follow-up; with ``on_stop`` also until a drug of it stops. Returns "event", "until",
        "dropout", "horizon" or "stop"."""
        env = self.env
        horizon = self.config.horizon_days
        end = min(until, horizon)
        while True:
            if event is not None and event.triggered:
                self._log_doses(p.idx, p, lines, env.now)
                return "event"
            nxt, kind, line, ae = self._next_event(lines, end, ltfu_day)
            wait = max(nxt - env.now, 0.0)
            if event is None:
                if wait > 0:
                    yield wait
            else:
                yield event | env.timeout(wait)
                if event.triggered:
                    continue
            now = env.now
            self._log_doses(p.idx, p, lines, now)
            if kind == "eval":
                return "until" if until <= horizon else "horizon"
            if kind == "dropout":
                return "dropout"
            if kind == "apply":  # P6.capsaicin_reapply, or stopped without benefit (P6.capsaicin_no_benefit)
                if self._reapply(p, line, now):
                    continue
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
            elif kind == "stop":  # stopped for reasons other than adverse events (issue 10)
                self._stop_line(p, line, now, "X.patient_stop")
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
            elif self._adverse_event(p, line, ae, now, lines):
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
            else:
                continue
            if on_stop:
                return "stop"

    def _usual_index(self, p: PatientModel, u: float) -> Decision | None:
        """Usual care's index drug (X.usual_care_choice), drawn from the policy's observed mix; None when
        the pathway would refuse it for this patient (the guideline's first choice is made instead)."""
        j = index_drug(self.index_mix, u)
        d = self.tables.drugs[j]
        if contraindication(d, p.facts) is not None:
            return None
        trigger = _INDEX_TRIGGER[d.drug_class]
        ok = {"start_topical": p.facts.localized, "escalate_tramadol": p.tramadol_allowed(),
              "escalate_strong_opioid": p.strong_opioid_gate()}.get(trigger, True)
        return Decision(trigger, (j,), rule="X.usual_care_choice") if ok else None
