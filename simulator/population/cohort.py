"""Reproducible synthetic cohorts of people with neuropathic pain.

A :class:`CohortSpec` (loaded from ``cohorts/*.yaml``) describes a population: age, sex, etiology mix,
baseline pain, localized pain and allodynia, renal function, the comorbidities the pathway's safety
rules look at (PATHWAY.md P5), and opioid misuse risk (P8). :func:`generate_cohort` turns it into a
:class:`Cohort` of numpy arrays.

Reproducibility: all randomness comes from ONE block of uniforms,
``streams.block(seed, replication, streams.COHORT, n, K)``, with a fixed number of columns ``K``.
Each attribute reads its own column (see :data:`COLUMNS`) through an inverse-CDF transform or a
threshold, so patient ``i`` is the same person whatever ``n`` is (prefix stability), and the same
(seed, replication) always gives the same cohort. Adding an attribute later means using a spare
column; existing attributes do not change.

Attributes are correlated where reality correlates them, by deriving them from shared draws:
age depends on etiology (PHN patients are older), renal function falls with age and is lower in
diabetes, comorbidity risks rise with age and with etiology (odds ratios), the cardiac conditions share
a latent factor, and SSRI use depends on depression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, TypeVar

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field, field_validator, model_validator
from scipy.special import expit, ndtr, ndtri

from ..inputs.errors import InputError
from ..inputs.schema import Strict, load_model
from ..model import streams

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
"""Etiology names; the index in this tuple is the etiology code stored in :attr:`Cohort.etiology`."""

MISUSE_RISK_LEVELS: tuple[str, ...] = ("low", "moderate", "high")
"""Opioid Risk Tool categories; the index is the code stored in :attr:`Cohort.misuse_risk`."""

CRCL_FLOOR = 5.0
"""Lowest creatinine clearance (mL/min) a generated patient can have."""

K = 32
"""Columns in the cohort's uniform block. Fixed: changing it would change every cohort."""

COLUMNS: dict[str, int] = {
    "etiology": 0,
    "age": 1,
    "sex": 2,
    "baseline_nrs": 3,
    "localized": 4,
    "allodynia": 5,
    "crcl": 6,
    "cardiac_shared": 7,
    "recent_mi": 8,
    "arrhythmia": 9,
    "heart_block": 10,
    "cardiovascular_disease": 11,
    "glaucoma": 12,
    "orthostatic_hypotension": 13,
    "hepatic_disease": 14,
    "depression": 15,
    "ssri_use": 16,
    "misuse_risk": 17,
    # 18..31 spare, for future attributes
}
"""Which column of the uniform block each attribute reads. Never renumber; add new ones at 18+."""

CARDIAC: tuple[str, ...] = ("recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease")
"""Cardiac conditions; they share a latent factor (``comorbidities.cardiac_correlation``)."""

OTHER_AGE_DEPENDENT: tuple[str, ...] = ("glaucoma", "orthostatic_hypotension", "hepatic_disease", "depression")
"""Other comorbidities modelled as a logistic function of age and etiology."""

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
        _check_etiology_keys(v)
        total = sum(v.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"etiology probabilities must sum to 1, got {total:.6g}; rescale them")
        return v

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


# --------------------------------------------------------------------------------------------------
# Cohort (numpy arrays)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cohort:
    """Patient attributes, one entry per patient in every array (read-only arrays)."""

    age: np.ndarray  # float64, years
    sex: np.ndarray  # int8, 0 female / 1 male
    etiology: np.ndarray  # int8, code into ETIOLOGIES
    baseline_nrs: np.ndarray  # float64, NRS 0-10
    localized: np.ndarray  # bool
    allodynia: np.ndarray  # bool, only where localized
    crcl: np.ndarray  # float64, creatinine clearance mL/min, >= 5
    hepatic_disease: np.ndarray  # bool
    recent_mi: np.ndarray  # bool
    arrhythmia: np.ndarray  # bool
    heart_block: np.ndarray  # bool
    cardiovascular_disease: np.ndarray  # bool
    glaucoma: np.ndarray  # bool
    orthostatic_hypotension: np.ndarray  # bool
    ssri_use: np.ndarray  # bool
    depression: np.ndarray  # bool
    misuse_risk: np.ndarray  # int8, 0 low / 1 moderate / 2 high

    def __post_init__(self) -> None:
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"cohort arrays differ in length: {lengths}")
        for f in fields(self):
            getattr(self, f.name).flags.writeable = False

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.age)

    def take(self, indices: np.ndarray | list[int] | slice) -> Cohort:
        """A sub-cohort of the given patients (in the given order)."""
        idx = indices if isinstance(indices, slice) else np.asarray(indices, dtype=np.intp)
        return Cohort(**{f.name: np.array(getattr(self, f.name)[idx]) for f in fields(self)})

    def to_frame(self) -> pd.DataFrame:
        """One row per patient: a ``patient`` column (0..n-1), etiology and misuse_risk as names."""
        data: dict[str, object] = {"patient": np.arange(self.n)}
        for f in fields(self):
            data[f.name] = getattr(self, f.name)
        data["etiology"] = np.asarray(ETIOLOGIES, dtype=object)[self.etiology]
        data["misuse_risk"] = np.asarray(MISUSE_RISK_LEVELS, dtype=object)[self.misuse_risk]
        return pd.DataFrame(data)


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------

