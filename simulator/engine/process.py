"""The patient process: one per patient in SimPy time, walking the compiled pathway decision by decision.

Owns :class:`PatientProcess`, the mixin of :class:`simulator.engine.simulation.Simulation` holding the
process itself, cut into its phases: the first visit (assessment, exclusions, the first choice, P1), a
decision applied (the pathway's transition, accepted or refused by the compiled table, with referral
instead of a refused step, P9), what follows a transition to relief, discharge or the specialist
(maintenance, the clinic), and the new step's drugs started (after a taper when P5 requires it). The trial of
each line is :meth:`simulator.engine.evaluation.Evaluation._trial`. A mixin, so every phase calls the other
concerns as plain methods of the one simulation object; the phases are generators delegated to with
``yield from``.
"""

from __future__ import annotations

import math

import numpy as np

from ..model.decisions import first_choice, next_step, serotonin_blocked
from ..model.pathway import TRANSITIONS, TREATING, can_fire, fire
from ..model.patient import PatientModel
from ..model.policy_context import Decision, revised
from ..model.safety import PatientFacts, contraindication
from .evaluation import FAILED_OUTCOMES
from .events import E_ASSESS, E_EXCLUDE, E_TRANSITION, TRIGGER_CODE
from .lines import Line
from .stops import OPIOID_TRIGGER


