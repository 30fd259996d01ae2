"""The day-by-day simulation of one group of trial patients (an arm, a crossover period, a lead-in).

Owns :class:`ArmGroup`: the group followed day by day through the protocol's steps (start, increase,
stop, re-randomise, each possibly conditional on the NRS that day), the guideline gates (P5/P6
exclusions, dose caps), pain (the engine's clinical model, vectorised), adverse events and intolerance,
drop-out, and the period's :class:`~simulator.analysis.trial.courses.GroupOutcome`.
"""

from __future__ import annotations

import math

import numpy as np

from ...model.response import drug_effect_array, observed_pain_array
from ...model.safety import contraindication, dose_cap
from .courses import DROPOUT, EXCLUDED, WITHDRAWN_AE, DrugCourses, GroupOutcome, TrialPopulation, record_nrs
from .protocol import INCREASE, START, STOP, Protocol, Step


class ArmGroup(DrugCourses):
    """Day-by-day simulation of ``rows`` on a list of steps over one period starting at trial day ``t0``."""

    def __init__(self, pop: TrialPopulation, proto: Protocol, rows: np.ndarray, steps: tuple[Step, ...], t0: int,
                 placebo: bool, baseline: np.ndarray | None = None) -> None:
        super().__init__(pop, proto, rows, t0)
        n = self.n
        self.lat = pop.latents.take(rows)
        self.base_true = pop.baseline[rows]
        self.base = record_nrs(self.base_true, proto.nrs_resolution) if baseline is None else baseline
        self.steps = list(steps)
        self.placebo = placebo
        self.in_trial = np.ones(n, bool)
        self.status = np.zeros(n, int)
        self.stop_day = np.full(n, np.inf)
        self.intolerable = np.zeros(n, bool)
        self.escalated = np.zeros(n, bool)
        self.exclusion = np.full(n, "", dtype=object)
        self.capped = np.full(n, "", dtype=object)
        self.branch = np.full(n, "", dtype=object)
        self.branch_entry = np.full(n, np.nan)
        self.last_eval = self.base.copy()
        self.evals: dict[int, np.ndarray] = {}
        self.obs = np.zeros((n, proto.days + 1))
        self.onset_1pt = np.full(n, np.inf)
        self.onset_30 = np.full(n, np.inf)
        horizon = proto.days
        if proto.dropout_per_day > 0:
            dd = -np.log1p(-pop.dropout_u[rows]) / -math.log1p(-proto.dropout_per_day)
            self.dropout_day = np.where(dd < horizon, np.floor(dd), np.inf)
        else:
            self.dropout_day = np.full(n, np.inf)

    # ---- actions ----------------------------------------------------------------------------------
    def _leave(self, sel: np.ndarray, day: float, status: int) -> None:
        sel = sel & self.in_trial
        self.in_trial &= ~sel
        self.status[sel] = status
        self.stop_day[sel] = day
        self.sid[sel, :] = -1

    def _gate(self, st: Step, sel: np.ndarray, day: float, check_contra: bool) -> np.ndarray:
        """Per-patient doses of a start/increase step under the guideline's gates (P5/P6, simulator.model.safety):
        a contraindicated patient is a logged exclusion (leaves the trial), a dose above the patient's cap is
        given at the cap and logged in ``capped``. Without gates every patient gets the protocol dose."""
        doses = np.full(self.n, st.dose)
        if not self.p.gates:
            return doses
        d = self.p.slots[st.drug]
        for i in np.flatnonzero(sel):
            facts = self.pop.facts(int(self.rows[i]))
            rule = contraindication(d, facts) if check_contra else None
            if rule is not None:
                self.exclusion[i] = f"{d.name}: {rule}"
                sel[i] = False
                self._leave(np.arange(self.n) == i, day, EXCLUDED)
                continue
            cap, cap_rule = dose_cap(d, facts)
            if st.dose > cap + 1e-9:
                doses[i] = cap
                self.capped[i] = f"{d.name} {cap:g}: {cap_rule}"
        return doses

    def _start(self, st: Step, sel: np.ndarray, day: float) -> None:
        doses = self._gate(st, sel, day, True)
        sel = sel & (self.sid[:, st.drug] < 0)  # already on it: a start is not a restart
        if not np.any(sel):
            return
        for dose in np.unique(doses[sel]):
            s = sel & (doses == dose)
            self.sid[s, st.drug] = self._schedule(st.drug, float(dose), st.titrate)
        self.s0[sel, st.drug] = day
        self.cstart[sel, st.drug] = day
        self.courses[sel, st.drug] += 1
        self.order[sel, st.drug] = day + 1e-3 * st.drug
        self._schedule_ae(st.drug, sel, day, None)

    def _increase(self, st: Step, sel: np.ndarray, day: float) -> None:
        sel = sel & (self.sid[:, st.drug] >= 0)
        doses = self._gate(st, sel, day, False)
        cur = self.dose(st.drug, day)
        sel &= cur < doses - 1e-9
        if not np.any(sel):
            return
        for dose in np.unique(doses[sel]):
            s = sel & (doses == dose)
            self.sid[s, st.drug] = self._schedule(st.drug, float(dose), False, from_dose=1.0)
            self._schedule_ae(st.drug, s, day, float(dose))
        self.s0[sel, st.drug] = day
        self.escalated |= sel

    def _randomise(self, st: Step, sel: np.ndarray, rec: np.ndarray) -> None:
        """Balanced re-randomisation of the selected patients into the step's branches (trial sub-stream)."""
        k = len(st.branches)
        idx = np.flatnonzero(sel)
        order = np.argsort(self.pop.branch_u[self.rows[idx]], kind="stable")
        alloc = np.empty(idx.size, dtype=int)
        alloc[order] = np.arange(idx.size) % k
        for b, (bname, _) in enumerate(st.branches):
            members = idx[alloc == b]
            self.branch[members] = bname
            self.branch_entry[members] = rec[members]

    # ---- pain -------------------------------------------------------------------------------------
    def _effects(self, day: float) -> list[np.ndarray]:
        lat = self.lat
        rows = self.rows
        out: list[np.ndarray] = []
        active = self.sid >= 0
        if not np.any(active):
            return out
        first = np.argmin(np.where(active, self.order, np.inf), axis=1)
        for j, d in enumerate(self.p.slots):
            on = active[:, j]
            if not np.any(on):
                continue
            e = drug_effect_array(self.t, d, self.dose(j, day), np.where(on, day - self.cstart[:, j], 0.0),
                                  self.pop.etiology[rows], lat.u_at(slice(None), d.index, self.t0 + day), lat.drug_z[:, d.index],
                                  self.pop.localized[rows])
            e = np.where(on, e, 0.0)
            out.append(np.where(first == j, e, e * self.t.combination_factor))
        return out

    def run(self) -> GroupOutcome:
        p, t = self.p, self.t
        self._ensure_ae()
        if self.placebo:
            self._schedule_placebo_ae()
        lat = self.lat
        ns_onset = lat.ns_onset
        pending: list[tuple[Step, str]] = [(s, "") for s in sorted(self.steps, key=lambda s: (s.day, s.kind))]
        end = p.endpoint_day
        for day in range(0, p.days + 1):
            # pain on this day, with the drugs in force at its start
            effects = self._effects(float(day))
            absolute = float(self.t0 + day)
            ns = lat.ns_at(slice(None), absolute)
            expected = observed_pain_array(self.base_true, ns, ns_onset, absolute, effects, t.noise_sd, 0.0)
            obs = observed_pain_array(self.base_true, ns, ns_onset, absolute, effects, t.noise_sd,
                                      self.pop.noise[self.rows, self.t0 + day])
            self.obs[:, day] = obs
            lo = max(0, day - p.diary + 1)
            rec = record_nrs(self.obs[:, lo:day + 1].mean(axis=1) if p.diary > 1 else obs, p.nrs_resolution)
            if day > 0:
                live = self.in_trial
                self.onset_1pt = np.where(live & np.isinf(self.onset_1pt) & (self.base_true - expected >= 1.0 - 1e-9),
                                          day, self.onset_1pt)
                self.onset_30 = np.where(live & np.isinf(self.onset_30)
                                         & (expected <= 0.7 * self.base_true + 1e-9), day, self.onset_30)
            if day in p.evaluation_days or day == end:
                self.evals[day] = np.where(self.in_trial, rec, np.nan)
                self.last_eval = np.where(self.in_trial, rec, self.last_eval)
            # protocol steps of this day (a branch's steps apply to its members only)
            today = [(s, b) for s, b in pending if int(round(s.day)) == day]
            pending = [(s, b) for s, b in pending if int(round(s.day)) != day]
            while today:
                s, bname = today.pop(0)
                sel = self.in_trial & (self.branch == bname) if bname else self.in_trial.copy()
                if s.cond is not None:
                    sel &= s.cond.holds(rec, self.base)
                    self.evals.setdefault(day, np.where(self.in_trial, rec, np.nan))
                    self.last_eval = np.where(self.in_trial, rec, self.last_eval)
                if s.kind == START:
                    self._start(s, sel, float(day))
                elif s.kind == INCREASE:
                    self._increase(s, sel, float(day))
                elif s.kind == STOP:
                    self._stop(s.drug, sel)
                else:
                    self._randomise(s, sel, rec)
                    for b, bsteps in s.branches:
                        for bs in bsteps:
                            (today if int(round(bs.day)) == day else pending).append((bs, b))
            if day >= p.days:
                break
            # adverse events with onset during this day
            self._fire_events(day)
            # drop-out at the end of the day
            gone = self.in_trial & (self.dropout_day == day)
            if np.any(gone):
                self._leave(gone, float(day), DROPOUT)
        return self._outcome(end)

    def _fire_events(self, day: int) -> None:
        if day not in self.event_days:
            return
        intolerable_slots: list[tuple[int, np.ndarray]] = []
        for j, (d, a) in enumerate([*zip(self.p.slots, self.ae, strict=True), (None, self.pae)]):
            if not a.types:
                continue
            on = (self.sid[:, j] >= 0) if d is not None else np.full(self.n, self.placebo)
            due = (a.onset >= day) & (a.onset < day + 1) & (on & self.in_trial)[:, None]
            if not np.any(due):
                continue
            stop_any = np.zeros(self.n, bool)
            for k, ae_type in enumerate(a.types):
                sel = due[:, k]
                if not np.any(sel):
                    continue
                col = (d.ae_slots[k] if d is not None else 60 + k)
                g = self._grade(sel, col, ae_type, a.stops[sel, k])
                a.grade[sel, k] = np.maximum(a.grade[sel, k], g)
                stop_any |= sel & a.stops[:, k]
            if np.any(stop_any):
                intolerable_slots.append((j, stop_any))
        for j, sel in intolerable_slots:
            sel = sel & self.in_trial
            self.intolerable |= sel
            if self.p.on_intolerance == "withdraw":
                self._leave(sel, float(day), WITHDRAWN_AE)
            elif j == len(self.p.slots):
                # placebo under stop_drug / down_titrate: a blinded protocol handles the dummy as the drug (stopped
                # or reduced) and the patient stays; withdrawing here would make placebo the only arm that loses
                # patients to adverse events
                continue
            elif self.p.on_intolerance == "stop_drug":
                self._stop(j, sel)
            else:
                self._down_titrate(j, sel, float(day + 1))

    def _outcome(self, end: int) -> GroupOutcome:
        p = self.p
        rec_end = self.evals.get(end, np.full(self.n, np.nan))
        completed = self.in_trial | (self.stop_day > end)
        if p.analysis == "bocf":
            analysed = np.where(completed, rec_end, self.base)
        elif p.analysis == "locf":
            analysed = np.where(completed, rec_end, self.last_eval)
        else:
            analysed = np.where(completed, rec_end, np.nan)
        analysed = np.where(self.status == EXCLUDED, np.nan, analysed)
        ae_grade: dict[str, np.ndarray] = {}
        for a in [*self.ae, self.pae]:
            for k, ty in enumerate(a.types):
                name = self.t.ae_types[ty]
                g = a.grade[:, k]
                ae_grade[name] = np.maximum(ae_grade[name], g) if name in ae_grade else g.copy()
        left = np.where(np.isfinite(self.stop_day), self.stop_day, np.inf)
        e1 = np.isfinite(self.onset_1pt) & (self.onset_1pt <= np.minimum(left, end))
        e3 = np.isfinite(self.onset_30) & (self.onset_30 <= np.minimum(left, end))
        final_dose = {d.name: self.dose(j, float(end)) for j, d in enumerate(p.slots)}
        return GroupOutcome(
            rows=self.rows, baseline=self.base, pain_end=analysed, status=self.status.copy(), stop_day=self.stop_day,
            intolerable=self.intolerable, ae_grade=ae_grade,
            onset_1pt=np.where(e1, self.onset_1pt, -np.minimum(left, end)),
            onset_30=np.where(e3, self.onset_30, -np.minimum(left, end)), evals=self.evals, branch=self.branch,
            branch_entry_nrs=self.branch_entry, escalated=self.escalated, exclusion=self.exclusion, capped=self.capped,
            final_dose=final_dose, completed_pain=np.where(completed & (self.status != EXCLUDED), rec_end, np.nan),
            start_day=int(self.t0))
