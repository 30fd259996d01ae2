"""The discrete-event engine: synthetic patients walking the pathway in SimPy time (days).

Each patient is one process in SimPy time (a generator woken by :class:`_Wake`, merged with SimPy's own events). A treatment line
is simulated as: start the drug(s) on their (patient-adjusted) titration schedule, wait for the adequate
trial at target dose and the next scheduled visit (P3), evaluate pain, and let the policy decide the next step (P4-P9), which the
pathway's compiled transition table accepts or refuses. Adverse events, serious events and loss to
follow-up happen in continuous time and may interrupt a line. Specialist referral queues for the pain
clinic (:mod:`simulator.engine.clinic`: capacity as a rate, a slot calendar or servers), so waits are measured.
In an open population each patient enters on their own day (``EngineConfig.entry_days``); event days are
days of the run, not of the patient. What each row of the event log means: ``docs/event-log.md``.

This module owns the run: :class:`EngineConfig`, and :class:`Simulation`'s set-up (the patients' draws, the
compiled table, the clinic) and :meth:`Simulation.run`. The rest of :class:`Simulation` is split by concern
into mixins, one module each: the patient process and its phases (:mod:`.process`), a line's trial and its
judgement (:mod:`.evaluation`), dosing and titration (:mod:`.lines`), stopping drugs and tapers
(:mod:`.stops`), adverse events (:mod:`.adverse`), maintenance after relief (:mod:`.maintenance`), specialist
referral (:mod:`.referral`) and the event log (:mod:`.events`). Mixins rather than helper objects: the hot
path keeps calling ``self._log``, ``self._next_event`` ... as plain methods of the one object, with no extra
attribute hop or call per event (``benchmarks/bench_engine.py``).

The hot loop appends plain numbers to one flat ``array('d')`` event buffer (9 columns per row; see
:data:`COLUMNS`); the event table is built once at the end. No pydantic object, logging call or string
formatting runs per event. Clinical numbers come only from the compiled model tables. The event codes and
other names of the engine that other layers read are importable from here, as before the split.
"""

from __future__ import annotations

import gc
from array import array
from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass, field
from heapq import heappop
from operator import itemgetter

import numpy as np
import simpy
from simpy.events import NORMAL, URGENT

from ..model import streams
from ..model.clinical_tables import ModelTables
from ..model.pathway import Table, compile_table
from ..model.patient import PatientModel
from ..model.policy_context import Decision, PolicyContext
from ..model.response import RESPONSE_COLUMNS, draw_latents
from ..model.safety import Plan, drug_rules
from ..population.cohort import Cohort
from .adverse import N_SERIOUS, AdverseEvents
from .clinic import Clinic, ClinicConfig
from .evaluation import FAILED_OUTCOMES, Evaluation
from .events import (
    CHECKS,
    COLUMNS,
    CONSULT_OUTCOMES,
    E_AE,
    E_ASSESS,
    E_CHECK,
    E_CONSULT,
    E_DOSE,
    E_DROPOUT,
    E_EVAL,
    E_EXCLUDE,
    E_LEFT,
    E_LIMIT,
    E_MAINT,
    E_QUEUE,
    E_START,
    E_STOP,
    E_TAPER,
    E_TRANSITION,
    EVENTS,
    NCOL,
    OUTCOME_CODE,
    STATE_CODE,
    TRIGGER_CODE,
    EventLog,
    flag_sets,
    rule_codes,
)
from .lines import SKIPPED_CHECKS, Dosing, Line
from .maintenance import MAX_RELAPSES, MAX_RETURNS, Maintenance
from .process import PatientProcess
from .referral import Referral
from .stops import OPIOID_TRIGGER, Stopping

__all__ = ["CHECKS", "COLUMNS", "CONSULT_OUTCOMES", "E_AE", "E_ASSESS", "E_CHECK", "E_CONSULT", "E_DOSE",
           "E_DROPOUT", "E_EVAL", "E_EXCLUDE", "E_LEFT", "E_LIMIT", "E_MAINT", "E_QUEUE", "E_START", "E_STOP",
           "E_TAPER", "E_TRANSITION", "EVENTS", "FAILED_OUTCOMES", "MAX_RELAPSES", "MAX_RETURNS", "NCOL",
           "N_SERIOUS", "OPIOID_TRIGGER", "OUTCOME_CODE", "SKIPPED_CHECKS", "STATE_CODE", "TRIGGER_CODE",
           "Decide", "EngineConfig", "Line", "Simulation", "rule_codes", "simulate_replication"]

