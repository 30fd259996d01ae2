"""Cohort specifications: the schema of ``cohorts/*.yaml``, a population to draw synthetic patients from.

A :class:`CohortSpec` describes a population: age, sex, etiology mix, baseline pain, localized pain and
allodynia, renal function, the comorbidities the pathway's safety rules look at (PATHWAY.md P5), and opioid
misuse risk (P8), every number with its source in ``sources``. This module owns the schema, the names of the
etiologies and misuse-risk levels (whose index is the code a :class:`~simulator.population.cohort.Cohort`
stores) and :func:`load_cohort_spec`; turning a spec into patients is :mod:`simulator.population.cohort`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import numpy as np
from pydantic import AfterValidator, Field, field_validator, model_validator

from ..inputs.schema import Strict, check_shares, load_model

ETIOLOGIES: tuple[str, ...] = (
    "diabetic_neuropathy",
    "postherpetic_neuralgia",
    "cipn_platinum",
    "cipn_taxane",
    "lumbosacral_radiculopathy",
    "hiv_neuropathy",
    "central",
    "other",
)
"""Etiology names; the index in this tuple is the etiology code stored in :attr:`~simulator.population.cohort.Cohort.etiology`."""

MISUSE_RISK_LEVELS: tuple[str, ...] = ("low", "moderate", "high")
"""Opioid Risk Tool categories; the index is the code stored in :attr:`~simulator.population.cohort.Cohort.misuse_risk`."""

# --------------------------------------------------------------------------------------------------
# Spec (pydantic)
# --------------------------------------------------------------------------------------------------

Num = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Nrs = Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]
OddsRatio = Annotated[float, Field(gt=0.0, le=1000.0, allow_inf_nan=False)]
T = TypeVar("T")


def _check_etiology_keys(mapping: dict[str, T]) -> dict[str, T]:
    unknown = [k for k in mapping if k not in ETIOLOGIES]
    if unknown:
        raise ValueError(f"unknown etiology '{unknown[0]}'; use one of: {', '.join(ETIOLOGIES)}")
    return mapping


PerEtiology = Annotated[dict[str, T], AfterValidator(_check_etiology_keys)]
"""A mapping keyed by etiology name; unknown names are an error listing the allowed ones."""


AdultAge = Annotated[float, Field(ge=18.0, le=110.0, allow_inf_nan=False)]
"""Age in years of an adult: the pathway (seeds S000-S004) is for adults with neuropathic pain."""
AgeSd = Annotated[float, Field(ge=0.0, le=50.0, allow_inf_nan=False)]
"""Standard deviation of age in years."""


class AgeOverride(Strict):
    """Per-etiology override of the age distribution; omitted fields fall back to the cohort-wide value."""

    mean: AdultAge | None = None
    sd: AgeSd | None = None
    min: AdultAge | None = None
    max: AdultAge | None = None


class AgeSpec(Strict):
    """Age in years: a normal distribution truncated to [min, max] (mean and sd are before truncation).
    Ages lie in 18-110 years: the guideline pathway is for adults."""

    mean: AdultAge
    sd: AgeSd
    min: AdultAge = 18.0
    max: AdultAge = 100.0
    by_etiology: PerEtiology[AgeOverride] = {}

    @model_validator(mode="after")
    def _bounds(self) -> AgeSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); make min <= max")
        for name, o in self.by_etiology.items():
            lo = self.min if o.min is None else o.min
            hi = self.max if o.max is None else o.max
            if lo > hi:
                raise ValueError(f"by_etiology.{name}: min ({lo}) is above max ({hi}); make min <= max")
        return self

    def params(self, code: int) -> tuple[float, float, float, float]:
        """(mean, sd, min, max) for one etiology code."""
        o = self.by_etiology.get(ETIOLOGIES[code], AgeOverride())
        return (self.mean if o.mean is None else o.mean, self.sd if o.sd is None else o.sd,
                self.min if o.min is None else o.min, self.max if o.max is None else o.max)


class SexSpec(Strict):
    """Sex: share of men."""

    male_share: Probability


class NrsSpec(Strict):
    """Baseline average pain, NRS 0-10: a normal truncated to [min, max]; min is the inclusion threshold."""

    mean: Nrs
    sd: Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]
    min: Annotated[float, Field(ge=1.0, le=10.0, allow_inf_nan=False,
                                description="patients enter the pathway with pain: NRS >= 1 (trials require >= 4)")] = 4.0
    max: Nrs = 10.0

    @model_validator(mode="after")
    def _bounds(self) -> NrsSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); make min <= max")
        return self


class LocalizedSpec(Strict):
    """Localized pain (candidate for topicals, P6), and allodynia among the localized."""

    probability: Probability
    allodynia_given_localized: Probability
    by_etiology: PerEtiology[Probability] = {}


class RenalSpec(Strict):
    """Creatinine clearance (mL/min), Cockcroft-Gault-like: linear decline with age, lower in women.

    ``crcl = (crcl_at_ref_age - decline_per_decade * (age - ref_age) / 10 + shift_by_etiology[e])
    * (female_factor if female else 1) + sd * z``, floored at 5 mL/min.
    """

    ref_age: AdultAge = 60.0
    crcl_at_ref_age: Annotated[float, Field(gt=0.0, le=200.0, allow_inf_nan=False, description="mL/min")]
    decline_per_decade: Annotated[float, Field(ge=0.0, le=50.0, allow_inf_nan=False, description="mL/min per decade")]
    sd: Annotated[float, Field(ge=0.0, le=60.0, allow_inf_nan=False, description="mL/min")]
    female_factor: Annotated[float, Field(gt=0.0, le=1.5, allow_inf_nan=False)] = 0.85
    shift_by_etiology: PerEtiology[Annotated[float, Field(ge=-100.0, le=100.0, allow_inf_nan=False,
                                                          description="mL/min")]] = {}


class AgeLogistic(Strict):
    """Probability rising (or falling) with age on the log-odds scale, shifted by etiology.

    ``logit p = logit(p_at_ref_age) + slope_per_decade * (age - ref_age) / 10 + log(odds_ratio_by_etiology[e])``
    """

    p_at_ref_age: Probability
    ref_age: AdultAge = 60.0
    slope_per_decade: Annotated[float, Field(ge=-10.0, le=10.0, allow_inf_nan=False,
                                             description="change in log-odds per decade of age")] = 0.0
    odds_ratio_by_etiology: PerEtiology[OddsRatio] = {}


class SsriSpec(Strict):
    """Current SSRI/SNRI-class antidepressant use (tramadol interaction, P5), conditional on depression."""

    given_depression: Probability
    without_depression: Probability


class ComorbiditySpec(Strict):
    """Comorbidities that drive contraindications and cautions (PATHWAY.md P5)."""

    recent_mi: AgeLogistic
    arrhythmia: AgeLogistic
    heart_block: AgeLogistic
    cardiovascular_disease: AgeLogistic
    cardiac_correlation: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)] = 0.0
    glaucoma: AgeLogistic
    orthostatic_hypotension: AgeLogistic
    hepatic_disease: AgeLogistic
    depression: AgeLogistic
    ssri_use: SsriSpec


class MisuseRiskSpec(Strict):
    """Opioid misuse risk, as the Opioid Risk Tool's three categories (P8)."""

    low: Probability
    moderate: Probability
    high: Probability

    @model_validator(mode="after")
    def _sum(self) -> MisuseRiskSpec:
        total = self.low + self.moderate + self.high
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"low + moderate + high must sum to 1, got {total:.6g}; rescale them")
        return self


