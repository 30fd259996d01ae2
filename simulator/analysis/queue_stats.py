"""Queue statistics of the pain clinic, the way a capacity planner computes them.

Everything starts from **queue episodes** (:func:`episodes`): one row per referral with the day the patient
joined the queue, the day the episode ended and how it ended:

* ``seen``: the consult started (the wait is observed);
* ``left``: the patient left the queue before a consult (drop-out, loss to follow-up or death, or relieved
  while waiting, ``queue_left``): a *competing exit*, never counted as waiting after that day;
* ``waiting``: still in the queue at the horizon: the wait is *censored* there.

From episodes:

* waits by Kaplan-Meier (consult = event; left and waiting = censored), i.e. the wait a patient would have
  if they stayed in the queue, with its median, 90th centile and 95% CI (``lifelines``);
* the cumulative incidence of a consult and of leaving by day d of the wait (Aalen-Johansen, exact for
  ties: the share of referred patients actually seen within d days, which KM overstates when many leave);
* queue length over time = joined - seen - left (a step function), its time-weighted mean over a window,
  the backlog at the horizon, and utilisation = consults started / consults the clinic could start
  (:meth:`simulator.engine.clinic.ClinicConfig.offered`);
* the same by entry period (when the referral was made), and for the steady state (a window after warm-up).

Nothing here reads the engine: the event log's ``referral_queued``, ``consult`` (with ``wait_days``),
``dropout`` and ``queue_left`` rows are all it needs, so the M/M/c cross-check can feed it the clinic's own records.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..engine.clinic import ClinicConfig

WAIT_DAYS = (30, 91, 182, 365)
"""Days of waiting at which the share seen and the share who left are reported."""

KEY = ["replication", "patient"]


def episodes(events: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """One row per referral: replication, patient, queued (day), end (day), status ('seen', 'left',
    'waiting'), wait (end - queued, days). A patient who drops out after the consult is 'seen'. A patient may
    be referred again after leaving the queue relieved (``queue_left``, P9.relieved_while_waiting): each
    referral is its own episode, ended by the first consult, drop-out or ``queue_left`` on or after it."""
    ev = events["event"]
    queued = events.loc[ev == "referral_queued", [*KEY, "day"]]
    if queued.empty:
        return pd.DataFrame({"replication": pd.Series(dtype=int), "patient": pd.Series(dtype=int),
                             "queued": [], "end": [], "status": pd.Series(dtype=object), "wait": []})
    seen = events["wait_days"].notna()
    exits = events.loc[seen | ev.isin(("dropout", "queue_left")), [*KEY, "day"]].copy()
    exits["how"] = np.where(seen[exits.index], "seen", "left")
    exits = exits.rename(columns={"day": "end"}).sort_values("end", kind="stable")
    q = queued.rename(columns={"day": "queued"}).sort_values("queued", kind="stable")
    ep = pd.merge_asof(q, exits, left_on="queued", right_on="end", by=KEY, direction="forward")
    status = ep["how"].fillna("waiting").astype(object).to_numpy()
    end = np.where(status == "waiting", float(horizon), ep["end"].to_numpy(float))
    out = pd.DataFrame({"replication": ep["replication"].to_numpy(), "patient": ep["patient"].to_numpy(),
                        "queued": ep["queued"].to_numpy(float), "end": end.astype(float), "status": status})
    out = out.sort_values([*KEY, "queued"], kind="stable").reset_index(drop=True)
    out["wait"] = out["end"] - out["queued"]
    return out


# ------------------------------------------------------------------------------------------------
# Waits: Kaplan-Meier and competing risks
# ------------------------------------------------------------------------------------------------


def _r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def wait_km(ep: pd.DataFrame) -> dict[str, Any]:
    """Kaplan-Meier waits (consult = event; left and still waiting = censored): median with 95% CI, 90th
    centile, in days. None when not reached."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times, qth_survival_times

    if ep.empty:
        return {"median": None, "median_ci95": [None, None], "p90": None}
    kmf = KaplanMeierFitter().fit(ep["wait"].to_numpy(float), event_observed=(ep["status"] == "seen").to_numpy())
    ci = median_survival_times(kmf.confidence_interval_)
    lo, hi = (float(ci.iloc[0, 0]), float(ci.iloc[0, 1])) if len(ci) else (math.nan, math.nan)
    p90 = float(np.asarray(qth_survival_times(0.1, kmf.survival_function_)).ravel()[0])
    return {"median": _r(kmf.median_survival_time_), "median_ci95": [_r(lo), _r(hi)], "p90": _r(p90)}


