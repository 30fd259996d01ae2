"""Care after a consult that relieves (issue 10 items 1 and 3).

Protects: relief from the specialist (an intervention's success, specialist-led drug management) is not
absorbing: maintenance visits follow at the policy's interval, relief can be lost (P4.relapse, back to the
pathway's remaining options) and patients can be lost to follow-up, as after relief from primary-care drugs;
and specialist drug management relieves only while the managed regimen still runs (no drug of it stopped
between the consult's outcome and the relief). Read from simulated event logs over several seeds; the
second property failed on guideline patient 248 at seed 7 before the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.analysis.runner import simulate
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
_RUNS: dict[int, tuple] = {}


def _run(seed: int):
    """Early referral (many consults), 500 patients, one replication; cached per seed."""
    if seed not in _RUNS:
        sc = load_scenario(ROOT / "scenarios" / "early-referral.yaml")
        res = simulate(sc, patients=500, replications=1, seed=seed)
        _RUNS[seed] = (res.events, sc.policy, float(sc.horizon_days))
    return _RUNS[seed]


def _specialist_reliefs(ev: pd.DataFrame) -> pd.DataFrame:
    return ev[(ev["event"] == "transition") & (ev["state"] == "relieved")
              & (ev["rule"].astype(str) == "P9.specialist_consult")]


def followed_up(ev: pd.DataFrame, interval: float, horizon: float) -> list[int]:
    """Patients relieved by the specialist with no maintenance visit, relapse or drop-out within ``interval``
    days of the relief (the horizon coming first excuses)."""
    bad = []
    for r in _specialist_reliefs(ev).itertuples():
        after = ev[(ev["patient"] == r.patient) & (ev["day"] > r.day - 1e-9) & (ev.index > r.Index)]
        nxt = after[after["event"].isin(["maintenance_visit", "dropout"])
                    | ((after["event"] == "transition") & (after["rule"].astype(str) == "P4.relapse"))]
        first = float(nxt["day"].min()) if len(nxt) else float("inf")
        if first > r.day + interval + 2e-3 and r.day + interval < horizon:
            bad.append(int(r.patient))
    return bad


def managed_regimen_stopped(ev: pd.DataFrame) -> list[int]:
    """Patients whose relief after specialist drug management (consult outcome conservative_relief, relief
    dated later) came although a drug running at the consult's outcome stopped (or began its taper) first."""
    bad = []
    for r in _specialist_reliefs(ev).itertuples():
        pe = ev[ev["patient"] == r.patient]
        cons = pe[(pe["event"] == "consult") & pe["consult_outcome"].notna() & (pe.index < r.Index)]
        if cons.empty or str(cons["consult_outcome"].iloc[-1]) != "conservative_relief":
            continue
        c_idx = cons.index[-1]
        if float(cons["day"].iloc[-1]) >= r.day - 1e-9:
            continue  # relief confirmed at the consult (keep_appointment)
        running: set[str] = set()
        for q in pe[pe.index < c_idx].itertuples():
            if q.event == "drug_start":
                running.add(str(q.drug))
            elif q.event in ("drug_stop", "taper_start"):
                running.discard(str(q.drug))
        between = pe[(pe.index > c_idx) & (pe.index < r.Index) & pe["event"].isin(["drug_stop", "taper_start"])]
        if running & set(between["drug"].astype(str)):
            bad.append(int(r.patient))
    return bad


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_specialist_relief_is_followed_up(seed: int):
    ev, pol, horizon = _run(seed)
    reliefs = _specialist_reliefs(ev)
    assert followed_up(ev, pol.maintenance.visit_interval_days, horizon) == []
    if len(reliefs) >= 5:  # the check can fail: some of them are seen at a maintenance visit
        seen = ev[(ev["event"] == "maintenance_visit") & ev["patient"].isin(reliefs["patient"])
                  & ev["pain_nrs"].isna()]
        assert len(seen) > 0


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_drug_management_relief_needs_the_managed_regimen(seed: int):
    ev, _, _ = _run(seed)
    assert managed_regimen_stopped(ev) == []


@pytest.mark.slow
def test_guideline_patient_248_seed_7():
    """The reviewer's case: nortriptyline stopped by the patient 56 days after a conservative_relief consult;
    relief was still dated 34 days later. Now the plan ends without relief and the pathway goes on."""
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    ev = simulate(sc, patients=2000, replications=1, seed=7).events
    assert managed_regimen_stopped(ev) == []
    assert followed_up(ev, sc.policy.maintenance.visit_interval_days, 730.0) == []
    p = ev[ev["patient"] == 248]
    assert not ((p["event"] == "transition") & (p["rule"].astype(str) == "P9.specialist_consult")
                & (p["state"] == "relieved")).any()


def test_helpers_flag_the_defects():
    """The two helpers flag a hand-made log of each defect (so the properties above can fail)."""
    rows = [
        (1, 0.0, "drug_start", "first_line", "pregabalin", None, None),
        (1, 100.0, "consult", "specialist_care", None, "conservative_relief", "P9.specialist_consult"),
        (1, 120.0, "drug_stop", "specialist_care", "pregabalin", None, "X.patient_stop"),
        (1, 190.0, "transition", "relieved", None, None, "P9.specialist_consult"),
    ]
    ev = pd.DataFrame(rows, columns=["patient", "day", "event", "state", "drug", "consult_outcome", "rule"])
    ev["pain_nrs"] = None
    assert managed_regimen_stopped(ev) == [1]
    assert followed_up(ev, 91, 730.0) == [1]
