"""The discrete-event engine: synthetic patients walking the pathway in SimPy time (days).

Each patient is one SimPy process. A treatment line is simulated as: start the drug(s) on their
(patient-adjusted) titration schedule, wait for the adequate trial at target dose and the next
scheduled visit (P3), evaluate pain, and let the policy decide the next step (P4-P9), which the
pathway's compiled transition table accepts or refuses. Adverse events, serious events and loss to
follow-up happen in continuous time and may interrupt a line. Specialist referral is a shared
``simpy.Resource`` with the scenario's capacity, so referrals queue and waits are measured.

The hot loop appends plain numbers to one flat ``array('d')`` event buffer (9 columns per row; see
:data:`COLUMNS`); the event table is built once at the end. No pydantic object, logging call or string
formatting runs per event. Clinical numbers come only from the compiled model tables.
"""

from __future__ import annotations

import gc
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy

from . import streams
from .care import index_drug, stop_day
from .clinical import (
    MAX_VISITS,
    RESPONSE_COLUMNS,
    SERIOUS_TYPES,
    ModelTables,
    draw_latents,
    drug_effect,
    interp,
    observed_pain,
    onset_days,
)
from .cohort import Cohort
from .pathway import OUTCOMES, STATES, TREATING, TRIGGERS, Table, compile_table, fire
from .patient import PatientModel
from .policy import Decision, PolicyContext, first_choice, next_step
from .rules import load_rules
from .safety import PatientFacts, contraindication, dose_cap, required_checks, schedule, titration_stretch

# Event codes (column ``event``).
EVENTS: tuple[str, ...] = ("assessment", "transition", "drug_start", "dose_change", "drug_stop", "evaluation",
                           "adverse_event", "safety_check", "excluded", "referral_queued", "consult",
                           "dropout", "maintenance_visit")
(E_ASSESS, E_TRANSITION, E_START, E_DOSE, E_STOP, E_EVAL, E_AE, E_CHECK, E_EXCLUDE, E_QUEUE, E_CONSULT,
 E_DROPOUT, E_MAINT) = range(len(EVENTS))
CHECKS: tuple[str, ...] = ("ecg", "serotonin_check", "misuse_screen", "treatment_agreement")
CONSULT_OUTCOMES: tuple[str, ...] = ("intervention_success", "intervention_failed", "conservative_relief",
                                     "conservative_no_relief")
COLUMNS: tuple[str, ...] = ("patient", "day", "event", "state", "drug", "dose", "pain", "detail", "rule")
NCOL = len(COLUMNS)
STATE_CODE = {s: i for i, s in enumerate(STATES)}
TRIGGER_CODE = {t: i for i, t in enumerate(TRIGGERS)}
OUTCOME_CODE = {o: i for i, o in enumerate(OUTCOMES)}
N_SERIOUS = len(SERIOUS_TYPES)
FOLLOWUP_COLUMNS = 16
SPECIALIST_COLUMNS = 4
MAX_RELAPSES = 8  # relapse draws per patient (later relief episodes reuse the last)
MAX_RETURNS = 16  # return-after-stop draws per patient (later lines reuse the last)
_INDEX_TRIGGER = {"gabapentinoid": "start_first_line", "snri": "start_first_line", "tca": "start_first_line",
                  "topical": "start_topical", "weak_opioid": "escalate_tramadol",
                  "strong_opioid": "escalate_strong_opioid"}


def rule_codes() -> tuple[tuple[str, ...], dict[str, int]]:
    ids = tuple(load_rules().ids())
    return ids, {r: i for i, r in enumerate(ids)}


@dataclass(frozen=True)
class EngineConfig:
    """Plain settings of one run of the engine (from the scenario)."""

    horizon_days: float
    specialist_slots_per_week: int
    seed: int


Decide = Callable[[PatientModel, "str | None", float, float, Decision], Decision]