def cumulative_incidence(ep: pd.DataFrame, days: tuple[float, ...] = WAIT_DAYS) -> dict[str, dict[str, float]]:
    """Aalen-Johansen cumulative incidence of 'seen' and of 'left' by each day of waiting.

    With S(t-) the Kaplan-Meier probability of still being in the queue just before t (any exit), n(t) at
    risk and d_k(t) exits of kind k at t: CIF_k(d) = sum over t <= d of S(t-) d_k(t) / n(t). Ties are
    handled exactly (no jitter). Censoring: still waiting at the horizon.
    """
    if ep.empty:
        return {"seen_by_day": {}, "left_by_day": {}}
    t = ep["wait"].to_numpy(float)
    st = ep["status"].to_numpy()
    order = np.argsort(t, kind="stable")
    t, st = t[order], st[order]
    times, first = np.unique(t, return_index=True)
    n_at = len(t) - first
    seen = np.add.reduceat((st == "seen").astype(float), first)
    left = np.add.reduceat((st == "left").astype(float), first)
    surv_before = np.concatenate([[1.0], np.cumprod(1.0 - (seen + left) / n_at)[:-1]])
    cif_seen = np.cumsum(surv_before * seen / n_at)
    cif_left = np.cumsum(surv_before * left / n_at)

    def at(cif: np.ndarray, d: float) -> float:
        k = np.searchsorted(times, d, side="right") - 1
        return float(cif[k]) if k >= 0 else 0.0

    return {"seen_by_day": {str(d): round(at(cif_seen, d), 4) for d in days},
            "left_by_day": {str(d): round(at(cif_left, d), 4) for d in days}}


# ------------------------------------------------------------------------------------------------
# Queue length, utilisation
# ------------------------------------------------------------------------------------------------


