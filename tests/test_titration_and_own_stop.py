"""Two clinical faults of the last review, on simulated trajectories (read here with a small reader of the event
log written for this test: not the engine's flags, not the oracle's code).

* P8.titrate_to_response (S000, S004 "smallest effective dose"): every rise of a strong-opioid dose follows an
  evaluation of the response on that drug, without relief, since its previous dose (review: 111 of 271 morphine
  rises of guideline 2,000 seed 7 had none; the step after each interim evaluation went unjudged).
* P4.reoffer_own_stop: a relieved patient's own stop decides nothing by itself; the next visit measures his pain
  (review: 216 own stops in relief of guideline 2,000 seed 7 were moved on at the stop: next drug, tramadol,
  referral).
"""

from __future__ import annotations

import functools

import pandas as pd

from simulator.analysis.runner import simulate
from simulator.scenario import load_scenario

STRONG = ("morphine",)
DECISIONS = ("transition", "drug_start", "referral_queued")
PAIN_MEASURED = ("evaluation", "maintenance_visit")


@functools.cache
def _events(scenario: str, patients: int, seed: int) -> pd.DataFrame:
    ev = simulate(load_scenario(scenario), patients=patients, seed=seed).events
    return ev.astype({c: object for c in ("event", "drug", "rule", "state", "outcome")})


def _rises_without_evaluation(ev: pd.DataFrame) -> tuple[int, list[tuple[int, float]]]:
    """(strong-opioid rises, those with no P8.titrate_to_response evaluation of the drug without relief since the
    drug's previous dose)."""
    n, missing = 0, []
    for pid, g in ev[ev["drug"].isin(STRONG)].groupby("patient", sort=False):
        dose, asked = None, False
        for r in g.itertuples(index=False):
            if r.event == "drug_start":
                dose, asked = r.dose, False
            elif r.event == "evaluation" and r.rule == "P8.titrate_to_response" and r.outcome in ("partial", "none"):
                asked = True
            elif r.event == "dose_change" and dose is not None:
                if r.dose > dose:
                    n += 1
                    if not asked:
                        missing.append((int(pid), float(r.day)))
                    asked = False
                dose = r.dose
            elif r.event == "drug_stop":
                dose = None
    return n, missing


def test_every_strong_opioid_rise_follows_an_evaluation_of_its_response() -> None:
    """Protects P8.titrate_to_response where strong opioids are frequent (no tramadol: morphine follows the
    failed combination) and in the guideline: no titration step by schedule alone (fails on the engine before:
    the step after each interim evaluation, and steps reached while the regimen ran on, were given unjudged)."""
    for scenario, patients in (("no-tramadol", 700), ("guideline", 1200)):
        n, missing = _rises_without_evaluation(_events(scenario, patients, 7))
        assert n > 30, (scenario, n)
        assert not missing, (scenario, len(missing), n, missing[:5])


def test_a_relieved_patients_own_stop_decides_nothing_until_a_visit() -> None:
    """Protects P4.reoffer_own_stop / P4.relapse: after the patient's own stop of a drug while relieved, the first
    decision (transition, drug start, referral) comes only after a visit that measured his pain; some patients
    stay relieved off the drug at that visit, and the others relapse there (fails on the engine before: the own
    stop of the last drug running was decided on at once)."""
    ev = _events("guideline", 1200, 7)
    decided_at_stop, after_visit, relieved_off = [], 0, 0
    for pid, g in ev.groupby("patient", sort=False):
        stop = None
        for r in g.itertuples(index=False):
            if r.event in ("taper_start", "drug_stop") and r.rule == "X.patient_stop" and r.state == "relieved":
                stop = stop if stop is not None else (float(r.day), None)
            elif stop is not None and r.event in PAIN_MEASURED:
                if stop[1] is None and r.outcome == "relief" and pd.isna(r.drug):
                    relieved_off += 1  # the first visit after the stop: relief held with no drug running
                stop = (stop[0], r.outcome)
            elif stop is not None and r.event in DECISIONS:
                if stop[1] is None:
                    decided_at_stop.append((int(pid), stop[0], r.event, r.rule))
                else:
                    after_visit += 1
                stop = None
            elif r.event == "dropout":
                stop = None
    assert not decided_at_stop, (len(decided_at_stop), decided_at_stop[:5])
    assert after_visit > 30 and relieved_off > 5, (after_visit, relieved_off)
