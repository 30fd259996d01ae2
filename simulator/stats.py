"""Confidence intervals across replications: per scenario, and paired differences between scenarios.

Replications are independent draws of the whole cohort, so a metric's replication values give a
t-based 95% CI of its mean. Two scenarios run with the same seed share cohort and random numbers in
each replication (common random numbers), so their difference is estimated from the per-replication
differences (paired), which is much narrower than treating the two sets as independent (unpaired).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of the mean across replications; lo = hi = mean for a single value."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2:
        return (m, m, m)
    half = float(_st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def paired_diff_ci(new: Sequence[float], old: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean difference new - old, lo, hi) from per-replication paired differences."""
    a = np.asarray(new, dtype=float)
    b = np.asarray(old, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same number of replications on both sides")
    ok = np.isfinite(a) & np.isfinite(b)
    return mean_ci(list(a[ok] - b[ok]), level)


def unpaired_diff_ci(new: Sequence[float], old: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(difference of means, lo, hi) treating the two samples as independent (Welch)."""
    a = np.asarray([v for v in new if math.isfinite(v)], dtype=float)
    b = np.asarray([v for v in old if math.isfinite(v)], dtype=float)
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