def queue_length(ep: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Patients in the queue on each grid day (joined by then, not yet seen nor left), summed over the
    replications in ``ep`` (divide by their number for a mean)."""
    q = np.sort(ep["queued"].to_numpy(float))
    ends = np.sort(ep.loc[ep["status"] != "waiting", "end"].to_numpy(float))
    return np.searchsorted(q, grid, side="right") - np.searchsorted(ends, grid, side="right")


def time_in_queue(ep: pd.DataFrame, t0: float, t1: float) -> float:
    """Patient-days spent in the queue within [t0, t1] (the integral of the queue length)."""
    lo = np.maximum(ep["queued"].to_numpy(float), t0)
    hi = np.minimum(ep["end"].to_numpy(float), t1)
    return float(np.clip(hi - lo, 0.0, None).sum())


def mean_queue_length(ep: pd.DataFrame, t0: float, t1: float, replications: int = 1) -> float:
    """Time-weighted mean queue length over [t0, t1], averaged over ``replications``."""
    if t1 <= t0:
        return math.nan
    return time_in_queue(ep, t0, t1) / (t1 - t0) / replications


def utilisation(ep: pd.DataFrame, clinic: ClinicConfig, t0: float, t1: float, replications: int = 1) -> float:
    """Consults started in [t0, t1) divided by the consults the clinic could start in that window."""
    offered = clinic.offered(t0, t1) * replications
    if offered <= 0:
        return math.nan
    seen = ep[(ep["status"] == "seen") & (ep["end"] >= t0) & (ep["end"] < t1)]
    return len(seen) / offered


def waits_by_period(ep: pd.DataFrame, period_days: float, horizon: float, replications: int = 1) -> list[dict]:
    """Per period of referral (day the patient joined the queue): referrals, seen, left, still waiting
    at the horizon, and the KM median wait (days)."""
    rows = []
    n_periods = max(1, round(horizon / period_days))
    k = np.minimum((ep["queued"].to_numpy(float) // period_days).astype(int), n_periods - 1)
    for j in range(n_periods):
        sub = ep[k == j]
        counts = sub["status"].value_counts()
        rows.append({"from_day": round(j * period_days, 1), "to_day": round(min((j + 1) * period_days, horizon), 1),
                     "referred": round(len(sub) / replications, 2),
                     "seen": round(int(counts.get("seen", 0)) / replications, 2),
                     "left": round(int(counts.get("left", 0)) / replications, 2),
                     "waiting_at_horizon": round(int(counts.get("waiting", 0)) / replications, 2),
                     "wait_days_median": wait_km(sub)["median"]})
    return rows


# ------------------------------------------------------------------------------------------------
# The summary block
# ------------------------------------------------------------------------------------------------


def _bridged(events: pd.DataFrame) -> int:
    """Patients given tramadol as a bridge while queued (``drug_start`` rule P9.tramadol_bridge)."""
    if "rule" not in events:  # a bare queue record (the M/M/c cross-check): no drugs
        return 0
    rows = events[(events["event"] == "drug_start") & (events["rule"] == "P9.tramadol_bridge")]
    return len(rows[KEY].drop_duplicates())


def clinic_summary(events: pd.DataFrame, *, horizon: float, clinic: ClinicConfig, patients: float,
                   replications: int, warmup: float = 0.0, per: float = 1000.0, per_label: str = "1000_patients",
                   period_days: float = 91.0, base: float | None = None) -> dict[str, Any]:
    """The ``specialist`` block of summary.json.

    ``patients``: patients simulated, over all replications (the base of ``referred``). ``base``: the base
    of the per-``per`` figures, per replication (closed: cohort size, the default; open: the population
    served). ``warmup``: referrals before this day are left out of the steady-state figures
    (``steady_state``); the top-level figures cover the whole run. Waits are in days; shares in [0, 1].
    """
    ep = episodes(events, horizon)
    reps = max(replications, 1)
    n_ref = len(ep[KEY].drop_duplicates())  # patients (one may be referred again after leaving relieved)
    counts = ep["status"].value_counts() if n_ref else pd.Series(dtype=int)
    km = wait_km(ep)
    base = patients / reps if base is None else base
    scale = per / base if base > 0 else math.nan
    out: dict[str, Any] = {
        "referred": round(n_ref / patients, 4) if patients > 0 else None,
        "wait_days_median": km["median"],
        "wait_days_median_ci95": km["median_ci95"],
        "wait_days_p90": km["p90"],
        "seen": int(counts.get("seen", 0)),
        "left_queue": int(counts.get("left", 0)),
        "left_queue_relieved": int((events["event"] == "queue_left").sum()),
        "tramadol_bridge": round(_bridged(events) / patients, 4) if patients > 0 else None,
        "still_waiting_at_horizon": int(counts.get("waiting", 0)),
        **cumulative_incidence(ep),
        f"backlog_at_horizon_per_{per_label}": _r(counts.get("waiting", 0) / reps * scale, 3),
        f"mean_queue_length_per_{per_label}": _r(mean_queue_length(ep, 0.0, horizon, reps) * scale, 3),
        "utilisation": _r(utilisation(ep, clinic, 0.0, horizon, reps), 4),
        "consults_per_week": _r(clinic.rate_per_week(0.0), 3),
        "by_referral_period": waits_by_period(ep, period_days, horizon, reps),
    }
    if warmup > 0:
        steady = ep[ep["queued"] >= warmup]
        km_s = wait_km(steady)
        out["steady_state"] = {
            "from_day": warmup,
            "wait_days_median": km_s["median"],
            "wait_days_median_ci95": km_s["median_ci95"],
            "wait_days_p90": km_s["p90"],
            **cumulative_incidence(steady),
            f"mean_queue_length_per_{per_label}": _r(mean_queue_length(ep, warmup, horizon, reps) * scale, 3),
            "utilisation": _r(utilisation(ep, clinic, warmup, horizon, reps), 4),
            f"referrals_per_week_per_{per_label}": _r(len(steady) / reps / ((horizon - warmup) / 7.0) * scale, 4),
        }
    return out
