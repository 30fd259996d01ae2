"""Issue 10: the year after the first answer (maintenance, relapse, opioid reassessment, persistence)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.analysis.realworld import run_usual_care
from simulator.analysis.runner import simulate
from simulator.model.policy import Policy
from simulator.regression.opioid_check import unreassessed_opioid_gaps
from simulator.scenario import load_scenario

OPIOID_POLICY = {"name": "opioid-trial", "declared_departures": ["early_strong_opioid"],
                 "strong_opioid": {"require_failed_classes": 0, "require_combination": False,
                                   "require_tramadol": False}}


@pytest.fixture(scope="module")
def guideline():
    sc = load_scenario("scenarios/guideline.yaml")
    return sc, simulate(sc, patients=1500, seed=3)


@pytest.fixture(scope="module")
def opioid_run():
    """Many patients reach a strong opioid early (declared departure), so its trial rule is exercised."""
    sc = load_scenario("scenarios/guideline.yaml")
    sc = sc.model_copy(update={"policy": Policy.model_validate(OPIOID_POLICY)})
    return sc, simulate(sc, patients=1500, seed=3)


def _strong_relieved(events: pd.DataFrame) -> pd.DataFrame:
    tr = events[(events["event"] == "transition") & (events["trigger"] == "relief")]
    starts = events[(events["event"] == "drug_start") & (events["drug"] == "morphine")]
    both = tr.merge(starts[["replication", "patient", "day"]], on=["replication", "patient"], suffixes=("", "_start"))
    return both[both["day"] > both["day_start"]]


def test_strong_opioid_reassessed_at_policy_interval(opioid_run):
    """Protects P8.reassessment (S004): a patient relieved on a strong opioid is seen every opioid interval."""
    sc, run = opioid_run
    ev = run.events
    interval = sc.policy.maintenance.opioid_visit_interval_days
    relieved = _strong_relieved(ev)
    assert len(relieved) > 20
    visits = ev[(ev["event"] == "maintenance_visit") & (ev["rule"] == "P8.reassessment")]
    assert len(visits) > 20
    for (_rep, pat), g in visits.groupby(["replication", "patient"]):
        days = sorted(g["day"])
        gaps = [b - a for a, b in zip(days, days[1:], strict=False)]
        assert all(gap <= interval + 1e-6 for gap in gaps), (pat, gaps)


def test_strong_opioid_stopped_when_response_is_lost(opioid_run):
    """Protects the trial rule: after a reassessment without relief (confirmed) the patient goes back to the
    strong-opioid state and the opioid does not continue: every morphine start up to that day has its stop
    (or taper start) by that day, and no strong opioid ever runs on unassessed."""
    sc, run = opioid_run
    ev = run.events
    relapses = ev[(ev["event"] == "transition") & (ev["trigger"] == "relapse") & (ev["state"] == "strong_opioid")]
    assert len(relapses) > 5
    mor = ev[ev["drug"] == "morphine"]
    starts = mor[mor["event"] == "drug_start"]
    ends = mor[(mor["event"] == "taper_start") | ((mor["event"] == "drug_stop") & (mor["rule"] != "P5.taper_complete"))]
    for _, r in relapses.iterrows():
        who = ["replication", "patient"]
        mine = (starts[who] == r[who].to_numpy()).all(axis=1)
        n_started = int((starts[mine]["day"] <= r["day"]).sum())
        done = (ends[who] == r[who].to_numpy()).all(axis=1)
        n_ended = int((ends[done]["day"] <= r["day"]).sum())
        assert n_started >= 1 and n_ended == n_started, (r["patient"], r["day"])
    assert unreassessed_opioid_gaps(ev, sc.policy, float(sc.horizon_days)) == []


def test_check_finds_an_unreassessed_opioid():
    """Protects the invariant's power: a strong opioid running 200 days without a visit is reported."""
    rows = [(0, 0, 0.0, "assessment", None), (0, 0, 10.0, "drug_start", "morphine"),
            (0, 0, 60.0, "evaluation", "morphine"), (0, 0, 260.0, "drug_stop", "morphine")]
    ev = pd.DataFrame(rows, columns=["replication", "patient", "day", "event", "drug"])
    gaps = unreassessed_opioid_gaps(ev, Policy(), 730.0)
    assert len(gaps) == 1 and gaps[0].from_day == 60.0 and gaps[0].to_day == 260.0
    ev.loc[3, "day"] = 100.0  # stopped within the trial period: no violation
    assert unreassessed_opioid_gaps(ev, Policy(), 730.0) == []


def test_relapse_returns_to_the_state_of_relief(guideline):
    """Protects P4.relapse: a relapse goes back to the treating state the patient was relieved in (or, relieved
    while queued, the state he was referred from)."""
    _, run = guideline
    tr = run.events[run.events["event"] == "transition"].sort_values(["replication", "patient", "day"],
                                                                     kind="stable")
    n = 0
    for _, g in tr.groupby(["replication", "patient"]):
        states, trig = list(g["state"].astype(str)), list(g["trigger"].astype(str))
        rules = list(g["rule"].astype(str))
        for k, t in enumerate(trig):
            if t == "relapse":
                # relieved while queued for the specialist (P9.relieved_while_waiting): back to the state the
                # patient was referred from; relieved after the consult (P9.specialist_consult: refer, consult,
                # relief): back to the state he was referred from too (the pathway's remaining options)
                # relieved at a review while the re-referral interval ran (P9.re_referral_deferred: discharged,
                # relief): back to the state he was refractory in
                before = {"P9.relieved_while_waiting": k - 3, "P9.specialist_consult": k - 4,
                          "P9.re_referral_deferred": k - 3}.get(rules[k - 1], k - 2)
                if states[before] == "discharged" and rules[before] == "P9.re_referral_deferred":
                    before -= 1  # referred once the re-referral interval ended: from the state before its deferral
                assert trig[k - 1] == "relief" and states[k] == states[before]
                n += 1
    assert n > 20


