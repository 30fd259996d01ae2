"""A virtual trial's population and drug courses (the state :class:`~simulator.analysis.trial.group.ArmGroup` walks).

Owns :class:`TrialPopulation` (cohort, latent draws and the random blocks shared by all arms; trial-only
random numbers from sub-streams of ``streams.TRIAL`` keyed by :data:`SUB`), :class:`DrugCourses` (dose
schedules of each patient's drugs and the adverse events each course, dose increase or placebo schedules,
on the engine's ``streams.ADVERSE`` block), the per-patient status codes and :class:`GroupOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import ndtri

from ...engine.simulation import N_SERIOUS
from ...model import streams
from ...model.clinical_tables import ModelTables
from ...model.response import RESPONSE_COLUMNS, draw_latents, interp_array, onset_days_array
from ...model.safety import PatientFacts
from ...population.cohort import Cohort
from .design import COHORT_FLAGS
from .protocol import Protocol, arm_schedule

SUB = {"randomise": 0, "noise": 1, "dropout": 2, "placebo_ae": 3, "grade": 4, "branch": 5, "restart_ae": 6}


def trial_block(seed: int, purpose: str, n: int, k: int) -> np.ndarray:
    """Uniforms of a trial-only sub-stream of ``streams.TRIAL`` (row i = patient i)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(0, streams.TRIAL, 100 + SUB[purpose]))
    return np.random.default_rng(ss).random((n, k))


# patient status codes (per-patient output)
COMPLETED, WITHDRAWN_AE, DROPOUT, EXCLUDED = 0, 1, 2, 3
STATUS_NAMES = ("completed", "withdrawn_adverse_event", "dropout", "excluded")
GRADES = ("none", "mild", "moderate", "severe")


class TrialPopulation:
    """Cohort, latents and random blocks of one trial (shared by all arms)."""

    def __init__(self, tables: ModelTables, cohort: Cohort, seed: int, placebo_scale: float, open_label: bool,
                 total_days: int) -> None:
        n = cohort.n
        self.tables = tables
        self.cohort = cohort
        self.baseline = cohort.baseline_nrs.astype(float)
        self.etiology = cohort.etiology.astype(int)
        self.localized = cohort.localized.astype(bool)
        scale = placebo_scale * (tables.open_label_multiplier if open_label else 1.0)
        latent_tables = tables
        if scale != 1.0:  # trial-population / expectation modifier of the nonspecific responder share
            latent_tables = replace(tables, ns_share=tuple(min(1.0, s * scale) for s in tables.ns_share))
        self.latents = draw_latents(latent_tables, cohort.etiology,
                                    streams.block(seed, 0, streams.RESPONSE, n, RESPONSE_COLUMNS))
        n_adv = 2 * tables.n_ae_slots + N_SERIOUS * len(tables.drugs)
        self.adverse = streams.block(seed, 0, streams.ADVERSE, n, n_adv)
        self.noise = ndtri(np.clip(trial_block(seed, "noise", n, total_days + 1), 1e-12, 1 - 1e-12))
        self.dropout_u = trial_block(seed, "dropout", n, 1)[:, 0]
        self.placebo_ae = trial_block(seed, "placebo_ae", n, 2 * max(len(tables.placebo_ae_types), 1))
        self.grade_u = trial_block(seed, "grade", n, 64)
        self.branch_u = trial_block(seed, "branch", n, 1)[:, 0]
        self.restart_ae = trial_block(seed, "restart_ae", n, 2 * tables.n_ae_slots)  # a drug's second course
        self._facts: dict[int, PatientFacts] = {}

    def facts(self, i: int) -> PatientFacts:
        """What the safety gates read about patient ``i`` (built on first use)."""
        if i not in self._facts:
            c = self.cohort
            self._facts[i] = PatientFacts(age=float(c.age[i]), etiology=int(c.etiology[i]),
                                          localized=bool(c.localized[i]), crcl=float(c.crcl[i]),
                                          flags=frozenset(f for f in COHORT_FLAGS if bool(getattr(c, f)[i])))
        return self._facts[i]


@dataclass
class AdverseEventSlots:
    """Adverse-event bookkeeping of one drug slot (or the placebo) for the rows of a group."""

    types: tuple[int, ...]
    onset: np.ndarray  # (rows, k) absolute day of the scheduled event, inf = none
    stops: np.ndarray  # (rows, k) the event is intolerable
    grade: np.ndarray  # (rows, k) 0 none, 1-3 grade of the occurred event


