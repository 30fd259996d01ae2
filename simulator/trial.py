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
* **Clinical model.** The same functions as the engine (``simulator/clinical.py``): latent draws
  (:func:`~simulator.clinical.draw_latents` on the ``streams.RESPONSE`` block), drug effects and observed
  pain (the vectorised twins of :func:`~simulator.clinical.drug_effect` and
  :func:`~simulator.clinical.observed_pain`, checked equal in ``tests/test_trial.py``). Drugs other than
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
  (:mod:`simulator.safety`): a patient with a P5 contraindication, or a topical without localized pain
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
randomisation) use sub-streams of ``streams.TRIAL`` keyed by :data:`SUB`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.special import ndtri

from . import streams
from .clinical import (
    RESPONSE_COLUMNS,
    DrugTable,
    ModelTables,
    compile_model,
    draw_latents,
    drug_effect_array,
    interp_array,
    observed_pain_array,
    onset_days_array,
)
from .cohort import Cohort, generate_cohort, load_cohort_spec
from .engine import N_SERIOUS
from .errors import InputError
from .packaged import resolve_cohort
from .safety import PatientFacts, contraindication, dose_cap
from .schema import Strict, load_model

Design = Literal["parallel", "crossover"]
PLACEBO = "placebo"
SUB = {"randomise": 0, "noise": 1, "dropout": 2, "placebo_ae": 3, "grade": 4, "branch": 5, "restart_ae": 6}
COHORT_FLAGS = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "glaucoma",
                "orthostatic_hypotension", "ssri_use", "depression")


