"""Confidence intervals across replications, in one place for every command and report.

``painpath run`` (its table and report), ``compare``, ``sweep``, ``tornado``, ``diff`` and the figures all take
their estimates and 95% CIs from here (:func:`metric_level` and :func:`metric_difference` for a summary metric,
:func:`level_ci` for a plain series of replication values). The methods, per kind of metric of the registry
(:mod:`simulator.analysis.metrics`), are described for users in ``docs/summary-schema.md``:

- **Estimate**: the summary's pooled estimate over all patients of all replications (the number of
  ``summary.json``); **spread**: the replications (independent random groups; Wolter, *Introduction to
  Variance Estimation*, 2nd ed., 2007, ch. 2: the random group method), standard error of the mean of the
  replication values, t quantile with replications - 1 degrees of freedom. Patients are not treated as
  independent (within a replication they share the pain clinic's queue).
- **Levels keep to their domain**: a share (fraction in [0, 1]) gets a Wilson score interval on the
  effective sample size (Korn & Graubard 1998, :func:`share_ci`); a mean NRS (0-10) the same interval on
  NRS / 10; every other level (days, medians, RMST, rates, counts, means per patient: all non-negative) a
  log-scale interval ``est * exp(+-t * se / est)`` (the delta method for log(est): Casella & Berger,
  *Statistical Inference*, 2nd ed., 2002, 5.5.4), which is > 0, asymmetric, and close to the t-interval
  when the spread is small relative to the estimate.
- **Differences** between scenarios may be negative: a t-interval of the per-replication differences
  (paired, common random numbers; or Welch, unpaired), kept inside the range a difference can take
  ([-1, 1] for shares, [-10, 10] NRS). Intersecting an interval with the parameter space never lowers
  its coverage (the true value always lies in that space).
- With one replication (or a metric missing in some replication: a median not reached), the estimate is
  the pooled one and the CI is the summary's own Kaplan-Meier CI where it has one, else none.

A missing value (``None`` or NaN) is never dropped silently: :func:`n_missing` says how many were missing so
that the caller can show the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

LEVEL = 0.95
BOUNDED: dict[str, float] = {"share": 1.0, "nrs": 10.0}
"""Kinds of metric bounded above: kind -> upper bound (the lower bound is 0)."""
NON_NEGATIVE = ("days", "rate", "per100", "count", "per_patient")
"""Kinds of metric that cannot be negative and have no upper bound (log-scale intervals)."""
FEW_REPLICATIONS_FACTOR = 2.0
"""An interval is called uninformative when the t quantile is more than this many times the normal one
(fewer than 4 replications: t = 12.7, 4.3 with 1, 2 degrees of freedom against 1.96)."""

METHODS: dict[str, str] = {
    "share": "Wilson score interval on the effective sample size (Korn & Graubard 1998)",
    "nrs": "Wilson score interval on the effective sample size of NRS / 10 (bounded 0-10)",
    "non-negative": "log-scale interval est * exp(+-t se / est) (delta method)",
    "difference": "t-interval of the per-replication differences, within the range a difference can take",
    "kaplan-meier": "the summary's Kaplan-Meier 95% CI over patients (one replication, or a median not reached "
                    "in some replication)",
}
"""The method of each kind of interval, as said in outputs (``comparison.json``) and docs."""


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def n_missing(values: Sequence[float | None]) -> int:
    """How many of ``values`` are missing (None, NaN or infinite)."""
    return int((~np.isfinite(_arr(values))).sum())


def t_quantile(replications: int, level: float = LEVEL) -> float:
    """The two-sided t quantile with ``replications`` - 1 degrees of freedom (NaN below 2 replications)."""
    return float(_st.t.ppf(0.5 + level / 2, replications - 1)) if replications >= 2 else math.nan


def domain(kind: str) -> tuple[float, float]:
    """(lowest, highest) value a level of this kind of metric can take."""
    if kind in BOUNDED:
        return 0.0, BOUNDED[kind]
    if kind in NON_NEGATIVE:
        return 0.0, math.inf
    return -math.inf, math.inf


def diff_domain(kind: str) -> tuple[float, float]:
    """(lowest, highest) value a difference between two levels of this kind can take."""
    lo, hi = domain(kind)
    return lo - hi, hi - lo


def method(kind: str) -> str:
    """How a level of this kind gets its CI across replications (one line, for outputs)."""
    return METHODS.get(kind, METHODS["non-negative"] if kind in NON_NEGATIVE else "t-interval")


def replications_note(replications: int, level: float = LEVEL) -> str:
    """A sentence for outputs when the number of replications makes intervals across them uninformative
    ('' when it does not): with 2 or 3 replications the t quantile is 6.5 or 2.2 times the normal one."""
    if replications < 2:
        return ("one replication: no confidence intervals across replications (time-to-relief metrics show "
                "their Kaplan-Meier CI over patients); use --replications 8 or more")
    t = t_quantile(replications, level)
    z = float(_st.norm.ppf(0.5 + level / 2))
    if t <= FEW_REPLICATIONS_FACTOR * z:
        return ""
    return (f"only {replications} replications: every 95% CI across replications uses t = {t:.1f} "
            f"({replications - 1} degree{'s' if replications > 2 else ''} of freedom), {t / z:.1f} times the normal "
            "quantile, so the intervals are wide by construction and uninformative; use --replications 8 or more")


def methods_note(replications: int) -> str:
    """The paragraph reports print under their tables: how every 95% CI was computed, and
    :func:`replications_note` when the replications are too few."""
    text = ("95% CIs: the estimate is pooled over all patients of all replications; its interval comes from the "
            "spread between replications (t quantile, replications - 1 degrees of freedom; patients within a "
            "replication share the clinic's queue, so they are not treated as independent) and stays inside "
            f"the metric's domain. Shares: {METHODS['share']}. Mean NRS: {METHODS['nrs']}. Days, medians, RMST, "
            f"rates, counts and means per patient (never negative): {METHODS['non-negative']}. Differences "
            f"between scenarios: {METHODS['difference']}. Otherwise {METHODS['kaplan-meier']}. "
            "See docs/summary-schema.md.")
    note = replications_note(replications)
    return f"{text} Note: {note}." if note else text


def _t_half(x: np.ndarray, level: float) -> float:
    return t_quantile(x.size, level) * float(x.std(ddof=1)) / math.sqrt(x.size)


def mean_ci(values: Sequence[float | None], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): the plain t-interval of the mean across replications, for quantities without bounds
    (levels use :func:`level_ci`); lo = hi = mean for a single value; all NaN when any value is missing."""
    x = _arr(values)
    if x.size == 0 or not np.isfinite(x).all():
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2:
        return (m, m, m)
    half = _t_half(x, level)
    return (m, m - half, m + half)