class _Line:
    """One drug being taken: its schedule and pending adverse events."""

    __slots__ = ("drug", "start", "steps", "target", "next_step", "aes", "target_day", "stop_at")

    def __init__(self, drug: int, start: float, steps: tuple[tuple[float, float], ...], target: float) -> None:
        self.drug = drug
        self.start = start
        self.steps = steps
        self.target = target
        self.next_step = 1
        self.aes: list[tuple[float, int, float, int]] = []  # (day, ae type code, inc uniform, serious index)
        self.target_day = start + next((off for off, d in steps if d >= target), steps[-1][0])
        self.stop_at = math.inf  # day the patient stops it for reasons other than adverse events

    def dose_at(self, day: float) -> float:
        dose = self.steps[0][1]
        for off, d in self.steps:
            if self.start + off <= day + 1e-9:
                dose = d
            else:
                break
        return dose


class Simulation:
    """Runs one replication of one scenario over a cohort."""

    def __init__(self, ctx: PolicyContext, cohort: Cohort, config: EngineConfig, replication: int,
                 only: list[int] | None = None, decide: Decide | None = None) -> None:
        """``only``: simulate just these patient indices (each with its own draws, as in the full cohort).
        ``decide``: replaces the policy's decisions (teaching: a trainee's choices); it is called as
        ``decide(patient, outcome, day, pain, proposed)`` with ``outcome`` None at the assessment visit,
        and returns the Decision to apply."""
        self.only = only
        self.decide = decide
        self.ctx = ctx
        self.tables: ModelTables = ctx.tables
        self.cohort = cohort
        self.config = config
        self.rep = replication
        self.table: Table = compile_table(PatientModel)
        self.rule_ids, self.rule_code = rule_codes()
        n = cohort.n
        seed = config.seed
        resp = streams.block(seed, replication, streams.RESPONSE, n, RESPONSE_COLUMNS)
        self.latents = draw_latents(self.tables, cohort.etiology, resp)
        n_adv = 2 * self.tables.n_ae_slots + N_SERIOUS * len(self.tables.drugs)
        self.adverse = streams.block(seed, replication, streams.ADVERSE, n, n_adv, dtype=np.float32)
        self.followup = streams.block(seed, replication, streams.FOLLOWUP, n, FOLLOWUP_COLUMNS)
        self.special = streams.block(seed, replication, streams.SPECIALIST, n, SPECIALIST_COLUMNS)
        # Issue 10: adherence, index choice, stops for other reasons and under-titration (per drug),
        # relapses and returns after a stop; one row per patient (common random numbers).
        nd = len(self.tables.drugs)
        self.persist = streams.block(seed, replication, streams.PERSISTENCE, n,
                                     2 + 2 * nd + MAX_RELAPSES + MAX_RETURNS, dtype=np.float32)
        pe = self.tables.persistence
        uc = ctx.policy.usual_care
        self.non_ae_stop = tuple(r * uc.stop_rate_ratio for r in self.tables.non_ae_stop_per_year)
        self.index_mix = tuple((ctx.by_name[name], share) for name, share in uc.index_drugs.items() if share > 0)
        self.under = tuple(uc.under_titration.get(d.drug_class, 0.0) for d in self.tables.drugs)
        self.return_after_stop = uc.return_after_stop
        mt = ctx.policy.maintenance
        self.relapse_rate = pe["relapse_per_year"] if mt.relapse else 0.0
        self.buf = array("d")
        self.env = simpy.Environment()
        slots = max(int(config.specialist_slots_per_week), 0)
        self.specialist = simpy.Resource(self.env, capacity=slots) if slots > 0 else None
        ltfu = ctx.policy.loss_to_follow_up_per_year
        self.ltfu_rate = self.tables.follow_up["ltfu_per_year"] if ltfu is None else ltfu
        self.flags = _flag_sets(cohort)
        self._stop_cache: dict[tuple[int, int, float], float] = {}
        self._schedule_cache: dict[tuple, tuple] = {}

    # ---------------------------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None, steps: int = 40) -> np.ndarray:
        """Simulate every patient to the horizon; return the event table (rows x 9).

        With ``progress``, the simulated time is run in ``steps`` slices and ``progress(fraction)`` is
        called after each (results are identical either way).
        """
        env = self.env
        for i in (range(self.cohort.n) if self.only is None else self.only):
            env.process(self._patient(i))
        horizon = self.config.horizon_days
        # The run allocates millions of short-lived objects but creates little cyclic garbage: pausing the
        # cyclic collector for the run saves 10-25% (benchmarks/bench_engine.py); it is collected after.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            if progress is None:
                env.run(until=horizon)
            else:
                for k in range(1, steps + 1):
                    env.run(until=horizon * k / steps)
                    progress(k / steps)
        finally:
            if was_enabled:
                gc.enable()
        return np.frombuffer(self.buf, dtype=np.float64).reshape(-1, NCOL)  # a view: no second copy

    def _log(self, i: int, day: float, ev: int, state: str, drug: int = -1, dose: float = -1.0,
             pain: float = -1.0, detail: int = -1, rule: str | None = None) -> None:
        self.buf.extend((i, day, ev, STATE_CODE[state], drug, dose, pain, detail,
                         self.rule_code[rule] if rule else -1))

    # ---------------------------------------------------------------------------------------------
    def _patient(self, i: int):
        env = self.env
        c = self.cohort
        t = self.tables
        ctx = self.ctx
        facts = PatientFacts(age=float(c.age[i]), etiology=int(c.etiology[i]), localized=bool(c.localized[i]),
                             crcl=float(c.crcl[i]), flags=self.flags[i])
        p = PatientModel(i, facts, float(c.baseline_nrs[i]), bool(c.misuse_risk[i] == 2), ctx)
        lat = self.latents
        ns = float(lat.ns_reduction[i])
        # Row views, not copies: 100k live patient processes must not each hold their draws as lists.
        class_u = lat.class_u[i]
        class_z = lat.class_z[i]
        noise = lat.noise[i]
        adv = self.adverse[i]
        fu = self.followup[i]
        horizon = self.config.horizon_days
        rate = self.ltfu_rate
        ltfu_day = -math.log1p(-float(fu[0])) / rate * 365.0 if rate > 0 else math.inf
        log = self._log
        policy = ctx.policy
        visit = float(policy.visit_interval_days)
        lines: list[_Line] = []
        n_visits = 0
        pu = self.persist[i]
        pe = t.persistence
        # Non-adherent patients get a fraction of each drug's effect (clinical persistence block).
        adherence = pe["non_adherent_effect"] if float(pu[0]) < pe["non_adherence_share"] else 1.0
        obs = (class_u, class_z, ns, noise, adherence)

        log(i, 0.0, E_ASSESS, "assessment", pain=p.baseline, rule="P1")
        for j, why in p.excluded:
            log(i, 0.0, E_EXCLUDE, "assessment", drug=j, rule=why)
        decision = self._usual_index(p, float(pu[1])) if self.index_mix else None
        if decision is None:
            decision = first_choice(p, ctx)
        if self.decide is not None:
            decision = self.decide(p, None, 0.0, p.baseline, decision)

        while True:
            # ---- apply the decision: stop, fire the trigger, start drugs ---------------------------
            now = env.now
            if decision.stop_all and lines:
                self._stop_all(p, lines, now, decision.rule)
            if decision.trigger == "stay":
                return
            # "continue": a protocol keeps the regimen for another step (no transition).
            before = p.state
            if decision.trigger != "continue" and not fire(self.table, p, decision.trigger):
                # The pathway refused the policy's proposal: refer instead (P9) and record why.
                if lines:
                    self._stop_all(p, lines, now, "P9.refractory_referral")
                if not fire(self.table, p, "refer"):
                    return
                decision = Decision("refer", rule="P9.refractory_referral")
            if decision.trigger != "continue":
                log(i, now, E_TRANSITION, p.state, detail=TRIGGER_CODE[decision.trigger], rule=decision.rule)
            if p.state == "relieved":
                p.relieved_from = before
                res = yield from self._maintenance(p, lines, obs, ltfu_day, n_visits)
                if res is None:
                    return
                outcome, pain, n_visits = res
                decision = self._decide_after(p, lines, outcome, env.now, pain, fu, by_patient=True)
                if decision is None:
                    return
                continue
            if p.state == "specialist_referral":
                outcome = yield from self._specialist(p, ltfu_day)
                if outcome == "dropout":
                    fire(self.table, p, "drop_out")
                    log(i, env.now, E_DROPOUT, p.state, rule="X.dropout")
                    return
                if outcome == "relief":
                    fire(self.table, p, "relief")
                    log(i, env.now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relief"], rule="P9.specialist_consult")
                return
            for j in decision.start:
                why = contraindication(t.drugs[j], facts)
                if why is not None:  # P5 holds whoever decided (protocol, trainee): the drug is not given
                    log(i, now, E_EXCLUDE, p.state, drug=j, rule=why)
                    continue
                lines.append(self._start_drug(p, j, now, decision.rule, adv, lines, decision.target))
                p.active = [ln.drug for ln in lines]
            if not lines:  # nothing left to take (e.g. a protocol continuing after an intolerable drug)
                return

            # ---- run the trial up to its evaluation, or an interruption ----------------------------
            newest = lines[-1]
            drug = t.drugs[newest.drug]
            if decision.eval_after > 0:  # protocols fix the step's length
                eval_day = now + decision.eval_after
            else:  # P3: adequate trial at target dose, at the next scheduled visit
                trial = ctx.trial_days[drug.name]
                if drug.drug_class == "strong_opioid":
                    trial = min(trial, policy.strong_opioid.max_trial_days)
                due = max(newest.target_day + trial, newest.start + drug.min_trial_days)
                k = math.ceil((due - newest.start) / visit - 1e-9)
                eval_day = newest.start + max(k, 1) * visit
                if drug.drug_class == "strong_opioid":  # P8.time_limited: judged by the end of the trial period
                    eval_day = min(eval_day, newest.start + policy.strong_opioid.max_trial_days)
            outcome = None
            pain = -1.0
            by_patient = False  # the line ended because the patient stopped (not a failed combination)
            while outcome is None:
                nxt, kind, line, ae = self._next_event(lines, eval_day, ltfu_day)
                if nxt >= horizon:
                    yield env.timeout(horizon - env.now)
                    return
                if nxt > env.now:
                    yield env.timeout(nxt - env.now)
                now = env.now
                self._log_doses(i, p, lines, now)
                if kind == "dropout":
                    self._stop_all(p, lines, now, "X.dropout")
                    fire(self.table, p, "drop_out")
                    log(i, now, E_DROPOUT, p.state, rule="X.dropout")
                    return
                if kind == "ae":
                    if self._adverse_event(p, line, ae, now):
                        lines.remove(line)
                        p.active = [ln.drug for ln in lines]
                        outcome = "intolerable"
                        pain = -1.0
                    continue
                if kind == "stop":  # stopped for reasons other than adverse events (persistence)
                    self._patient_stop(p, line, now)
                    lines.remove(line)
                    p.active = [ln.drug for ln in lines]
                    if not lines:  # the line ended: decided as when a drug cannot be continued
                        outcome = "intolerable"
                        pain = -1.0
                        by_patient = True
                    elif line is newest:  # the regimen's remaining drugs are judged when due
                        newest = lines[-1]
                        drug = t.drugs[newest.drug]
                    continue
                # evaluation visit (P3 adequate trial reached)
                pain = self._pain(p, lines, now, obs, n_visits, 1.0)
                n_visits += 1
                outcome = self._judge(p, pain)
                log(i, now, E_EVAL, p.state, drug=newest.drug, dose=newest.dose_at(now), pain=pain,
                    detail=OUTCOME_CODE[outcome], rule="P3.tca_trial" if drug.drug_class == "tca" else "P3.adequate_trial")

            decision = self._decide_after(p, lines, outcome, env.now, pain, fu, by_patient)
            if decision is None:
                return

    # ---------------------------------------------------------------------------------------------
    def _start_drug(self, p: PatientModel, j: int, now: float, rule: str, adv: np.ndarray,
                    lines: list[_Line], target: float = 0.0) -> _Line:
        t = self.tables
        d = t.drugs[j]
        i = p.idx
        serotonergic_with = "ssri_use" in p.facts.flags or any(t.drugs[ln.drug].serotonergic for ln in lines)
        for check, check_rule in required_checks(d, p.facts, serotonergic_with and d.serotonergic):
            p.checks.add(check)
            self._log(i, now, E_CHECK, p.state, drug=j, detail=CHECKS.index(check), rule=check_rule)
        goal = target if target > 0 else self.ctx.target_doses.get(j)
        nd = len(t.drugs)
        pu = self.persist[i]
        if self.under[j] > 0 and float(pu[2 + nd + j]) < self.under[j]:  # usual care: X.under_titration
            goal = d.titration[0][1]
        speed = self.ctx.policy.titration_speed
        key = (j, dose_cap(d, p.facts)[0], titration_stretch(d, p.facts) * speed, goal)
        cached = self._schedule_cache.get(key)
        if cached is None:  # few distinct (drug, cap, stretch, goal) combinations: compute each once
            cached = self._schedule_cache[key] = schedule(d, p.facts, speed, goal)
        steps, target = cached
        line = _Line(j, now, steps, target)
        pe = t.persistence
        line.stop_at = stop_day(now, self.non_ae_stop[j], pe["early_stop_multiplier"], pe["early_days"], float(pu[2 + j]))
        p.tried.add(j)
        if d.drug_class in ("gabapentinoid", "snri", "tca"):
            p.n_first_line += 1
        elif d.drug_class == "weak_opioid":
            p.tramadol_tried = True
        elif d.drug_class == "strong_opioid":
            p.strong_tried = True
        self._log(i, now, E_START, p.state, drug=j, dose=steps[0][1], rule=rule)
        # Potential adverse events of this exposure, from the patient's fixed draws for this drug.
        for k, slot in enumerate(d.ae_slots):
            u_inc = float(adv[2 * slot])
            if u_inc >= d.ae_max_incidence[k]:  # cannot occur at any dose: skip the onset draw
                continue
            day = now + onset_days(d.ae_onset_median, float(adv[2 * slot + 1]))
            if u_inc < interp(d.ae_incidence[k], line.dose_at(day)):
                line.aes.append((day, d.ae_types[k], u_inc, -1))
        self._serious_events(p, d, line, adv, serotonergic_with)
        line.aes.sort()
        return line

    def _serious_events(self, p: PatientModel, d, line: _Line, adv: np.ndarray, serotonergic_with: bool) -> None:
        t = self.tables
        s = t.serious
        base = 2 * t.n_ae_slots + N_SERIOUS * d.index
        rates = [0.0] * N_SERIOUS  # per year
        if d.sedating and p.facts.age >= s["falls_min_age"]:
            rates[0] = s["falls_per_year"]
        if d.drug_class == "strong_opioid":
            mult = s["misuse_high_mult"] if p.misuse_high else 1.0
            rates[2] = t.misuse_per_year[p.etiology] * mult
            rates[3] = s["resp_depression_per_year"]
        if d.drug_class == "tca" and "cardiovascular_disease" in p.facts.flags:
            rates[4] = s["tca_cardiac_per_year"]
        for k, rate in enumerate(rates):
            if rate > 0:
                day = line.start - math.log1p(-float(adv[base + k])) / rate * 365.0
                line.aes.append((day, self._ae_code(SERIOUS_TYPES[k]), 0.0, k))
        if d.serotonergic and serotonergic_with and d.drug_class == "weak_opioid":
            if float(adv[base + 1]) < s["serotonin_per_exposure"]:
                line.aes.append((line.start + s["serotonin_onset_days"], self._ae_code("serotonin_syndrome"), 0.0, 1))

    def _ae_code(self, name: str) -> int:
        return self.tables.ae_types.index(name)

    def _next_event(self, lines: list[_Line], eval_day: float, ltfu_day: float):
        best = (eval_day, "eval", None, None)
        if ltfu_day < best[0]:
            best = (ltfu_day, "dropout", None, None)
        for ln in lines:
            if ln.aes and ln.aes[0][0] < best[0]:
                best = (ln.aes[0][0], "ae", ln, ln.aes[0])
            if ln.stop_at < best[0]:
                best = (ln.stop_at, "stop", ln, None)
        return best

    def _log_doses(self, i: int, p: PatientModel, lines: list[_Line], now: float) -> None:
        """Record titration steps reached up to ``now`` (P2)."""
        for ln in lines:
            while ln.next_step < len(ln.steps) and ln.start + ln.steps[ln.next_step][0] <= now + 1e-9:
                off, dose = ln.steps[ln.next_step]
                rule = "P2.target_reached" if dose >= ln.target else "P2.titration_step"
                self._log(i, ln.start + off, E_DOSE, p.state, drug=ln.drug, dose=dose, rule=rule)
                ln.next_step += 1

    def _adverse_event(self, p: PatientModel, line: _Line, ae: tuple, now: float) -> bool:
        """Log an adverse event; return True when it ends the drug."""
        t = self.tables
        line.aes.pop(0)
        d = t.drugs[line.drug]
        _, code, u_inc, serious = ae
        dose = line.dose_at(now)
        self._log(p.idx, now, E_AE, p.state, drug=line.drug, dose=dose, detail=code,
                  rule="X.serious_event" if serious >= 0 else "X.adverse_event")
        if serious >= 0:
            stop = True
        else:
            key = (line.drug, code, dose)
            threshold = self._stop_cache.get(key)
            if threshold is None:
                # The event ends the drug with a probability that reproduces the trial's withdrawal rate:
                # incidence(type) * min(1, withdrawal / sum of incidences), all at the current dose.
                total = sum(interp(c, dose) for c in d.ae_incidence)
                wd = interp(d.ae_withdrawal, dose)
                inc = interp(d.ae_incidence[d.ae_types.index(code)], dose)
                threshold = inc * min(1.0, wd / total) if total > 0 else 0.0
                self._stop_cache[key] = threshold
            stop = u_inc < threshold
        if stop:
            self._log(p.idx, now, E_STOP, p.state, drug=line.drug, dose=dose, detail=code,
                      rule="P4.intolerance_switch")
            self._mark_stopped(p, line)
        return stop

    def _mark_stopped(self, p: PatientModel, line: _Line) -> None:
        cls = self.tables.drugs[line.drug].drug_class
        if cls in ("gabapentinoid", "snri", "tca", "topical"):
            p.failed_classes.add(cls)

    def _stop_all(self, p: PatientModel, lines: list[_Line], now: float, rule: str) -> None:
        if p.state == "add_on" and len(lines) > 1:
            p.combination_failed = True
        for ln in lines:
            self._log(p.idx, now, E_STOP, p.state, drug=ln.drug, dose=ln.dose_at(now), rule=rule)
            self._mark_stopped(p, ln)
        lines.clear()
        p.active = []

    # ---- issue 10: usual care's index drug, the year after the first answer -----------------------
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

    def _pain(self, p: PatientModel, lines: list[_Line], now: float, obs: tuple, k: int, retained: float) -> float:
        """Observed NRS at a visit: drug effects (times adherence and, after a relapse, the share retained)."""
        t = self.tables
        class_u, class_z, ns, noise, adherence = obs
        scale = adherence * retained
        effects = []
        for n_line, ln in enumerate(lines):
            d = t.drugs[ln.drug]
            e = drug_effect(t, d, ln.dose_at(now), now - ln.start, p.etiology,
                            float(class_u[d.class_index]), float(class_z[d.class_index]), p.facts.localized) * scale
            effects.append(e * t.combination_factor if n_line > 0 else e)
        return observed_pain(p.baseline, ns, t.ns_onset, now, effects, t.noise_sd, float(noise[k % MAX_VISITS]))

    def _judge(self, p: PatientModel, pain: float) -> str:
        """P4: relief, partial or none, by the policy's response rule."""
        resp = self.ctx.policy.response
        red = (p.baseline - pain) / p.baseline if p.baseline > 0 else 0.0
        if red >= resp.relief_min_reduction and pain < resp.relief_max_nrs:
            return "relief"
        return "partial" if red >= resp.partial_min_reduction else "none"

    def _patient_stop(self, p: PatientModel, line: _Line, now: float) -> None:
        """The patient stops a drug for reasons other than adverse events (X.patient_stop)."""
        self._log(p.idx, now, E_STOP, p.state, drug=line.drug, dose=line.dose_at(now), rule="X.patient_stop")

    def _leave(self, p: PatientModel, lines: list[_Line], now: float, rule: str) -> None:
        self._stop_all(p, lines, now, rule)
        fire(self.table, p, "drop_out")
        self._log(p.idx, now, E_DROPOUT, p.state, rule=rule)

    def _decide_after(self, p: PatientModel, lines: list[_Line], outcome: str, now: float, pain: float,
                      fu: np.ndarray, by_patient: bool = False) -> Decision | None:
        """The next decision after a line's outcome (None: the patient left care). ``by_patient``: the line
        ended in maintenance or by the patient's own stop, so a combination has not failed (P8)."""
        t = self.tables
        if outcome != "relief":
            p.n_failed += 1
            # P4: a failed line may end care (named assumption: dropout_after_failed_line).
            u = float(fu[1 + min(p.n_failed, FOLLOWUP_COLUMNS - 2)])
            if u < t.follow_up["dropout_after_failed_line"]:
                self._leave(p, lines, now, "X.dropout")
                return None
            if self.return_after_stop < 1.0:  # usual care: no scheduled visit brings the patient back
                col = 2 + 2 * len(t.drugs) + MAX_RELAPSES + min(p.n_failed - 1, MAX_RETURNS - 1)
                if float(self.persist[p.idx][col]) >= self.return_after_stop:
                    self._leave(p, lines, now, "X.left_treatment")
                    return None
            if outcome == "intolerable" and p.state == "add_on" and not by_patient:
                p.combination_failed = True
        decision = next_step(p, self.ctx, outcome, now, pain)
        if self.decide is not None:
            decision = self.decide(p, outcome, now, pain, decision)
        return decision

    def _maintenance(self, p: PatientModel, lines: list[_Line], obs: tuple, ltfu_day: float, n_visits: int):
        """After relief: the regimen continues with maintenance visits (P4.maintenance_visit), every
        ``opioid_visit_interval_days`` while an opioid runs (P8.reassessment, S004). Adverse events, stops
        for other reasons and loss to follow-up continue. At each visit the response is judged again; relief
        lost (or no drug left) sends the patient back to the state he was relieved in (P4.relapse).

        Returns ``(outcome, pain, n_visits)`` for the policy's next decision, or None (horizon, drop-out)."""
        env = self.env
        t = self.tables
        i = p.idx
        horizon = self.config.horizon_days
        mt = self.ctx.policy.maintenance
        relapsable = p.relieved_from in TREATING  # relief after a specialist intervention: the clinic's (i12)
        u = float(self.persist[i][2 + 2 * len(t.drugs) + min(p.n_relapses, MAX_RELAPSES - 1)])
        rate = self.relapse_rate
        relapse_day = env.now - math.log1p(-u) / rate * 365.0 if rate > 0 and relapsable else math.inf
        retained = t.persistence["relapse_effect_retained"]
        last_visit = env.now
        confirming = False  # a visit without relief is confirmed at the next regular visit before any change
        while True:
            classes = [t.drugs[ln.drug].drug_class for ln in lines]
            opioid = "weak_opioid" in classes or "strong_opioid" in classes
            if confirming:
                visit_day = last_visit + self.ctx.policy.visit_interval_days
            else:
                visit_day = last_visit + (mt.opioid_visit_interval_days if opioid else mt.visit_interval_days)
            nxt, kind, line, ae = self._next_event(lines, visit_day, ltfu_day)
            if nxt >= horizon:
                yield env.timeout(horizon - env.now)
                return None
            if nxt > env.now:
                yield env.timeout(nxt - env.now)
            now = env.now
            self._log_doses(i, p, lines, now)
            if kind == "dropout":
                self._leave(p, lines, now, "X.dropout")
                return None
            if kind in ("ae", "stop"):
                if kind == "ae" and not self._adverse_event(p, line, ae, now):
                    continue
                if kind == "stop":
                    self._patient_stop(p, line, now)
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
                if lines or not relapsable:  # the rest of the regimen is judged at the next visit
                    continue
                outcome, pain = "intolerable", -1.0
            else:
                last_visit = now
                pain = self._pain(p, lines, now, obs, n_visits, retained if now >= relapse_day else 1.0)
                n_visits += 1
                outcome = self._judge(p, pain)
                rule = "P8.reassessment" if "strong_opioid" in classes else "P4.maintenance_visit"
                newest = lines[-1] if lines else None
                self._log(i, now, E_MAINT, p.state, drug=newest.drug if newest else -1,
                          dose=newest.dose_at(now) if newest else -1.0, pain=pain, detail=OUTCOME_CODE[outcome],
                          rule=rule)
                if outcome == "relief" or not relapsable:
                    confirming = False
                    continue
                if not confirming and mt.confirm_loss:
                    confirming = True
                    continue
            p.n_relapses += 1
            fire(self.table, p, "relapse")
            self._log(i, now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relapse"], rule="P4.relapse")
            return outcome, pain, n_visits

    def _specialist(self, p: PatientModel, ltfu_day: float):
        """Queue for a specialist slot (P9), hold it for the consult, draw its outcome."""
        env = self.env
        t = self.tables
        i = p.idx
        queued = env.now
        self._log(i, queued, E_QUEUE, p.state, rule="P9.refractory_referral")
        if self.specialist is None:
            if ltfu_day < self.config.horizon_days:
                yield env.timeout(max(ltfu_day - env.now, 0.0))
                return "dropout"
            yield env.timeout(self.config.horizon_days - env.now)
            return "waiting"
        req = self.specialist.request()
        wait_until = ltfu_day - env.now
        if math.isfinite(wait_until):
            res = yield req | env.timeout(max(wait_until, 0.0))
            if req not in res:
                req.cancel()
                return "dropout"
        else:
            yield req
        self._log(i, env.now, E_CONSULT, p.state, pain=-1.0, detail=-1, dose=env.now - queued,
                  rule="P9.specialist_consult")
        yield env.timeout(t.specialist["consult_days"])
        self.specialist.release(req)
        fire(self.table, p, "consult")
        u = self.special[i].tolist()
        if u[0] < t.specialist["intervention_prob"]:
            ok = u[1] < t.intervention_success[p.etiology]
            code = 0 if ok else 1
        else:
            ok = u[2] < t.specialist["conservative_relief_prob"]
            code = 2 if ok else 3
        self._log(i, env.now, E_TRANSITION, p.state, detail=TRIGGER_CODE["consult"], rule="P9.specialist_consult")
        self._log(i, env.now, E_CONSULT, p.state, detail=code, rule="P9.specialist_consult")
        if not ok:
            return "no_relief"
        relief_day = env.now + t.specialist["days_to_relief"]
        if ltfu_day < relief_day:
            if ltfu_day < self.config.horizon_days:
                yield env.timeout(max(ltfu_day - env.now, 0.0))
                return "dropout"
            return "no_relief"
        yield env.timeout(relief_day - env.now)
        return "relief"


def _flag_sets(c: Cohort) -> list[frozenset[str]]:
    """Per patient, the set of true flags the safety rules read."""
    names = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "glaucoma",
             "orthostatic_hypotension", "ssri_use", "depression")
    cols = [np.asarray(getattr(c, n), dtype=bool) for n in names]
    hiv = np.asarray(c.etiology) == 5
    high = np.asarray(c.misuse_risk) == 2
    cols += [hiv, high]
    names = names + ("hiv_neuropathy", "high_misuse_risk")
    packed = np.stack(cols, axis=1)
    cache: dict[bytes, frozenset[str]] = {}
    out: list[frozenset[str]] = []
    for row in packed:
        key = row.tobytes()
        fs = cache.get(key)
        if fs is None:
            fs = frozenset(n for n, v in zip(names, row, strict=True) if v)
            cache[key] = fs
        out.append(fs)
    return out


def simulate_replication(ctx: PolicyContext, cohort: Cohort, config: EngineConfig, replication: int) -> np.ndarray:
    """Run one replication and return its event table."""
    return Simulation(ctx, cohort, config, replication).run()