def test_persistence_not_flat_and_in_summary(guideline):
    """Protects the issue's finding: index-drug persistence falls between 3 and 12 months, and the new
    outcomes are in summary.json."""
    _, run = guideline
    m = run.summary["maintenance"]
    on = m["persistence"]["on_index_drug_at_month"]
    assert on["3"] > on["12"] + 0.03
    assert 0 < m["sustained_relief"] <= m["relieved_on_day"]["365"]
    assert m["relieved_on_day"]["365"] < run.summary["time_to_relief"]["relieved_by_day"]["365"]
    assert m["relapses_per_patient"] > 0
    json.dumps(run.summary)


@pytest.mark.slow
def test_usual_care_marketscan_targets():
    """Protects the usual-care calibration (MarketScan 2016-2023): every claims target within its tolerance
    (Hall 2006/2008's UK targets are judged on the UK scenario, tests/test_usual_care_uk.py)."""
    checks = run_usual_care("us_claims")
    failed = [c.as_dict() for c in checks if c.is_failure]
    assert not failed, failed


def test_check_catches_an_engine_that_skips_reassessment(monkeypatch):
    """Protects check's independence: an engine whose opioid reassessments come every 200 days (a broken
    maintenance interval slipped past validation) is caught by strong_opioid_reassessed, which shares no
    code with the engine."""
    import dataclasses

    import simulator.engine.simulation as engine
    from simulator.model.care import Maintenance
    from simulator.regression.invariants import check_run

    broken = Maintenance.model_construct(visit_interval_days=200, opioid_visit_interval_days=200,
                                         confirm_loss=True, relapse=True)
    init = engine.Simulation.__init__

    def patched(self, ctx, *a, **k):
        ctx = dataclasses.replace(ctx, policy=ctx.policy.model_copy(update={"maintenance": broken}))
        init(self, ctx, *a, **k)

    monkeypatch.setattr(engine.Simulation, "__init__", patched)
    sc = load_scenario("scenarios/guideline.yaml")
    sc = sc.model_copy(update={"policy": Policy.model_validate(OPIOID_POLICY)})
    report = check_run(simulate(sc, patients=800, seed=2))
    res = next(r for r in report.results if r.invariant.name == "strong_opioid_reassessed")
    assert res.applicable > 50 and len(res.violations) > 10


def _opioid_running_at(events: pd.DataFrame, trigger: str) -> list[tuple[int, int, str]]:
    """(replication, patient, drug) of every opioid still running just after ``trigger`` fires (same-day
    stops and taper starts count as stopped); read from the event log only."""
    opioids = ("tramadol", "morphine")
    ev = events[events["event"].isin(("transition", "drug_start", "drug_stop", "taper_start"))]
    fired = ev[(ev["event"] == "transition") & (ev["trigger"] == trigger)]
    out = []
    for (rep, pat), g in ev[ev["patient"].isin(fired["patient"])].groupby(["replication", "patient"]):
        at = g[(g["event"] == "transition") & (g["trigger"] == trigger)]
        if at.empty:
            continue
        day = float(at["day"].iloc[0])
        running: set[str] = set()
        for r in g[g["day"] <= day + 1e-9].sort_values("day", kind="stable").itertuples():
            if r.event == "drug_start" and r.drug in opioids:
                running.add(r.drug)
            elif r.event in ("drug_stop", "taper_start"):
                running.discard(r.drug)
        out += [(rep, pat, d) for d in sorted(running)]
    return out


def test_strong_opioid_reassessed_after_discharge_seed_13():
    """Protects P8.reassessment whatever the state (issue 10 criterion, found at seed 13): escalation-s002 at
    800 patients had morphine run 411 days unassessed (patient 9, days 318.9-730) because a failed strong
    opioid after a specialist consult led to a discharge on the current regimen. Now every strong-opioid
    stretch has its reassessment, and no opioid (tramadol or morphine) is still running on the day of a
    discharge (P8.stop_ineffective: discontinue if ineffective, S004)."""
    sc = load_scenario("scenarios/escalation-s002.yaml").with_overrides(patients=800, seed=13)
    ev = simulate(sc).events
    dis = ev[(ev["event"] == "transition") & (ev["trigger"] == "discharge")]
    mor = ev[(ev["event"] == "drug_start") & (ev["drug"] == "morphine")]
    assert len(set(dis["patient"]) & set(mor["patient"])) >= 8  # the path is exercised (fewer discharges since a
    # patient refractory again after a consult is referred again, P9.re_referral, and since a relieved patient's own
    # stop decides nothing until a visit, P4.reoffer_own_stop: 10 here)
    assert unreassessed_opioid_gaps(ev, sc.policy, float(sc.horizon_days)) == []
    assert _opioid_running_at(ev, "discharge") == []
    stops = ev[(ev["patient"] == 9) & (ev["drug"] == "morphine") & (ev["rule"] == "P8.stop_ineffective")]
    assert len(stops) == 1


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_strong_opioid_never_runs_unassessed_property(seed):
    """Property (P8.reassessment, S004): on any seed, no strong opioid runs longer than the trial period
    without a documented reassessment, and none outlives a discharge, in a scenario where many patients go
    through the specialist, a strong opioid and discharge (escalation-s002, 300 patients)."""
    sc = load_scenario("scenarios/escalation-s002.yaml").with_overrides(patients=300, seed=seed)
    ev = simulate(sc).events
    assert unreassessed_opioid_gaps(ev, sc.policy, float(sc.horizon_days)) == []
    assert _opioid_running_at(ev, "discharge") == []
