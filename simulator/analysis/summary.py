"""The cohort summary (``summary.json``) from the per-patient tables of :mod:`simulator.analysis.outcomes`.

The summary schema is documented, with the unit of every field, in ``docs/summary-schema.md``
(:data:`SCHEMA_VERSION`). Time to relief is a Kaplan-Meier estimate (``lifelines``), censored at
drop-out and at the horizon. Relief is the policy's definition applied at an evaluation visit (or a
specialist outcome) and is **dated at the visit that observed it** (visit-day dating, see
:data:`RELIEF_DATING`). The headline is the restricted mean time to relief (RMST) up to the horizon,
which, unlike the median and the share relieved by a fixed day, does not jump when visits move by a
day. Proportions are fractions in [0, 1]. A time-point metric beyond the horizon is ``null`` and its
reason is given in ``not_estimable``. This module owns the summary blocks, KM and RMST, :func:`summarize` and
:func:`flat_metrics` (the summary's metric leaves, named in :mod:`simulator.analysis.metrics`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .outcomes import REACHED_STATES, discontinuations
from .persistence import MONTH_DAYS, maintenance_summary

SCHEMA_VERSION = 2
RELIEF_DAYS = (84, 182, 365)
PAIN_DAYS = (0, 42, 84, 182, 365)
KM_STEP_DAYS = 7
RELIEF_DATING = ("visit-day: relief is dated at the evaluation visit (or specialist outcome) that observed it; "
                 "RMST integrates the Kaplan-Meier curve to the horizon, so moving visits by a day moves it by "
                 "about a day")


def beyond_horizon(day: float, horizon: float) -> bool:
    """True when time point ``day`` cannot be estimated in a run of ``horizon`` days.

    The engine simulates days < horizon (events due on the horizon day itself are not run), so a time point
    equal to the horizon is beyond it too: "relieved by day 84" in an 84-day run would miss the day-84 visits."""
    return day >= horizon


def beyond_reason(day: float | str, horizon: float) -> str:
    """The ``not_estimable`` reason of a time point beyond the horizon (see :func:`beyond_horizon`)."""
    return f"day {day} is beyond the {horizon:g}-day horizon (the run simulates the days before it)"


def pain_by_day(events: pd.DataFrame, outcomes: pd.DataFrame, days: tuple[int, ...] = PAIN_DAYS,
                horizon: float = math.inf) -> dict[str, float | None]:
    """Mean observed NRS (last observation carried forward) among patients still in follow-up on each day;
    ``None`` for a day beyond the horizon or when nobody is in follow-up."""
    obs = events[events["event"].isin(["assessment", "evaluation", "maintenance_visit"])]
    obs = obs[["replication", "patient", "day", "pain_nrs"]]
    obs = obs.sort_values(["replication", "patient", "day"], kind="stable")
    follow = outcomes.set_index(["replication", "patient"])["followup_days"]
    result: dict[str, float | None] = {}
    for d in days:
        if beyond_horizon(d, horizon):
            result[str(d)] = None
            continue
        last = obs[obs["day"] <= d].groupby(["replication", "patient"])["pain_nrs"].last()
        keep = follow.reindex(last.index) >= d
        vals = last[keep.to_numpy()]
        result[str(d)] = round(float(vals.mean()), 3) if len(vals) else None
    return result


def kaplan_meier(time_days: np.ndarray, relieved: np.ndarray):
    """A fitted lifelines KaplanMeierFitter of time-to-relief."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter()
    kmf.fit(time_days, event_observed=relieved, label="no relief yet")
    return kmf


