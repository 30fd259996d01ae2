"""Reproducible synthetic cohorts of people with neuropathic pain.

A :class:`~simulator.population.cohort_spec.CohortSpec` (the schema of ``cohorts/*.yaml``, in
:mod:`simulator.population.cohort_spec`) describes a population; :func:`generate_cohort` turns it into a
:class:`Cohort` of numpy arrays. This module owns the :class:`Cohort`, the layout of the cohort's random
block (:data:`K`, :data:`COLUMNS`) and the generation.

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

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri

from ..inputs.errors import InputError
from ..model import streams
from .cohort_spec import ETIOLOGIES, MISUSE_RISK_LEVELS, AgeLogistic, CohortSpec

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