FOLLOWUP_COLUMNS = 16  # column 0: loss to follow-up; 1-15 unused since per-visit draws are keyed (kept: same draws)
SPECIALIST_COLUMNS = 4


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


class Simulation(PatientProcess, Evaluation, Dosing, Stopping, AdverseEvents, Maintenance, Referral, EventLog):
    """Runs one replication of one scenario over a cohort (the concerns' mixins: see the module docstring)."""

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
        self.strong_opioid = tuple(d.drug_class == "strong_opioid" for d in self.tables.drugs)
        # P4.reoffer_own_stop: every class but tramadol (its own rule, P7.tramadol_reoffer) and the strong opioid
        # (a time-limited trial, S004: the patient's own stop ends it)
        self.reofferable = tuple(d.drug_class not in ("weak_opioid", "strong_opioid") for d in self.tables.drugs)
        self.reoffer_on = ctx.policy.reoffer_own_stop and ctx.policy.protocol is None  # a protocol decides itself
        resp = ctx.policy.response  # P4's thresholds, read at every visit (Evaluation._judge)
        self.response_rule = (resp.relief_min_reduction, resp.relief_max_nrs, resp.partial_min_reduction)
        self.renal_bands = tuple(tuple(sorted({b for b, _ in x.renal_exposure} | {b for b, _ in d.renal_caps}))
                                 for x, d in zip(self.extras, self.tables.drugs, strict=True))
        n = cohort.n
        seed = config.seed
        resp = streams.block_rows(seed, replication, streams.RESPONSE, n, RESPONSE_COLUMNS)
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
        self.early_stop_mult = self.tables.persistence["early_stop_multiplier"]
        self.early_days = self.tables.persistence["early_days"]
        self.index_mix = tuple((ctx.by_name[name], share) for name, share in uc.index_drugs.items() if share > 0)
        self.under = tuple(uc.under_titration.get(d.drug_class, 0.0) for d in self.tables.drugs)
        self.return_after_stop = uc.return_after_stop
        self.relapse_rate = self.tables.persistence["relapse_per_year"] if ctx.policy.maintenance.relapse else 0.0
        # Per-visit draws are keyed by (patient, visit day), so an added visit leaves the others unchanged.
        self.noise_key = streams.stream_key(seed, replication, streams.VISIT_NOISE)
        self.noise_streams = streams.patient_streams(self.noise_key, n)  # each patient's part, mixed once
        self.dropout_key = streams.stream_key(seed, replication, streams.VISIT_DROPOUT)
        self.dropout_streams = streams.patient_streams(self.dropout_key, n)  # each patient's part, mixed once
        self.consult_key = streams.stream_key(seed, replication, streams.SPECIALIST)  # consults after the first
        self.reapply_key = streams.stream_key(seed, replication, streams.ADVERSE)  # capsaicin 8% re-applications
        self.buf = array("d")
        self._append = self.buf.frombytes  # EventLog._log: one attribute load per row
        self.env = simpy.Environment()
        clinic = config.clinic or ClinicConfig(max(float(config.specialist_slots_per_week), 0.0))
        self.clinic = Clinic(self.env, clinic, config.horizon_days)
        self.entry = config.entry_days
        ltfu = ctx.policy.loss_to_follow_up_per_year
        self.ltfu_rate = self.tables.follow_up["ltfu_per_year"] if ltfu is None else ltfu
        self.flags = flag_sets(cohort)
        self._stop_cache: dict[tuple[int, int, float], float] = {}
        self._plan_cache: dict[tuple, Plan] = {}
        self._regimens: dict[int, tuple[PatientModel, list[Line]]] = {}
        # (patient, drug) -> (its start day, the taper's first day, its steps, interval): the taper a drug is on
        self.taper_plans: dict[tuple[int, int], tuple[float, float, tuple[float, ...], float]] = {}

    def run(self, progress: Callable[[float], None] | None = None, steps: int = 40) -> np.ndarray:
        """Simulate every patient to the horizon; return the event table (rows x 9).

        With ``progress``, the simulated time is run in ``steps`` slices and ``progress(fraction)`` is
        called after each (results are identical either way).
        """
        env = self.env
        horizon = self.config.horizon_days
        cal = _Calendar(horizon, env._eid)
        patients = [self._patient(i) for i in (range(self.cohort.n) if self.only is None else self.only)]
        # Started as env.process(gen) starts a process: an urgent event now, in the order of the patients (pushed
        # at once: one push each would bisect the growing bucket, ~17 tuple comparisons a patient at 100k).
        cal.push_all([(env._now, URGENT, next(env._eid), _Wake(gen, cal)) for gen in patients])
        # The run allocates millions of short-lived objects but creates little cyclic garbage: pausing the
        # cyclic collector for the run saves 10-25% (benchmarks/bench_engine.py); it is collected after. It is
        # paused until the patients' state is freed too: a collection just after the run would walk all of it.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            if progress is None:
                _run(env, cal, horizon)
            else:
                for k in range(1, steps + 1):
                    _run(env, cal, horizon * k / steps)
                    progress(k / steps)
            # The log is complete to the horizon: titration steps reached before it by regimens still running
            # (waiting for an evaluation, a consult, or in maintenance) are logged, whatever the horizon.
            for i, (p, lines) in self._regimens.items():
                self._log_doses(i, p, lines, horizon, before=True)
                for ln in tuple(lines):  # P6.capsaicin_reapply due while the process waited to the horizon (a taper's
                    # end), or the patch stopped on that day without benefit (P6.capsaicin_no_benefit)
                    while ln.next_apply < horizon and self._reapply(p, ln, horizon):
                        pass
            # Free the patients' state now (their processes wait at the horizon, some in a reference cycle with
            # the environment): otherwise it lives on, hundreds of MB at 100k patients, until a full garbage
            # collection, through the outcomes computed next.
            for gen in patients:
                gen.close()
            self._regimens.clear()
        finally:
            if was_enabled:
                gc.enable()
        return np.frombuffer(self.buf, dtype=np.float64).reshape(-1, NCOL)  # a view: no second copy


