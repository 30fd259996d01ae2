"""P9.re_referral_deferred: refractory again before referral.re_referral_after_days after the last consult, the
patient waits in primary care (discharged), not on the clinic's list, reviewed every referral.deferral_review_days;
relief at a review ends the wait, and still refractory when the interval ends he is referred again.

Protects the engine (simulator/engine/referral.py, process.py), the outcome tables (analysis: such a patient at the
horizon is not "waiting for specialist") and the oracle (check's re_referral_deferral, care.py, which reads only
the event log and the policy). Before this, main's engine put the patient in specialist_referral at once and let
him wait up to the interval unreviewed and off the list, mostly with no drug running (guideline, 3,000 patients,
seed 11: 42 of 48 deferred patients).
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from simulator.analysis.runner import simulate
from simulator.regression.invariants import check_events
from simulator.regression.invariants.care import care_checks
from simulator.scenario import load_scenario
from tests.test_re_referral_interval import EARLY

VISIT = 28  # a maintenance visit interval shorter than the 91-day re-referral interval: the reviews show


@pytest.fixture(scope="module")
def run():
    sc = load_scenario(EARLY)
    pol = sc.policy.model_dump()
    pol["maintenance"] = {**pol["maintenance"], "visit_interval_days": VISIT}
    sc = sc.with_overrides(policy=pol)
    return sc, simulate(sc, patients=700, seed=3, replications=1)


def _patients(events: pd.DataFrame):
    for key, g in events.groupby(["replication", "patient"], sort=False):
        yield key, list(zip(g["day"].astype(float), g["event"].astype(str), g["state"].astype(str),
                            g["rule"].astype(str), strict=True))


def test_a_referral_puts_the_patient_on_the_list_that_day(run):
    """Being in specialist_referral means being on the clinic's list: every transition to it is followed the same
    day by the patient's referral_queued row (main's engine: the state at once, the queue row up to 91 days later)."""
    _, res = run
    late = []
    for key, rows in _patients(res.events):
        for k, (day, kind, state, _) in enumerate(rows):
            if kind == "transition" and state == "specialist_referral":
                nxt = next((r for r in rows[k + 1:] if r[1] in ("referral_queued", "transition", "dropout")), None)
                if nxt is None or nxt[1] != "referral_queued" or nxt[0] > day + 1e-6:
                    late.append((key, day, nxt))
    assert late == []


def test_refractory_again_after_a_consult_he_is_reviewed_at_the_visit_interval(run):
    """From the decision that he is refractory again after a consult (the P9.re_referral referral or its
    deferral) until he is on the list, relieved, lost or the horizon, no stretch without a care contact (a review,
    a transition, the queue row) is longer than the maintenance visit interval; and there are deferrals."""
    _, res = run
    horizon = float(res.patients["followup_days"].max())
    gaps, deferred = [], 0
    for _, rows in _patients(res.events):
        last = None
        for day, kind, state, rule in rows:
            if last is not None:
                if kind in ("maintenance_visit", "transition", "referral_queued", "dropout"):
                    gaps.append(day - last)
                    last = day
                if kind in ("referral_queued", "dropout") or (kind == "transition" and state == "relieved"):
                    last = None
            elif kind == "transition" and rule in ("P9.re_referral", "P9.re_referral_deferred"):
                deferred += rule == "P9.re_referral_deferred"
                last = day
        if last is not None:
            gaps.append(horizon - last)
    assert deferred >= 5
    assert max(gaps) <= VISIT + 1e-6, sorted(gaps)[-5:]


def test_a_deferral_is_reviewed_monthly_with_the_default_intervals():
    """referral.deferral_review_days (default 28, a named assumption: uncontrolled pain, S004 "every 1-3 months"):
    with the default 91-day maintenance and re-referral intervals a deferred patient is reviewed every 28 days, not
    once at the deferral's end (v0.2 reviewed at the maintenance interval: one review per deferral)."""
    sc = load_scenario(EARLY)
    assert sc.policy.maintenance.visit_interval_days == 91 and sc.policy.referral.re_referral_after_days == 91
    ev = simulate(sc, patients=700, seed=3, replications=1).events
    gaps, deferrals, reviews = [], 0, 0
    for _, rows in _patients(ev):
        last = None
        for day, kind, state, rule in rows:
            if kind == "transition" and rule == "P9.re_referral_deferred" and state == "discharged":
                deferrals += 1
                last = day
            elif last is not None and kind == "maintenance_visit" and rule == "P9.re_referral_deferred":
                reviews += 1
                gaps.append(day - last)
                last = day
            elif last is not None and kind in ("transition", "dropout"):
                last = None
    assert deferrals >= 5
    assert max(gaps) <= 28 + 1e-6, sorted(gaps)[-5:]
    assert reviews >= 2 * deferrals  # the 91-day deferrals: reviews on days 28, 56, 84 and at the end


