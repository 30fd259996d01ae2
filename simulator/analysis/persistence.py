"""The year after the first answer, from the event log: relief held, relapses, regimens and drug persistence.

The ``maintenance`` block of ``summary.json`` (documented in ``docs/summary-schema.md``; issue 10). It reads
only the event log (``simulator.analysis.outcomes.events_frame``) and the per-patient outcomes. Definitions:

* **relieved on day d**: the patient is in the ``relieved`` state on day d (relief reached and not lost
  since; drop-out ends it). Denominator: all patients (a patient out of care is not relieved).
* **sustained relief**: relieved on day 182 and on day 365, without a relapse or drop-out in between.
* **relapses**: ``transition`` rows with trigger ``relapse`` (P4.relapse), per patient.
* **regimen**: the set of drugs running between two changes (a start or a stop); its time is the days until
  the next change or the end of follow-up.
* **index drug**: the first drug started. **Persistence on the index drug at day d**: it is still running on
  day d (never stopped, for whatever reason: adverse event, decision, stop for other reasons, leaving care).
  A patient whose follow-up ends before day d for the horizon is left out of the day-d denominator.
* **discontinuation of all index treatment**: every drug started on the index day has stopped (claims
  definition, MarketScan 2016-2023, calibration.md 6); **switch after discontinuation**: another drug is
  started within 365 days after that stop.
* **drug changes before a stable regimen** (Hall 2006/2008, calibration.md 6): drug starts up to the first
  regimen (set of running drugs) unchanged for 182 days, among patients who reach one, counted after the
  first drug (Hall's targets, judged on the UK usual-care scenario) and from the first prescription
  (reported only); the 182-day window is a named assumption, Hall's definitions were not read
  (:func:`drug_changes`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MONTH_DAYS = {"3": 91, "6": 182, "12": 365}
STABLE_DAYS = 182  # assumption: a regimen held 6 months is "stable" (Hall's definition not read)
KEY = ["replication", "patient"]


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def drug_spells(events: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """One row per drug exposure: replication, patient, drug, start, stop (``inf`` while running at the end),
    stop_rule, ``order`` (0 = the patient's first start). The k-th start of a drug pairs with its k-th stop
    (log order, which is chronological for starts and stops)."""
    ev = events[events["event"].isin(["drug_start", "drug_stop"])][KEY + ["day", "event", "drug", "rule"]].copy()
    ev["drug"] = ev["drug"].astype(str)
    is_start = (ev["event"] == "drug_start").to_numpy()
    starts = ev[is_start].copy()
    stops = ev[~is_start].copy()
    starts["k"] = starts.groupby(KEY + ["drug"]).cumcount()
    stops["k"] = stops.groupby(KEY + ["drug"]).cumcount()
    starts["order"] = starts.groupby(KEY).cumcount()
    df = starts.merge(stops[KEY + ["drug", "k", "day", "rule"]], on=KEY + ["drug", "k"], how="left",
                      suffixes=("", "_stop"))
    out = pd.DataFrame({"replication": df["replication"], "patient": df["patient"], "drug": df["drug"],
                        "start": df["day"].astype(float), "stop": df["day_stop"].astype(float).fillna(math.inf),
                        "stop_rule": df["rule_stop"].astype(object).where(df["day_stop"].notna(), "").astype(str),
                        "order": df["order"].astype(int)})
    out = out.sort_values(KEY + ["order"], kind="stable").reset_index(drop=True)
    drugs = events["drug"].cat.categories if isinstance(events["drug"].dtype, pd.CategoricalDtype) else []
    out.attrs["drugs"] = [str(d) for d in drugs]
    return out


def _state_on(events: pd.DataFrame, day: float) -> pd.Series:
    """Each patient's pathway state on ``day`` (last transition on or before it), indexed by KEY."""
    tr = events[(events["event"].isin(["transition", "dropout"])) & (events["day"] <= day)]
    return tr.groupby(KEY, observed=True)["state"].last().astype(str)


def relief_held(events: pd.DataFrame, outcomes: pd.DataFrame, horizon: float) -> dict[str, Any]:
    """Relieved on days 182 and 365, sustained relief, relapses per patient."""
    idx = pd.MultiIndex.from_frame(outcomes[KEY])
    n = len(outcomes)
    out: dict[str, Any] = {"relieved_on_day": {}}
    on = {}
    for d in (182, 365):
        if horizon < d:
            out["relieved_on_day"][str(d)] = None
            continue
        s = _state_on(events, d).reindex(idx)
        on[d] = (s == "relieved").to_numpy()
        out["relieved_on_day"][str(d)] = _r(on[d].mean()) if n else None
    tr = events[events["event"] == "transition"]
    relapse = tr[tr["trigger"] == "relapse"]
    if 182 in on and 365 in on:
        lost = relapse[(relapse["day"] > 182) & (relapse["day"] <= 365)].groupby(KEY).size().reindex(idx).fillna(0)
        out["sustained_relief"] = _r((on[182] & on[365] & (lost.to_numpy() == 0)).mean()) if n else None
    else:
        out["sustained_relief"] = None
    per = relapse.groupby(KEY).size().reindex(idx).fillna(0).to_numpy()
    ever = outcomes["relieved"].to_numpy(bool)
    out["relapses_per_patient"] = _r(per.mean()) if n else None
    out["relapsed_among_relieved"] = _r((per[ever] > 0).mean()) if ever.any() else None
    visits = events[events["event"] == "maintenance_visit"]
    out["maintenance_visits_per_patient"] = _r(len(visits) / n) if n else None
    return out


def regimen_times(events: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, Any]:
    """Time on each regimen (days between changes of the set of running drugs) and regimens per patient."""
    ev = events[events["event"].isin(["drug_start", "drug_stop"])][KEY + ["day"]].drop_duplicates()
    if ev.empty:
        return {"regimens_per_patient": None, "mean_days_on_regimen": None, "median_days_on_regimen": None}
    ev = ev.sort_values(KEY + ["day"], kind="stable")
    ends = outcomes[KEY + ["followup_days"]]
    ev = ev.merge(ends, on=KEY, how="left")
    nxt = ev.groupby(KEY)["day"].shift(-1)
    span = nxt.fillna(ev["followup_days"]) - ev["day"]
    span = span[span > 0]
    counts = span.groupby([ev.loc[span.index, "replication"], ev.loc[span.index, "patient"]]).size()
    return {"regimens_per_patient": _r(float(counts.mean())) if len(counts) else None,
            "mean_days_on_regimen": _r(float(span.mean()), 2) if len(span) else None,
            "median_days_on_regimen": _r(float(span.median()), 2) if len(span) else None}


def index_persistence(spells: pd.DataFrame, outcomes: pd.DataFrame, horizon: float) -> dict[str, Any]:
    """Share of patients by index drug and persistence on it at 3, 6 and 12 months (overall and per drug)."""
    first = spells[spells["order"] == 0].set_index(KEY)
    follow = outcomes.set_index(KEY)["followup_days"].reindex(first.index).to_numpy()
    start = first["start"].to_numpy()
    stop = first["stop"].to_numpy()
    drug = first["drug"].astype(str).to_numpy()
    n = len(outcomes)
    share = pd.Series(drug).value_counts() / n if n else pd.Series(dtype=float)
    names = list(spells.attrs.get("drugs", [])) or sorted(set(drug))  # every catalogue drug: 0 when none

    def at(mask: np.ndarray) -> dict[str, float | None]:
        res: dict[str, float | None] = {}
        for label, d in MONTH_DAYS.items():
            # observed to day d: followed to it, or stopped/left before it (leaving care is a stop)
            seen = mask & ((follow >= start + d) | (stop <= start + d))
            if horizon < d or not seen.any():
                res[label] = None
                continue
            res[label] = _r(float((stop[seen] > start[seen] + d).mean()))
        return res

    # per index drug as a list (not metrics: present only for drugs some patient started with)
    return {"index_drug_share": {k: _r(float(share.get(k, 0.0))) for k in names},
            "on_index_drug_at_month": at(np.ones(len(drug), bool)),
            "on_index_drug_at_month_by_drug": [{"drug": d, **at(drug == d)} for d in sorted(set(drug))]}


def discontinuation(spells: pd.DataFrame, horizon: float) -> dict[str, Any]:
    """Claims-style discontinuation of all index treatment, when it happens, and switching after it."""
    if spells.empty or horizon < 365:
        return {"discontinued_all_index_1y": None, "of_which_within_3_months": None,
                "switched_within_12_months_of_discontinuation": None}
    first_day = spells.groupby(KEY)["start"].transform("min")
    index = spells[spells["start"] == first_day]
    end_all = index.groupby(KEY)["stop"].max()  # all index drugs stopped on this day (inf: still on one)
    start = index.groupby(KEY)["start"].min()
    rel = end_all - start
    disc = rel <= 365
    within3 = rel[disc] <= 91
    later = spells.loc[spells["start"] > first_day, KEY + ["start"]]
    stopped = end_all[disc].rename("stop_all").reset_index()
    pairs = stopped.merge(later, on=KEY, how="left")
    hit = (pairs["start"] >= pairs["stop_all"]) & (pairs["start"] <= pairs["stop_all"] + 365)
    switched = hit.groupby([pairs["replication"], pairs["patient"]]).any().to_numpy()
    return {"discontinued_all_index_1y": _r(float(disc.mean())),
            "of_which_within_3_months": _r(float(within3.mean())) if len(within3) else None,
            "switched_within_12_months_of_discontinuation": _r(float(np.mean(switched))) if len(switched) else None}


def drug_changes(spells: pd.DataFrame, horizon: float) -> dict[str, Any]:
    """Drug changes before a stable regimen (Hall 2006/2008, calibration.md 6).

    A **regimen** is the set of drugs running between two starts or stops; it is **stable** when it is not
    empty and nothing starts or stops for :data:`STABLE_DAYS` days (observed within follow-up: a regimen
    still running at the horizon must have begun ``STABLE_DAYS`` before it). Denominator: patients who reach
    a stable regimen (``reached_stable_regimen`` of all patients with a drug). Two counts of the drug starts
    before it: ``drug_changes_after_index_*`` (starts after the first drug: a patient stable on his first
    drug made 0 changes, a switch or an add-on adds 1; the plain reading of "changes", on which Hall's
    targets are judged, on the UK usual-care scenario) and ``drug_changes_before_stable_*`` (the first
    prescription counted too, so every patient gains exactly 1; reported, never judged: adopted once because
    it made the US claims scenario pass, docs/usual-care.md). Hall's definitions were not read (calibration.md
    6 gives the figures only)."""
    none = {"reached_stable_regimen": None, "drug_changes_before_stable_mean": None,
            "drug_changes_before_stable_median": None, "drug_changes_after_index_mean": None,
            "drug_changes_after_index_median": None}
    if spells.empty:
        return none
    starts = spells[KEY + ["start"]].rename(columns={"start": "day"}).assign(delta=1, new=1)
    stops = spells.loc[np.isfinite(spells["stop"]), KEY + ["stop"]].rename(columns={"stop": "day"})
    stops = stops.assign(delta=-1, new=0)
    ch = pd.concat([starts, stops], ignore_index=True)
    ch["day"] = ch["day"].round(3)  # the log's resolution: a same-day stop and start are one change day
    ch = ch.groupby(KEY + ["day"], as_index=False)[["delta", "new"]].sum().sort_values(KEY + ["day"], kind="stable")
    g = ch.groupby(KEY)
    ch["running"] = g["delta"].cumsum()
    ch["started"] = g["new"].cumsum()
    nxt = g["day"].shift(-1).fillna(horizon).clip(upper=horizon)
    ch["stable"] = (ch["running"] > 0) & (nxt - ch["day"] >= STABLE_DAYS - 1e-9)
    first = ch[ch["stable"]].groupby(KEY)["started"].first().to_numpy(dtype=float)
    n = spells[KEY].drop_duplicates().shape[0]
    if not len(first):
        return {**none, "reached_stable_regimen": _r(0.0)}
    return {"reached_stable_regimen": _r(len(first) / n),
            "drug_changes_before_stable_mean": _r(float(first.mean())),
            "drug_changes_before_stable_median": _r(float(np.median(first))),
            "drug_changes_after_index_mean": _r(float((first - 1).mean())),
            "drug_changes_after_index_median": _r(float(np.median(first - 1)))}


def maintenance_summary(events: pd.DataFrame, outcomes: pd.DataFrame, horizon: float) -> dict[str, Any]:
    """The ``maintenance`` block of ``summary.json``."""
    spells = drug_spells(events, horizon)
    out = relief_held(events, outcomes, horizon)
    out["regimens"] = regimen_times(events, outcomes)
    out["persistence"] = index_persistence(spells, outcomes, horizon)
    out["persistence"].update(discontinuation(spells, horizon))
    out["drug_changes"] = drug_changes(spells, horizon)
    return out