_DAY = itemgetter(0)


class _Calendar:
    """The patients' wake-ups, in SimPy's order ``(day, priority, event id)``, kept in day-wide buckets.

    Entries are SimPy's own queue entries, ``(day, priority, event id, wake)``; event ids are unique, so the order
    is total and the same as on SimPy's heap. Why not that heap: at 100k patients it holds an entry per patient,
    and a pop walks its ~17 levels, each a cache miss on a scattered tuple and its float (4-8 us a pop, the
    engine's largest cost growing with the cohort). Here a push appends to its day's bucket (no comparison); the
    run sorts a bucket once when it reaches it (its entries then fit in cache) and takes them in order by an
    index. A push into the bucket being taken (a wait of under a day) is inserted in order. Bucket ``k`` holds
    days ``[k, k + 1)``; the last one, past the horizon, also every later day. ``tests/test_wake.py`` checks the
    calendar against a heap and the run's order against plain SimPy processes."""

    __slots__ = ("buckets", "last", "cur", "active", "pos", "eid", "mixed")

    def __init__(self, horizon: float, eid) -> None:
        self.last = int(min(horizon, 100_000.0)) + 1  # (capped: a longer or infinite horizon shares the last bucket)
        self.buckets: list[list | None] = [[] for _ in range(self.last + 1)]
        self.cur = 0  # the bucket being taken: ``active``, sorted, its entries before ``pos`` taken
        self.active: list = self.buckets[0]
        self.pos = 0
        self.eid = eid  # SimPy's event-id counter (env._eid): wake-ups and SimPy's events share it
        # A later bucket's entries are appended in event-id order; if all have one priority (wake-ups: NORMAL), a
        # stable sort by day alone gives SimPy's order (a float key sorts ~2.5x faster than the tuples). Buckets
        # that were given another priority (never, in a run: the starts go to the bucket being taken) sort whole.
        self.mixed: set[int] = set()

    def push(self, entry: tuple) -> None:
        day = entry[0]
        k = int(day) if day < self.last else self.last
        if k > self.cur:
            self.buckets[k].append(entry)
            if entry[1] != NORMAL:
                self.mixed.add(k)
        else:  # the bucket being taken (or earlier, which a heap would also pop next): keep it sorted
            insort(self.active, entry, self.pos)

    def push_all(self, entries: list[tuple]) -> None:
        """:meth:`push` each entry, the bucket being taken sorted once at the end rather than at each push (the
        order is total, so the result is the same)."""
        taken = False
        for entry in entries:
            day = entry[0]
            k = int(day) if day < self.last else self.last
            if k > self.cur:
                self.buckets[k].append(entry)
                if entry[1] != NORMAL:
                    self.mixed.add(k)
            else:
                self.active.append(entry)
                taken = True
        if taken:
            self.active[self.pos:] = sorted(self.active[self.pos:])

    def first(self) -> tuple | None:
        """The earliest entry not taken yet (``pos += 1`` takes it), or None."""
        while self.pos >= len(self.active):
            if self.cur == self.last:
                return None
            self.buckets[self.cur] = None  # taken: its entries are freed
            self.cur += 1
            self.active = self.buckets[self.cur]
            if self.cur in self.mixed:
                self.active.sort()
            else:
                self.active.sort(key=_DAY)  # stable: same-day entries stay in event-id order (see __init__)
            self.pos = 0
        return self.active[self.pos]


