"""From the event log to per-patient tables: the events frame, outcomes, follow-up, drug-days and resource use.

Owns :func:`events_frame` (the engine's flat buffer -> a typed frame), :func:`patient_outcomes` (one row per
patient: time to relief or censoring, states reached, adverse events, referral), :func:`followup_days`,
:func:`drug_days` and :func:`resource_use`. The cohort summary built from these tables (``summary.json``:
KM, RMST, pain, adverse events, pathway, specialist) is :mod:`simulator.analysis.summary`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..engine.simulation import (
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
from ..model.clinical_tables import ModelTables
from ..model.pathway import OUTCOMES, STATES, TRIGGERS

REACHED_STATES: tuple[str, ...] = tuple(s for s in STATES if s != "assessment")
"""Every pathway state a patient can reach after assessment (drop-out included)."""


def events_frame(raw: list[np.ndarray], tables: ModelTables) -> pd.DataFrame:
    """The long event table with readable categorical columns, one frame for all replications."""
    parts = []
    for rep, arr in enumerate(raw):
        withdrawn = arr[:, 2] < 0  # rows logged ahead and withdrawn (a taper reversed, P4.taper_reversed)
        if withdrawn.any():
            arr = arr[~withdrawn]
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


def patient_outcomes(events: pd.DataFrame, n_patients: int, replications: int, horizon: float,
                     drug_names: list[str] | None = None, dd: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (replication, patient): relief, follow-up, final state, states reached, adverse events,
    referral and resource use (visits, ECGs, consults, drug-days). ``dd``: the :func:`drug_days` table if
    already computed (it is computed here otherwise)."""
    idx = pd.MultiIndex.from_product([range(replications), range(n_patients)], names=["replication", "patient"])
    out = pd.DataFrame(index=idx)
    key = ["replication", "patient"]
    tr = events[events["event"] == "transition"]
    relief = tr[tr["state"] == "relieved"].groupby(key)["day"].min()
    drop = events[events["event"] == "dropout"].groupby(key)["day"].min()
    out["relieved"] = relief.reindex(idx).notna().to_numpy()
    out["relief_day"] = relief.reindex(idx).to_numpy()
    out["dropout_day"] = drop.reindex(idx).to_numpy()
    end = followup_days(events, n_patients, replications, horizon).to_numpy()
    out["time_days"] = np.where(out["relieved"], out["relief_day"], end)
    out["followup_days"] = end
    last_state = tr.groupby(key)["state"].last()
    final = last_state.reindex(idx).astype(object).fillna("assessment")
    out["final_state"] = np.where(out["dropout_day"].notna(), "dropped_out", final.to_numpy())
    # discharged to primary care while the re-referral interval runs (P9.re_referral_deferred) at the horizon:
    # not on the clinic's list, not "waiting for specialist"
    last_rule = tr.groupby(key)["rule"].last().reindex(idx).astype(object).to_numpy()
    out["awaiting_re_referral"] = (out["final_state"].to_numpy() == "discharged") & (last_rule == "P9.re_referral_deferred")
    for s in REACHED_STATES:
        if s == "dropped_out":
            out[f"reached_{s}"] = out["dropout_day"].notna().to_numpy()
            continue
        reached = tr[tr["state"] == s].groupby(key).size()
        out[f"reached_{s}"] = reached.reindex(idx).fillna(0).to_numpy() > 0
    ae = events[events["event"] == "adverse_event"]
    out["n_adverse_events"] = _count(ae, idx)
    out["n_serious"] = _count(ae[ae["rule"] == "X.serious_event"], idx)
    out["n_discontinuations"] = _count(discontinuations(events), idx)
    out["n_drugs"] = _count(events[events["event"] == "drug_start"], idx)
    queued = events[events["event"] == "referral_queued"].groupby(key)["day"].min()
    out["referred"] = queued.reindex(idx).notna().to_numpy()
    out["referral_day"] = queued.reindex(idx).to_numpy()
    waits = events["wait_days"].notna()
    # the first referral's wait, as referral_day (a patient referred again, P9.re_referral, has a later one too)
    out["wait_days"] = events[waits].groupby(key)["wait_days"].first().reindex(idx).to_numpy()
    # Resource use (the basis for costs): visits, ECGs, specialist consults, drug-days.
    out["n_visits"] = _count(events[events["event"].isin(["assessment", "evaluation"])], idx)
    out["n_ecgs"] = _count(events[(events["event"] == "safety_check") & (events["check"] == "ecg")], idx)
    out["n_consults"] = _count(events[(events["event"] == "consult") & events["consult_outcome"].notna()], idx)
    use = drug_days(events, out["followup_days"]) if dd is None else dd
    per_drug = use.groupby([*key, "drug"], observed=True)["days"].sum().unstack("drug") if len(use) else None
    names = drug_names if drug_names is not None else list(events["drug"].cat.categories)
    out["drug_days"] = 0.0
    for d in names:
        col = per_drug[d].reindex(idx).fillna(0.0).to_numpy() if per_drug is not None and d in per_drug else 0.0
        out[f"drug_days_{d}"] = np.round(col, 3)
        out["drug_days"] += out[f"drug_days_{d}"]
    out["drug_days"] = out["drug_days"].round(3)
    return out.reset_index()