class PatientProcess:
    """Mixin: the patient's process and its phases (a generator: a wait yields its days, :class:`.simulation._Wake`)."""

    def _patient(self, i: int):
        """Patient ``i``'s process: the first visit, then until care ends a decision applied and the new
        line's trial run to its evaluation, whose outcome the policy decides on."""
        env = self.env  # its clock read as env._now below: no property call (Simulation._run sets it)
        if self.entry is not None and self.entry[i] > 0:  # open population: the patient enters later
            yield float(self.entry[i])
        p, lines, obs, ltfu_day, adv, decision = self._first_visit(i)
        outcome: str | None = None
        pain = p.baseline
        while True:
            step = yield from self._apply(p, lines, decision, outcome, pain, obs, ltfu_day, adv)
            if type(step) is str:  # a transition to relief, discharge or the specialist (from state ``step``)
                step = yield from self._after_move(p, lines, decision, step, pain, obs, ltfu_day, adv)
                if type(step) is str:  # relieved: maintenance (run here: one generator level less per visit)
                    self._relief_clears(p, lines)  # a regimen that relieved has not failed (P4.reoffer_own_stop)
                    res = yield from self._maintenance(p, lines, obs, ltfu_day, step)
                    if res is None:
                        return
                    outcome, pain = res
                    decision = self._decide_after(p, lines, outcome, env._now, pain, obs[3], by_patient=True)
                    if decision is None:
                        return
                    continue
            if step is None:
                return
            decision, outcome, pain, decided = step
            if decided:  # decided again (after maintenance or a consult): apply that decision
                continue
            judged = yield from self._trial(p, lines, decision, obs, ltfu_day)
            if judged is None:
                return
            outcome, pain, by_patient = judged
            decision = self._decide_after(p, lines, outcome, env._now, pain, obs[3], by_patient)
            if decision is None:
                return

    def _first_visit(self, i: int) -> tuple[PatientModel, list[Line], tuple, float, np.ndarray, Decision]:
        """The assessment visit (P1) on entry: the patient's model and draws, the exclusions, the first choice.

        Returns ``(patient, lines, obs, ltfu_day, adverse draws, decision)``; ``obs`` is
        ``(drug_z, ns_onset, adherence, entry day, visit-noise stream)`` for :meth:`_pain`."""
        entry = self.env.now
        c = self.cohort
        t = self.tables
        ctx = self.ctx
        # ndarray.item: the value as a Python scalar directly (no numpy scalar per attribute and patient)
        facts = PatientFacts(age=float(c.age.item(i)), etiology=int(c.etiology.item(i)),
                             localized=bool(c.localized.item(i)), crcl=float(c.crcl.item(i)), flags=self.flags[i])
        p = PatientModel(i, facts, float(c.baseline_nrs.item(i)), c.misuse_risk.item(i) == 2, ctx)
        lat = self.latents
        ns_onset = float(lat.ns_onset[i])
        # Row views, not copies: 100k live patient processes must not each hold their draws as lists.
        drug_z = lat.drug_z[i]
        adv = self.adverse[i]
        fu = self.followup[i]
        rate = self.ltfu_rate
        ltfu_day = entry - math.log1p(-float(fu[0])) / rate * 365.0 if rate > 0 else math.inf
        p.until = min(ltfu_day, self.config.horizon_days)  # tapers are logged up to here
        lines: list[Line] = []
        self._regimens[i] = (p, lines)  # for the end-of-run titration log (see run)
        pu = self.persist[i]
        pe = t.persistence
        # Non-adherent patients get a fraction of each drug's effect (clinical persistence block).
        adherence = pe["non_adherent_effect"] if float(pu[0]) < pe["non_adherence_share"] else 1.0
        obs = (drug_z, ns_onset, adherence, entry, self.noise_streams.item(i))

        self._log(i, entry, E_ASSESS, "assessment", pain=p.baseline, rule="P1")
        for j, why in p.excluded:
            self._log(i, entry, E_EXCLUDE, "assessment", drug=j, rule=why)
        decision = self._usual_index(p, float(pu[1])) if self.index_mix else None
        if decision is None:
            decision = first_choice(p, ctx)
        if self.decide is not None:
            decision = self.decide(p, None, 0.0, p.baseline, decision)
        return p, lines, obs, ltfu_day, adv, decision

    def _apply(self, p: PatientModel, lines: list[Line], decision: Decision, outcome: str | None, pain: float,
               obs: tuple, ltfu_day: float, adv: np.ndarray):
        """Apply a decision: stop what it stops, fire its trigger (refused: refer instead, P9), then follow the
        transition or start the step's drugs.

        Returns None when the process ends, the state left (a str) when :meth:`_after_move` follows, else
        ``(decision, outcome, pain, decided)``: with ``decided`` a new decision to apply, otherwise the step
        whose trial runs next."""
        now = self.env._now  # env._now: SimPy's clock read without its property call (Simulation._run sets it)
        i = p.idx
        t = self.tables
        log = self._log
        if decision.start and decision.trigger in ("add_on", "switch", "start_first_line", "continue"):
            # Opioids go through their own gates (P7, P8) whoever decided (protocol step, trainee).
            cls = t.drugs[decision.start[0]].drug_class
            if cls in OPIOID_TRIGGER:
                decision = revised(decision, trigger=OPIOID_TRIGGER[cls])
        for j, why in decision.notes:
            log(i, now, E_EXCLUDE, p.state, drug=j, rule=why)
        if decision.trigger == "optimise":  # P3: raise the newest drug's dose; no transition
            self._optimise(p, lines[-1], now, adv)
            self._add_alongside(p, decision, lines, now, adv, len(lines) - 1)
            return decision, outcome, pain, False
        # "continue": a protocol keeps the regimen for another step (no transition).
        before = p.state
        moving = decision.trigger not in ("continue", "stay")
        dest = can_fire(self.table, p, decision.trigger) if moving else None
        # A declared departure (tutor) takes the step the pathway's guard refuses.
        forced = moving and dest is None and bool(decision.departure)
        if moving and dest is None and not forced:
            # The pathway refuses the proposal: refer instead (P9), and the stops cite the referral;
            # after a specialist consult, discharge to primary care on the current regimen.
            if can_fire(self.table, p, "refer") and self._defers_referral(p, now):  # too soon after a consult
                fire(self.table, p, "discharge")
                decision = Decision("discharge", rule="P9.re_referral_deferred")
            elif fire(self.table, p, "refer"):
                decision = Decision("refer", rule="P9.refractory_referral")
                self._stop_for_referral(p, lines, now, "P9.refractory_referral")
            elif fire(self.table, p, "discharge"):
                decision = Decision("discharge", rule="P9.discharge_plan")
            else:
                if lines:
                    self._stop_all(p, lines, now, "P9.refractory_referral", False, (), True)
                self._finish_tapers(p)
                return None
        else:
            if decision.trigger == "refer" and not forced and self._defers_referral(p, now):
                # too soon after the last consult: primary care until the interval ends (P9.re_referral_deferred)
                decision = Decision("discharge", rule="P9.re_referral_deferred")
                dest = can_fire(self.table, p, "discharge")
            if decision.adjust:
                self._adjust(p, lines, now, decision, adv)
            if decision.trigger == "refer":
                self._stop_for_referral(p, lines, now, decision.rule)
            elif decision.stop_all and lines:
                self._stop_all(p, lines, now, decision.stop_rule or decision.rule,
                               outcome in FAILED_OUTCOMES and decision.fails_class, decision.keep)
            if decision.trigger == "stay":  # nothing more is decided; what still runs continues
                yield from self._regimen_continues(p, lines, obs)
                return None
            if forced:
                p.state = _destination(p.state, decision.trigger)
            elif moving:
                fire(self.table, p, decision.trigger)  # passes: checked by can_fire above
        if decision.trigger != "continue":
            # positional (see _log)
            log(i, now, E_TRANSITION, p.state, -1.0, -1.0, -1.0, TRIGGER_CODE[decision.trigger], decision.rule)
        if p.state in ("relieved", "discharged", "specialist_referral"):
            return before  # _patient runs _after_move itself: one generator level less while a regimen runs on
        started = yield from self._start_step(p, lines, decision, ltfu_day, adv)
        return (decision, outcome, pain, False) if started else None

    def _after_move(self, p: PatientModel, lines: list[Line], decision: Decision, before: str, pain: float,
                    obs: tuple, ltfu_day: float, adv: np.ndarray):
        """After a transition to relief (maintenance, P4), discharge or the specialist (P9): returns None when
        the process ends, a new decision to apply as :meth:`_apply` does, or, relieved, the relief the
        specialist brought ("" for the regimen's own; a str) for the :meth:`_maintenance` that
        :meth:`_patient` runs next."""
        env = self.env
        now = env._now  # env._now: SimPy's clock read without its property call (Simulation._run sets it)
        entry = obs[3]
        log = self._log
        held = ""  # relief the specialist brought (_maintenance)
        why_referred = decision.rule
        if p.state == "relieved":
            if before not in TREATING:  # e.g. relief the clinic brought
                yield from self._regimen_continues(p, lines, obs)
                return None
            p.relieved_from = before
        elif p.state == "discharged":
            self._stop_opioids(p, lines, now)  # P8.stop_ineffective: discharged without relief
            if not p.deferring_re_referral():
                yield from self._regimen_continues(p, lines, obs)
                return None
            # P9.re_referral_deferred: primary care until the re-referral interval ends, then relieved or referred
            state = yield from self._primary_care_until_re_referral(p, lines, ltfu_day, obs)
            if state is None:
                return None
            if state == "relieved":
                p.relieved_from = before  # a relapse returns to the state he was refractory in
                return held
            why_referred = "P9.re_referral"
        if p.state == "specialist_referral":
            p.referred_from = before
            result = yield from self._specialist(p, lines, ltfu_day, adv, obs, why_referred)
            if result == "dropout":
                self._drop_out(p, lines, env.now)
                return None
            if result == "waiting":
                return None
            if result in ("relief", "relief_intervention", "relief_managed"):
                # Relief after the consult: maintenance as for any relief (issue 10); a relapse returns the
                # patient to the state he was referred from, the pathway's remaining options (a second referral up to referral.max_consults, P9.re_referral).
                fire(self.table, p, "relief")
                log(p.idx, env.now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relief"], rule="P9.specialist_consult")
                p.relieved_from = p.referred_from
                held = {"relief_intervention": "intervention", "relief_managed": "managed"}.get(result, "")
            elif result != "relieved_waiting":
                # A consult without relief returns the patient to the pathway's remaining options, decided
                # by the policy (the specialist's plan; not the trainee's choice in teaching runs).
                p.optimisable = False
                outcome = "intolerable" if result == "managed_stopped" else "none"
                p.close_own_stops(env.now)
                decision = next_step(p, self.ctx, outcome, env.now - entry, pain)
                return decision, outcome, pain, True
            else:  # relieved by the regimen while queued: left the queue
                fire(self.table, p, "relief")
                log(p.idx, env.now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relief"],
                    rule="P9.relieved_while_waiting")
                p.relieved_from = p.referred_from  # a relapse returns there (and may be referred again)
        # Relieved here, while queued or after the consult (issue 10): maintenance, back into the pathway on a
        # relapse; _patient runs it itself (one generator level less at each maintenance visit).
        return held

    def _start_step(self, p: PatientModel, lines: list[Line], decision: Decision, ltfu_day: float,
                    adv: np.ndarray):
        """Start the decision's drugs (P5 holds whoever decided), after the running tapers when P5 requires it.

        Returns True when a regimen runs (its trial follows), False when the process ends."""
        env = self.env
        now = env._now  # env._now: SimPy's clock read without its property call (Simulation._run sets it)
        i = p.idx
        t = self.tables
        horizon = self.config.horizon_days
        if p.relief_dose and p.taper_end > now:  # P4.taper_reversed: what relieved him, still being tapered
            for j in decision.start:
                if j in p.relief_dose and p.restarts_own_stop(j, decision.rule):
                    self._reverse_taper(p, j, now)
        if decision.start and p.taper_end > now and self._wait_for_taper(p, decision.start):
            # P5: no cross-taper (policy), or a serotonergic drug must be gone first (serotonin: avoid).
            # The next drug starts just after the taper's last stop (1e-6 d, below the log's resolution
            # of 1e-3 d), so the log orders the stop before the start whatever the float rounding.
            until = p.taper_end + 1e-6
            if ltfu_day < until:
                if ltfu_day >= horizon:
                    yield horizon - env.now
                    return False
                yield max(ltfu_day - env.now, 0.0)
                self._drop_out(p, lines, env.now)
                return False
            if until >= horizon:
                yield horizon - env.now
                return False
            now = yield until - env.now
        if decision.also:
            self._add_alongside(p, decision, lines, now, adv, len(lines))
        for j in decision.start:
            # an eligible drug or the patient's topical passed contraindication at the first visit (same facts)
            why = None if j in p.eligible or j == p.topical else contraindication(t.drugs[j], p.facts)
            if why is None and serotonin_blocked(p, self.ctx, j):
                why = "P5.serotonin_avoid"
            if why is not None:  # P5 holds whoever decided (protocol, trainee): the drug is not given
                self._log(i, now, E_EXCLUDE, p.state, drug=j, rule=why)
                continue
            lines.append(self._start_drug(p, j, now, decision.rule, adv, lines, decision.target,
                                          decision.trigger == "add_topical", decision.departure))
            p.active = [ln.drug for ln in lines]
        if not lines:  # nothing left to take (e.g. a protocol continuing after an intolerable drug)
            self._finish_tapers(p)
            return False
        return True


def _destination(state: str, trigger: str) -> str:
    """Where ``trigger`` leads from ``state`` in the pathway's definition (any source if none from here)."""
    edges = [e for e in TRANSITIONS if e.trigger == trigger]
    return next((e.dest for e in edges if state in e.source), edges[0].dest)
