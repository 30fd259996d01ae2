"""The discrete-event engine: synthetic patients walking the pathway in SimPy time (days).

Each patient is one SimPy process. A treatment line is simulated as: start the drug(s) on their
(patient-adjusted) titration schedule, wait for the adequate trial at target dose and the next
scheduled visit (P3), evaluate pain, and let the policy decide the next step (P4-P9), which the
pathway's compiled transition table accepts or refuses. Adverse events, serious events and loss to
follow-up happen in continuous time and may interrupt a line. Specialist referral queues for the pain
clinic (:mod:`simulator.engine.clinic`: capacity as a rate, a slot calendar or servers), so waits are measured.
In an open population each patient enters on their own day (``EngineConfig.entry_days``); event days are
days of the run, not of the patient. What each row of the event log means: ``docs/event-log.md``.

The hot loop appends plain numbers to one flat ``array('d')`` event buffer (9 columns per row; see
:data:`COLUMNS`); the event table is built once at the end. No pydantic object, logging call or string
formatting runs per event. Clinical numbers come only from the compiled model tables.
"""

from __future__ import annotations

import gc
import math
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import simpy

from ..model import streams
from ..model.care import index_drug, stop_day
from ..model.catalog import FIRST_LINE_CLASSES
from ..model.clinical_tables import SERIOUS_TYPES, ModelTables, interp
from ..model.decisions import first_choice, next_step, serotonin_blocked
from ..model.pathway import (
    OUTCOMES,
    STATES,
    TRANSITIONS,
    TREATING,
    TRIGGERS,
    Table,
    can_fire,
    compile_table,
    fire,
)
from ..model.patient import PatientModel
from ..model.policy_context import Decision, PolicyContext
from ..model.response import RESPONSE_COLUMNS, draw_latents, drug_effect, observed_pain, onset_days
from ..model.rules import load_rules
from ..model.safety import (
    PatientFacts,
    Plan,
    contraindication,
    drug_rules,
    plan,
    reduced_dose,
    required_checks,
)
from ..population.cohort import Cohort
from .clinic import Clinic, ClinicConfig

# Event codes (column ``event``).
EVENTS: tuple[str, ...] = ("assessment", "transition", "drug_start", "dose_change", "drug_stop", "evaluation",
                           "adverse_event", "safety_check", "excluded", "referral_queued", "consult",
                           "dropout", "dose_limit", "taper_start", "maintenance_visit", "queue_left")
(E_ASSESS, E_TRANSITION, E_START, E_DOSE, E_STOP, E_EVAL, E_AE, E_CHECK, E_EXCLUDE, E_QUEUE, E_CONSULT,
 E_DROPOUT, E_LIMIT, E_TAPER, E_MAINT, E_LEFT) = range(len(EVENTS))
"""Event kinds (docs/event-log.md); new kinds are appended so older codes keep their meaning."""
_OPTIMISABLE = ("gabapentinoid", "snri", "tca", "weak_opioid")  # P3.dose_optimisation applies to these
CHECKS: tuple[str, ...] = ("ecg", "serotonin_check", "misuse_screen", "treatment_agreement")
CONSULT_OUTCOMES: tuple[str, ...] = ("intervention_success", "intervention_failed", "conservative_relief",
                                     "conservative_no_relief")
COLUMNS: tuple[str, ...] = ("patient", "day", "event", "state", "drug", "dose", "pain", "detail", "rule")
NCOL = len(COLUMNS)
_ROW = struct.Struct(f"{NCOL}d")  # one row of the event buffer: NCOL doubles in native order, as array("d")
STATE_CODE = {s: i for i, s in enumerate(STATES)}
TRIGGER_CODE = {t: i for i, t in enumerate(TRIGGERS)}
OUTCOME_CODE = {o: i for i, o in enumerate(OUTCOMES)}
N_SERIOUS = len(SERIOUS_TYPES)
MAX_RELAPSES = 8  # relapse draws per patient (later relief episodes reuse the last; issue 10)
MAX_RETURNS = 16  # return-after-stop draws per patient (later lines reuse the last; issue 10)
_INDEX_TRIGGER = {"gabapentinoid": "start_first_line", "snri": "start_first_line", "tca": "start_first_line",
                  "topical": "start_topical", "weak_opioid": "escalate_tramadol",
                  "strong_opioid": "escalate_strong_opioid"}
FOLLOWUP_COLUMNS = 16  # column 0: loss to follow-up; 1-15 unused since per-visit draws are keyed (kept: same draws)
SPECIALIST_COLUMNS = 4


def rule_codes() -> tuple[tuple[str, ...], dict[str, int]]:
    ids = tuple(load_rules().ids())
    return ids, {r: i for i, r in enumerate(ids)}


@dataclass(frozen=True)
class EngineConfig:
    """Plain settings of one run of the engine (from the scenario).

    ``specialist_slots_per_week``: the clinic's consults per week (a rate, realised exactly by its slot
    calendar) when ``clinic`` is not given. ``entry_days``: day each patient enters (open populations);
    None: everyone on day 0 (a closed cohort).
    """

    horizon_days: float
    specialist_slots_per_week: float
    seed: int
    clinic: ClinicConfig | None = None
    entry_days: np.ndarray | None = field(default=None, compare=False)


Decide = Callable[[PatientModel, "str | None", float, float, Decision], Decision]


class _Line:
    """One drug being taken: its schedule and pending adverse events."""

    __slots__ = ("drug", "start", "steps", "target", "maximum", "factor", "inc", "interval", "next_step", "aes",
                 "target_day", "reduced", "optimised", "opt_from", "added", "topical_addon", "seen", "to_response", "stop_at")

    def __init__(self, drug: int, start: float, plan: Plan, added: bool = False, topical_addon: bool = False,
                 to_response: bool = False) -> None:
        self.drug = drug
        self.start = start
        self.steps = plan.steps
        self.target = plan.target
        self.maximum = plan.maximum
        self.factor = plan.factor  # renal exposure: a dose x acts like x / factor (P5.renal_dose)
        self.inc = plan.increment
        self.interval = plan.interval
        self.next_step = 1
        self.aes: list[tuple[float, int, float, int]] = []  # (day, ae type code, inc uniform, serious index)
        target_off = self.steps[-1][0]
        for off, d in self.steps:  # the first step at the target dose (a loop: no generator per drug start)
            if d >= self.target:
                target_off = off
                break
        self.target_day = start + target_off
        self.reduced = False
        self.optimised = False
        self.opt_from = 1 << 30  # index of the first P3.dose_optimisation step
        self.added = added
        self.topical_addon = topical_addon
        self.seen = 0  # bit k: adverse-event type k of the drug is scheduled or has occurred
        self.to_response = to_response
        self.stop_at = math.inf  # day the patient stops it for reasons other than adverse events (issue 10)

    def dose_at(self, day: float) -> float:
        last_off, last_dose = self.steps[-1]
        if self.start + last_off <= day + 1e-9:  # steps are in day order: past the last, its dose (most calls)
            return last_dose
        dose = self.steps[0][1]
        for off, d in self.steps:
            if self.start + off <= day + 1e-9:
                dose = d
            else:
                break
        return dose