def followup_days(events: pd.DataFrame, n_patients: int, replications: int, horizon: float) -> pd.Series:
    """Days of follow-up of each (replication, patient): to drop-out, or to the horizon."""
    idx = pd.MultiIndex.from_product([range(replications), range(n_patients)], names=["replication", "patient"])
    drop = events[events["event"] == "dropout"].groupby(["replication", "patient"])["day"].min()
    return pd.Series(np.fmin(drop.reindex(idx).fillna(horizon).to_numpy(), horizon), index=idx, name="followup_days")


def _count(rows: pd.DataFrame, idx: pd.MultiIndex) -> np.ndarray:
    return rows.groupby(["replication", "patient"]).size().reindex(idx).fillna(0).astype(int).to_numpy()


def drug_days(events: pd.DataFrame, followup_days: pd.Series) -> pd.DataFrame:
    """Days on each drug at each daily dose: one row per (replication, patient, drug, dose) with ``days``.

    An exposure runs from its ``drug_start`` through its ``dose_change`` steps to its ``drug_stop``, or to
    the end of follow-up (drop-out or horizon) when it was never stopped (e.g. maintenance after relief).
    ``followup_days`` is indexed by (replication, patient)."""
    cols = ["replication", "patient", "drug", "dose", "days"]
    rows = events[events["event"].isin(["drug_start", "dose_change", "drug_stop"])]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    code = {"drug_start": 0, "dose_change": 1, "drug_stop": 2}
    df = pd.DataFrame({"replication": rows["replication"].to_numpy(), "patient": rows["patient"].to_numpy(),
                       "drug": rows["drug"].astype(str).to_numpy(), "day": rows["day"].to_numpy(float),
                       "kind": rows["event"].astype(str).map(code).to_numpy(), "dose": rows["dose"].to_numpy(float)})
    df = df.sort_values(["replication", "patient", "drug", "day", "kind"], kind="stable").reset_index(drop=True)
    # Each start or dose step holds until the next row of the same exposure (a step or the stop), and the
    # last one, if never stopped, to the end of follow-up. A stop opens nothing.
    nxt = df.groupby(["replication", "patient", "drug"], sort=False)["day"].shift(-1)
    idx = pd.MultiIndex.from_arrays([df["replication"], df["patient"]])
    follow = followup_days.reindex(idx).to_numpy(float)
    end = np.where(nxt.notna(), nxt.to_numpy(float), follow)
    df["days"] = np.where(df["kind"] != 2, np.maximum(end - df["day"].to_numpy(float), 0.0), 0.0)
    out = df[df["days"] > 0].groupby(["replication", "patient", "drug", "dose"], sort=True)["days"].sum().round(3)
    return out.reset_index()[cols]


def resource_use(events: pd.DataFrame, patients: pd.DataFrame, dd: pd.DataFrame | None = None) -> pd.DataFrame:
    """The long resource-use table (``resource_use.parquet``): replication, patient, resource, drug, dose,
    quantity, unit. Resources: ``visit`` (assessment and evaluation visits), ``ecg``, ``specialist_consult``
    and ``drug`` (days at each daily dose of each drug; dose in the drug's catalogue unit). ``dd``: the
    :func:`drug_days` table if already computed."""
    key = ["replication", "patient"]
    parts = []
    for resource, col, unit in (("visit", "n_visits", "visits"), ("ecg", "n_ecgs", "ECGs"),
                                ("specialist_consult", "n_consults", "consults")):
        sub = patients.loc[patients[col] > 0, [*key, col]].rename(columns={col: "quantity"})
        parts.append(sub.assign(resource=resource, drug=None, dose=np.nan, unit=unit))
    if dd is None:
        dd = drug_days(events, patients.set_index(key)["followup_days"])
    parts.append(dd.rename(columns={"days": "quantity"}).assign(resource="drug", unit="drug-days"))
    out = pd.concat(parts, ignore_index=True)
    out["quantity"] = out["quantity"].astype(float)
    out = out[[*key, "resource", "drug", "dose", "quantity", "unit"]]
    return out.sort_values([*key, "resource", "drug", "dose"], kind="stable").reset_index(drop=True)


def discontinuations(events: pd.DataFrame) -> pd.DataFrame:
    """Rows of drugs stopped (at once or by starting a taper) because of an adverse event: intolerance or a
    serious event (docs/event-log.md)."""
    return events[events["event"].isin(["drug_stop", "taper_start"]) & events["adverse_event"].notna()]
