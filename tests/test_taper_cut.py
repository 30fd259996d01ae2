"""A taper cut short by loss to follow-up, and the dose a stop row names.

Protects simulator/engine/stops.py ``Stopping._drop_out`` (docs/event-log.md, "Stopping with a taper"): a taper
under way when the patient is lost to follow-up is cut that day by a ``drug_stop`` citing X.dropout that names
the step the patient was on, followed by the X.dropout ``dropout`` row, whatever he had decided before: a usual-care
patient who decided to leave after his own stop (X.left_treatment, completing his taper first) but is lost to
follow-up before the taper's end is a loss to follow-up, not an abrupt stop of his own. On main before the fix
the cut stop had no dose (NaN) in every scenario, and in usual care it cited X.left_treatment (``painpath run
scenarios/usual-care.yaml --patients 3000 --seed 11``, patient 836: tramadol tapering from day 15.999, cut on
day 20.859 citing X.left_treatment with dose NaN). usual-care at 400 patients, seed 3, has both cases.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from simulator import load_scenario, simulate
from simulator.regression.invariants import check_events

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def usual():
    sc = load_scenario(ROOT / "scenarios" / "usual-care.yaml")
    res = simulate(sc, patients=400, seed=3, replications=1)
    return sc, res


def _cuts(ev):
    """(patient, day, drug, rule, dose, the taper's current dose) of every stop of a drug whose taper runs."""
    out = []
    for pat, mine in ev.groupby("patient", sort=False):
        taper: dict[str, float] = {}  # drug -> the dose the taper has reached
        for r in mine.itertuples():
            ev_, drug, rule = str(r.event), str(r.drug), str(r.rule)
            if ev_ == "taper_start":
                taper[drug] = r.dose
            elif ev_ == "dose_change" and drug in taper and rule == "P5.taper_step":
                taper[drug] = r.dose
            elif ev_ == "drug_stop" and drug in taper:
                if rule != "P5.taper_complete":
                    out.append((pat, r.day, drug, rule, r.dose, taper[drug]))
                del taper[drug]
    return out


def test_a_taper_cut_by_loss_to_follow_up_names_its_step_and_cites_the_loss(usual):
    """Every stop that cuts a running taper cites X.dropout, names the taper's current step, and is followed on
    the same day by the X.dropout drop-out row (on main: dose NaN, and X.left_treatment for patient 212 here)."""
    _, res = usual
    ev = res.events.sort_values(["patient", "day"], kind="stable")
    cuts = _cuts(ev)
    assert len(cuts) >= 2
    for pat, day, drug, rule, dose, current in cuts:
        assert rule == "X.dropout", (pat, day, drug, rule)
        assert dose == current, (pat, day, drug, dose, current)
        gone = ev[(ev["patient"] == pat) & (ev["event"].astype(str) == "dropout")]
        assert len(gone) == 1 and abs(float(gone["day"].iloc[0]) - day) < 1e-9, pat
        assert str(gone["rule"].iloc[0]) == "X.dropout", pat


def test_no_stop_or_dose_row_without_a_dose_and_the_oracle_agrees(usual):
    """No drug_stop, taper_start, dose_change or drug_start row has an empty dose, and ``dose_recorded`` (the
    oracle's own reading of the same rows) finds nothing (on main: 2 stops with dose NaN in this run)."""
    sc, res = usual
    ev = res.events
    kinds = ev["event"].astype(str).isin(["drug_stop", "taper_start", "dose_change", "drug_start"])
    assert kinds.sum() > 1000
    assert not any(math.isnan(d) for d in ev.loc[kinds, "dose"]), ev[kinds & ev["dose"].isna()]
    report = check_events(ev, res.patients, sc.policy)
    recorded = report.by_invariant()["dose_recorded"]
    assert recorded.applicable > 0 and not recorded.violations, recorded.violations[:3]