# Checks a declared departure skips (teaching: the trainee meets the consequence of skipping them).
SKIPPED_CHECKS: dict[str, frozenset[str]] = {"no_serotonin_check": frozenset({"serotonin_check"}),
                                             "no_misuse_screen": frozenset({"misuse_screen", "treatment_agreement"})}
_OPIOID_TRIGGER = {"weak_opioid": "escalate_tramadol", "strong_opioid": "escalate_strong_opioid"}
_FAILED_OUTCOMES = ("partial", "none")


class Simulation:
    """Runs one replication of one scenario over a cohort."""

    def __init__(self, ctx: PolicyContext, cohort: Cohort, config: EngineConfig, replication: int,
                 only: list[int] | None = None, decide: Decide | None = None) -> None:
        """``only``: simulate just these patient indices (each with its own draws, as in the full cohort).
        ``decide``: replaces the policy's decisions (teaching: a trainee's choices); it is called as
        ``decide(patient, outcome, day, pain, proposed)`` with ``outcome`` None at the assessment visit,
        and returns the Decision to apply. Two Decision fields exist for it (the tutor): ``adjust`` re-doses
        or stops running drugs without a transition, and ``departure`` (a name of ``policy.DEPARTURES``)
        takes a step the pathway's guard refuses, or skips the checks :data:`SKIPPED_CHECKS` names."""
        self.only = only
        self.decide = decide
        self.ctx = ctx
        self.tables: ModelTables = ctx.tables
        self.cohort = cohort
        self.config = config
        self.rep = replication
        self.table: Table = compile_table(PatientModel)
        self.rule_ids, self.rule_code = rule_codes()
        self.extras = tuple(drug_rules(d.name) for d in self.tables.drugs)
        self.serotonergic = tuple(d.serotonergic for d in self.tables.drugs)
        self.weak_opioid = tuple(d.drug_class == "weak_opioid" for d in self.tables.drugs)
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
        uc = ctx.policy.usual_care
        self.non_ae_stop = tuple(r * uc.stop_rate_ratio for r in self.tables.non_ae_stop_per_year)
        self.index_mix = tuple((ctx.by_name[name], share) for name, share in uc.index_drugs.items() if share > 0)
        self.under = tuple(uc.under_titration.get(d.drug_class, 0.0) for d in self.tables.drugs)
        self.return_after_stop = uc.return_after_stop
        self.relapse_rate = self.tables.persistence["relapse_per_year"] if ctx.policy.maintenance.relapse else 0.0
        # Per-visit draws are keyed by (patient, visit day), so an added visit leaves the others unchanged.
        self.noise_key = streams.stream_key(seed, replication, streams.VISIT_NOISE)
        self.dropout_key = streams.stream_key(seed, replication, streams.VISIT_DROPOUT)
        self.buf = array("d")
        self.env = simpy.Environment()
        clinic = config.clinic or ClinicConfig(max(float(config.specialist_slots_per_week), 0.0))
        self.clinic = Clinic(self.env, clinic, config.horizon_days)
        self.entry = config.entry_days
        ltfu = ctx.policy.loss_to_follow_up_per_year
        self.ltfu_rate = self.tables.follow_up["ltfu_per_year"] if ltfu is None else ltfu
        self.flags = _flag_sets(cohort)
        self._stop_cache: dict[tuple[int, int, float], float] = {}
        self._plan_cache: dict[tuple, Plan] = {}
        self._regimens: dict[int, tuple[PatientModel, list[_Line]]] = {}

    # ---------------------------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None, steps: int = 40) -> np.ndarray:
        """Simulate every patient to the horizon; return the event table (rows x 9).

        With ``progress``, the simulated time is run in ``steps`` slices and ``progress(fraction)`` is
        called after each (results are identical either way).
        """
        env = self.env
        patients = [self._patient(i) for i in (range(self.cohort.n) if self.only is None else self.only)]
        for gen in patients:
            env.process(gen)
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
        # The log is complete to the horizon: titration steps reached before it by regimens still running
        # (waiting for an evaluation, a consult, or in maintenance) are logged, whatever the horizon.
        for i, (p, lines) in self._regimens.items():
            self._log_doses(i, p, lines, horizon, before=True)
        # Free the patients' state now (their processes wait at the horizon, in a reference cycle with the
        # environment): otherwise it lives on, hundreds of MB at 100k patients, until a full garbage
        # collection, through the outcomes computed next.
        for gen in patients:
            gen.close()
        self._regimens.clear()
        return np.frombuffer(self.buf, dtype=np.float64).reshape(-1, NCOL)  # a view: no second copy

    def _log(self, i: int, day: float, ev: int, state: str, drug: int = -1, dose: float = -1.0,
             pain: float = -1.0, detail: int = -1, rule: str | None = None) -> None:
        # One call per log row (millions per run): struct packs the row in one C loop, several times faster than
        # array.extend/fromlist, which parse every item on its own.
        self.buf.frombytes(_ROW.pack(i, day, ev, STATE_CODE[state], drug, dose, pain, detail,
                                     self.rule_code[rule] if rule else -1))

    # ---------------------------------------------------------------------------------------------
    def _patient(self, i: int):
        env = self.env
        if self.entry is not None and self.entry[i] > 0:  # open population: the patient enters later
            yield env.timeout(float(self.entry[i]))
        entry = env.now
        c = self.cohort
        t = self.tables
        ctx = self.ctx
        facts = PatientFacts(age=float(c.age[i]), etiology=int(c.etiology[i]), localized=bool(c.localized[i]),
                             crcl=float(c.crcl[i]), flags=self.flags[i])
        p = PatientModel(i, facts, float(c.baseline_nrs[i]), bool(c.misuse_risk[i] == 2), ctx)
        lat = self.latents
        ns_onset = float(lat.ns_onset[i])
        # Row views, not copies: 100k live patient processes must not each hold their draws as lists.
        drug_z = lat.drug_z[i]
        adv = self.adverse[i]
        fu = self.followup[i]
        horizon = self.config.horizon_days
        rate = self.ltfu_rate
        ltfu_day = entry - math.log1p(-float(fu[0])) / rate * 365.0 if rate > 0 else math.inf
        p.until = min(ltfu_day, horizon)  # tapers are logged up to here
        log = self._log
        policy = ctx.policy
        visit = float(policy.visit_interval_days)
        lines: list[_Line] = []
        self._regimens[i] = (p, lines)  # for the end-of-run titration log (see run)
        outcome: str | None = None
        pain = p.baseline
        pu = self.persist[i]
        pe = t.persistence
        # Non-adherent patients get a fraction of each drug's effect (clinical persistence block).
        adherence = pe["non_adherent_effect"] if float(pu[0]) < pe["non_adherence_share"] else 1.0
        obs = (drug_z, ns_onset, adherence, entry)

        log(i, entry, E_ASSESS, "assessment", pain=p.baseline, rule="P1")
        for j, why in p.excluded:
            log(i, entry, E_EXCLUDE, "assessment", drug=j, rule=why)
        decision = self._usual_index(p, float(pu[1])) if self.index_mix else None
        if decision is None:
            decision = first_choice(p, ctx)
        if self.decide is not None:
            decision = self.decide(p, None, 0.0, p.baseline, decision)

        while True:
            # ---- apply the decision: stop, fire the trigger, start drugs ---------------------------
            now = env.now
            if decision.start and decision.trigger in ("add_on", "switch", "start_first_line", "continue"):
                # Opioids go through their own gates (P7, P8) whoever decided (protocol step, trainee).
                cls = t.drugs[decision.start[0]].drug_class
                if cls in _OPIOID_TRIGGER:
                    decision = replace(decision, trigger=_OPIOID_TRIGGER[cls])
            for j, why in decision.notes:
                log(i, now, E_EXCLUDE, p.state, drug=j, rule=why)
            if decision.trigger == "optimise":  # P3: raise the newest drug's dose; no transition
                self._optimise(p, lines[-1], now, adv)
                self._add_alongside(p, decision, lines, now, adv, len(lines) - 1)
            else:
                # "continue": a protocol keeps the regimen for another step (no transition).
                before = p.state
                moving = decision.trigger not in ("continue", "stay")
                dest = can_fire(self.table, p, decision.trigger) if moving else None
                # A declared departure (tutor) takes the step the pathway's guard refuses.
                forced = moving and dest is None and bool(decision.departure)
                if moving and dest is None and not forced:
                    # The pathway refuses the proposal: refer instead (P9), and the stops cite the referral;
                    # after a specialist consult, discharge to primary care on the current regimen.
                    if fire(self.table, p, "refer"):
                        decision = Decision("refer", rule="P9.refractory_referral")
                        self._stop_for_referral(p, lines, now, "P9.refractory_referral")
                    elif fire(self.table, p, "discharge"):
                        decision = Decision("discharge", rule="P9.discharge_plan")
                    else:
                        if lines:
                            self._stop_all(p, lines, now, "P9.refractory_referral", False, (), True)
                        self._finish_tapers(p)
                        return
                else:
                    if decision.adjust:
                        self._adjust(p, lines, now, decision, adv)
                    if decision.trigger == "refer":
                        self._stop_for_referral(p, lines, now, decision.rule)
                    elif decision.stop_all and lines:
                        self._stop_all(p, lines, now, decision.stop_rule or decision.rule,
                                       outcome in _FAILED_OUTCOMES and decision.fails_class, decision.keep)
                    if decision.trigger == "stay":  # nothing more is decided; what still runs continues
                        yield from self._regimen_continues(p, lines, obs)
                        return
                    if forced:
                        p.state = _destination(p.state, decision.trigger)
                    elif moving:
                        fire(self.table, p, decision.trigger)  # passes: checked by can_fire above
                if decision.trigger != "continue":
                    log(i, now, E_TRANSITION, p.state, detail=TRIGGER_CODE[decision.trigger], rule=decision.rule)
                if p.state == "relieved" and before not in TREATING:  # e.g. relief the clinic brought
                    yield from self._regimen_continues(p, lines, obs)
                    return
                if p.state == "relieved":  # issue 10: maintenance, and back into the pathway on a relapse
                    p.relieved_from = before
                    res = yield from self._maintenance(p, lines, obs, ltfu_day)
                    if res is None:
                        return
                    outcome, pain = res
                    decision = self._decide_after(p, lines, outcome, env.now, pain, entry, by_patient=True)
                    if decision is None:
                        return
                    continue
                if p.state == "discharged":
                    self._stop_opioids(p, lines, now)  # P8.stop_ineffective: discharged without relief
                    yield from self._regimen_continues(p, lines, obs)
                    return
                if p.state == "specialist_referral":
                    p.referred_from = before
                    result = yield from self._specialist(p, lines, ltfu_day, adv, obs, decision.rule)
                    if result == "dropout":
                        self._drop_out(p, lines, env.now)
                        return
                    if result == "relief":
                        fire(self.table, p, "relief")
                        log(i, env.now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relief"],
                            rule="P9.specialist_consult")
                        yield from self._regimen_continues(p, lines, obs)  # relapse after the clinic: not modelled
                        return
                    if result == "waiting":
                        return
                    if result == "relieved_waiting":  # relieved by the regimen while queued: left the queue
                        fire(self.table, p, "relief")
                        log(i, env.now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relief"],
                            rule="P9.relieved_while_waiting")
                        p.relieved_from = p.referred_from  # a relapse returns there (and may be referred again)
                        res = yield from self._maintenance(p, lines, obs, ltfu_day)
                        if res is None:
                            return
                        outcome, pain = res
                        decision = self._decide_after(p, lines, outcome, env.now, pain, entry, by_patient=True)
                        if decision is None:
                            return
                        continue
                    # A consult without relief returns the patient to the pathway's remaining options, decided
                    # by the policy (the specialist's plan; not the trainee's choice in teaching runs).
                    outcome = "none"
                    p.optimisable = False
                    decision = next_step(p, ctx, "none", env.now - entry, pain)
                    continue
                if decision.start and p.taper_end > now and self._wait_for_taper(p, decision.start):
                    # P5: no cross-taper (policy), or a serotonergic drug must be gone first (serotonin: avoid).
                    # The next drug starts just after the taper's last stop (1e-6 d, below the log's resolution
                    # of 1e-3 d), so the log orders the stop before the start whatever the float rounding.
                    until = p.taper_end + 1e-6
                    if ltfu_day < until:
                        if ltfu_day >= horizon:
                            yield env.timeout(horizon - env.now)
                            return
                        yield env.timeout(max(ltfu_day - env.now, 0.0))
                        self._drop_out(p, lines, env.now)
                        return
                    if until >= horizon:
                        yield env.timeout(horizon - env.now)
                        return
                    yield env.timeout(until - env.now)
                    now = env.now
                self._add_alongside(p, decision, lines, now, adv, len(lines))
                added = bool(lines) and not decision.stop_all
                for j in decision.start:
                    why = contraindication(t.drugs[j], facts)
                    if why is None and serotonin_blocked(p, ctx, j):
                        why = "P5.serotonin_avoid"
                    if why is not None:  # P5 holds whoever decided (protocol, trainee): the drug is not given
                        log(i, now, E_EXCLUDE, p.state, drug=j, rule=why)
                        continue
                    lines.append(self._start_drug(p, j, now, decision.rule, adv, lines, decision.target, added,
                                                  decision.trigger == "add_topical", decision.departure))
                    p.active = [ln.drug for ln in lines]
            if not lines:  # nothing left to take (e.g. a protocol continuing after an intolerable drug)
                self._finish_tapers(p)
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
            # P8.reassessment: whatever the newest drug, a strong opioid still running is reassessed in time.
            eval_day = min(eval_day, self._reassess_by(p, lines))
            outcome = None
            pain = -1.0
            by_patient = False  # the line ended because the patient stopped (not judged)
            judged = 0  # P8.titrate_to_response: the titration step judged last
            while outcome is None:
                interim = False
                day_eval = eval_day
                if newest.to_response and judged < newest.next_step < len(newest.steps):
                    # P8.titrate_to_response: judged the day before each titration step
                    step_day = newest.start + newest.steps[newest.next_step][0] - 1.0
                    if step_day < eval_day:
                        day_eval, interim = max(step_day, env.now), True
                nxt, kind, line, ae = self._next_event(lines, day_eval, ltfu_day)
                if nxt >= horizon:
                    yield env.timeout(horizon - env.now)
                    return
                if nxt > env.now:
                    yield env.timeout(nxt - env.now)
                now = env.now
                self._log_doses(i, p, lines, now)
                if kind == "dropout":
                    self._drop_out(p, lines, now)
                    return
                if kind == "ae":
                    stop = self._adverse_event(p, line, ae, now, lines)
                    if stop:
                        base_left = len(lines) > 1 and line is not lines[0]
                        lines.remove(line)
                        p.active = [ln.drug for ln in lines]
                        if line.topical_addon and lines:
                            # A topical added alongside stops alone; the trial goes on, judged (and logged)
                            # on the newest drug still taken.
                            if line is newest:
                                newest = lines[-1]
                                drug = t.drugs[newest.drug]
                            continue
                        outcome = "intolerable"
                        pain = -1.0
                        p.intolerant = line.drug
                        if base_left and p.state == "add_on":
                            p.n_failed -= 1  # P4.addon_not_tolerated: no failed line is counted
                    continue
                if kind == "stop":  # stopped for reasons other than adverse events (persistence, issue 10)
                    self._stop_line(p, line, now, "X.patient_stop")
                    lines.remove(line)
                    p.active = [ln.drug for ln in lines]
                    if not lines:  # the line ended: decided as when a drug cannot be continued
                        outcome = "intolerable"
                        pain = -1.0
                        by_patient = True
                    elif line is newest:  # the regimen's remaining drugs are judged when due: the newest oral
                        # one, not a topical added alongside it (P6.topical_add; the topical has its own trial)
                        newest = next((ln for ln in reversed(lines) if not ln.topical_addon), lines[-1])
                        drug = t.drugs[newest.drug]
                        if newest.topical_addon:  # only the topical is left: judged after its own trial (P3)
                            k = math.ceil((newest.target_day + ctx.trial_days[drug.name] - newest.start) / visit - 1e-9)
                            eval_day = max(eval_day, newest.start + max(k, 1) * visit)
                    continue
                # evaluation visit (P3 adequate trial reached, or a strong-opioid titration step)
                pain = self._pain(p, lines, now, obs, 1.0)
                p.last_pain = pain
                p.assessed = now
                outcome = self._judge(p, pain)
                if interim:
                    rule = "P8.titrate_to_response"
                elif drug.drug_class == "tca":
                    rule = "P3.tca_trial"
                else:
                    rule = "P3.adequate_trial"
                log(i, now, E_EVAL, p.state, drug=newest.drug, dose=newest.dose_at(now), pain=pain,
                    detail=OUTCOME_CODE[outcome], rule=rule)
                if interim:
                    judged = newest.next_step
                    if outcome == "relief":  # the smallest effective dose: titration stops here
                        newest.steps = newest.steps[:newest.next_step]
                        newest.target = newest.steps[-1][1]
                    else:
                        outcome = None

            decision = self._decide_after(p, lines, outcome, env.now, pain, entry, by_patient)
            if decision is None:
                return

    # ---------------------------------------------------------------------------------------------
    def _decide_after(self, p: PatientModel, lines: list[_Line], outcome: str, now: float, pain: float,
                      entry: float, by_patient: bool = False) -> Decision | None:
        """The policy's next decision after a line's outcome, or None when the patient leaves care.

        ``by_patient``: the line ended in maintenance (P4.relapse) or by the patient's own stop; no drug
        was judged at an evaluation, so no agent or combination is counted as failed (P8)."""
        t = self.tables
        if outcome in _FAILED_OUTCOMES and not by_patient:
            self._judge_failure(p, lines)
        newest_line = lines[-1] if lines else None
        # P3: one oral drug judged on its own (a topical alongside does not count)
        p.optimisable = (newest_line is not None and not newest_line.topical_addon and not newest_line.reduced
                         and sum(1 for ln in lines if not ln.topical_addon) == 1
                         and not newest_line.optimised and newest_line.dose_at(now) < newest_line.maximum - 1e-9
                         and t.drugs[newest_line.drug].drug_class in _OPTIMISABLE)
        if outcome != "relief":
            p.n_failed += 1
        decision = next_step(p, self.ctx, outcome, now - entry, pain)
        if outcome != "relief" and decision.trigger in ("optimise", "continue"):
            # Not a failed line: the dose is optimised first (P3), or a protocol step continues.
            p.n_failed -= 1
        elif outcome != "relief" and not (outcome == "intolerable" and p.state == "add_on" and lines) \
                and p.taper_end <= now:
            # P4: a failed line may end care (named assumption: dropout_after_failed_line); not in the
            # middle of a taper, whose rows are already logged.
            u = streams.keyed_uniform(self.dropout_key, p.idx, streams.day_slot(now - entry))
            if u < t.follow_up["dropout_after_failed_line"]:
                self._drop_out(p, lines, now)
                return None
            if self.return_after_stop < 1.0:  # usual care: no scheduled visit brings the patient back
                col = 2 + 2 * len(t.drugs) + MAX_RELAPSES + min(max(p.n_failed - 1, 0), MAX_RETURNS - 1)
                if float(self.persist[p.idx][col]) >= self.return_after_stop:
                    self._drop_out(p, lines, now, "X.left_treatment")
                    return None
        if self.decide is not None:
            decision = self.decide(p, outcome, now - entry, pain, decision)
        return decision

    def _judge_failure(self, p: PatientModel, lines: list[_Line]) -> None:
        """An inadequate evaluation: the running first-line agents failed (P8 count), and a gabapentinoid
        running with an antidepressant is a failed combination (P4, P8; S000, S002, S004)."""
        drugs = self.tables.drugs
        classes = {drugs[ln.drug].drug_class for ln in lines}
        for c in classes:
            if c in FIRST_LINE_CLASSES:
                p.failed_agent_classes.add(c)
        if "gabapentinoid" in classes and ("snri" in classes or "tca" in classes):
            p.combination_failed = True

    def _wait_for_taper(self, p: PatientModel, start: tuple[int, ...]) -> bool:
        """True when the next drug must wait for the running tapers to end (P5); a drug being tapered is never
        restarted during its own taper (e.g. P7 tramadol after a tramadol bridge tapered at the consult)."""
        pol = self.ctx.policy
        if not pol.cross_taper or any(j in start and end > self.env.now + 1e-9 for j, end in p.tapering):
            return True
        drugs = self.tables.drugs
        return pol.serotonin == "avoid" and any(drugs[j].serotonergic for j in start) \
            and any(drugs[j].serotonergic for j, _end in p.tapering)

    def _plan(self, p: PatientModel, j: int, goal: float | None) -> Plan:
        d = self.tables.drugs[j]
        f = p.facts
        start = self.ctx.start_doses.get(j)
        factor = 1.0
        for below, fac in self.extras[j].renal_exposure:
            if f.crcl < below:
                factor = fac
        renal = tuple(f.crcl < below for below, _ in d.renal_caps) if d.renal_caps else ()
        key = (j, f.age >= d.older_min_age, factor, renal, f.flags, goal, start)
        cached = self._plan_cache.get(key)
        if cached is None:  # few distinct combinations: compute each once
            cached = self._plan_cache[key] = plan(d, f, self.ctx.policy.titration_speed, goal, start)
        return cached

    def _start_drug(self, p: PatientModel, j: int, now: float, rule: str, adv: np.ndarray,
                    lines: list[_Line], target: float = 0.0, added: bool = False,
                    topical_addon: bool = False, departure: str = "") -> _Line:
        t = self.tables
        d = t.drugs[j]
        i = p.idx
        # Drugs taken or tapering: a taper that ends this very day still counts (the oracle orders same-day stops
        # after starts).
        taking = [ln.drug for ln in lines] + [k for k, end in p.tapering if end >= now - 1e-9]
        sero, weak = self.serotonergic, self.weak_opioid
        serotonergic_with = "ssri_use" in p.facts.flags or any([sero[k] for k in taking])
        tramadol_with = any([weak[k] for k in taking])
        skipped = SKIPPED_CHECKS.get(departure, frozenset())
        for check, check_rule in required_checks(d, p.facts, serotonergic_with and d.serotonergic,
                                                 tramadol_with and d.serotonergic):
            if check in skipped:
                continue
            p.checks.add(check)
            self._log(i, now, E_CHECK, p.state, drug=j, detail=CHECKS.index(check), rule=check_rule)
        goal = target if target > 0 else self.ctx.target_doses.get(j)
        pl = self._plan(p, j, goal)
        pu = self.persist[i]
        nd = len(t.drugs)
        if self.under[j] > 0 and float(pu[2 + nd + j]) < self.under[j]:  # usual care: X.under_titration
            pl = self._plan(p, j, pl.steps[0][1] / pl.factor)  # stays at its first dose
        line = _Line(j, now, pl, added, topical_addon, self.extras[j].to_response)
        pe = t.persistence
        line.stop_at = stop_day(now, self.non_ae_stop[j], pe["early_stop_multiplier"], pe["early_days"],
                                float(pu[2 + j]))
        p.tried.add(j)
        cls = d.drug_class
        if cls in FIRST_LINE_CLASSES:
            p.n_first_line += 1
        elif cls == "weak_opioid" and rule != "P9.tramadol_bridge":  # a bridge counts once judged (_judge_bridge)
            p.tramadol_tried = True
        elif cls == "strong_opioid":
            p.strong_tried = True
            p.assessed = now  # its start is the trial's first documented assessment (P8)
        elif cls == "topical":
            p.topical_tried = True
        self._log(i, now, E_START, p.state, drug=j, dose=pl.steps[0][1], rule=rule)
        for lim_rule, lim_dose in pl.limits:
            self._log(i, now, E_LIMIT, p.state, drug=j, dose=lim_dose, rule=lim_rule)
        # Potential adverse events of this exposure, from the patient's fixed draws for this drug; incidence
        # follows exposure (dose / renal factor).
        for k, slot in enumerate(d.ae_slots):
            u_inc = float(adv[2 * slot])
            if u_inc >= d.ae_max_incidence[k]:  # cannot occur at any dose: skip the onset draw
                continue
            day = now + onset_days(d.ae_onset_median, float(adv[2 * slot + 1]))
            if u_inc < interp(d.ae_incidence[k], line.dose_at(day) / line.factor):
                line.aes.append((day, d.ae_types[k], u_inc, -1))
                line.seen |= 1 << k
        self._serious_events(p, d, line, adv, serotonergic_with)
        line.aes.sort()
        return line

    def _add_alongside(self, p: PatientModel, decision: Decision, lines: list[_Line], now: float, adv: np.ndarray,
                       at: int) -> None:
        """P6.topical_add (S004, any stage): the decision's topicals start at the same visit as its own step,
        placed before that step's drug in ``lines`` so the trial is still judged on the oral step."""
        for j in decision.also:
            why = contraindication(self.tables.drugs[j], p.facts)
            if why is not None:
                self._log(p.idx, now, E_EXCLUDE, p.state, drug=j, rule=why)
                continue
            lines.insert(at, self._start_drug(p, j, now, "P6.topical_add", adv, lines, 0.0, True, True,
                                              decision.departure))
            at += 1
        if decision.also:
            p.active = [ln.drug for ln in lines]

    def _optimise(self, p: PatientModel, line: _Line, now: float, adv: np.ndarray) -> None:
        """P3.dose_optimisation: raise the dose by the schedule's increment per interval up to the maximum."""
        d = self.tables.drugs[line.drug]
        cur = line.dose_at(now)
        reached = line.steps[:line.next_step]
        off = now - line.start
        dose = cur
        new: list[tuple[float, float]] = []
        while dose < line.maximum - 1e-9:
            dose = min(dose + line.inc, line.maximum)
            new.append((round(off, 3), dose))
            off += line.interval
        line.opt_from = len(reached)
        line.steps = reached + tuple(new)
        line.next_step = len(reached)
        line.target = line.maximum
        line.target_day = line.start + new[-1][0]
        line.optimised = True
        self._log_doses(p.idx, p, [line], now)
        # Adverse events that the higher exposure makes possible (same draws: more events at higher dose).
        for k, slot in enumerate(d.ae_slots):
            if line.seen & (1 << k):
                continue
            u_inc = float(adv[2 * slot])
            if u_inc < interp(d.ae_incidence[k], line.maximum / line.factor):
                day = line.start + onset_days(d.ae_onset_median, float(adv[2 * slot + 1]))
                if day <= now:
                    day = now + onset_days(d.ae_onset_median, float(adv[2 * slot + 1]))
                line.aes.append((day, d.ae_types[k], u_inc, -1))
                line.seen |= 1 << k
        line.aes.sort()

    def _adjust(self, p: PatientModel, lines: list[_Line], now: float, decision: Decision, adv: np.ndarray) -> None:
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
            kept = tuple(s for s in line.steps[:line.next_step] if s[1] <= dose + 1e-9)
            if not kept or abs(kept[-1][1] - dose) > 1e-9:
                kept += ((round(now - line.start, 3), dose),)
            line.steps = kept
            line.next_step = len(kept)
            line.target = dose
            line.reduced = True
            self._log(p.idx, now, E_DOSE, p.state, drug=j, dose=dose, rule=decision.rule)
            low = dose / line.factor
            line.aes = [a for a in line.aes if a[3] >= 0 or a[2] < interp(d.ae_incidence[d.ae_types.index(a[1])], low)]
        p.active = [ln.drug for ln in lines]

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
        return day, kind, line, ae

    def _log_doses(self, i: int, p: PatientModel, lines: list[_Line], now: float, before: bool = False) -> None:
        """Record titration (P2) and optimisation (P3) steps reached up to ``now``; with ``before``, only those
        strictly before ``now`` (the horizon: the run simulates days < horizon)."""
        limit = now - 1e-9 if before else now + 1e-9
        for ln in lines:
            while ln.next_step < len(ln.steps) and ln.start + ln.steps[ln.next_step][0] <= limit:
                off, dose = ln.steps[ln.next_step]
                if ln.next_step >= ln.opt_from:
                    rule = "P3.dose_optimisation"
                else:
                    rule = "P2.target_reached" if dose >= ln.target else "P2.titration_step"
                self._log(i, ln.start + off, E_DOSE, p.state, drug=ln.drug, dose=dose, rule=rule)
                ln.next_step += 1

    def _adverse_event(self, p: PatientModel, line: _Line, ae: tuple, now: float, lines: list[_Line]) -> bool:
        """Log an adverse event; lower the dose or stop the drug when it is dose-limiting (P4).

        Returns True when the drug is stopped (the caller removes the line)."""
        t = self.tables
        line.aes.pop(0)
        d = t.drugs[line.drug]
        _, code, u_inc, serious = ae
        dose = line.dose_at(now)
        exposure = dose / line.factor
        self._log(p.idx, now, E_AE, p.state, drug=line.drug, dose=dose, detail=code,
                  rule="X.serious_event" if serious >= 0 else "X.adverse_event")
        if serious >= 0:
            self._stop_line(p, line, now, "X.serious_event", code, abrupt=True)
            p.failed_agent_classes.add(d.drug_class)
            if d.drug_class == "weak_opioid":  # a tramadol bridge not tolerated was tried (P8 gate)
                p.tramadol_tried = True
            return True
        key = (line.drug, code, exposure)
        threshold = self._stop_cache.get(key)
        if threshold is None:
            # The event ends the drug with a probability that reproduces the trial's withdrawal rate:
            # incidence(type) * min(1, withdrawal / sum of incidences), all at the current exposure.
            total = sum(interp(c, exposure) for c in d.ae_incidence)
            wd = interp(d.ae_withdrawal, exposure)
            inc = interp(d.ae_incidence[d.ae_types.index(code)], exposure)
            threshold = inc * min(1.0, wd / total) if total > 0 else 0.0
            self._stop_cache[key] = threshold
        if u_inc >= threshold:
            return False
        # Dose-limiting: back to the last tolerated step if it is still effective (P4.intolerance_reduce).
        lower = reduced_dose(line.steps[:line.next_step], dose, self.extras[line.drug].min_effective * line.factor)
        if lower > 0:
            line.steps = tuple(s for s in line.steps[:line.next_step] if s[1] <= lower + 1e-9)
            line.next_step = len(line.steps)
            line.target = lower
            line.reduced = True
            self._log(p.idx, now, E_DOSE, p.state, drug=line.drug, dose=lower, detail=code,
                      rule="P4.intolerance_reduce")
            low = lower / line.factor
            line.aes = [a for a in line.aes if a[3] >= 0 or a[2] < interp(d.ae_incidence[d.ae_types.index(a[1])], low)]
            return False
        addon = p.state == "add_on" and len(lines) > 1 and line is not lines[0] and d.drug_class in FIRST_LINE_CLASSES
        self._stop_line(p, line, now, "P4.addon_not_tolerated" if addon else "P4.intolerance_stop", code)
        p.failed_agent_classes.add(d.drug_class)
        if d.drug_class == "weak_opioid":  # a tramadol bridge not tolerated was tried (P8 gate)
            p.tramadol_tried = True
        return True

    def _stop_line(self, p: PatientModel, line: _Line, now: float, rule: str, code: int = -1,
                   failed: bool = False, abrupt: bool = False) -> None:
        """Stop one drug: tapered when its catalogue entry has a taper (P5.taper_step), else at once.

        A taper is deterministic, so its rows are logged when it starts, with their own (future) days, up to
        the patient's loss to follow-up or the horizon (no SimPy process per taper)."""
        j = line.drug
        dose = line.dose_at(now)
        if failed:
            cls = self.tables.drugs[j].drug_class
            if cls in ("gabapentinoid", "snri", "tca", "topical"):
                p.failed_classes.add(cls)
        x = self.extras[j]
        i = p.idx
        if x.taper and not abrupt:
            self._log(i, now, E_TAPER, p.state, drug=j, dose=dose, detail=code, rule=rule)
            limit = p.until
            day = now
            for k, f in enumerate(x.taper):
                if day >= limit:  # loss to follow-up first: the rest is logged only if the patient stays in care
                    p.taper_rest.append((j, dose, k, day))
                    break
                self._log(i, day, E_DOSE, p.state, drug=j, dose=dose * f, rule="P5.taper_step")
                day += x.taper_interval
            else:
                if day < limit:
                    self._log(i, day, E_STOP, p.state, drug=j, dose=dose * x.taper[-1], rule="P5.taper_complete")
                else:
                    p.taper_rest.append((j, dose, len(x.taper), day))
            end = now + x.taper_interval * len(x.taper)
            p.tapering.append((j, end))
            if end > p.taper_end:
                p.taper_end = end
        else:
            self._log(i, now, E_STOP, p.state, drug=j, dose=dose, detail=code, rule=rule)

    def _stop_all(self, p: PatientModel, lines: list[_Line], now: float, rule: str, failed: bool,
                  keep: tuple[str, ...] = (), everything: bool = False) -> None:
        """Stop the regimen for a decision; drugs of the ``keep`` classes and a topical added earlier
        alongside (not the one just judged) continue unless ``everything`` (referral)."""
        drugs = self.tables.drugs
        newest = lines[-1]
        kept: list[_Line] = []
        for ln in lines:
            if not everything and (drugs[ln.drug].drug_class in keep or (ln.topical_addon and ln is not newest)):
                kept.append(ln)
                continue
            self._stop_line(p, ln, now, rule, failed=failed)
        lines[:] = kept
        p.active = [ln.drug for ln in kept]

    def _drop_out(self, p: PatientModel, lines: list[_Line], now: float, rule: str = "X.dropout") -> None:
        """The patient leaves care (``rule``: X.dropout, or X.left_treatment in usual care): every drug stops
        at once (tapers included), then the drop-out row."""
        for ln in lines:
            self._log(p.idx, now, E_STOP, p.state, drug=ln.drug, dose=ln.dose_at(now), rule=rule)
        for j, end in p.tapering:  # a taper cut short (its rows were logged up to the drop-out)
            if end > now:
                self._log(p.idx, now, E_STOP, p.state, drug=j, rule=rule)
        p.tapering.clear()
        p.taper_rest.clear()
        lines.clear()
        p.active = []
        fire(self.table, p, "drop_out")
        self._log(p.idx, now, E_DROPOUT, p.state, rule=rule)

    def _finish_tapers(self, p: PatientModel) -> None:
        """Log the rest of tapers that were cut at the loss-to-follow-up day, for a patient who no longer
        leaves care that way (relief, discharge, nothing more to do): up to the horizon."""
        horizon = self.config.horizon_days
        for j, dose, k, day in p.taper_rest:
            x = self.extras[j]
            for f in x.taper[k:]:
                if day >= horizon:
                    break
                self._log(p.idx, day, E_DOSE, p.state, drug=j, dose=dose * f, rule="P5.taper_step")
                day += x.taper_interval
            else:
                if day < horizon:
                    self._log(p.idx, day, E_STOP, p.state, drug=j, dose=dose * x.taper[-1], rule="P5.taper_complete")
        p.taper_rest.clear()

    def _regimen_continues(self, p: PatientModel, lines: list[_Line], obs: tuple):
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
                yield env.timeout(nxt - env.now)
            now = env.now
            self._log_doses(p.idx, p, lines, now)
            if kind == "eval":  # P8.reassessment of the strong opioid still running
                pain = self._pain(p, lines, now, obs, 1.0)
                p.last_pain = pain
                p.assessed = now
                outcome = self._judge(p, pain)
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
            elif self._adverse_event(p, line, ae, now, lines):
                lines.remove(line)
            p.active = [ln.drug for ln in lines]
            if p.taper_rest:  # a taper begun here is logged to the horizon (no loss to follow-up from here)
                self._finish_tapers(p)

    def _reassess_by(self, p: PatientModel, lines: list[_Line], visits: bool = False) -> float:
        """Day by which a running strong opioid must be reassessed (P8.time_limited, P8.reassessment; S004):
        its last documented assessment plus the trial period (``strong_opioid.max_trial_days``), or with
        ``visits`` plus the reassessment interval (``maintenance.opioid_visit_interval_days``); inf when no
        strong opioid runs. Every loop of the engine that lets a regimen run waits at most until this day."""
        drugs = self.tables.drugs
        if not any(drugs[ln.drug].drug_class == "strong_opioid" for ln in lines):
            return math.inf
        pol = self.ctx.policy
        return p.assessed + (pol.maintenance.opioid_visit_interval_days if visits else pol.strong_opioid.max_trial_days)

    def _stop_opioids(self, p: PatientModel, lines: list[_Line], now: float) -> None:
        """Opioids still running after an evaluation without relief when the pathway moves to the specialist
        (referral) or ends (discharge after the specialist) are tapered and stopped: "reassess necessity at each visit, discontinue if ineffective" (P8.stop_ineffective,
        S004), whether tramadol or a strong opioid."""
        drugs = self.tables.drugs
        for ln in [ln for ln in lines if drugs[ln.drug].drug_class in _OPIOID_TRIGGER]:
            self._stop_line(p, ln, now, "P8.stop_ineffective", failed=True)
            lines.remove(ln)
        p.active = [ln.drug for ln in lines]

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

    def _pain(self, p: PatientModel, lines: list[_Line], now: float, obs: tuple, retained: float) -> float:
        """Observed NRS at a visit: drug effects at their exposure, times adherence and, after a relapse, the
        share retained (clinical persistence block); visit noise keyed by the visit day."""
        t = self.tables
        drug_z, ns_onset, adherence, entry = obs
        lat = self.latents
        i = p.idx
        scale = adherence * retained
        effects = []
        for n_line, ln in enumerate(lines):
            d = t.drugs[ln.drug]
            e = drug_effect(t, d, ln.dose_at(now) / ln.factor, now - ln.start, p.etiology,
                            lat.u_scalar(i, d.index, now), drug_z.item(d.index), p.facts.localized) * scale
            effects.append(e * t.combination_factor if n_line > 0 else e)
        return observed_pain(p.baseline, lat.ns_scalar(i, now), ns_onset, now - entry, effects, t.noise_sd,
                             streams.keyed_normal(self.noise_key, p.idx, streams.day_slot(now - entry)))

    def _judge(self, p: PatientModel, pain: float) -> str:
        """P4: relief, partial or none, by the policy's response rule."""
        resp = self.ctx.policy.response
        red = (p.baseline - pain) / p.baseline if p.baseline > 0 else 0.0
        if red >= resp.relief_min_reduction and pain < resp.relief_max_nrs:
            return "relief"
        return "partial" if red >= resp.partial_min_reduction else "none"

    def _maintenance(self, p: PatientModel, lines: list[_Line], obs: tuple, ltfu_day: float):
        """After relief: the regimen continues with maintenance visits (P4.maintenance_visit), every
        ``opioid_visit_interval_days`` while an opioid runs (P8.reassessment, S004). Adverse events, stops
        for other reasons and loss to follow-up continue. At each visit the response is judged again; relief
        not found (confirmed at a visit one policy visit interval later) or no drug left sends the patient
        back to the state he was relieved in (P4.relapse).

        Returns ``(outcome, pain)`` for the policy's next decision, or None (horizon, drop-out)."""
        env = self.env
        t = self.tables
        i = p.idx
        horizon = self.config.horizon_days
        mt = self.ctx.policy.maintenance
        u = float(self.persist[i][2 + 2 * len(t.drugs) + min(p.n_relapses, MAX_RELAPSES - 1)])
        rate = self.relapse_rate
        relapse_day = env.now - math.log1p(-u) / rate * 365.0 if rate > 0 else math.inf
        retained = t.persistence["relapse_effect_retained"]
        last_visit = env.now
        confirming = False  # a visit without relief is confirmed at the next regular visit before any change
        discharge = mt.discharge_after_days  # P4.stable_discharge: days of relief held at every visit
        held_since = env.now
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
                self._drop_out(p, lines, now)
                return None
            if kind in ("ae", "stop"):
                if kind == "ae":
                    if not self._adverse_event(p, line, ae, now, lines):
                        continue
                else:
                    self._stop_line(p, line, now, "X.patient_stop")
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
                if lines:  # the rest of the regimen is judged at the next visit
                    continue
                outcome, pain = "intolerable", -1.0
            else:
                last_visit = now
                pain = self._pain(p, lines, now, obs, retained if now >= relapse_day else 1.0)
                p.last_pain = pain
                p.assessed = now
                outcome = self._judge(p, pain)
                newest = lines[-1] if lines else None
                leave = (outcome == "relief" and not confirming and not opioid and discharge is not None
                         and now - held_since >= discharge)
                self._log(i, now, E_MAINT, p.state, drug=newest.drug if newest else -1,
                          dose=newest.dose_at(now) if newest else -1.0, pain=pain, detail=OUTCOME_CODE[outcome],
                          rule="P8.reassessment" if "strong_opioid" in classes else
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
            p.n_relapses += 1
            fire(self.table, p, "relapse")
            self._log(i, now, E_TRANSITION, p.state, detail=TRIGGER_CODE["relapse"], rule="P4.relapse")
            return outcome, pain

    def _stop_for_referral(self, p: PatientModel, lines: list[_Line], now: float, rule: str) -> None:
        """At referral: under ``policy.referral.while_waiting: continue`` the regimen continues while queued,
        except an opioid (tramadol or a strong opioid): referral follows an evaluation without relief, and an
        opioid that has not worked is stopped (P8.stop_ineffective, S004); under 'stop' every drug stops (v0.1)."""
        if self.ctx.policy.referral.while_waiting == "stop":
            if lines:
                self._stop_all(p, lines, now, rule, False, (), True)
            return
        self._stop_opioids(p, lines, now)

    def _carry_on(self, p: PatientModel, lines: list[_Line], until: float, ltfu_day: float,
                  event: simpy.Event | None = None):
        """The regimen continues (titration steps, adverse events) until day ``until``, until ``event`` fires,
        or until loss to follow-up. Returns "event", "until", "dropout" or "horizon"."""
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
                    yield env.timeout(wait)
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
            if kind == "stop":  # stopped for reasons other than adverse events (issue 10)
                self._stop_line(p, line, now, "X.patient_stop")
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
            elif self._adverse_event(p, line, ae, now, lines):
                lines.remove(line)
                p.active = [ln.drug for ln in lines]

    def _specialist(self, p: PatientModel, lines: list[_Line], ltfu_day: float, adv: np.ndarray, obs: tuple,
                    why_referred: str = "P9.refractory_referral"):
        """Queue at the pain clinic (P9), wait for the consult while the regimen continues, draw its outcome.

        Returns "dropout" (left the queue or care), "relief", "no_relief", "relieved_waiting" (relieved at
        a review while queued and left the queue), or "waiting" (the horizon came first). The clinic
        (:mod:`simulator.engine.clinic`) decides when the consult starts. With ``policy.referral.bridge_tramadol``
        tramadol is started while waiting (P7 permitting) and stopped at the consult (P9.tramadol_bridge).
        While queued on a regimen the patient is reviewed (:meth:`_wait_for_consult`). ``why_referred``: the
        referral decision's rule; the ``referral_queued`` row cites P9.referral_criteria for the policy's early
        criteria, P9.refractory_referral otherwise."""
        env = self.env
        t = self.tables
        i = p.idx
        queued = env.now
        # The queue row cites why: the policy's early criteria, or refractory pain (the steps exhausted or failed).
        self._log(i, queued, E_QUEUE, p.state,
                  rule="P9.referral_criteria" if why_referred == "P9.referral_criteria" else "P9.refractory_referral")
        u = self.special[i].tolist()
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
        else:
            ok = u[2] < t.specialist["conservative_relief_prob"]
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
        why = yield from self._carry_on(p, lines, env.now + t.specialist["days_to_relief"], ltfu_day)
        if why == "until":
            return "relief"
        return "dropout" if why == "dropout" else "waiting"


    def _wait_for_consult(self, p: PatientModel, lines: list[_Line], ltfu_day: float, req, bridge: _Line | None,
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
            opioid = any(drugs[ln.drug].drug_class in _OPIOID_TRIGGER for ln in lines)
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
            newest = lines[-1]
            self._log(i, now, E_MAINT, p.state, drug=newest.drug, dose=newest.dose_at(now), pain=pain,
                      detail=OUTCOME_CODE[outcome], rule="P9.care_while_waiting")
            relieved = outcome == "relief"
            if bridge is not None and bridge in lines and not relieved:
                self._judge_bridge(p, bridge, now)
            if relieved and pol.referral.relieved_while_waiting == "leave_queue":
                return "relieved", True

    def _judge_bridge(self, p: PatientModel, bridge: _Line, now: float) -> None:
        """P7, P8 gate: the tramadol bridge counts as tramadol tried only once it has had an adequate trial
        (its target dose plus the policy's tramadol trial days, P3) and a review still finds no relief; a
        bridge cut short by the consult is not a failed tramadol trial (NICE CG173 allows tramadol only as
        rescue while waiting; S004 requires tramadol to fail before a strong opioid)."""
        if now + 1e-9 >= bridge.target_day + self.ctx.trial_days[self.tables.drugs[bridge.drug].name]:
            p.tramadol_tried = True
            p.bridge_judged = True


def _destination(state: str, trigger: str) -> str:
    """Where ``trigger`` leads from ``state`` in the pathway's definition (any source if none from here)."""
    edges = [e for e in TRANSITIONS if e.trigger == trigger]
    return next((e.dest for e in edges if state in e.source), edges[0].dest)


def _flag_sets(c: Cohort) -> list[frozenset[str]]:
    """Per patient, the set of true flags the safety rules read."""
    names = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "glaucoma",
             "orthostatic_hypotension", "ssri_use", "depression", "allodynia")
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
