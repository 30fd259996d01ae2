"""The calibration battery: one virtual trial per published target (``painpath calibrate``).

Targets and trial designs live in ``data/calibration_targets.yaml``; each target names a trial, an arm,
a metric, the published value and either an absolute tolerance or a range (a published 95% CI). Trials
that several targets share run once. Full size is :data:`FULL_PATIENTS` patients per trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .clinical import ModelTables, compile_model
from .errors import InputError
from .schema import Strict, load_model
from .trial import PLACEBO, ArmResult, TrialResult, TrialSpec, parse_arm, run_trial

FULL_PATIENTS = 20000
ROOT = Path(__file__).resolve().parent.parent


class TrialDesign(Strict):
    """One trial design. ``placebo_scale``, ``titrate`` and ``nrs_resolution`` are properties of the trial
    (population, era, dosing scheme, pain measurement; see :mod:`simulator.trial`), never read by the
    pathway simulation; a design that sets one says why in ``design_source``."""

    cohort: str
    arms: list[str] = Field(min_length=1)
    weeks: float = Field(gt=0)
    design: Literal["parallel", "crossover"] = "parallel"
    placebo_scale: float = Field(default=1.0, ge=0)
    titrate: bool = True
    nrs_resolution: float = Field(default=0.1, gt=0)
    design_source: str = ""

    @model_validator(mode="after")
    def _sourced(self) -> TrialDesign:
        if (self.placebo_scale != 1.0 or not self.titrate or self.nrs_resolution != 0.1) and not self.design_source:
            raise ValueError("a trial design that sets placebo_scale, titrate or nrs_resolution needs a design_source")
        return self


class Target(Strict):
    id: str
    trial: str
    arm: str
    metric: str
    target: float
    tolerance: float | None = Field(default=None, ge=0)
    range: tuple[float, float] | None = None
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_rule(self) -> Target:
        if (self.tolerance is None) == (self.range is None):
            raise ValueError(f"target '{self.id}' needs exactly one of tolerance or range")
        return self


class UsualCareTarget(Strict):
    """A target on the usual-care scenario's event log (``simulator.realworld.usual_care_metrics``)."""

    id: str
    metric: str
    target: float
    tolerance: float | None = Field(default=None, ge=0)
    range: tuple[float, float] | None = None
    source: str = Field(min_length=1)
    tolerance_why: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_rule(self) -> UsualCareTarget:
        if (self.tolerance is None) == (self.range is None):
            raise ValueError(f"target '{self.id}' needs exactly one of tolerance or range")
        return self


class UsualCareSection(Strict):
    """Usual care as observed in claims (issue 10): a scenario and its targets (``simulator.realworld``)."""

    scenario: str
    cohort: str | None = Field(None, description="the population the targets were measured in (replaces the "
                               "scenario's cohort), relative to the checkout")
    patients: int = Field(5000, ge=1)
    seed: int = 2016
    targets: list[UsualCareTarget]


class Battery(Strict):
    trials: dict[str, TrialDesign]
    targets: list[Target]
    usual_care: UsualCareSection | None = None

    @model_validator(mode="after")
    def _refs(self) -> Battery:
        for t in self.targets:
            if t.trial not in self.trials:
                raise ValueError(f"target '{t.id}' names unknown trial '{t.trial}'")
        return self


def targets_path() -> Path:
    return Path(str(resources.files("simulator") / "data" / "calibration_targets.yaml"))


def load_battery(path: str | Path | None = None) -> Battery:
    return load_model(path or targets_path(), Battery)


@dataclass
class Check:
    target: Target
    simulated: float | None
    passed: bool

    @property
    def rule(self) -> str:
        t = self.target
        if t.range is not None:
            return f"[{t.range[0]:g}, {t.range[1]:g}]"
        return f"±{t.tolerance:g}"

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {"id": t.id, "trial": t.trial, "arm": t.arm, "metric": t.metric, "target": t.target,
                "tolerance": t.tolerance, "range": list(t.range) if t.range else None,
                "simulated": self.simulated, "pass": self.passed, "source": t.source}


def metric_value(result: TrialResult, arm: str, metric: str) -> float | None:
    """A metric of one arm (``diff:<metric>`` is arm minus placebo)."""
    if metric.startswith("diff:"):
        a = metric_value(result, arm, metric[5:])
        b = metric_value(result, PLACEBO, metric[5:])
        return None if a is None or b is None else a - b
    r: ArmResult = result.arm(arm)
    if metric.startswith("ae:"):
        return r.ae_incidence.get(metric[3:], 0.0)
    if metric == "nnt_50":
        return r.nnt50.get("nnt") if r.nnt50 else None
    if metric == "nnt_30":
        return r.nnt30.get("nnt") if r.nnt30 else None
    simple = {"responders_30": r.responders30, "responders_50": r.responders50, "any_reduction": r.any_reduction,
              "mean_nrs_change": r.mean_change, "mean_pain_end": r.mean_pain_end,
              "ae_withdrawal": r.ae_withdrawal, "median_days_to_sustained_1pt": r.onset_median_days}
    if metric not in simple:
        raise InputError(f"unknown metric '{metric}'", field="metric",
                         fix=f"use one of: {', '.join(simple)}, ae:<type>, nnt_50, nnt_30, diff:<metric>")
    v = simple[metric]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _passes(t: Target, v: float | None) -> bool:
    if v is None or not math.isfinite(v):
        return False
    if t.range is not None:
        return t.range[0] <= v <= t.range[1]
    assert t.tolerance is not None
    return abs(v - t.target) <= t.tolerance + 1e-12


def _canonical(arm: str, tables: ModelTables) -> str:
    return parse_arm(arm, tables).label


def run_battery(patients: int = FULL_PATIENTS, seed: int = 2015, battery: Battery | None = None,
                tables: ModelTables | None = None, only: list[str] | None = None) -> list[Check]:
    """Run every trial of the battery once and check every target (``only``: these target ids)."""
    if patients < 1:
        raise InputError(f"patients must be at least 1 (got {patients})", field="--patients", fix="use e.g. 20000")
    battery = battery or load_battery()
    tables = tables or compile_model()
    targets = [t for t in battery.targets if only is None or t.id in only]
    results: dict[str, TrialResult] = {}
    checks: list[Check] = []
    for t in targets:
        if t.trial not in results:
            d = battery.trials[t.trial]
            cohort = Path(d.cohort)
            if not cohort.is_absolute():
                cohort = ROOT / cohort
            results[t.trial] = run_trial(TrialSpec(str(cohort), tuple(d.arms), d.weeks, patients, seed, d.design,
                                                   d.placebo_scale, d.titrate, d.nrs_resolution), tables)
        v = metric_value(results[t.trial], _canonical(t.arm, tables), t.metric)
        checks.append(Check(t, v, _passes(t, v)))
    return checks