def share_ci(values: Sequence[float | None], level: float = LEVEL,
             estimate: float | None = None) -> tuple[float, float, float]:
    """(estimate, lo, hi) of a share (a proportion in [0, 1]) across replications; always within [0, 1].

    A Wilson score interval on the effective sample size (Kish design effect; the Korn-Graubard approach for
    proportions estimated from clustered data): ``n_eff = p(1 - p) / se^2`` with ``p`` the estimate (default
    the mean of ``values``) and ``se`` the standard error of the mean across replications, and the normal
    quantile replaced by the t quantile with replications - 1 degrees of freedom. Away from 0 and 1 it is
    close to the t-interval of :func:`mean_ci`; near them it is asymmetric and stays inside [0, 1]. The
    spread still comes from the replications (patients sharing a clinic's queue are not independent), never
    from a binomial assumption. lo = hi = estimate for a single value or when every replication has the same
    share; at an estimate of exactly 0 or 1 with some spread, the t-interval cut to [0, 1]; all NaN when any
    value is missing. Values outside [0, 1] are not shares: they get the t-interval of :func:`mean_ci`.
    """
    x = _arr(values)
    if x.size == 0 or not np.isfinite(x).all():
        return (math.nan, math.nan, math.nan)
    if ((x < 0) | (x > 1)).any():
        return mean_ci(values, level)
    p = float(x.mean()) if estimate is None or not math.isfinite(estimate) else float(estimate)
    if x.size < 2:
        return (p, p, p)
    se2 = float(x.var(ddof=1)) / x.size
    if se2 == 0.0:
        return (p, p, p)
    z = t_quantile(x.size, level)
    n_eff = p * (1.0 - p) / se2
    if not n_eff > 1e-9:  # an estimate of 0 or 1 (or next to it) with some spread
        half = z * math.sqrt(se2)
        return (p, max(0.0, p - half), min(1.0, p + half))
    k = z * z / n_eff
    centre = (p + k / 2) / (1 + k)
    half = z / (1 + k) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff))
    return (p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def log_ci(values: Sequence[float | None], level: float = LEVEL,
           estimate: float | None = None) -> tuple[float, float, float]:
    """(estimate, lo, hi) of a non-negative quantity across replications: ``est * exp(+-t * se / est)``, the
    t-interval of log(est) by the delta method (se(log est) = se / est), ``se`` the standard error of the mean
    of ``values`` and ``est`` the estimate (default their mean). Always > 0 for an estimate > 0, and close to
    the t-interval when se / est is small; at an estimate of 0 with some spread, the t-interval cut at 0.
    lo = hi = estimate for a single value or no spread; all NaN when any value is missing."""
    x = _arr(values)
    if x.size == 0 or not np.isfinite(x).all():
        return (math.nan, math.nan, math.nan)
    m = float(x.mean()) if estimate is None or not math.isfinite(estimate) else float(estimate)
    if x.size < 2:
        return (m, m, m)
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    if se == 0.0:
        return (m, m, m)
    t = t_quantile(x.size, level)
    if m <= 0.0:
        return (m, max(0.0, m - t * se), m + t * se)
    f = math.exp(min(t * se / m, 700.0))
    return (m, m / f, m * f)


def level_ci(kind: str, values: Sequence[float | None], estimate: float | None = None,
             level: float = LEVEL) -> tuple[float, float, float]:
    """(estimate, lo, hi) of a level of a ``kind`` of metric (registry kinds: share, nrs, days, rate,
    per100, count, per_patient) from its replication values, inside the kind's :func:`domain`: shares
    :func:`share_ci`, NRS the share interval on NRS / 10, the non-negative kinds :func:`log_ci`, any other
    kind the t-interval. ``estimate`` defaults to the mean of the values."""
    if kind in BOUNDED:
        u = BOUNDED[kind]
        e = None if estimate is None or not math.isfinite(estimate) else estimate / u
        p, lo, hi = share_ci([None if v is None else v / u for v in values], level, e)
        return (u * p if e is None else float(estimate), u * lo, u * hi)  # type: ignore[arg-type]
    if kind in NON_NEGATIVE:
        return log_ci(values, level, estimate)
    m, lo, hi = mean_ci(values, level)
    if estimate is None or not math.isfinite(estimate) or not math.isfinite(m):
        return (m, lo, hi)
    return (float(estimate), float(estimate) - (m - lo), float(estimate) + (hi - m))


def _clip(d: float, lo: float, hi: float, kind: str | None) -> tuple[float, float, float]:
    if kind is None or not math.isfinite(lo):
        return (d, lo, hi)
    a, b = diff_domain(kind)
    return (d, max(a, lo), min(b, hi))


def paired_diff_ci(new: Sequence[float | None], old: Sequence[float | None], level: float = LEVEL,
                   kind: str | None = None, estimate: float | None = None) -> tuple[float, float, float]:
    """(difference new - old, lo, hi) from per-replication paired differences: the t-interval of their mean,
    centred on ``estimate`` (default that mean) and, given the metric's ``kind``, kept inside the range a
    difference can take (:func:`diff_domain`). NaN when a value is missing on either side in any
    replication."""
    a, b = _arr(new), _arr(old)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same number of replications on both sides")
    m, lo, hi = mean_ci(list(a - b), level)
    if estimate is not None and math.isfinite(estimate) and math.isfinite(m):
        m, lo, hi = float(estimate), float(estimate) - (m - lo), float(estimate) + (hi - m)
    return _clip(m, lo, hi, kind)


def unpaired_diff_ci(new: Sequence[float | None], old: Sequence[float | None], level: float = LEVEL,
                     kind: str | None = None, estimate: float | None = None) -> tuple[float, float, float]:
    """(difference of means, lo, hi) treating the two samples as independent (Welch), centred on ``estimate``
    (default the difference of the means) and kept inside the range of a difference of ``kind``; NaN when a
    value is missing."""
    a, b = _arr(new), _arr(old)
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return (math.nan, math.nan, math.nan)
    d = float(a.mean() - b.mean()) if estimate is None or not math.isfinite(estimate) else float(estimate)
    if a.size < 2 or b.size < 2:
        return (d, d, d)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return (d, d, d)
    den = va**2 / (a.size - 1) + vb**2 / (b.size - 1)
    dof = (va + vb) ** 2 / den if den > 0 else math.inf
    half = float(_st.t.ppf(0.5 + level / 2, dof) * se)
    return _clip(d, d - half, d + half, kind)


# ---------------------------------------------------------------------------------------------------------
# Summary metrics: the estimate and CI every command shows
# ---------------------------------------------------------------------------------------------------------

KM_CI: dict[str, tuple[str, ...]] = {
    "time_to_relief.median_days": ("time_to_relief", "median_ci95"),
    "time_to_relief.rmst_days": ("time_to_relief", "rmst_ci95"),
    "time_to_relief.relieved_by_horizon": ("time_to_relief", "relieved_by_horizon_ci95"),
    "specialist.wait_days_median": ("specialist", "wait_days_median_ci95"),
    "specialist.steady_state.wait_days_median": ("specialist", "steady_state", "wait_days_median_ci95"),
}
"""Metrics whose summary carries its own (Kaplan-Meier, over patients) 95% CI beside it: metric -> path of
the CI (``time_to_relief.relieved_by_day.<day>`` too, from ``relieved_by_day_ci95``)."""


def summary_ci(summary: Mapping[str, Any], metric: str) -> tuple[float, float]:
    """The summary's own (Kaplan-Meier) 95% CI of ``metric`` over patients; NaN bounds where it has none."""
    node: Any = None
    if metric in KM_CI:
        node = summary
        for p in KM_CI[metric]:
            node = node.get(p) if isinstance(node, Mapping) else None
    elif metric.startswith("time_to_relief.relieved_by_day."):
        node = (summary.get("time_to_relief") or {}).get("relieved_by_day_ci95", {}).get(metric.rsplit(".", 1)[1])
    lo, hi = node if isinstance(node, list | tuple) and len(node) == 2 else (None, None)
    return (float(lo) if _finite(lo) else math.nan, float(hi) if _finite(hi) else math.nan)


@dataclass(frozen=True)
class Estimate:
    """An estimate and its 95% CI; ``method``: 'replications', 'kaplan-meier' or 'none' (no CI)."""

    value: float
    lo: float
    hi: float
    method: str


def _replicates(kind: str, values: Sequence[float | None]) -> list[float | None]:
    """Each replication's estimate of the pooled quantity: a count of the summary is a total over all
    replications, so a replication's count times the number of replications estimates it."""
    if kind != "count":
        return list(values)
    return [None if v is None else float(v) * len(values) for v in values]


def metric_level(kind: str, values: Sequence[float | None], pooled: float | None = None,
                 pooled_ci: tuple[float, float] = (math.nan, math.nan)) -> Estimate:
    """The estimate and 95% CI of a summary metric of ``kind`` (its registry kind,
    :func:`simulator.analysis.metrics.kind`) from its per-replication ``values``, its ``pooled`` value
    (``summary.json``; default the mean of the values) and the summary's own CI (:func:`summary_ci`). With 2
    or more replications that all have the metric: the pooled value with the interval of :func:`level_ci`
    (spread across replications). Otherwise the pooled value with the summary's own CI (method
    'kaplan-meier') or none. A count (a total over all replications in the summary) is estimated as the
    total."""
    k = kind
    reps = _replicates(k, values)
    est = float(pooled) if _finite(pooled) else math.nan
    if len(reps) >= 2 and n_missing(reps) == 0:
        v, lo, hi = level_ci(k, reps, est if math.isfinite(est) else None)
        return Estimate(v, lo, hi, "replications")
    if not math.isfinite(est) and len(reps) == 1 and n_missing(reps) == 0:
        est = float(reps[0])  # type: ignore[arg-type]
    lo, hi = pooled_ci
    if math.isfinite(est) and (math.isfinite(lo) or math.isfinite(hi)):
        return Estimate(est, lo, hi, "kaplan-meier")
    return Estimate(est, math.nan, math.nan, "none")


def metric_difference(kind: str, new: Sequence[float | None], old: Sequence[float | None],
                      new_pooled: float | None = None, old_pooled: float | None = None
                      ) -> tuple[float, float, float, float, float]:
    """(difference new - old, paired lo, paired hi, unpaired lo, unpaired hi) of a summary metric of ``kind``
    between two scenarios run with common random numbers, from per-replication values: the difference of the
    pooled values (default the mean difference), paired and Welch t-intervals of the replications'
    differences, inside the range a difference of that kind can take. CIs NaN when a value is missing in any
    replication on either side."""
    k = kind
    a, b = _replicates(k, new), _replicates(k, old)
    est = float(new_pooled) - float(old_pooled) if _finite(new_pooled) and _finite(old_pooled) else None
    d, plo, phi = paired_diff_ci(a, b, kind=k, estimate=est)
    _, ulo, uhi = unpaired_diff_ci(a, b, kind=k, estimate=d if math.isfinite(d) else est)
    return (d, plo, phi, ulo, uhi)