def _sub_block(seed: int, purpose: str, n: int, k: int) -> np.ndarray:
    """Uniforms of a trial-only sub-stream of ``streams.TRIAL`` (row i = patient i)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(0, streams.TRIAL, 100 + SUB[purpose]))
    return np.random.default_rng(ss).random((n, k))


# ==================================================================================================
# The trial-design file (validated input)
# ==================================================================================================


class Condition(Strict):
    """All given bounds must hold. NRS is the value observed on the step's day; ``reduction`` is the
    relative reduction from the trial baseline, (baseline - NRS) / baseline."""

    nrs_above: float | None = Field(default=None, ge=0, le=10)
    nrs_at_most: float | None = Field(default=None, ge=0, le=10)
    reduction_below: float | None = Field(default=None, ge=-1, le=1)
    reduction_at_least: float | None = Field(default=None, ge=-1, le=1)

    @model_validator(mode="after")
    def _some(self) -> Condition:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("a condition needs at least one of nrs_above, nrs_at_most, reduction_below, reduction_at_least")
        return self


class StepSpec(Strict):
    """One protocol step: exactly one of start/add, increase_dose, stop, randomise."""

    day: float = Field(ge=0, allow_inf_nan=False)
    when: Condition | None = None
    start: str | None = None
    add: str | None = None
    increase_dose: str | None = None
    stop: str | None = None
    dose: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    titrate: bool | None = None
    randomise: dict[str, list[StepSpec]] | None = None

    @model_validator(mode="after")
    def _one_action(self) -> StepSpec:
        acts = [k for k in ("start", "add", "increase_dose", "stop", "randomise") if getattr(self, k) is not None]
        if len(acts) != 1:
            raise ValueError(f"a step needs exactly one of start, add, increase_dose, stop, randomise (got {acts or 'none'})")
        if self.increase_dose is not None and self.dose is None:
            raise ValueError("increase_dose needs the new dose (dose: ...)")
        if self.randomise is not None and len(self.randomise) < 2:
            raise ValueError("randomise needs at least two named branches")
        return self


class ArmSpec(Strict):
    name: str = Field(min_length=1)
    steps: list[StepSpec] = []


class Inclusion(Strict):
    age_min: float = Field(default=0, ge=0, le=120)
    age_max: float = Field(default=120, ge=0, le=120)
    min_baseline_nrs: float = Field(default=0, ge=0, le=10)
    min_crcl: float = Field(default=0, ge=0)
    exclude: list[str] = []

    @model_validator(mode="after")
    def _flags(self) -> Inclusion:
        bad = [f for f in self.exclude if f not in COHORT_FLAGS]
        if bad:
            raise ValueError(f"unknown exclusion {bad[0]!r}; use one of: {', '.join(COHORT_FLAGS)}")
        if self.age_min > self.age_max:
            raise ValueError("age_min is above age_max")
        return self


MAX_WEEKS = 520
"""Longest virtual trial (weeks): ten years, beyond any published neuropathic-pain trial."""
MAX_PATIENTS = 200_000
"""Most patients randomised in one virtual trial (every arm's daily pain is held in memory)."""


class LeadIn(Strict):
    """A lead-in on a prior drug; patients meeting ``keep_if`` at its end are randomised, the drug stops then."""

    drug: str
    dose: float = Field(gt=0, allow_inf_nan=False)
    weeks: float = Field(gt=0, allow_inf_nan=False)
    keep_if: Condition


class Endpoint(Strict):
    day: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    analysis: Literal["bocf", "locf", "observed"] = "bocf"
    nrs: Literal["visit", "diary7"] = "visit"
    evaluation_days: list[float] = []


class TrialDesignFile(Strict):
    """A virtual trial (see the module docstring). ``arms``: a list of arms with steps, or CLI-style strings
    (``pregabalin:300``, ``duloxetine:60+pregabalin:150``, ``placebo``)."""

    name: str = "trial"
    cohort: str
    arms: list[ArmSpec | str] = Field(min_length=1)
    weeks: float = Field(gt=0, le=MAX_WEEKS, allow_inf_nan=False)
    patients: int = Field(default=2000, ge=1, le=MAX_PATIENTS)
    seed: int = Field(default=1, ge=0)
    design: Design = "parallel"
    washout_days: float = Field(default=0, ge=0, allow_inf_nan=False)
    blinding: Literal["double_blind", "open_label"] = "double_blind"
    placebo_scale: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    titrate: bool = True
    nrs_resolution: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    inclusion: Inclusion | None = None
    lead_in: LeadIn | None = None
    endpoint: Endpoint = Endpoint()
    on_intolerance: Literal["withdraw", "stop_drug", "down_titrate"] = "withdraw"
    dropout_per_week: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    guideline_gates: bool = True
    design_source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> TrialDesignFile:
        if self.design == "crossover" and self.lead_in is not None:
            raise ValueError("a lead-in is supported for parallel designs only")
        return self


def load_design(path: str | Path) -> TrialDesignFile:
    """Read and validate a trial-design file; InputError (one paragraph) when it is invalid."""
    return load_model(path, TrialDesignFile)


# ==================================================================================================
# Compiled protocol (plain values)
# ==================================================================================================

START, INCREASE, STOP, RANDOMISE = 0, 1, 2, 3


@dataclass(frozen=True)
class Cond:
    nrs_above: float = -math.inf
    nrs_at_most: float = math.inf
    red_below: float = math.inf
    red_at_least: float = -math.inf

    def holds(self, nrs: np.ndarray, base: np.ndarray) -> np.ndarray:
        red = np.where(base > 0, (base - nrs) / np.where(base > 0, base, 1.0), 0.0)
        return ((nrs > self.nrs_above) & (nrs <= self.nrs_at_most + 1e-9)
                & (red < self.red_below - 1e-9) & (red >= self.red_at_least - 1e-9))


@dataclass(frozen=True)
class Step:
    day: float
    kind: int
    drug: int = -1  # slot index of the protocol's drugs; -1 for randomise
    dose: float = 0.0
    titrate: bool = True
    cond: Cond | None = None
    branches: tuple[tuple[str, tuple[Step, ...]], ...] = ()


@dataclass(frozen=True)
class Arm:
    """One trial arm: a label and its steps (no drug step = placebo)."""

    label: str
    steps: tuple[Step, ...] = ()
    placebo: bool = False

    @property
    def is_placebo(self) -> bool:
        return self.placebo


@dataclass(frozen=True)
class Protocol:
    name: str
    cohort: str
    arms: tuple[Arm, ...]
    slots: tuple[DrugTable, ...]  # the drugs the protocol names, in order
    days: int  # period length
    patients: int
    seed: int
    design: Design
    washout_days: int
    open_label: bool
    placebo_scale: float
    nrs_resolution: float
    inclusion: Inclusion | None
    lead_in: tuple[int, float, int, Cond] | None  # (slot, dose, days, keep_if)
    endpoint_day: int
    analysis: str
    diary: int  # 1 = visit rating, 7 = 7-day diary mean
    evaluation_days: tuple[int, ...]
    on_intolerance: str
    dropout_per_day: float
    gates: bool


def arm_schedule(drug: DrugTable, dose: float) -> tuple[tuple[float, float], ...]:
    """Catalogue titration capped at ``dose``; a dose above the last step follows one interval later."""
    steps: list[tuple[float, float]] = []
    for day, d in drug.titration:
        d = min(d, dose)
        if steps and d <= steps[-1][1]:
            continue
        steps.append((float(day), d))
    if steps[-1][1] < dose:
        gap = steps[-1][0] - steps[-2][0] if len(steps) > 1 else 7.0
        steps.append((steps[-1][0] + max(gap, 1.0), dose))
    return tuple(steps)


def _drug(name: str, tables: ModelTables, where: str, file: str | None = None) -> DrugTable:
    if name not in tables.by_name:
        raise InputError(f"unknown drug '{name}' in {where}", file=file, field=where,
                         fix=f"use placebo or one of: {', '.join(tables.by_name)}")
    return tables.by_name[name]


def _check_dose(d: DrugTable, dose: float, where: str, file: str | None = None) -> None:
    if not math.isfinite(dose) or dose <= 0:
        raise InputError(f"the dose of {d.name} in {where} must be positive (got {dose:g})", file=file, field=where,
                         fix=f"use a dose between 0 and {d.max_dose:g} {d.unit}")
    if dose > d.max_dose:
        raise InputError(f"{dose:g} {d.unit} of {d.name} in {where} is above its maximum dose {d.max_dose:g} {d.unit}",
                         file=file, field=where, fix=f"use a dose of at most {d.max_dose:g}")


def parse_arm(spec: str, tables: ModelTables) -> ArmSpec:
    """``placebo`` or ``DRUG[:DOSE][+DRUG[:DOSE]]`` (dose in the drug's unit; default its target dose) as an
    arm whose drugs all start on day 0. Its name is the canonical ``drug:dose+drug:dose``."""
    text = spec.strip()
    if not text:
        raise InputError("an arm is empty", field="--arm", fix="write DRUG[:DOSE_MG] or placebo, e.g. pregabalin:300")
    if text.lower() == PLACEBO:
        return ArmSpec(name=PLACEBO, steps=[])
    steps: list[StepSpec] = []
    names: list[str] = []
    for part in text.split("+"):
        name, _, dose_txt = part.strip().partition(":")
        name = name.strip()
        d = _drug(name, tables, f"arm '{spec}'")
        if dose_txt.strip():
            try:
                dose = float(dose_txt)
            except ValueError:
                raise InputError(f"the dose '{dose_txt}' in arm '{spec}' is not a number", field="--arm",
                                 fix=f"write {name}:DOSE with DOSE in {d.unit}, e.g. {name}:{d.target_dose:g}") from None
        else:
            dose = d.target_dose
        if not math.isfinite(dose) or dose <= 0:
            raise InputError(f"the dose of {name} in arm '{spec}' must be positive (got {dose_txt})", field="--arm",
                             fix=f"use a dose between 0 and {d.max_dose:g} {d.unit}")
        _check_dose(d, dose, "--arm")
        if name in names:
            raise InputError(f"arm '{spec}' names {name} twice", field="--arm", fix="name each drug once per arm")
        names.append(name)
        steps.append(StepSpec(day=0, start=name, dose=dose))
    label = "+".join(f"{s.start}:{s.dose:g}" for s in steps)
    return ArmSpec(name=label, steps=steps)


def _cond(c: Condition | None) -> Cond | None:
    if c is None:
        return None
    return Cond(c.nrs_above if c.nrs_above is not None else -math.inf,
                c.nrs_at_most if c.nrs_at_most is not None else math.inf,
                c.reduction_below if c.reduction_below is not None else math.inf,
                c.reduction_at_least if c.reduction_at_least is not None else -math.inf)


def compile_design(spec: TrialDesignFile, tables: ModelTables, file: str | None = None) -> Protocol:
    """Check a validated design against the catalogue and compile it; InputError on a step that cannot be given."""
    slots: list[DrugTable] = []

    def slot(name: str, where: str) -> int:
        d = _drug(name, tables, where, file)
        if d not in slots:
            slots.append(d)
        return slots.index(d)

    days = max(int(round(spec.weeks * 7)), 1)

    def steps_of(raw: list[StepSpec], where: str, started: set[str], in_branch: bool) -> tuple[Step, ...]:
        out: list[Step] = []
        for i, s in enumerate(sorted(raw, key=lambda s: s.day)):
            w = f"{where}.steps[{i}]"
            if s.day > days:
                raise InputError(f"step on day {s.day:g} is after the end of the period (day {days})", file=file, field=w,
                                 fix="use a day within the period or lengthen weeks")
            titrate = spec.titrate if s.titrate is None else s.titrate
            name = s.start or s.add
            if name is not None:
                if name == PLACEBO:
                    raise InputError("placebo is an arm without drug steps, not a drug", file=file, field=w,
                                     fix="leave the placebo arm's steps empty")
                d = _drug(name, tables, w, file)
                dose = s.dose if s.dose is not None else d.target_dose
                _check_dose(d, dose, w, file)
                started.add(name)
                out.append(Step(s.day, START, slot(name, w), dose, titrate, _cond(s.when)))
            elif s.increase_dose is not None:
                d = _drug(s.increase_dose, tables, w, file)
                assert s.dose is not None
                _check_dose(d, s.dose, w, file)
                if s.increase_dose not in started:
                    raise InputError(f"increase_dose of {s.increase_dose}, which no earlier step of this arm starts",
                                     file=file, field=w, fix=f"start {s.increase_dose} in an earlier step or use start")
                out.append(Step(s.day, INCREASE, slot(s.increase_dose, w), s.dose, titrate, _cond(s.when)))
            elif s.stop is not None:
                if s.stop not in started:
                    raise InputError(f"stop of {s.stop}, which no earlier step of this arm starts", file=file, field=w,
                                     fix="stop only a drug the arm has started")
                out.append(Step(s.day, STOP, slot(s.stop, w), 0.0, titrate, _cond(s.when)))
            else:
                assert s.randomise is not None
                if in_branch:
                    raise InputError("a branch cannot randomise again", file=file, field=w, fix="randomise once per arm")
                branches = []
                for bname, bsteps in s.randomise.items():
                    if any(b.day < s.day for b in bsteps):
                        raise InputError(f"a step of branch '{bname}' comes before the randomisation day {s.day:g}",
                                         file=file, field=f"{w}.randomise.{bname}", fix="give branch steps days on or after it")
                    branches.append((bname, steps_of(bsteps, f"{w}.randomise.{bname}", set(started), True)))
                out.append(Step(s.day, RANDOMISE, -1, 0.0, titrate, _cond(s.when), tuple(branches)))
        return tuple(out)

    arms: list[Arm] = []
    for j, a in enumerate(spec.arms):
        aspec = parse_arm(a, tables) if isinstance(a, str) else a
        st = steps_of(aspec.steps, f"arms[{j}]", set(), False)
        arms.append(Arm(aspec.name, st, placebo=not any(s.kind in (START, RANDOMISE) for s in st)))
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise InputError("two arms have the same name", file=file, field="arms", fix="give each arm once, with its own name")
    lead = None
    if spec.lead_in is not None:
        li = spec.lead_in
        d = _drug(li.drug, tables, "lead_in.drug", file)
        _check_dose(d, li.dose, "lead_in.dose", file)
        lead = (slot(li.drug, "lead_in.drug"), li.dose, max(int(round(li.weeks * 7)), 1), _cond(li.keep_if))
    ep = spec.endpoint
    end = days if ep.day is None else int(round(ep.day))
    if end > days:
        raise InputError(f"the endpoint day {end} is after the end of the period (day {days})", file=file,
                         field="endpoint.day", fix="use a day within the period")
    if any(not 0 < e <= days for e in ep.evaluation_days):
        raise InputError("an evaluation day lies outside the period", file=file, field="endpoint.evaluation_days",
                         fix=f"use days between 1 and {days}")
    return Protocol(
        name=spec.name, cohort=spec.cohort, arms=tuple(arms), slots=tuple(slots), days=days, patients=spec.patients,
        seed=spec.seed, design=spec.design, washout_days=int(round(spec.washout_days)),
        open_label=spec.blinding == "open_label", placebo_scale=spec.placebo_scale, nrs_resolution=spec.nrs_resolution,
        inclusion=spec.inclusion, lead_in=lead, endpoint_day=end, analysis=ep.analysis,
        diary=7 if ep.nrs == "diary7" else 1, evaluation_days=tuple(sorted({int(round(e)) for e in ep.evaluation_days})),
        on_intolerance=spec.on_intolerance, dropout_per_day=1.0 - (1.0 - spec.dropout_per_week) ** (1 / 7),
        gates=spec.guideline_gates,
    )


# ==================================================================================================
# Population and the day-by-day simulation of one group of patients
# ==================================================================================================

# patient status codes (per-patient output)
COMPLETED, WITHDRAWN_AE, DROPOUT, EXCLUDED = 0, 1, 2, 3
STATUS_NAMES = ("completed", "withdrawn_adverse_event", "dropout", "excluded")
GRADES = ("none", "mild", "moderate", "severe")


class _Population:
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
        self.noise = ndtri(np.clip(_sub_block(seed, "noise", n, total_days + 1), 1e-12, 1 - 1e-12))
        self.dropout_u = _sub_block(seed, "dropout", n, 1)[:, 0]
        self.placebo_ae = _sub_block(seed, "placebo_ae", n, 2 * max(len(tables.placebo_ae_types), 1))
        self.grade_u = _sub_block(seed, "grade", n, 64)
        self.branch_u = _sub_block(seed, "branch", n, 1)[:, 0]
        self.restart_ae = _sub_block(seed, "restart_ae", n, 2 * tables.n_ae_slots)  # a drug's second course
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
class _AE:
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


def _record(x: np.ndarray, res: float) -> np.ndarray:
    return np.round(x / res) * res if res != 0.1 else x


class _Group:
    """Day-by-day simulation of ``rows`` on a list of steps over one period starting at trial day ``t0``."""

    def __init__(self, pop: _Population, proto: Protocol, rows: np.ndarray, steps: tuple[Step, ...], t0: int,
                 placebo: bool, baseline: np.ndarray | None = None) -> None:
        self.pop, self.p, self.rows, self.t0 = pop, proto, rows, t0
        self.t = pop.tables
        n, m = rows.size, len(proto.slots)
        self.n = n
        self.lat = pop.latents.take(rows)
        self.base_true = pop.baseline[rows]
        self.base = _record(self.base_true, proto.nrs_resolution) if baseline is None else baseline
        self.steps = list(steps)
        self.placebo = placebo
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

    @staticmethod
    def _empty_ae(types: tuple[int, ...]) -> _AE:
        return _AE(types, np.full((0, len(types)), np.inf), np.zeros((0, len(types)), bool),
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

    # ---- actions ----------------------------------------------------------------------------------
    def _leave(self, sel: np.ndarray, day: float, status: int) -> None:
        sel = sel & self.in_trial
        self.in_trial &= ~sel
        self.status[sel] = status
        self.stop_day[sel] = day
        self.sid[sel, :] = -1

    def _gate(self, st: Step, sel: np.ndarray, day: float, check_contra: bool) -> np.ndarray:
        """Per-patient doses of a start/increase step under the guideline's gates (P5/P6, simulator.safety):
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
            rec = _record(self.obs[:, lo:day + 1].mean(axis=1) if p.diary > 1 else obs, p.nrs_resolution)
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


# ==================================================================================================
# Results
# ==================================================================================================


def nnt(p_drug: float, n_drug: int, p_pbo: float, n_pbo: int) -> dict[str, float | None]:
    """NNT = 1 / risk difference with a 95% CI from the Wald CI of the difference (None = not bounded).
    Used for NNH as well (risk of harm)."""
    rd = p_drug - p_pbo
    se = math.sqrt(p_drug * (1 - p_drug) / max(n_drug, 1) + p_pbo * (1 - p_pbo) / max(n_pbo, 1))
    lo, hi = rd - 1.959964 * se, rd + 1.959964 * se

    def inv(x: float) -> float | None:
        return None if x <= 0 else 1.0 / x

    return {"nnt": inv(rd), "ci_low": inv(hi), "ci_high": inv(lo) if lo > 0 else None}


def _km_median(durations: np.ndarray, events: np.ndarray) -> float | None:
    """Kaplan-Meier median (first time survival <= 0.5), None when not reached."""
    if durations.size == 0:
        return None
    times = np.unique(durations[events])
    surv = 1.0
    for t in times:
        at_risk = np.count_nonzero(durations >= t)
        d = np.count_nonzero((durations == t) & events)
        surv *= 1.0 - d / at_risk
        if surv <= 0.5:
            return float(t)
    return None


@dataclass
class ArmResult:
    """Summary of one arm or branch (``n`` = patients analysed; exclusions are counted apart)."""

    label: str
    n: int
    responders30: float
    responders50: float
    any_reduction: float
    mean_change: float
    mean_pain_end: float
    ae_incidence: dict[str, float]
    ae_withdrawal: float
    onset_median_days: float | None
    ae_moderate_severe: dict[str, float] = field(default_factory=dict)
    any_ae: float = 0.0
    any_ae_moderate_severe: float = 0.0
    withdrawn: float = 0.0
    dropped_out: float = 0.0
    excluded: dict[str, int] = field(default_factory=dict)
    escalated: float = 0.0
    dose_capped: float = 0.0
    mean_change_since_entry: float | None = None
    onset_30_median_days: float | None = None
    eval_mean_change: dict[int, float] = field(default_factory=dict)
    sd: dict[str, float] = field(default_factory=dict)  # SDs of mean metrics (Monte-Carlo CIs of the calibration report)
    nnt50: dict[str, float | None] = field(default_factory=dict)
    nnt30: dict[str, float | None] = field(default_factory=dict)
    nnh_ae_withdrawal: dict[str, float | None] = field(default_factory=dict)
    nnh_any_ae: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm": self.label, "n": self.n, "responders_30": self.responders30,
            "responders_50": self.responders50, "any_reduction": self.any_reduction,
            "mean_nrs_change": self.mean_change, "mean_nrs_change_since_entry": self.mean_change_since_entry,
            "mean_pain_end": self.mean_pain_end,
            "nnt_50_vs_placebo": self.nnt50 or None, "nnt_30_vs_placebo": self.nnt30 or None,
            "nnh_ae_withdrawal_vs_placebo": self.nnh_ae_withdrawal or None,
            "nnh_any_ae_vs_placebo": self.nnh_any_ae or None,
            "ae_incidence": self.ae_incidence, "ae_moderate_severe": self.ae_moderate_severe, "any_ae": self.any_ae,
            "any_ae_moderate_severe": self.any_ae_moderate_severe,
            "ae_withdrawal": self.ae_withdrawal, "withdrawn": self.withdrawn, "dropped_out": self.dropped_out,
            "excluded": self.excluded, "escalated": self.escalated, "dose_capped": self.dose_capped,
            "median_days_to_sustained_1pt": self.onset_median_days,
            "median_days_to_30pct": self.onset_30_median_days,
            "mean_nrs_change_by_day": {str(k): v for k, v in self.eval_mean_change.items()},
        }


@dataclass
class TrialResult:
    spec: Any
    arms: list[ArmResult]
    patients: Any = None  # pandas DataFrame, one row per patient and period
    screened: int = 0
    lead_in_excluded: int = 0
    analysis: str = ""

    def arm(self, label: str) -> ArmResult:
        for a in self.arms:
            if a.label == label:
                return a
        raise KeyError(label)

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "cohort": s.cohort, "design": s.design, "period_days": s.days, "patients": s.patients,
                "seed": s.seed, "screened": self.screened, "lead_in_not_randomised": self.lead_in_excluded,
                "analysis": self.analysis, "arms": [a.as_dict() for a in self.arms]}


def _merge(parts: list[GroupOutcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("rows", "baseline", "pain_end", "status", "stop_day", "intolerable", "onset_1pt", "onset_30", "branch",
                "branch_entry_nrs", "escalated", "exclusion", "capped", "completed_pain"):
        out[key] = np.concatenate([getattr(p, key) for p in parts])
    days = sorted({d for p in parts for d in p.evals})
    out["evals"] = {d: np.concatenate([p.evals.get(d, np.full(p.rows.size, np.nan)) for p in parts]) for d in days}
    names = {nm for p in parts for nm in p.ae_grade}
    out["ae_grade"] = {nm: np.concatenate([p.ae_grade.get(nm, np.zeros(p.rows.size, int)) for p in parts])
                       for nm in sorted(names)}
    return out


def _summarise(label: str, o: dict[str, Any], since_entry: bool = False) -> ArmResult:
    ok = o["status"] != EXCLUDED
    analysed = ok & np.isfinite(o["pain_end"])
    base, pain = o["baseline"][analysed], o["pain_end"][analysed]
    red = np.where(base > 0, (base - pain) / np.where(base > 0, base, 1.0), 0.0)
    n = int(np.count_nonzero(analysed))
    n_ok = max(int(np.count_nonzero(ok)), 1)
    grades = {k: v[ok] for k, v in o["ae_grade"].items()}
    excl: dict[str, int] = {}
    for r in o["exclusion"][~ok]:
        excl[str(r)] = excl.get(str(r), 0) + 1

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else math.nan

    completers = o["completed_pain"][ok]
    completers = completers[np.isfinite(completers)]
    e1 = o["onset_1pt"][ok]
    e3 = o["onset_30"][ok]
    entry = o["branch_entry_nrs"][analysed]
    return ArmResult(
        label=label, n=n,
        responders30=mean((red >= 0.3 - 1e-9).astype(float)), responders50=mean((red >= 0.5 - 1e-9).astype(float)),
        any_reduction=mean((pain < base).astype(float)), mean_change=mean(pain - base),
        mean_pain_end=mean(completers),
        ae_incidence={k: float(np.count_nonzero(v > 0) / n_ok) for k, v in grades.items()},
        ae_moderate_severe={k: float(np.count_nonzero(v >= 2) / n_ok) for k, v in grades.items()},
        any_ae=float(np.count_nonzero(np.any(np.stack(list(grades.values())) > 0, axis=0)) / n_ok) if grades else 0.0,
        any_ae_moderate_severe=float(np.count_nonzero(np.any(np.stack(list(grades.values())) >= 2, axis=0)) / n_ok)
        if grades else 0.0,
        ae_withdrawal=float(np.count_nonzero(o["intolerable"][ok]) / n_ok),
        withdrawn=float(np.count_nonzero(o["status"][ok] == WITHDRAWN_AE) / n_ok),
        dropped_out=float(np.count_nonzero(o["status"][ok] == DROPOUT) / n_ok),
        excluded=excl, escalated=float(np.count_nonzero(o["escalated"][ok]) / n_ok),
        dose_capped=float(np.count_nonzero(o["capped"][ok] != "") / n_ok),
        mean_change_since_entry=mean(pain - entry) if since_entry else None,
        onset_median_days=_km_median(np.abs(e1), e1 > 0),
        onset_30_median_days=_km_median(np.abs(e3), e3 > 0),
        eval_mean_change={d: float(np.nanmean(v[ok] - o["baseline"][ok])) for d, v in o["evals"].items()
                          if np.any(np.isfinite(v[ok]))},
        sd={"mean_nrs_change": _sd(pain - base), "mean_pain_end": _sd(completers),
            "mean_nrs_change_since_entry": _sd(pain - entry) if since_entry else math.nan,
            **{f"mean_nrs_change_day_{d}": _sd(v[ok] - o["baseline"][ok]) for d, v in o["evals"].items()}},
    )


def _sd(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if x.size > 1 else math.nan


def _patients_frame(pop: _Population, proto: Protocol, parts: list[tuple[str, int, GroupOutcome]]) -> Any:
    import pandas as pd

    from .cohort import ETIOLOGIES

    frames = []
    for arm, period, g in parts:
        rows = g.rows
        data: dict[str, Any] = {
            "patient": rows, "arm": arm, "period": period, "period_start_day": g.start_day,
            "branch": g.branch.astype(str),
            "age": pop.cohort.age[rows], "etiology": [ETIOLOGIES[e] for e in pop.etiology[rows]],
            "baseline_nrs": g.baseline, "endpoint_nrs": g.pain_end,
            "status": [STATUS_NAMES[s] for s in g.status], "left_on_day": g.stop_day,
            "exclusion": g.exclusion.astype(str), "dose_capped": g.capped.astype(str), "intolerable_ae": g.intolerable, "escalated": g.escalated,
            "branch_entry_nrs": g.branch_entry_nrs,
            "onset_1pt_day": np.where(g.onset_1pt > 0, g.onset_1pt, np.nan),
            "onset_30pct_day": np.where(g.onset_30 > 0, g.onset_30, np.nan),
        }
        for day, v in sorted(g.evals.items()):
            data[f"nrs_day_{day}"] = v
        for name, dose in g.final_dose.items():
            data[f"dose_end_{name}"] = dose
        for name, grade in g.ae_grade.items():
            data[f"ae_{name}"] = [GRADES[x] for x in grade]
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    pop = _Population(tables, cohort, proto.seed, proto.placebo_scale, proto.open_label, total)
    n = cohort.n
    rows_all = np.arange(n)
    baseline = None
    lead_not = 0
    t0 = 0
    if proto.lead_in is not None:
        slot, dose, ldays, keep = proto.lead_in
        lead = replace(proto, days=ldays, endpoint_day=ldays, evaluation_days=(), analysis="observed",
                       dropout_per_day=0.0)
        g = _Group(pop, lead, rows_all, (Step(0.0, START, slot, dose, True),), 0, False)
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
            g = _Group(pop, proto, rows, arm.steps, t0, arm.is_placebo, base).run()
            frames.append((arm.label, 0, g))
            results.append(_summarise(arm.label, _merge([g])))
            for bname in sorted({b for b in g.branch if b}):
                branch_parts.setdefault(bname, []).append(g)
    else:
        period_of = np.argsort(np.argsort(u, axis=1), axis=1)  # period of arm j for each patient
        for j, arm in enumerate(proto.arms):
            parts = []
            for q in range(n_arms):
                rows = rows_all[period_of[:, j] == q]
                if rows.size:
                    g = _Group(pop, proto, rows, arm.steps, t0 + q * (proto.days + proto.washout_days),
                               arm.is_placebo).run()
                    parts.append(g)
                    frames.append((arm.label, q, g))
            results.append(_summarise(arm.label, _merge(parts)))
    for bname, parts in branch_parts.items():
        merged = _merge(parts)
        mask = merged["branch"] == bname
        sub = {k: (v[mask] if isinstance(v, np.ndarray) else {kk: vv[mask] for kk, vv in v.items()})
               for k, v in merged.items()}
        results.append(_summarise(bname, sub, since_entry=True))
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
        res.patients = _patients_frame(pop, proto, frames)
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
    from .catalog import load_catalog
    from .scenario import load_scenario

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
