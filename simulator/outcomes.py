"""From the event log to per-patient outcomes and the cohort summary (``summary.json``).

The summary schema is documented in the README ("summary.json") and is stable: keys are only ever
added. Time-to-relief is a Kaplan-Meier estimate (``lifelines``), censored at drop-out and at the
horizon; relief is the policy's definition applied at an evaluation visit (or a specialist outcome).
Proportions are fractions in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .clinical import ModelTables
from .engine import (
    CHECKS,
    COLUMNS,
    CONSULT_OUTCOMES,
    E_AE,
    E_CHECK,
    E_CONSULT,
    E_EVAL,
    E_MAINT,
    E_STOP,
    E_TAPER,
    E_TRANSITION,
    EVENTS,
    rule_codes,
)
from .pathway import OUTCOMES, STATES, TRIGGERS
from .persistence import maintenance_summary

REACHED_STATES = ("first_line", "add_on", "switch", "tramadol", "strong_opioid", "specialist_referral")
RELIEF_DAYS = (84, 182, 365)
PAIN_DAYS = (0, 42, 84, 182, 365)


def events_frame(raw: list[np.ndarray], tables: ModelTables) -> pd.DataFrame:
    """The long event table with readable categorical columns, one frame for all replications."""
    parts = []
    for rep, arr in enumerate(raw):
        df = pd.DataFrame(arr, columns=list(COLUMNS))
        df.insert(0, "replication", rep)
        parts.append(df)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["replication", *COLUMNS])
    # Chronological per patient (tapers and titration steps are logged ahead of or after their day; same-day
    # rows keep the engine's order; docs/event-log.md).
    df = df.sort_values(["replication", "patient", "day"], kind="stable").reset_index(drop=True)
    rule_ids, _ = rule_codes()
    ev = df["event"].to_numpy(dtype=np.int64)
    detail = df["detail"].to_numpy(dtype=np.int64)
    out = pd.DataFrame({
        "replication": df["replication"].astype(np.int32),
        "patient": df["patient"].astype(np.int32),
        "day": df["day"].round(3),
        "event": pd.Categorical.from_codes(ev, categories=list(EVENTS)),
        "state": pd.Categorical.from_codes(df["state"].to_numpy(dtype=np.int64), categories=list(STATES)),
        "drug": _codes(df["drug"], [d.name for d in tables.drugs]),
        "dose": df["dose"].where(df["dose"] >= 0),
        "pain_nrs": df["pain"].where(df["pain"] >= 0),
        "adverse_event": _codes(np.where(np.isin(ev, [E_AE, E_STOP, E_TAPER]), detail, -1), list(tables.ae_types)),
        "outcome": _codes(np.where(np.isin(ev, [E_EVAL, E_MAINT]), detail, -1), list(OUTCOMES)),
        "trigger": _codes(np.where(ev == E_TRANSITION, detail, -1), list(TRIGGERS)),
        "check": _codes(np.where(ev == E_CHECK, detail, -1), list(CHECKS)),
        "consult_outcome": _codes(np.where((ev == E_CONSULT) & (detail >= 0), detail, -1), list(CONSULT_OUTCOMES)),
        "rule": _codes(df["rule"], list(rule_ids)),
    })
    out["wait_days"] = np.where((ev == E_CONSULT) & (detail < 0), df["dose"], np.nan)
    out.loc[(ev == E_CONSULT) & (detail < 0), "dose"] = np.nan
    return out


def _codes(values: Any, categories: list[str]) -> pd.Categorical:
    codes = np.asarray(values, dtype=np.int64)
    return pd.Categorical.from_codes(np.where(codes >= 0, codes, -1), categories=categories)


def patient_outcomes(events: pd.DataFrame, n_patients: int, replications: int, horizon: float) -> pd.DataFrame:
    """One row per (replication, patient)."""
    idx = pd.MultiIndex.from_product([range(replications), range(n_patients)], names=["replication", "patient"])
    out = pd.DataFrame(index=idx)
    key = ["replication", "patient"]
    tr = events[events["event"] == "transition"]
    relief = tr[tr["state"] == "relieved"].groupby(key)["day"].min()
    drop = events[events["event"] == "dropout"].groupby(key)["day"].min()
    out["relieved"] = relief.reindex(idx).notna().to_numpy()
    out["relief_day"] = relief.reindex(idx).to_numpy()
    out["dropout_day"] = drop.reindex(idx).to_numpy()
    end = np.fmin(out["dropout_day"].fillna(horizon).to_numpy(), horizon)
    out["time_days"] = np.where(out["relieved"], out["relief_day"], end)
    out["followup_days"] = end
    last_state = tr.groupby(key)["state"].last()
    out["final_state"] = last_state.reindex(idx).astype(object).fillna("assessment").to_numpy()
    for s in REACHED_STATES:
        reached = tr[tr["state"] == s].groupby(key).size()
        out[f"reached_{s}"] = reached.reindex(idx).fillna(0).to_numpy() > 0
    ae = events[events["event"] == "adverse_event"]
    out["n_adverse_events"] = ae.groupby(key).size().reindex(idx).fillna(0).astype(int).to_numpy()
    serious = ae[ae["rule"] == "X.serious_event"]
    out["n_serious"] = serious.groupby(key).size().reindex(idx).fillna(0).astype(int).to_numpy()
    disc = events[(events["event"] == "drug_stop") & (events["rule"] == "P4.intolerance_switch")]
    out["n_discontinuations"] = disc.groupby(key).size().reindex(idx).fillna(0).astype(int).to_numpy()
    starts = events[events["event"] == "drug_start"]
    out["n_drugs"] = starts.groupby(key).size().reindex(idx).fillna(0).astype(int).to_numpy()
    queued = events[events["event"] == "referral_queued"].groupby(key)["day"].min()
    out["referred"] = queued.reindex(idx).notna().to_numpy()
    out["referral_day"] = queued.reindex(idx).to_numpy()
    waits = events["wait_days"].notna()
    out["wait_days"] = events[waits].groupby(key)["wait_days"].min().reindex(idx).to_numpy()
    base = events[events["event"] == "assessment"].groupby(key)["pain_nrs"].first()
    out["baseline_nrs"] = base.reindex(idx).to_numpy()
    return out.reset_index()


def pain_by_day(events: pd.DataFrame, outcomes: pd.DataFrame, days: tuple[int, ...] = PAIN_DAYS) -> dict[str, float | None]:
    """Mean observed NRS (last observation carried forward) among patients still in follow-up on each day."""
    obs = events[events["event"].isin(["assessment", "evaluation", "maintenance_visit"])][["replication", "patient", "day", "pain_nrs"]]
    obs = obs.sort_values(["replication", "patient", "day"], kind="stable")
    follow = outcomes.set_index(["replication", "patient"])["followup_days"]
    result: dict[str, float | None] = {}
    for d in days:
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


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 3)


def time_to_relief(outcomes: pd.DataFrame) -> dict[str, Any]:
    from lifelines.utils import median_survival_times

    kmf = kaplan_meier(outcomes["time_days"].to_numpy(float), outcomes["relieved"].to_numpy(bool))
    median = kmf.median_survival_time_
    ci = median_survival_times(kmf.confidence_interval_)
    lo, hi = (float(ci.iloc[0, 0]), float(ci.iloc[0, 1])) if len(ci) else (math.nan, math.nan)
    by_day = {str(d): round(1.0 - float(kmf.survival_function_at_times(d).iloc[0]), 4) for d in RELIEF_DAYS}
    return {"median_days": _finite(median), "median_ci95": [_finite(lo), _finite(hi)], "relieved_by_day": by_day}


def adverse_event_summary(events: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, Any]:
    n = len(outcomes)
    years = float(outcomes["followup_days"].sum()) / 365.25
    ae = events[events["event"] == "adverse_event"]
    by_type = ae["adverse_event"].value_counts()
    return {
        "per_patient_year": round(len(ae) / years, 4) if years > 0 else None,
        "patients_with_any": round(float((outcomes["n_adverse_events"] > 0).mean()), 4),
        "discontinuations_per_100_patients": round(100.0 * outcomes["n_discontinuations"].sum() / n, 3),
        "serious_per_100_patients": round(100.0 * outcomes["n_serious"].sum() / n, 3),
        "by_type": {str(k): round(100.0 * int(v) / n, 3) for k, v in by_type.items() if v > 0},
    }


def pathway_summary(outcomes: pd.DataFrame) -> dict[str, Any]:
    reached = {s: round(float(outcomes[f"reached_{s}"].mean()), 4) for s in REACHED_STATES}
    final = outcomes["final_state"].value_counts(normalize=True)
    return {"reached": reached, "final_state": {str(k): round(float(v), 4) for k, v in final.items()}}


def specialist_summary(outcomes: pd.DataFrame) -> dict[str, Any]:
    waits = outcomes["wait_days"].dropna()
    waiting = outcomes["referred"] & outcomes["wait_days"].isna()
    return {
        "referred": round(float(outcomes["referred"].mean()), 4),
        "wait_days_median": round(float(waits.median()), 2) if len(waits) else None,
        "seen": int(len(waits)),
        "still_waiting_at_horizon": int(waiting.sum()),
    }


def summarize(events: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, Any]:
    """The metric blocks of ``summary.json`` for these patients."""
    return {
        "time_to_relief": time_to_relief(outcomes),
        "pain": {"mean_nrs_by_day": pain_by_day(events, outcomes)},
        "adverse_events": adverse_event_summary(events, outcomes),
        "pathway": pathway_summary(outcomes),
        "specialist": specialist_summary(outcomes),
        # issue 10: relief held, relapses, regimens, persistence (simulator.persistence); the horizon is the
        # longest follow-up (every patient is followed to it unless all dropped out)
        "maintenance": maintenance_summary(events, outcomes, float(outcomes["followup_days"].max())
                                           if len(outcomes) else 0.0),
    }


def flat_metrics(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten the numeric leaves of a summary block into dotted keys (for comparisons and CIs)."""
    out: dict[str, float] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_metrics(v, key + "."))
        elif isinstance(v, list):
            continue
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int | float):
            out[key] = float(v)
    return out