@dataclass
class GroupOutcome:
    """Per-patient outcomes of one group (rows) over one period."""

    rows: np.ndarray
    baseline: np.ndarray
    pain_end: np.ndarray  # analysed endpoint NRS (nan = not analysed)
    status: np.ndarray
    stop_day: np.ndarray  # day (within the period) the patient left, inf = completed
    intolerable: np.ndarray  # had an intolerable event (withdrawn, drug stopped or down-titrated)
    ae_grade: dict[str, np.ndarray]  # worst grade per AE type
    onset_1pt: np.ndarray
    onset_30: np.ndarray
    evals: dict[int, np.ndarray]  # evaluation day -> recorded NRS (nan = not evaluated)
    branch: np.ndarray  # branch name per patient ('' = none)
    branch_entry_nrs: np.ndarray
    escalated: np.ndarray
    exclusion: np.ndarray  # rule id of a logged exclusion ('' = none)
    capped: np.ndarray  # dose cap applied by the gates ('' = none)
    final_dose: dict[str, np.ndarray]
    completed_pain: np.ndarray  # endpoint NRS of completers (nan otherwise)
    start_day: int = 0  # trial day the period starts (crossover: after the previous periods and their washouts)


def record_nrs(x: np.ndarray, res: float) -> np.ndarray:
    return np.round(x / res) * res if res != 0.1 else x