class _Wake:
    """A patient's process, lighter than a SimPy ``Process`` waking on ``Timeout`` events.

    The patient's generator yields a delay in days (a float), or a SimPy event to wait for (the clinic's), and
    is resumed with the day it wakes on (None on its first start). A delay is pushed on the :class:`_Calendar`
    with SimPy's own key, ``(day, NORMAL, next event id)``, at the moment ``env.timeout(delay)`` would have pushed
    it on SimPy's queue, so patients and the clinic interleave exactly as SimPy processes did (same-day order
    included); what it saves is a Timeout object, a ``Process._resume`` and an ``Environment.step`` call per
    wake-up, the engine's most frequent operation (``benchmarks/bench_engine.py``)."""

    __slots__ = ("gen", "fresh", "cal")

    def __init__(self, gen, cal: _Calendar) -> None:
        self.gen = gen
        self.fresh = True  # a generator just created must be started with None
        self.cal = cal

    def resume(self, now: float) -> None:
        """Run the patient until it waits again; schedule that wait."""
        try:
            if self.fresh:
                self.fresh = False
                wait = self.gen.send(None)
            else:
                wait = self.gen.send(now)
        except StopIteration:  # the patient's care ended
            return
        if isinstance(wait, float):  # _Calendar.push written out (once per wake-up: -1% instructions per event)
            cal = self.cal
            day = now + wait
            k = int(day) if day < cal.last else cal.last
            if k > cal.cur:
                cal.buckets[k].append((day, NORMAL, next(cal.eid), self))
            else:
                insort(cal.active, (day, NORMAL, next(cal.eid), self), cal.pos)
        else:  # a SimPy event (the clinic's consult, or that or a day): resumed when it is processed
            wait.callbacks.append(self._woken)

    def _woken(self, event: simpy.Event) -> None:
        self.resume(event.env.now)


def _run(env: simpy.Environment, cal: _Calendar, until: float) -> None:
    """``env.run(until=until)`` for the patients' wake-ups on ``cal`` besides SimPy's own events on its queue:
    every event before day ``until`` is processed in SimPy's order (the two merged by their keys); a SimPy event
    as ``Environment.step`` does."""
    queue = env._queue
    while True:
        active, pos = cal.active, cal.pos
        entry = active[pos] if pos < len(active) else cal.first()  # (most pops: no call)
        if queue and (entry is None or queue[0] < entry):  # SimPy's own event comes first
            if queue[0][0] >= until:
                break
            now, _, _, event = heappop(queue)
            env._now = now
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):  # a failed event nobody handled: as SimPy, raise
                raise event._value
            continue
        if entry is None or entry[0] >= until:
            break
        cal.pos += 1
        now = entry[0]
        env._now = now
        entry[3].resume(now)
    env._now = until


def simulate_replication(ctx: PolicyContext, cohort: Cohort, config: EngineConfig, replication: int) -> np.ndarray:
    """Run one replication and return its event table."""
    return Simulation(ctx, cohort, config, replication).run()
