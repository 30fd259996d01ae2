"""Confidence intervals across replications: per scenario, and paired differences between scenarios.

Replications are independent draws of the whole cohort, so a metric's replication values give a
t-based 95% CI of its mean. Two scenarios run with the same seed share cohort and random numbers in
each replication (common random numbers), so their difference is estimated from the per-replication
differences (paired), which is much narrower than treating the two sets as independent (unpaired).

A missing value (``None`` or NaN: a median not reached, a day beyond the horizon) is never dropped
silently: an estimate over replications with any missing value is NaN, and :func:`n_missing` says how
many were missing so that the caller can show the reason (or a pooled estimate).
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