def _finite(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def rmst(kmf: Any, tau: float) -> tuple[float, float, float]:
    """(RMST, lo, hi): restricted mean time to relief up to ``tau`` days, the area under the Kaplan-Meier
    curve of "no relief yet" from 0 to ``tau`` (days; lifelines), with a normal 95% CI.

    The variance is the closed-form Greenwood-type estimator (Klein & Moeschberger, *Survival Analysis*,
    2003, section 4.5): sum over event times t_i <= tau of A_i^2 d_i / (n_i (n_i - d_i)), with A_i the area
    under the curve from t_i to tau. (lifelines' own variance integrates numerically and is ~100x slower.)"""
    from lifelines.utils import restricted_mean_survival_time

    value = float(restricted_mean_survival_time(kmf, t=tau))
    table = kmf.event_table
    t = table.index.to_numpy(float)
    d = table["observed"].to_numpy(float)
    n = table["at_risk"].to_numpy(float)
    s = kmf.survival_function_.iloc[:, 0].reindex(table.index).to_numpy(float)
    keep = (t <= tau) & (d > 0)
    t, d, n, s = t[keep], d[keep], n[keep], s[keep]
    # Area from t_i to tau under the step curve: S is s_i on [t_i, t_{i+1}).
    edges = np.append(t, tau)
    seg = s * np.diff(edges)
    area = np.cumsum(seg[::-1])[::-1]
    ok = n > d
    var = float(np.sum(area[ok] ** 2 * d[ok] / (n[ok] * (n[ok] - d[ok]))))
    half = 1.959964 * math.sqrt(var)
    return value, value - half, value + half


def km_curve(kmf: Any, horizon: float, step: int = KM_STEP_DAYS) -> dict[str, list[float]]:
    """The share relieved (1 - S(t)) with its 95% CI on days 0, step, 2*step, ... up to the horizon."""
    days = [float(d) for d in np.arange(0.0, horizon + 1e-9, step)]
    if days[-1] < horizon:
        days.append(float(horizon))
    sf = kmf.survival_function_at_times(days).to_numpy()
    ci = kmf.confidence_interval_survival_function_
    t = ci.index.to_numpy()
    pos = np.searchsorted(t, days, side="right") - 1
    lo_s = np.where(pos >= 0, ci.iloc[np.maximum(pos, 0), 0].to_numpy(), 1.0)
    hi_s = np.where(pos >= 0, ci.iloc[np.maximum(pos, 0), 1].to_numpy(), 1.0)
    return {"day": days, "relieved": [round(1.0 - float(v), 4) for v in sf],
            "ci95_lo": [round(1.0 - float(v), 4) for v in hi_s], "ci95_hi": [round(1.0 - float(v), 4) for v in lo_s]}


def time_to_relief(outcomes: pd.DataFrame, horizon: float, reasons: dict[str, str] | None = None) -> dict[str, Any]:
    """The time-to-relief block: RMST to the horizon (headline), median, share relieved by fixed days, and
    the KM curve. ``reasons`` (metric -> why it is null) is filled for medians not reached and days beyond
    the horizon."""
    from lifelines.utils import median_survival_times

    reasons = {} if reasons is None else reasons
    kmf = kaplan_meier(outcomes["time_days"].to_numpy(float), outcomes["relieved"].to_numpy(bool))
    value, lo, hi = rmst(kmf, horizon)
    median = kmf.median_survival_time_
    ci = median_survival_times(kmf.confidence_interval_)
    mlo, mhi = (float(ci.iloc[0, 0]), float(ci.iloc[0, 1])) if len(ci) else (math.nan, math.nan)
    share_at_horizon = 1.0 - float(kmf.survival_function_at_times(horizon).iloc[0])
    if not math.isfinite(median):
        reasons["time_to_relief.median_days"] = (f"not reached: {100 * share_at_horizon:.1f}% relieved by the "
                                                 f"{horizon:g}-day horizon (fewer than half)")
    by_day: dict[str, float | None] = {}
    by_day_ci: dict[str, list[float | None]] = {}
    ci_sf = kmf.confidence_interval_survival_function_

    def share_ci(d: float) -> list[float | None]:
        pos = int(np.searchsorted(ci_sf.index.to_numpy(), d, side="right")) - 1
        s_lo, s_hi = (float(ci_sf.iloc[pos, 0]), float(ci_sf.iloc[pos, 1])) if pos >= 0 else (1.0, 1.0)
        return [round(1.0 - s_hi, 4), round(1.0 - s_lo, 4)]

    for d in RELIEF_DAYS:
        if beyond_horizon(d, horizon):
            by_day[str(d)] = None
            by_day_ci[str(d)] = [None, None]
            reasons[f"time_to_relief.relieved_by_day.{d}"] = beyond_reason(d, horizon)
            continue
        by_day[str(d)] = round(1.0 - float(kmf.survival_function_at_times(d).iloc[0]), 4)
        by_day_ci[str(d)] = share_ci(d)
    return {
        "rmst_days": _finite(value), "rmst_ci95": [_finite(lo), _finite(hi)], "rmst_tau_days": float(horizon),
        "relieved_by_horizon": round(share_at_horizon, 4), "relieved_by_horizon_ci95": share_ci(horizon),
        "median_days": _finite(median), "median_ci95": [_finite(mlo), _finite(mhi)],
        "median_status": "reached" if math.isfinite(median) else "not reached",
        "relieved_by_day": by_day, "relieved_by_day_ci95": by_day_ci,
        "relief_dating": RELIEF_DATING,
        "km_curve": km_curve(kmf, horizon),
    }



def adverse_event_summary(events: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, Any]:
    """Adverse-event burden over follow-up, overall, by type and by drug."""
    n = len(outcomes)
    years = float(outcomes["followup_days"].sum()) / 365.25
    ae = events[events["event"] == "adverse_event"]
    by_type = ae["adverse_event"].value_counts()
    disc = discontinuations(events)
    by_drug: dict[str, dict[str, float]] = {}
    ae_d = ae["drug"].astype(str).value_counts()
    ser_d = ae[ae["rule"] == "X.serious_event"]["drug"].astype(str).value_counts()
    disc_d = disc["drug"].astype(str).value_counts()
    for d in sorted(set(ae_d.index) | set(disc_d.index)):
        by_drug[d] = {"events_per_100_patients": round(100.0 * int(ae_d.get(d, 0)) / n, 3),
                      "serious_per_100_patients": round(100.0 * int(ser_d.get(d, 0)) / n, 3),
                      "discontinuations_per_100_patients": round(100.0 * int(disc_d.get(d, 0)) / n, 3)}
    return {
        "per_patient_year": round(len(ae) / years, 4) if years > 0 else None,
        "patients_with_any": round(float((outcomes["n_adverse_events"] > 0).mean()), 4),
        "discontinuations_per_100_patients": round(100.0 * outcomes["n_discontinuations"].sum() / n, 3),
        "serious_per_100_patients": round(100.0 * outcomes["n_serious"].sum() / n, 3),
        "by_type": {str(k): round(100.0 * int(v) / n, 3) for k, v in by_type.items() if v > 0},
        "by_drug": by_drug,
    }


def pathway_summary(outcomes: pd.DataFrame) -> dict[str, Any]:
    """Share of patients who reached each state, and the state each was in at the end (drop-out included)."""
    reached = {s: round(float(outcomes[f"reached_{s}"].mean()), 4) for s in REACHED_STATES}
    final = outcomes["final_state"].value_counts(normalize=True)
    # discharged at the horizon while the re-referral interval runs (P9.re_referral_deferred): in primary care,
    # not on the clinic's list (the queue statistics do not count them either)
    return {"reached": reached, "final_state": {str(k): round(float(v), 4) for k, v in final.items()},
            "awaiting_re_referral_at_horizon": int(outcomes["awaiting_re_referral"].sum())}


def specialist_summary(outcomes: pd.DataFrame) -> dict[str, Any]:
    waits = outcomes["wait_days"].dropna()
    waiting = outcomes["referred"] & outcomes["wait_days"].isna() & outcomes["dropout_day"].isna()
    return {
        "referred": round(float(outcomes["referred"].mean()), 4),
        "wait_days_median": round(float(waits.median()), 2) if len(waits) else None,
        "seen": int(len(waits)),
        "still_waiting_at_horizon": int(waiting.sum()),
    }


def resource_summary(outcomes: pd.DataFrame) -> dict[str, Any]:
    """Mean resource use per patient over follow-up (the basis for costs)."""
    drug_cols = [c for c in outcomes.columns if c.startswith("drug_days_")]
    return {
        "visits_per_patient": round(float(outcomes["n_visits"].mean()), 3),
        "ecgs_per_patient": round(float(outcomes["n_ecgs"].mean()), 4),
        "consults_per_patient": round(float(outcomes["n_consults"].mean()), 4),
        "drug_days_per_patient": round(float(outcomes["drug_days"].mean()), 2),
        "drug_days_by_drug": {c[len("drug_days_"):]: round(float(outcomes[c].mean()), 2) for c in drug_cols
                              if outcomes[c].sum() > 0},
    }


def summarize(events: pd.DataFrame, outcomes: pd.DataFrame, horizon: float | None = None) -> dict[str, Any]:
    """The metric blocks of ``summary.json`` for these patients, with ``not_estimable`` (metric -> reason).

    ``horizon``: the follow-up horizon in days (time points beyond it are null); by default the longest
    follow-up of these patients (open populations: from entry)."""
    if horizon is None:
        horizon = float(outcomes["followup_days"].max()) if len(outcomes) else 0.0
    reasons: dict[str, str] = {}
    pain = pain_by_day(events, outcomes, horizon=horizon)
    for d, v in pain.items():
        if v is None:
            reasons[f"pain.mean_nrs_by_day.{d}"] = (beyond_reason(d, horizon) if beyond_horizon(int(d), horizon)
                                                   else f"nobody in follow-up on day {d}")
    ae = adverse_event_summary(events, outcomes)
    if ae["per_patient_year"] is None:
        reasons["adverse_events.per_patient_year"] = "no follow-up time"
    specialist = specialist_summary(outcomes)
    if specialist["wait_days_median"] is None:
        reasons["specialist.wait_days_median"] = "no patient was seen by a specialist"
    return {
        "time_to_relief": time_to_relief(outcomes, horizon, reasons),
        "pain": {"mean_nrs_by_day": pain},
        "adverse_events": ae,
        "pathway": pathway_summary(outcomes),
        "specialist": specialist,
        "resources": resource_summary(outcomes),
        # issue 10: relief held, relapses, regimens, persistence (simulator.analysis.persistence)
        "maintenance": (maint := maintenance_summary(events, outcomes, horizon)),
        "not_estimable": dict(sorted({**reasons, **maintenance_reasons(maint, horizon)}.items())),
    }


METRIC_BLOCKS: tuple[str, ...] = ("time_to_relief", "pain", "adverse_events", "pathway", "specialist", "resources",
                                  "population", "maintenance")
"""The summary blocks whose numeric leaves are metrics."""
NOT_METRICS: frozenset[str] = frozenset({"time_to_relief.rmst_tau_days", "specialist.steady_state.from_day",
                                         "population.warmup_days",
                                         "population.steady_state.time_to_relief.rmst_tau_days"})
"""Numeric leaves that are settings, not estimates."""
BY_DRUG_LISTS: frozenset[str] = frozenset({"maintenance.persistence.on_index_drug_at_month_by_drug"})
"""Lists of per-drug rows (``{"drug": name, <point>: value, ...}``) read as one metric per drug and point."""

# The day each null-able maintenance time point needs (simulator.analysis.persistence): month m is MONTH_DAYS[m].
_ONE_YEAR = ("sustained_relief", "persistence.discontinued_all_index_1y", "persistence.of_which_within_3_months",
             "persistence.switched_within_12_months_of_discontinuation")


def maintenance_reasons(maint: dict[str, Any], horizon: float) -> dict[str, str]:
    """``not_estimable`` reasons of the maintenance time points that are null because they lie beyond the
    horizon (relief on day d, sustained relief and one-year discontinuation at day 365, persistence at month m),
    so that comparisons say why and hide them as they hide relief by day d."""
    out: dict[str, str] = {}
    for key, v in flat_metrics({"maintenance": maint}).items():
        if v is not None:
            continue
        rest = key[len("maintenance."):]
        last = rest.rsplit(".", 1)[-1]
        if rest.startswith("relieved_on_day."):
            day: float | None = float(last)
        elif rest.startswith("persistence.on_index_drug_at_month"):
            day = MONTH_DAYS.get(last)
        elif rest in _ONE_YEAR:
            day = 365
        else:
            day = None
        if day is not None and beyond_horizon(day, horizon):
            out[key] = beyond_reason(int(day), horizon)
    return out


def flat_metrics(summary: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Flatten the numeric leaves of the metric blocks into dotted keys (for comparisons and CIs).

    A ``null`` leaf (median not reached, a day beyond the horizon) is kept as ``None``, so it is never
    silently dropped; lists (CIs, the KM curve) and strings are skipped. At the top level only
    :data:`METRIC_BLOCKS` are read."""
    out: dict[str, float | None] = {}
    for k, v in summary.items():
        if not prefix and k not in METRIC_BLOCKS:
            continue
        key = f"{prefix}{k}"
        if key in NOT_METRICS:
            continue
        if isinstance(v, dict):
            out.update(flat_metrics(v, key + "."))
        elif v is None:
            out[key] = None
        elif key in BY_DRUG_LISTS:  # one metric per drug and time point: <key>.<drug>.<month>
            for row in v:
                out.update({f"{key}.{row['drug']}.{m}": None if x is None else float(x)
                            for m, x in row.items() if m != "drug"})
        elif isinstance(v, bool) or isinstance(v, list | str):
            continue
        elif isinstance(v, int | float):
            out[key] = float(v)
    return out