PARAMETER_GROUPS: tuple[str, ...] = (
    "age", "sex", "etiology", "baseline_nrs", "localized", "renal", "comorbidities", "misuse_risk",
)
"""Top-level parameter groups; each needs an entry in ``sources`` (comorbidities: one per condition)."""


class CohortSpec(Strict):
    """A population to draw synthetic patients from. Every number is sourced in ``sources``."""

    name: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str, Field(max_length=10_000)]
    age: AgeSpec
    sex: SexSpec
    etiology: dict[str, Probability]
    baseline_nrs: NrsSpec
    localized: LocalizedSpec
    renal: RenalSpec
    comorbidities: ComorbiditySpec
    misuse_risk: MisuseRiskSpec
    sources: dict[str, Annotated[str, Field(min_length=1)]]

    @field_validator("etiology")
    @classmethod
    def _etiology_mix(cls, v: dict[str, float]) -> dict[str, float]:
        return check_shares(v, ETIOLOGIES, "etiology", "etiology")

    @field_validator("sources")
    @classmethod
    def _sources_cover_parameters(cls, v: dict[str, str]) -> dict[str, str]:
        comorbidity_names = list(ComorbiditySpec.model_fields)
        for key in v:
            parts = key.split(".")
            if parts[0] not in PARAMETER_GROUPS:
                raise ValueError(f"source key '{key}' names no parameter group; start it with one of: "
                                 f"{', '.join(PARAMETER_GROUPS)}")
            if parts[0] == "comorbidities" and len(parts) > 1 and parts[1] not in comorbidity_names:
                raise ValueError(f"source key '{key}' names no comorbidity; use one of: "
                                 f"{', '.join(comorbidity_names)}")
        required = [g for g in PARAMETER_GROUPS if g != "comorbidities"]
        required += [f"comorbidities.{c}" for c in comorbidity_names]
        for key in required:  # the group itself needs a source; deeper keys only add detail
            if key not in v:
                raise ValueError(f"no source for '{key}'; add '{key}: <citation>' or "
                                 f"'{key}: assumption: <why>' under sources")
        return v

    def etiology_probabilities(self) -> np.ndarray:
        """Probabilities in ETIOLOGIES order (etiologies not listed get 0)."""
        return np.array([self.etiology.get(e, 0.0) for e in ETIOLOGIES], dtype=np.float64)


def load_cohort_spec(path: str | Path) -> CohortSpec:
    """Load and validate a cohort YAML file; raise InputError naming file, field and fix."""
    return load_model(path, CohortSpec)