class DrugCourses:
    """The drug courses of ``rows`` over one period starting at trial day ``t0``: which dose schedule is in
    force for each patient and drug (catalogue titration to the step's dose, or a direct dose), and the
    adverse events each course (or dose increase, or the placebo) schedules, drawn on the engine's
    ``streams.ADVERSE`` block. :class:`ArmGroup` adds the protocol, pain and outcomes."""

    def __init__(self, pop: TrialPopulation, proto: Protocol, rows: np.ndarray, t0: int) -> None:
        self.pop, self.p, self.rows, self.t0 = pop, proto, rows, t0
        self.t = pop.tables
        n, m = rows.size, len(proto.slots)
        self.n = n
        self.sched: list[np.ndarray] = []  # dose by day offset, one row per (drug, target, titrate)
        self.sched_key: dict[tuple[int, float, bool], int] = {}
        self.sid = np.full((n, m), -1)  # schedule in force (-1 = drug off)
        self.s0 = np.zeros((n, m))  # day the schedule started
        self.cstart = np.full((n, m), np.inf)  # day the course started
        self.courses = np.zeros((n, m), dtype=int)  # courses of each drug started
        self.order = np.full((n, m), np.inf)  # start order (first active drug gets the full effect)
        self.event_days: set[int] = set()  # days on which some adverse event is scheduled
        self.ae = [self._empty_ae(d.ae_types) for d in proto.slots]
        self.pae = self._empty_ae(self.t.placebo_ae_types)

    @staticmethod
    def _empty_ae(types: tuple[int, ...]) -> AdverseEventSlots:
        return AdverseEventSlots(types, np.full((0, len(types)), np.inf), np.zeros((0, len(types)), bool),
                   np.zeros((0, len(types)), int))

    # ---- schedules ------------------------------------------------------------------------------
    def _schedule(self, slot: int, target: float, titrate: bool, from_dose: float = 0.0) -> int:
        key = (slot, float(target), bool(titrate) and from_dose == 0.0)
        if key not in self.sched_key:
            d = self.p.slots[slot]
            steps = arm_schedule(d, target) if key[2] else ((0.0, target),)
            offs = np.arange(self.p.days + 2, dtype=float)
            idx = np.searchsorted([s[0] for s in steps], offs + 1e-9, side="right") - 1
            self.sched.append(np.array([s[1] for s in steps])[np.clip(idx, 0, None)])
            self.sched_key[key] = len(self.sched) - 1
        return self.sched_key[key]

    def dose(self, slot: int, day: float, sel: np.ndarray | None = None) -> np.ndarray:
        sid = self.sid[:, slot] if sel is None else self.sid[sel, slot]
        s0 = self.s0[:, slot] if sel is None else self.s0[sel, slot]
        out = np.zeros(sid.size)
        on = sid >= 0
        if np.any(on):
            table = np.stack(self.sched)
            off = np.clip(np.floor(day - s0[on] + 1e-9).astype(int), 0, table.shape[1] - 1)
            out[on] = table[sid[on], off]
        return out

    # ---- adverse events ---------------------------------------------------------------------------
    def _ensure_ae(self) -> None:
        for a in [*self.ae, self.pae]:
            if a.onset.shape[0] != self.n:
                k = len(a.types)
                a.onset, a.stops, a.grade = (np.full((self.n, k), np.inf), np.zeros((self.n, k), bool),
                                             np.zeros((self.n, k), int))

    def _schedule_ae(self, slot: int, sel: np.ndarray, day: float, new_dose: float | None) -> None:
        """Draw the events of a course starting (``new_dose`` None) or of a dose increase on ``day``."""
        d = self.p.slots[slot]
        a = self.ae[slot]
        rows = self.rows[sel]
        again = self.courses[sel, slot] > 1  # a restarted drug draws afresh (not a replay of the first course)
        for k, col in enumerate(d.ae_slots):
            u = np.where(again, self.pop.restart_ae[rows, 2 * col], self.pop.adverse[rows, 2 * col])
            draw = onset_days_array(d.ae_onset_median, np.where(again, self.pop.restart_ae[rows, 2 * col + 1],
                                                                self.pop.adverse[rows, 2 * col + 1]))
            when = day + draw
            dose_then = self.dose(slot, when, sel) if new_dose is None else np.full(rows.size, new_dose)
            inc = interp_array(d.ae_incidence[k], dose_then)
            total = sum(interp_array(c, dose_then) for c in d.ae_incidence)
            wd = interp_array(d.ae_withdrawal, dose_then)
            ratio = np.where(total > 0, np.minimum(1.0, wd / np.where(total > 0, total, 1.0)), 0.0)
            occurs = u < inc
            if new_dose is not None:  # re-exposure: only events not already scheduled or occurred
                occurs &= ~np.isfinite(a.onset[sel, k]) & (a.grade[sel, k] == 0)
                keep = ~occurs
                a.onset[sel, k] = np.where(keep, a.onset[sel, k], when)
                a.stops[sel, k] = np.where(keep, a.stops[sel, k], u < inc * ratio)
            else:
                a.onset[sel, k] = np.where(occurs, when, np.inf)
                a.stops[sel, k] = occurs & (u < inc * ratio)
            self.event_days.update(np.floor(when[occurs & np.isfinite(when)]).astype(int).tolist())

    def _schedule_placebo_ae(self) -> None:
        t = self.t
        a = self.pae
        rows = self.rows
        total = sum(t.placebo_ae_incidence)
        ratio = min(1.0, t.placebo_ae_withdrawal / total) if total > 0 else 0.0
        for k, inc in enumerate(t.placebo_ae_incidence):
            u = self.pop.placebo_ae[rows, 2 * k]
            when = self.t0 + onset_days_array(t.placebo_ae_onset_median, self.pop.placebo_ae[rows, 2 * k + 1])
            occurs = u < inc
            a.onset[:, k] = np.where(occurs, when, np.inf)
            a.stops[:, k] = occurs & (u < inc * ratio)
            self.event_days.update(np.floor(when[occurs]).astype(int).tolist())

    def _grade(self, sel: np.ndarray, col: int, ae_type: int, stops: np.ndarray) -> np.ndarray:
        mild, mod, sev = self.t.ae_severity[ae_type]
        g = self.pop.grade_u[self.rows[sel], col % 64]
        free = np.where(g < mild, 1, np.where(g < mild + mod, 2, 3))
        forced = np.where(g * (mod + sev) < mod, 2, 3) if mod + sev > 0 else np.full(g.size, 2)
        return np.where(stops, forced, free)

    def _stop(self, slot: int, sel: np.ndarray) -> None:
        self.sid[sel, slot] = -1

    def _down_titrate(self, slot: int, sel: np.ndarray, day: float) -> None:
        d = self.p.slots[slot]
        cur = self.dose(slot, day)
        lower = np.array([max([s for _, s in d.titration if s < c - 1e-9], default=0.0) for c in cur])
        for dose in np.unique(lower[sel]):
            s = sel & (lower == dose)
            if dose <= 0:
                self.sid[s, slot] = -1
            else:
                self.sid[s, slot] = self._schedule(slot, float(dose), False, from_dose=1.0)
                self.s0[s, slot] = day
