"""Specialist referral: the queue for the pain clinic, care while waiting, the consult and its outcome.

Owns :class:`Referral`, the mixin of :class:`simulator.engine.simulation.Simulation` for P9: what is stopped
at referral (P9.care_while_waiting, P8.stop_ineffective), queueing at the clinic (:mod:`simulator.engine.clinic`
decides when a consult starts), reviews while queued (a relieved patient may leave the queue), the tramadol
bridge while waiting (P9.tramadol_bridge) and when it counts as tramadol tried (P7, P8 gate), and the
consult's outcome from the patient's specialist draws. A mixin, so its generators are plain methods of the
one simulation object, delegated to with ``yield from``.
"""

from __future__ import annotations

import math

import numpy as np

from ..model import streams
from ..model.pathway import fire
from ..model.patient import PatientModel
from .events import E_CONSULT, E_LEFT, E_MAINT, E_QUEUE, E_TRANSITION, OUTCOME_CODE, TRIGGER_CODE
from .lines import Line
from .stops import OPIOID_TRIGGER


class Referral:
    """Mixin: referral to the pain clinic, the wait, the consult."""

    def _stop_for_referral(self, p: PatientModel, lines: list[Line], now: float, rule: str) -> None:
        """At referral: under ``policy.referral.while_waiting: continue`` the regimen continues while queued,
        except an opioid (tramadol or a strong opioid): referral follows an evaluation without relief, and an
        opioid that has not worked is stopped (P8.stop_ineffective, S004); under 'stop' every drug stops (v0.1)."""
        if self.ctx.policy.referral.while_waiting == "stop":
            if lines:
                self._stop_all(p, lines, now, rule, False, (), True)
            return
        self._stop_opioids(p, lines, now)

    def _specialist(self, p: PatientModel, lines: list[Line], ltfu_day: float, adv: np.ndarray, obs: tuple,
                    why_referred: str = "P9.refractory_referral"):
        """Queue at the pain clinic (P9), wait for the consult while the regimen continues, draw its outcome.

        Returns "dropout" (left the queue or care), "relief" (the specialist confirms the regimen that relieves),
        "relief_intervention", "relief_managed" (specialist-led drug management, the managed regimen still
        running when relief is dated), "no_relief", "managed_stopped" (a managed drug stopped first),
        "relieved_waiting" (relieved at a review while queued and
        left the queue), or "waiting" (the horizon came first). The clinic
        (:mod:`simulator.engine.clinic`) decides when the consult starts. With ``policy.referral.bridge_tramadol``
        tramadol is started while waiting (P7 permitting) and stopped at the consult (P9.tramadol_bridge).
        While queued on a regimen the patient is reviewed (:meth:`_wait_for_consult`). ``why_referred``: the
        referral decision's rule; the ``referral_queued`` row cites P9.referral_criteria for the policy's early
        criteria, P9.refractory_referral otherwise."""
        env = self.env
        t = self.tables
        i = p.idx
        queued = env.now
        # The queue row cites why: the policy's early criteria, refractory pain again after a consult
        # (P9.re_referral), or refractory pain (the steps exhausted or failed).
        why = why_referred if why_referred in ("P9.referral_criteria", "P9.re_referral") else "P9.refractory_referral"
        self._log(i, queued, E_QUEUE, p.state, rule=why)
        # The first consult reads the patient's specialist draws; a later one (P9.re_referral) its own keyed draws.
        u = self.special[i].tolist() if p.n_consults == 0 else \
            [streams.keyed_uniform(self.consult_key, i, 4 * p.n_consults + k) for k in range(4)]
        bridge = None
        # Once per patient (rescue, not a regimen: a patient referred again does not get a second bridge).
        if self.ctx.policy.referral.bridge_tramadol and p.tramadol_allowed() and self.ctx.tramadol not in p.tried:
            bridge = self._start_drug(p, self.ctx.tramadol, queued, "P9.tramadol_bridge", adv, lines)
            lines.append(bridge)
            p.active = [ln.drug for ln in lines]
        req = self.clinic.request(i, u[3])
        why, relieved = yield from self._wait_for_consult(p, lines, ltfu_day, req, bridge, obs)
        if why == "relieved":
            self.clinic.cancel(req)
            self._log(i, env.now, E_LEFT, p.state, rule="P9.relieved_while_waiting")
            if bridge is not None and bridge in lines:  # rescue while waiting, not long-term (NICE CG173)
                self._stop_line(p, bridge, env.now, "P9.tramadol_bridge")
                lines.remove(bridge)
                p.active = [ln.drug for ln in lines]
            return "relieved_waiting"
        if why != "event":
            self.clinic.cancel(req)
            return "dropout" if why == "dropout" else "waiting"
        p.consulted = True
        p.n_consults += 1
        p.last_consult = env.now
        self._log(i, env.now, E_CONSULT, p.state, pain=-1.0, detail=-1, dose=env.now - queued,
                  rule="P9.specialist_consult")
        why = yield from self._carry_on(p, lines, env.now + t.specialist["consult_days"], ltfu_day)
        if why != "until":
            return "dropout" if why == "dropout" else "waiting"
        fire(self.table, p, "consult")
        if relieved:  # policy keep_appointment: the specialist confirms the regimen that relieves (no draw used)
            ok, code = True, 2
        elif u[0] < t.specialist["intervention_prob"]:
            ok = u[1] < t.intervention_success[p.etiology]
            code = 0 if ok else 1
        else:  # specialist-led drug management (clinical.yaml conservative_relief_prob): with no drug to manage,
            # the specialist's plan is the pathway's remaining options, as after a consult without relief (P9.discharge_plan)
            ok = u[2] < t.specialist["conservative_relief_prob"] and any(ln is not bridge for ln in lines)
            code = 2 if ok else 3
        self._log(i, env.now, E_TRANSITION, p.state, detail=TRIGGER_CODE["consult"], rule="P9.specialist_consult")
        self._log(i, env.now, E_CONSULT, p.state, detail=code, rule="P9.specialist_consult")
        if bridge is not None and bridge in lines:
            self._stop_line(p, bridge, env.now, "P9.tramadol_bridge")
            lines.remove(bridge)
            p.active = [ln.drug for ln in lines]
        if not ok:
            return "no_relief"
        if relieved:
            return "relief"
        # Drug management relieves only while the managed regimen runs: a drug of it stopped before the relief
        # is dated (adverse event, the patient's own stop) ends the plan without relief (P9.specialist_consult).
        why = yield from self._carry_on(p, lines, env.now + t.specialist["days_to_relief"], ltfu_day,
                                        on_stop=code == 2)
        if why == "until":
            return "relief_intervention" if code == 0 else "relief_managed"
        if why == "stop":  # decided as when a line ends by a stop (a topical beside it goes on, P6.topical_add)
            return "managed_stopped"
        return "dropout" if why == "dropout" else "waiting"

    def _defers_referral(self, p: PatientModel, now: float) -> bool:
        """P9.re_referral_deferred: True (and ``p.deferred_until`` set) when a referral decided now comes sooner
        than ``referral.re_referral_after_days`` after the last consult started: the patient is then discharged
        to primary care until the interval ends (:meth:`_primary_care_until_re_referral`), not put on the list."""
        earliest = p.last_consult + self.ctx.policy.referral.re_referral_after_days
        if earliest <= now:
            return False
        p.deferred_until = earliest
        return True

    def _primary_care_until_re_referral(self, p: PatientModel, lines: list[Line], ltfu_day: float, obs: tuple):
        """P9.re_referral_deferred (assumption): discharged to primary care while the re-referral interval runs.
        What runs continues (adverse events, his own stops, tapers); he is reviewed every
        ``referral.deferral_review_days`` (no later than ``maintenance.opioid_visit_interval_days`` while an opioid
        runs; with or without a drug running; a named assumption) and on the day the interval ends, each review a
        ``maintenance_visit`` row citing P9.re_referral_deferred. Relief at a review ends the deferral (transition to relieved: maintenance
        follows); still refractory when the interval ends, he is referred again (transition to
        specialist_referral, P9.re_referral); loss to follow-up as anywhere. Not on the clinic's list meanwhile.

        Returns None when the process ends (drop-out, horizon) or the patient's new state ("relieved",
        "specialist_referral")."""
        env = self.env
        i = p.idx
        mt = self.ctx.policy.maintenance
        drugs = self.tables.drugs
        end = p.deferred_until
        last = env.now
        while True:
            opioid = any(drugs[ln.drug].drug_class in OPIOID_TRIGGER for ln in lines)
            every = self.ctx.policy.referral.deferral_review_days  # P9.re_referral_deferred: reviews while deferred
            review = min(last + (min(every, mt.opioid_visit_interval_days) if opioid else every), end)
            why = yield from self._carry_on(p, lines, review, ltfu_day)
            if why != "until":
                if why == "dropout":
                    self._drop_out(p, lines, env.now)
                return None
            now = last = env.now
            pain = self._pain(p, lines, now, obs, 1.0)
            p.last_pain = pain
            p.assessed = now
            outcome = self._judge(p, pain)
            p.judged_day, p.judged_benefit = now, outcome != "none"  # P6.capsaicin_no_benefit
            on, on_dose = self._newest_taken(p, lines, now)  # a drug being tapered still runs (event-log.md)
            self._log(i, now, E_MAINT, p.state, drug=on, dose=on_dose, pain=pain, detail=OUTCOME_CODE[outcome],
                      rule="P9.re_referral_deferred")
            if outcome == "relief" or now >= end - 1e-9:
                trigger = "relief" if outcome == "relief" else "refer"
                if trigger == "refer":  # the stops at referral, logged in primary care as at any referral
                    self._stop_for_referral(p, lines, now, "P9.re_referral")
                fire(self.table, p, trigger)
                p.deferred_until = -math.inf
                self._log(i, now, E_TRANSITION, p.state, detail=TRIGGER_CODE[trigger],
                          rule="P9.re_referral_deferred" if trigger == "relief" else "P9.re_referral")
                return p.state

    def _wait_for_consult(self, p: PatientModel, lines: list[Line], ltfu_day: float, req, bridge: Line | None,
                          obs: tuple):
        """Wait in the clinic's queue while the regimen continues (P9.care_while_waiting). A patient on a
        regimen is reviewed at the maintenance intervals (``maintenance.visit_interval_days``, or
        ``opioid_visit_interval_days`` while an opioid runs; P8.reassessment): the visit is logged as a
        ``maintenance_visit``. Relief found at a review ends the wait (``referral.relieved_while_waiting:
        leave_queue``: the referral criterion, persistent refractory pain, no longer holds) or is kept for the
        consult (``keep_appointment``). A tramadol bridge judged without relief after its adequate trial counts
        as tramadol tried (P7, P8 gate; :meth:`_judge_bridge`). No drug, no review (``while_waiting: stop``).

        Returns ``(why, relieved)``: why is "event" (the consult starts), "relieved", "dropout" or "horizon";
        relieved: the last review found relief (keep_appointment)."""
        env = self.env
        i = p.idx
        pol = self.ctx.policy
        mt = pol.maintenance
        drugs = self.tables.drugs
        last = env.now
        relieved = False
        while True:
            opioid = any(drugs[ln.drug].drug_class in OPIOID_TRIGGER for ln in lines)
            review = last + (mt.opioid_visit_interval_days if opioid else mt.visit_interval_days) if lines else math.inf
            why = yield from self._carry_on(p, lines, review, ltfu_day, req.event)
            if why != "until":
                return why, relieved
            now = last = env.now
            if not lines:  # the last drug stopped since: nothing to review
                continue
            pain = self._pain(p, lines, now, obs, 1.0)
            p.last_pain = pain
            p.assessed = now
            outcome = self._judge(p, pain)
            p.judged_day, p.judged_benefit = now, outcome != "none"  # P6.capsaicin_no_benefit
            newest = lines[-1]
            self._log(i, now, E_MAINT, p.state, drug=newest.drug, dose=newest.dose_at(now), pain=pain,
                      detail=OUTCOME_CODE[outcome], rule="P9.care_while_waiting")
            relieved = outcome == "relief"
            if bridge is not None and bridge in lines and not relieved:
                self._judge_bridge(p, bridge, now)
            if relieved and pol.referral.relieved_while_waiting == "leave_queue":
                return "relieved", True

    def _judge_bridge(self, p: PatientModel, bridge: Line, now: float) -> None:
        """P7, P8 gate: the tramadol bridge counts as tramadol tried only once it has had an adequate trial
        (P3, :meth:`simulator.engine.evaluation.Evaluation._trial_due`: its target dose plus the policy's tramadol
        trial days) and a review still finds no relief; a bridge cut short by the consult is not a failed
        tramadol trial (NICE CG173 allows tramadol only as rescue while waiting; S004 requires tramadol to fail
        before a strong opioid)."""
        if now + 1e-9 >= self._trial_due(bridge):
            p.tramadol_tried = p.tramadol_failed = True
            p.bridge_judged = True