def _categorical(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Category index by inverse CDF: u < cum[0] -> 0, ...; zero-probability categories are never chosen."""
    cum = np.cumsum(probs)
    cum = cum / cum[-1]
    return np.minimum(np.searchsorted(cum, u, side="right"), len(probs) - 1)


def _truncated_normal(u: np.ndarray, mean: np.ndarray | float, sd: np.ndarray | float,
                      lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    """Inverse-CDF draw from a normal(mean, sd) truncated to [lo, hi] (sd 0 gives the clipped mean)."""
    mean, sd, lo, hi = (np.broadcast_to(np.asarray(x, dtype=np.float64), u.shape) for x in (mean, sd, lo, hi))
    positive = sd > 1e-9  # a vanishing sd is a point mass (and would overflow the division)
    s = np.where(positive, sd, 1.0)
    za, zb = (lo - mean) / s, (hi - mean) / s
    # Work in the lower tail, where ndtr keeps its precision: mirror intervals lying above the mean
    # (and use 1 - u there, so the draw still rises with u: a patient keeps their rank when parameters change).
    flip = za > 0
    a, b = np.where(flip, -zb, za), np.where(flip, -za, zb)
    pa, pb = ndtr(a), ndtr(b)
    z = ndtri(pa + np.where(flip, 1.0 - u, u) * (pb - pa))
    z = np.where(flip, -z, z)
    x = np.where(positive, mean + s * z, mean)
    return np.clip(x, lo, hi)


def _by_etiology(values: dict[str, float], default: float, etiology: np.ndarray) -> np.ndarray:
    table = np.array([values.get(e, default) for e in ETIOLOGIES], dtype=np.float64)
    return table[etiology]


def _logistic_p(model: AgeLogistic, age: np.ndarray, etiology: np.ndarray) -> np.ndarray:
    p0 = model.p_at_ref_age
    if p0 in (0.0, 1.0):
        return np.full(age.shape, p0)
    log_or = np.log(_by_etiology(model.odds_ratio_by_etiology, 1.0, etiology))
    logit0 = math.log(p0 / (1.0 - p0))
    return expit(logit0 + model.slope_per_decade * (age - model.ref_age) / 10.0 + log_or)


def generate_cohort(spec: CohortSpec, n: int, seed: int, replication: int = 0) -> Cohort:
    """Draw ``n`` patients from ``spec``; identical for the same (seed, replication), prefix-stable in n."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"the number of patients must be a whole number >= 1, got {n!r}",
                         field="patients", fix="use at least 1 patient")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"the seed must be a whole number >= 0, got {seed!r}", field="seed",
                         fix="use a non-negative integer seed")
    if isinstance(replication, bool) or not isinstance(replication, int | np.integer) or replication < 0:
        raise InputError(f"the replication must be a whole number >= 0, got {replication!r}",
                         field="replication", fix="use a non-negative integer replication index")

    u = streams.block(seed, replication, streams.COHORT, int(n), K)

    def col(name: str) -> np.ndarray:
        return u[:, COLUMNS[name]]

    # Etiology first: age, renal function and comorbidities depend on it.
    etiology = _categorical(col("etiology"), spec.etiology_probabilities()).astype(np.int8)

    params = np.array([spec.age.params(c) for c in range(len(ETIOLOGIES))], dtype=np.float64)
    p = params[etiology]
    age = _truncated_normal(col("age"), p[:, 0], p[:, 1], p[:, 2], p[:, 3])

    sex = (col("sex") < spec.sex.male_share).astype(np.int8)

    nrs = spec.baseline_nrs
    baseline_nrs = _truncated_normal(col("baseline_nrs"), nrs.mean, nrs.sd, nrs.min, nrs.max)

    loc = spec.localized
    localized = col("localized") < _by_etiology(loc.by_etiology, loc.probability, etiology)
    allodynia = localized & (col("allodynia") < loc.allodynia_given_localized)

    r = spec.renal
    expected = (r.crcl_at_ref_age - r.decline_per_decade * (age - r.ref_age) / 10.0
                + _by_etiology(r.shift_by_etiology, 0.0, etiology))
    expected = expected * np.where(sex == 0, r.female_factor, 1.0)
    crcl = np.maximum(expected + r.sd * ndtri(col("crcl")), CRCL_FLOOR)

    c = spec.comorbidities
    flags: dict[str, np.ndarray] = {}
    # Cardiac conditions: Gaussian copula with one shared factor; each keeps its own age-logistic margin.
    rho = c.cardiac_correlation
    shared = ndtri(col("cardiac_shared"))
    for name in CARDIAC:
        latent = math.sqrt(rho) * shared + math.sqrt(1.0 - rho) * ndtri(col(name))
        flags[name] = latent < ndtri(_logistic_p(getattr(c, name), age, etiology))
    for name in OTHER_AGE_DEPENDENT:
        flags[name] = col(name) < _logistic_p(getattr(c, name), age, etiology)
    p_ssri = np.where(flags["depression"], c.ssri_use.given_depression, c.ssri_use.without_depression)
    flags["ssri_use"] = col("ssri_use") < p_ssri

    m = spec.misuse_risk
    misuse_risk = _categorical(col("misuse_risk"), np.array([m.low, m.moderate, m.high])).astype(np.int8)

    return Cohort(age=age, sex=sex, etiology=etiology, baseline_nrs=baseline_nrs, localized=localized,
                  allodynia=allodynia, crcl=crcl, misuse_risk=misuse_risk, **flags)
