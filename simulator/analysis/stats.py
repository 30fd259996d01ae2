"""Confidence intervals across replications: per scenario, and paired differences between scenarios.

Replications are independent draws of the whole cohort, so a metric's replication values give a
t-based 95% CI of its mean. Two scenarios run with the same seed share cohort and random numbers in
each replication (common random numbers), so their difference is estimated from the per-replication
differences (paired), which is much narrower than treating the two sets as independent (unpaired).

A missing value (``None`` or NaN: a median not reached, a day beyond the horizon) is never dropped
silently: an estimate over replications with any missing value is NaN, and :func:`n_missing` says how
many were missing so that the caller can show the reason (or a pooled estimate).

Shares (proportions in [0, 1]) get :func:`share_ci` instead of the t-interval: a t-interval over 2-4
replications of a rare share leaves [0, 1] ("0.2% [-0.3, 0.7]"). See ``docs/summary-schema.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)


def n_missing(values: Sequence[float | None]) -> int:
    """How many of ``values`` are missing (None, NaN or infinite)."""
    return int((~np.isfinite(_arr(values))).sum())


def mean_ci(values: Sequence[float | None], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of the mean across replications; lo = hi = mean for a single value; all NaN when
    any value is missing (see :func:`n_missing`)."""
    x = _arr(values)
    if x.size == 0 or not np.isfinite(x).all():
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2:
        return (m, m, m)
    half = float(_st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def share_ci(values: Sequence[float | None], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of a share (a proportion in [0, 1]) across replications; always within [0, 1].

    A Wilson score interval on the effective sample size (Kish design effect; the Korn-Graubard approach for
    proportions estimated from clustered data): ``n_eff = p(1 - p) / se^2`` with ``se`` the standard error of
    the mean across replications, and the normal quantile replaced by the t quantile with replications - 1
    degrees of freedom. Away from 0 and 1 it is close to the t-interval of :func:`mean_ci`; near them it
    is asymmetric and stays inside [0, 1]. The spread still comes from the replications (patients sharing a
    clinic's queue are not independent), never from a binomial assumption. lo = hi = mean for a single value
    or when every replication has the same share; all NaN when any value is missing. Values outside [0, 1]
    are not shares: they get the t-interval of :func:`mean_ci`.
    """
    x = _arr(values)
    if x.size == 0 or not np.isfinite(x).all():
        return (math.nan, math.nan, math.nan)
    if ((x < 0) | (x > 1)).any():
        return mean_ci(values, level)
    p = float(x.mean())
    if x.size < 2:
        return (p, p, p)
    se2 = float(x.var(ddof=1)) / x.size
    if se2 == 0.0 or p in (0.0, 1.0):
        return (p, p, p)
    n_eff = p * (1.0 - p) / se2
    z = float(_st.t.ppf(0.5 + level / 2, x.size - 1))
    k = z * z / n_eff
    centre = (p + k / 2) / (1 + k)
    half = z / (1 + k) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff))
    return (p, max(0.0, centre - half), min(1.0, centre + half))


def paired_diff_ci(new: Sequence[float | None], old: Sequence[float | None],
                   level: float = 0.95) -> tuple[float, float, float]:
    """(mean difference new - old, lo, hi) from per-replication paired differences; NaN when a value is
    missing on either side in any replication."""
    a, b = _arr(new), _arr(old)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same number of replications on both sides")
    return mean_ci(list(a - b), level)


def unpaired_diff_ci(new: Sequence[float | None], old: Sequence[float | None],
                     level: float = 0.95) -> tuple[float, float, float]:
    """(difference of means, lo, hi) treating the two samples as independent (Welch); NaN when a value is
    missing."""
    a, b = _arr(new), _arr(old)
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return (math.nan, math.nan, math.nan)
    d = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return (d, d, d)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return (d, d, d)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(_st.t.ppf(0.5 + level / 2, dof) * se)
    return (d, d - half, d + half)
