"""Compiled trial protocols: a trial design as plain values the day-by-day simulation reads.

Owns :class:`Protocol` (arms of :class:`Step`, with their :class:`Cond` conditions), the catalogue dose
schedule of an arm (:func:`arm_schedule`), command-line arms (:func:`parse_arm`) and
:func:`compile_design` (validated :class:`~simulator.analysis.trial.design.TrialDesignFile` -> :class:`Protocol`,
checking drugs and doses against the catalogue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...inputs.errors import InputError
from ...model.clinical_tables import DrugTable, ModelTables
from .design import PLACEBO, ArmSpec, Condition, Design, Inclusion, StepSpec, TrialDesignFile

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