def test_deferred_patients_wait_in_primary_care_not_on_the_list(run):
    """The deferral is a discharge to primary care: its transition leads to discharged, no row of it is in
    specialist_referral, a patient still deferred at the horizon counts as awaiting re-referral (outcomes) and
    not as waiting for the specialist; check finds no violation and judges the deferred patients."""
    sc, res = run
    ev = res.events
    dt = ev[(ev["event"] == "transition") & (ev["rule"] == "P9.re_referral_deferred")]
    assert set(dt["state"].astype(str)) <= {"discharged", "relieved"} and "discharged" in set(dt["state"].astype(str))
    last = ev[ev["event"] == "transition"].groupby(["replication", "patient"]).tail(1)
    at_horizon = last[(last["rule"] == "P9.re_referral_deferred") & (last["state"] == "discharged")]
    report = check_events(ev, res.patients, sc.policy)
    inv = report.by_invariant()["re_referral_deferral"]
    assert inv.violations == [] and inv.applicable == dt[["replication", "patient"]].drop_duplicates().shape[0] > 0
    dropped = set(zip(*[ev[ev["event"] == "dropout"][c] for c in ("replication", "patient")], strict=True))
    at_horizon = at_horizon[[k not in dropped for k in zip(at_horizon["replication"], at_horizon["patient"],
                                                            strict=True)]]
    assert res.summary["pathway"]["awaiting_re_referral_at_horizon"] == len(at_horizon)


COLS = ["replication", "patient", "day", "event", "state", "drug", "rule", "consult_outcome", "wait_days", "outcome"]


def _log(*rows):
    base = [(0, 0, 10.0, "referral_queued", "specialist_referral", None, "P9.refractory_referral", None, None, None),
            (0, 0, 100.0, "consult", "specialist_referral", None, "P9.specialist_consult", None, 90.0, None),
            (0, 0, 107.0, "consult", "specialist_care", None, "P9.specialist_consult", "no_relief", None, None),
            (0, 0, 107.0, "transition", "switch", None, "P4.no_response_switch", None, None, None)]
    return pd.DataFrame(base + [(0, 0, *r) for r in rows], columns=COLS)


def _flags(events, horizon=400.0, visit=28):
    pol = SimpleNamespace(referral=SimpleNamespace(re_referral_after_days=91, max_consults=2,
                                                   deferral_review_days=visit),
                          maintenance=SimpleNamespace(visit_interval_days=91, opioid_visit_interval_days=56))
    patients = pd.DataFrame({"replication": [0], "patient": [0], "followup_days": [horizon]})
    res = next(r for r in care_checks(events, patients, pol, 1) if r.invariant.name == "re_referral_deferral")
    return [v.detail for v in res.violations]


DEFER = (150.0, "transition", "discharged", None, "P9.re_referral_deferred", None, None, None)


def _review(day, outcome="none"):
    return (float(day), "maintenance_visit", "discharged", None, "P9.re_referral_deferred", None, None, outcome)


REFER = [(191.0, "transition", "specialist_referral", None, "P9.re_referral", None, None, None),
         (191.0, "referral_queued", "specialist_referral", None, "P9.re_referral", None, None, None)]


def test_the_oracle_passes_a_clean_deferral():
    """Deferred on day 150 (consult of day 100: interval to day 191), reviewed on days 178 and 191, referred on 191."""
    assert _flags(_log(DEFER, _review(178), _review(191), *REFER)) == []
    assert _flags(_log(DEFER, _review(170, "relief"),
                       (170.0, "transition", "relieved", None, "P9.re_referral_deferred", None, None, None))) == []


@pytest.mark.parametrize("rows,words", [
    ([DEFER, _review(191), *REFER], "unreviewed in primary care from day 150 to day 191"),  # 41 days > 28
    ([DEFER[:2] + ("specialist_referral",) + DEFER[3:], _review(178), _review(191), *REFER], "deferred in "
     "specialist_referral"),  # main's engine: the deferral spent in specialist_referral
    ([DEFER, _review(178), (180.0, "referral_queued", "specialist_referral", None, "P9.re_referral", None, None,
                            None)], "on the clinic's list while the re-referral interval runs"),
    ([DEFER, _review(170), (170.0, "transition", "specialist_referral", None, "P9.re_referral", None, None, None)],
     "once the interval was over"),  # referred before the interval ends
    ([DEFER, _review(178), _review(191, "relief"), *REFER], "without a review finding no relief"),
    ([DEFER, _review(170), (170.0, "transition", "relieved", None, "P9.re_referral_deferred", None, None, None)],
     "relieved without a review finding relief"),
    ([DEFER, _review(178), _review(191), _review(219)], "although the re-referral interval ended on day 191"),
    ([(250.0, *DEFER[1:])], "no re-referral interval runs"),
])
def test_the_oracle_flags_a_violating_deferral(rows, words):
    """Hand-made violating trajectories: each is flagged with words naming what went wrong."""
    flags = _flags(_log(*rows), horizon=240.0)
    assert any(words in f for f in flags), flags
