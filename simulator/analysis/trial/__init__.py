"""Virtual trials: protocols of drug steps run on a trial cohort with the engine's clinical model.

A trial is described by a **trial-design file** (YAML, :class:`TrialDesignFile`, ``painpath trial
--design FILE``) or by command-line arms (``--arm pregabalin:300 --arm placebo``, compiled to the same
design). It draws a cohort, screens it (inclusion and exclusion criteria), optionally runs a lead-in that
keeps inadequate responders to a prior drug, randomises patients to arms (stream ``streams.TRIAL``) and
follows each arm day by day:

* **Steps.** An arm is a list of steps on given days: ``start`` (or ``add``) a drug at a dose,
  ``increase_dose`` of a drug already taken, ``stop`` a drug, or ``randomise`` the patients who reach the
  step into named branches (non-responder re-randomisation). A step may carry a condition (``when``) on
  the NRS observed that day and on the relative change from baseline; patients who do not meet it skip the
  step. A started drug follows the catalogue titration (``drugs.yaml``) up to the step's dose unless the
  design says ``titrate: false``; ``increase_dose`` moves to the new dose on the step's day.
* **Clinical model.** The same functions as the engine (``simulator/model/response.py``): latent draws
  (:func:`~simulator.model.response.draw_latents` on the ``streams.RESPONSE`` block), drug effects and observed
  pain (the vectorised twins of :func:`~simulator.model.response.drug_effect` and
  :func:`~simulator.model.response.observed_pain`, checked equal in ``tests/test_trial.py``). Drugs other than
  the first active one contribute ``combination_factor`` of their effect, as in the engine.
* **Adverse events.** The engine's rule on the ``streams.ADVERSE`` block: the event of type ``k`` of a
  drug course occurs when ``u_inc < incidence_k(dose on its onset day)``, onset exponential with the drug's
  median after the course starts, and it is *intolerable* when ``u_inc < incidence_k * min(1, withdrawal /
  sum of incidences)``. A protocol dose increase re-exposes: an event that has not occurred occurs when
  ``u_inc < incidence_k(new dose)``, with its onset after the increase. Events of a drug already stopped do
  not happen; a drug started again after a stop draws its events afresh (not a replay of the first course). Patients on placebo alone get **nocebo** events at the placebo rates of ``clinical.yaml``
  (``placebo:``). Every event has a grade (mild, moderate, severe; ``ae_severity``); an intolerable one is
  at least moderate.
* **Intolerance** is handled per protocol (``on_intolerance``): ``withdraw`` (the patient leaves the
  trial; an explicit outcome), ``stop_drug`` (the drug stops, the patient stays) or ``down_titrate`` (back
  to the previous titration dose and held there, i.e. the maximum tolerated dose; at the lowest dose the
  drug stops). A placebo patient with an intolerable nocebo event is handled alike (blinded): withdrawn
  under ``withdraw``, kept in the trial otherwise. Drop-out is the protocol's ``dropout_per_week`` (default none).
* **Gates.** Patient-level safety gates of the guideline apply to every ``start``/``increase_dose`` step
  (:mod:`simulator.model.safety`): a patient with a P5 contraindication, or a topical without localized pain
  (P6), cannot be given the step and is a *logged exclusion* (reason = rule id) who leaves the analysis; a
  dose above the patient's renal, age or caution cap is given at the cap and logged (``dose_capped``). ``guideline_gates: false`` declares the departure (the command-line arms and
  the calibration battery use it: their trial populations already excluded those patients). Sequence gates
  of the pathway (P7 tramadol after first-line failure, P8 the strong-opioid gate) are what a protocol
  replaces, so any drug may come in any step.
* **Crossover** designs give every patient every arm, in a random order, in periods of ``weeks`` weeks
  separated by ``washout_days``; drug effects end with the period (the model's effect is that of the
  current dose), the nonspecific response keeps building, and an intolerable event ends the period.
* **Endpoints.** NRS at the endpoint day (default: the end of the period): one visit rating or the mean
  of a 7-day diary (``nrs: diary7``), recorded to ``nrs_resolution``; analysed ``bocf`` (withdrawn and
  dropped-out patients keep their baseline), ``locf`` (their last evaluation) or ``observed``
  (completers only). Evaluations happen on ``evaluation_days`` and on every conditional step's day.
  Time-to-onset endpoints (first day of a 1-point improvement and of a >= 30% reduction) are read on the
  patient's noise-free pain curve, Kaplan-Meier medians censored at withdrawal and at the end.
  ``mean_pain_end`` (Gilron crossovers: pain at maximum tolerated dose) is the mean over completers.

Trial-design properties describe a trial, never the pathway simulation, which does not read them:
``placebo_scale`` (trial-population modifier of the nonspecific responder share, calibration.md 1c:
placebo response differs between trials and has risen over time), ``blinding`` (``open_label`` multiplies
the nonspecific responder share by ``expectation.open_label`` of clinical.yaml), ``titrate`` and
``nrs_resolution`` (1 = one whole-number rating).

A scenario's protocol policy (``policy.protocol``) runs through this facility with
:func:`protocol_design` (``painpath trial --scenario``), its own rules governing.

Random numbers: the cohort, latents and drug adverse events use the engine's streams (same patients, same
luck); trial-only draws (randomisation, daily NRS noise, drop-out, nocebo events, grades, branch
randomisation) use sub-streams of ``streams.TRIAL`` keyed by :data:`simulator.analysis.trial.courses.SUB`.

The facility is split by concern: :mod:`simulator.analysis.trial.design` (the design file), :mod:`simulator.analysis.trial.protocol`
(the compiled protocol), :mod:`simulator.analysis.trial.courses` (population, drug courses and their adverse events),
:mod:`simulator.analysis.trial.group` (one group day by day) and :mod:`simulator.analysis.trial.results` (summaries, NNT). This
module screens, randomises and runs a protocol (parallel arms or crossover periods, with the lead-in),
builds protocols from command-line arms and scenario protocol policies, and keeps the public names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...inputs.errors import InputError
from ...inputs.packaged import resolve_cohort
from ...model import streams
from ...model.clinical_tables import ModelTables, compile_model
from ...population.cohort import Cohort, generate_cohort
from ...population.cohort_spec import load_cohort_spec
from .courses import COMPLETED, GroupOutcome, TrialPopulation
from .design import MAX_PATIENTS, MAX_WEEKS, PLACEBO, Design, TrialDesignFile, load_design
from .group import ArmGroup
from .protocol import START, Protocol, Step, arm_schedule, compile_design, parse_arm
from .results import ArmResult, TrialResult, merge_outcomes, nnt, patients_frame, summarise_arm

__all__ = ["PLACEBO", "ArmResult", "TrialDesignFile", "TrialResult", "TrialSpec", "arm_schedule", "load_design", "nnt",
           "parse_arm", "protocol_design", "run_protocol", "run_trial"]


def _screen(proto: Protocol, tables: ModelTables) -> tuple[Cohort, int]:
    spec = load_cohort_spec(resolve_cohort(proto.cohort, field="cohort"))
    inc = proto.inclusion
    if inc is None:
        return generate_cohort(spec, proto.patients, proto.seed, 0), proto.patients
    n_screen = proto.patients * 2
    for _ in range(8):
        c = generate_cohort(spec, n_screen, proto.seed, 0)
        ok = ((c.age >= inc.age_min) & (c.age <= inc.age_max) & (c.baseline_nrs >= inc.min_baseline_nrs - 1e-9)
              & (c.crcl >= inc.min_crcl))
        for f in inc.exclude:
            ok &= ~getattr(c, f)
        idx = np.flatnonzero(ok)
        if idx.size >= proto.patients:
            chosen = idx[:proto.patients]
            return c.take(chosen), int(chosen[-1]) + 1
        n_screen *= 2
    raise InputError(f"the inclusion criteria admit too few patients of this cohort ({idx.size} of {n_screen})",
                     field="inclusion", fix="relax the criteria or use a cohort that matches them")


def run_protocol(proto: Protocol, tables: ModelTables, keep_patients: bool = False) -> TrialResult:
    """Run a compiled protocol (see the module docstring)."""
    cohort, screened = _screen(proto, tables)
    n_arms = len(proto.arms)
    lead_days = proto.lead_in[2] if proto.lead_in else 0
    total = lead_days + (n_arms if proto.design == "crossover" else 1) * (proto.days + proto.washout_days) + 1
    pop = TrialPopulation(tables, cohort, proto.seed, proto.placebo_scale, proto.open_label, total)
    n = cohort.n
    rows_all = np.arange(n)
    baseline = None
    lead_not = 0
    t0 = 0
    if proto.lead_in is not None:
        slot, dose, ldays, keep = proto.lead_in
        lead = replace(proto, days=ldays, endpoint_day=ldays, evaluation_days=(), analysis="observed",
                       dropout_per_day=0.0)
        g = ArmGroup(pop, lead, rows_all, (Step(0.0, START, slot, dose, True),), 0, False)
        out = g.run()
        rec = out.evals[ldays]
        kept = (out.status == COMPLETED) & keep.holds(np.nan_to_num(rec, nan=10.0), out.baseline) & np.isfinite(rec)
        lead_not = int(n - np.count_nonzero(kept))
        rows_all = rows_all[kept]
        baseline = rec[kept]
        t0 = ldays
    n_rand = rows_all.size
    u = streams.block(proto.seed, 0, streams.TRIAL, n, max(n_arms, 1))[rows_all]
    results: list[ArmResult] = []
    frames: list[tuple[str, int, GroupOutcome]] = []
    branch_parts: dict[str, list[GroupOutcome]] = {}
    if proto.design == "parallel":
        order = np.argsort(u[:, 0], kind="stable")
        alloc = np.empty(n_rand, dtype=int)
        alloc[order] = np.arange(n_rand) % n_arms
        for j, arm in enumerate(proto.arms):
            sel = alloc == j
            rows = rows_all[sel]
            base = None if baseline is None else baseline[sel]
            g = ArmGroup(pop, proto, rows, arm.steps, t0, arm.is_placebo, base).run()
            frames.append((arm.label, 0, g))
            results.append(summarise_arm(arm.label, merge_outcomes([g])))
            for bname in sorted({b for b in g.branch if b}):
                branch_parts.setdefault(bname, []).append(g)
    else:
        period_of = np.argsort(np.argsort(u, axis=1), axis=1)  # period of arm j for each patient
        for j, arm in enumerate(proto.arms):
            parts = []
            for q in range(n_arms):
                rows = rows_all[period_of[:, j] == q]
                if rows.size:
                    g = ArmGroup(pop, proto, rows, arm.steps, t0 + q * (proto.days + proto.washout_days),
                               arm.is_placebo).run()
                    parts.append(g)
                    frames.append((arm.label, q, g))
            results.append(summarise_arm(arm.label, merge_outcomes(parts)))
    for bname, parts in branch_parts.items():
        merged = merge_outcomes(parts)
        mask = merged["branch"] == bname
        sub = {k: (v[mask] if isinstance(v, np.ndarray) else {kk: vv[mask] for kk, vv in v.items()})
               for k, v in merged.items()}
        results.append(summarise_arm(bname, sub, since_entry=True))
    pbo = next((r for r, a in zip(results, proto.arms, strict=False) if a.is_placebo), None)
    if pbo is not None:
        for r in results:
            if r is pbo:
                continue
            r.nnt50 = nnt(r.responders50, r.n, pbo.responders50, pbo.n)
            r.nnt30 = nnt(r.responders30, r.n, pbo.responders30, pbo.n)
            r.nnh_ae_withdrawal = nnt(r.ae_withdrawal, r.n, pbo.ae_withdrawal, pbo.n)
            r.nnh_any_ae = nnt(r.any_ae, r.n, pbo.any_ae, pbo.n)
    analysis = {"bocf": "BOCF: patients who left keep their baseline pain", "locf": "LOCF: patients who left keep their "
                "last evaluation", "observed": "observed: completers only"}[proto.analysis]
    analysis += "; mean_pain_end over completers; intolerance: " + proto.on_intolerance
    res = TrialResult(proto, results, screened=screened, lead_in_excluded=lead_not, analysis=analysis)
    if keep_patients:
        res.patients = patients_frame(pop, proto, frames)
    return res


# ==================================================================================================
# Command-line arms and the calibration battery: TrialSpec -> protocol
# ==================================================================================================


@dataclass(frozen=True)
class TrialSpec:
    """Fixed arms from the command line or the calibration battery (every drug starts on day 0)."""

    cohort: str
    arms: tuple[str, ...]
    weeks: float
    patients: int
    seed: int = 1
    design: Design = "parallel"
    placebo_scale: float = 1.0  # trial-population modifier of the nonspecific responder share
    titrate: bool = True  # False: every arm starts at its dose on day 0
    nrs_resolution: float = 0.1  # pain recorded to this resolution (1.0 = whole points)
    blinding: Literal["double_blind", "open_label"] = "double_blind"

    def design_file(self, tables: ModelTables) -> TrialDesignFile:
        """The equivalent trial design (guideline gates off: trial populations exclude those patients)."""
        if not self.arms:
            raise InputError("a trial needs at least one arm", field="--arm", fix="add --arm DRUG[:DOSE] --arm placebo")
        if not (isinstance(self.weeks, int | float) and math.isfinite(self.weeks) and 0 < self.weeks <= MAX_WEEKS):
            raise InputError(f"weeks must be positive and at most {MAX_WEEKS} (got {self.weeks:g})", field="--weeks",
                             fix="use e.g. --weeks 12")
        if self.patients > MAX_PATIENTS:
            raise InputError(f"patients must be at most {MAX_PATIENTS:,} (got {self.patients:,})", field="--patients",
                             fix="use e.g. --patients 2000")
        if self.patients < 1:
            raise InputError(f"patients must be at least 1 (got {self.patients})", field="--patients",
                             fix="use e.g. --patients 2000")
        if self.design not in ("parallel", "crossover"):
            raise InputError(f"unknown design '{self.design}'", field="--design", fix="use parallel or crossover")
        if not (math.isfinite(self.placebo_scale) and self.placebo_scale >= 0):
            raise InputError(f"placebo_scale must be a non-negative number (got {self.placebo_scale})",
                             field="placebo_scale", fix="use e.g. 1.0 (the clinical model's responder share)")
        if not (math.isfinite(self.nrs_resolution) and self.nrs_resolution > 0):
            raise InputError(f"nrs_resolution must be positive (got {self.nrs_resolution})", field="nrs_resolution",
                             fix="use 0.1 (diary means) or 1 (whole-number ratings)")
        arms = [parse_arm(a, tables) for a in self.arms]
        return TrialDesignFile(cohort=self.cohort, arms=arms, weeks=self.weeks,  # type: ignore[arg-type]
                               patients=self.patients, seed=self.seed, design=self.design,
                               placebo_scale=self.placebo_scale, titrate=self.titrate,
                               nrs_resolution=self.nrs_resolution, blinding=self.blinding, guideline_gates=False)


def protocol_design(scenario_path: str | Path) -> TrialDesignFile:
    """A scenario's protocol policy (``policy.protocol``) as a trial design, so the protocol's own rules govern:
    step ``k+1``'s drug starts at the end of step ``k`` for patients whose NRS is above ``next_if_nrs_above``
    (added, or switched to: earlier drugs stop), every patient is followed to the end of the last step (the
    pathway's relief rule does not end follow-up), ``max_tolerated`` doses titrate to the catalogue maximum
    with down-titration on intolerance, and the guideline's patient gates apply. Evaluations at every step's
    end; endpoint: the visit at the end of the protocol, LOCF. Raises InputError when the scenario has no
    protocol."""
    from ...model.catalog import load_catalog
    from ...scenario import load_scenario

    sc = load_scenario(scenario_path)
    proto = sc.policy.protocol
    if proto is None:
        raise InputError("the scenario has no protocol policy", file=str(scenario_path), field="policy.protocol",
                         fix="give policy.protocol.steps, or describe the trial in a trial-design file (--design)")
    cat = load_catalog()
    steps: list[dict[str, Any]] = []
    day, started = 0, []
    for k, st in enumerate(proto.steps):
        drug = cat.drugs[st.drug]
        dose = drug.max_dose if st.dose == "max_tolerated" else drug.target_dose if st.dose == "target" else float(st.dose)
        if k == 0:
            steps.append({"day": day, "start": st.drug, "dose": dose})
        else:
            prev = proto.steps[k - 1]
            when = {"nrs_above": prev.next_if_nrs_above}
            if prev.action == "switch":
                steps += [{"day": day, "when": when, "stop": d} for d in started if d != st.drug]
            steps.append({"day": day, "when": when, "start": st.drug, "dose": dose})
        started.append(st.drug)
        day += 7 * st.weeks
    ends = [7 * sum(s.weeks for s in proto.steps[:k + 1]) for k in range(len(proto.steps))]
    cohort = Path(sc.cohort)
    if not cohort.is_absolute():
        cohort = Path(scenario_path).parent / cohort
    max_tol = any(s.dose == "max_tolerated" for s in proto.steps)
    return TrialDesignFile.model_validate({
        "name": sc.name, "cohort": str(cohort), "patients": sc.patients, "seed": sc.seed, "weeks": day / 7,
        "arms": [{"name": "protocol", "steps": steps}], "on_intolerance": "down_titrate" if max_tol else "stop_drug",
        "endpoint": {"analysis": "locf", "evaluation_days": ends[:-1]}})


def run_trial(spec: TrialSpec | TrialDesignFile, tables: ModelTables | None = None, keep_patients: bool = False,
              file: str | None = None) -> TrialResult:
    """Run a virtual trial from command-line arms or a design file; raise InputError for bad input."""
    tables = tables or compile_model()
    design = spec.design_file(tables) if isinstance(spec, TrialSpec) else spec
    return run_protocol(compile_design(design, tables, file), tables, keep_patients)
