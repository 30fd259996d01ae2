"""Trial-design files: the validated YAML of ``painpath trial --design`` (:class:`TrialDesignFile`).

Owns the schema of a trial design (arms of steps with conditions, inclusion and exclusion criteria, the
lead-in, endpoints, crossover periods) and its loading; no simulation here. The design is compiled to plain
values by :mod:`simulator.analysis.trial.protocol` and run by :mod:`simulator.analysis.trial` (see its docstring for what
each field means in the trial).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ...inputs.schema import Strict, load_model

Design = Literal["parallel", "crossover"]
PLACEBO = "placebo"
COHORT_FLAGS = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "glaucoma",
                "orthostatic_hypotension", "ssri_use", "depression")


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
