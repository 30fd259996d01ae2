"""Closed cohorts and open populations at run time: who enters when, the clinic each replication runs,
and outcomes measured from each patient's own entry day.

* :func:`replication_setup`: for one (scenario, replication), the number of patients, their entry days
  (None for a closed cohort: everyone on day 0) and the clinic's settings (capacity as a rate).
* :func:`relative_outcomes`: per-patient outcomes of an open population, with every time measured from the
  patient's entry (time to relief, follow-up, censoring at the horizon), so :mod:`simulator.analysis.outcomes`
  summarises them as it does a closed cohort.
* :func:`entry_cohort_summary`: outcomes by entry cohort (year of entry) and for the steady state (patients
  entering after the warm-up).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..engine.clinic import ClinicConfig
from ..inputs.errors import InputError
from ..population.arrivals import DAYS_PER_YEAR, entry_days
from ..scenario import Scenario
from .outcomes import patient_outcomes
from .summary import summarize

TIME_COLUMNS = ("relief_day", "dropout_day", "time_days", "followup_days", "referral_day")


def replication_setup(scenario: Scenario, replication: int, consult_days: float = 7.0
                      ) -> tuple[int, np.ndarray | None, ClinicConfig]:
    """(patients, entry days or None, clinic settings) of one replication."""
    pop = scenario.population
    if pop is None:
        clinic = scenario.specialist.config(patients=scenario.patients, service_days=consult_days)
        return scenario.patients, None, clinic
    days = entry_days(pop, scenario.seed, replication, float(scenario.horizon_days))
    if len(days) == 0:
        raise InputError(f"the population brings no patient into the run (replication {replication})",
                         file=scenario.source_path or None, field="population.incidence_per_100k",
                         fix="raise population.size, incidence_per_100k or prevalent, or lengthen horizon_days")
    clinic = scenario.specialist.config(population=pop.size, service_days=consult_days)
    return len(days), days, clinic


def relative_outcomes(events: pd.DataFrame, entries: list[np.ndarray], horizon: float
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-patient outcomes with times from entry, the events with ``day`` made relative to entry).

    ``entries[r]``: entry days of replication r's patients. A patient entering on day e and followed to
    the horizon H is censored at H - e.
    """
    parts = []
    ev_parts = []
    for r, entry in enumerate(entries):
        ev_r = events[events["replication"] == r]
        out = patient_outcomes(ev_r.assign(replication=0), len(entry), 1, horizon)
        out["replication"] = r
        e = entry[out["patient"].to_numpy()]
        for c in TIME_COLUMNS:
            if c in out:
                # Event days are logged to 3 decimals of the run's day; rounding the difference the same way
                # keeps a relief at the day-84 visit on day 84 (not 84.0004, which KM counts after day 84).
                out[c] = (out[c] - e).round(3)
        out.insert(2, "entry_day", e)
        parts.append(out)
        ev_parts.append(ev_r.assign(day=(ev_r["day"] - entry[ev_r["patient"].to_numpy()]).round(3)))
    return pd.concat(parts, ignore_index=True), pd.concat(ev_parts, ignore_index=True)


def entry_cohort_summary(events_rel: pd.DataFrame, outcomes: pd.DataFrame, warmup: float,
                         period_days: float = DAYS_PER_YEAR) -> dict[str, Any]:
    """Outcomes by entry cohort (``period_days`` long) and for patients entering after ``warmup``.

    Each cohort's time to relief is a Kaplan-Meier estimate censored at the horizon, so late cohorts,
    followed for less time, are not biased downwards (their later figures are simply less certain).
    """
    key = ["replication", "patient"]

    def block(mask: np.ndarray) -> dict[str, Any]:
        sub = outcomes[mask]
        ids = pd.MultiIndex.from_frame(sub[key])
        ev = events_rel[pd.MultiIndex.from_frame(events_rel[key]).isin(ids)]
        s = summarize(ev, sub)
        ttr = s["time_to_relief"]
        longest = float(sub["followup_days"].max()) if len(sub) else 0.0
        # Not estimable (rather than 0) for days beyond anyone's follow-up in this cohort.
        ttr["relieved_by_day"] = {d: (v if float(d) <= longest else None) for d, v in ttr["relieved_by_day"].items()}
        return {"patients": int(len(sub)), "time_to_relief": ttr,
                "referred": round(float(sub["referred"].mean()), 4) if len(sub) else None}

    entry = outcomes["entry_day"].to_numpy(float)
    cohorts = []
    k = (entry // period_days).astype(int)
    for j in sorted(set(k.tolist())):
        b = block(k == j)
        b = {"from_day": round(j * period_days, 1), "to_day": round((j + 1) * period_days, 1), **b}
        cohorts.append(b)
    steady = entry >= warmup
    return {"warmup_days": warmup, "by_entry_cohort": cohorts,
            "steady_state": block(steady) if steady.any() else None}
