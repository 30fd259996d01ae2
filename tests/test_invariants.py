"""`painpath check` and simulator.regression.invariants: guideline invariants on every trajectory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.model.catalog import load_catalog
from simulator.regression.invariants import (
    INVARIANTS,
    Facts,
    check_events,
    check_run,
    earliest_offset,
    max_allowed,
)
from simulator.scenario import load_scenario
from simulator.testing import assert_metric, assert_no_violations, painpath_run

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def guideline():
    return painpath_run(ROOT / "scenarios" / "guideline.yaml", patients=400, seed=3, replications=1)


def test_guideline_has_no_violations(guideline):
    """Protects the engine's safety rules: the guideline policy obeys every invariant on every patient."""
    report = check_run(guideline)
    assert report.ok, report.violations()[:5]
    by = {r.invariant.name: r for r in report.results}
    assert set(by) == {i.name for i in INVARIANTS}
    # the checks really ran on relevant patients (a vacuous check would pass anything)
    for name in ("adequate_trial", "titration_schedule", "max_dose", "strong_opioid_prerequisites", "tca_ecg"):
        assert by[name].applicable > 0, name


def test_early_opioid_is_reported_per_patient():
    """Protects P8: a relaxed opioid gate without a declared departure is reported with each offending patient."""
    res = painpath_run(DATA / "early-opioid.yaml", patients=200)
    report = check_run(res)
    assert not report.ok
    prereq = next(r for r in report.results if r.invariant.name == "strong_opioid_prerequisites")
    starts = res.events[(res.events["event"] == "drug_start") & (res.events["drug"] == "morphine")]
    assert len(prereq.violations) == len(starts) > 0
    assert {(v.replication, v.patient) for v in prereq.violations} == set(zip(starts["replication"], starts["patient"], strict=True))
    assert all(v.rule == "P8.prerequisites" and v.event == "drug_start" for v in prereq.violations)


def test_declared_departure_does_not_fail():
    """Protects declared departures: the same policy declaring early_strong_opioid passes, and says why."""
    report = check_run(painpath_run(DATA / "early-opioid-declared.yaml", patients=200))
    assert report.ok
    assert report.n_declared > 0
    prereq = next(r for r in report.results if r.invariant.name == "strong_opioid_prerequisites")
    assert prereq.status == "declared departure" and all(v.declared for v in prereq.declared)


def _tamper(result, mask_fn, **changes) -> pd.DataFrame:
    ev = result.events.copy()
    for col in ("drug", "check", "rule", "event"):
        ev[col] = ev[col].astype(object)
    mask = mask_fn(ev)
    assert mask.any()
    for col, val in changes.items():
        ev.loc[mask, col] = val
    return ev


def test_checker_catches_tampered_doses_and_missing_checks(guideline):
    """Protects independence from the engine: edited event tables (dose over cap, no ECG, no rule id,
    too-early evaluation) are caught by the replay, not trusted."""
    pol = guideline.scenario.policy
    pats = guideline.patients
    # 1. a pregabalin dose of 900 mg (max 600)
    ev = _tamper(guideline, lambda e: (e["event"] == "dose_change") & (e["drug"] == "pregabalin"), dose=900.0)
    names = {v.invariant for v in check_events(ev, pats, pol).violations()}
    assert {"max_dose", "gabapentinoid_renal_cap"} & names and "max_dose" in names
    # 2. drop every ECG row: TCA starts over 40 become violations
    ev = guideline.events[guideline.events["check"].astype(object) != "ecg"]
    assert "tca_ecg" in {v.invariant for v in check_events(ev, pats, pol).violations()}
    # 3. remove rule ids from transitions
    ev = _tamper(guideline, lambda e: e["event"] == "transition", rule=None)
    assert "rule_ids" in {v.invariant for v in check_events(ev, pats, pol).violations()}
    # 4. move failed evaluations 10 days earlier
    ev = guideline.events.copy()
    m = (ev["event"] == "evaluation") & ev["outcome"].isin(["none", "partial"])
    ev.loc[m, "day"] = ev.loc[m, "day"] - 10
    assert "adequate_trial" in {v.invariant for v in check_events(ev, pats, pol).violations()}


def test_caps_and_schedule_from_catalogue():
    """Protects the re-derived caps: older, renal and caution caps and the older-adult stretch."""
    cat = load_catalog().drugs
    young = Facts(50, 90, frozenset())
    old_renal = Facts(70, 25, frozenset())
    assert max_allowed(cat["pregabalin"], young) == 600
    assert max_allowed(cat["pregabalin"], old_renal) == 75  # older cap 300 x 1/4 (CrCl 15-29)
    assert max_allowed(cat["pregabalin"], Facts(50, 45, frozenset())) == 300  # 600 x 1/2
    assert max_allowed(cat["nortriptyline"], Facts(50, 90, frozenset({"cardiovascular_disease"}))) == 75
    assert earliest_offset(cat["pregabalin"], young, 300) == 7
    assert earliest_offset(cat["pregabalin"], Facts(70, 90, frozenset()), 300) == 14
    # beyond the target the schedule goes on with its last increment and interval (dose optimisation)
    assert earliest_offset(cat["pregabalin"], young, 450) == 14
    assert earliest_offset(cat["pregabalin"], young, 600) == 21
    assert earliest_offset(cat["pregabalin"], young, 750) == float("inf")


def test_cli_check_exit_codes_and_json(tmp_path):
    """Protects the CLI contract: exit 0 clean, 1 on violations (with --json listing them), 2 on bad input."""
    r = CliRunner()
    ok = r.invoke(main, ["check", str(DATA / "early-opioid-declared.yaml"), "--patients", "80"])
    assert ok.exit_code == 0, ok.output
    out = tmp_path / "check.json"
    bad = r.invoke(main, ["check", str(DATA / "early-opioid.yaml"), "--patients", "80", "--json", str(out)])
    assert bad.exit_code == 1, bad.output
    data = json.loads(out.read_text())
    assert data["ok"] is False and data["violations"] > 0
    inv = next(i for i in data["invariants"] if i["name"] == "strong_opioid_prerequisites")
    assert inv["violations"][0]["rule"] == "P8.prerequisites"
    err = r.invoke(main, ["check", str(DATA / "early-opioid.yaml"), "--patients", "0"])
    assert err.exit_code == 2 and "Traceback" not in err.output


def test_testing_helpers_give_readable_failures(guideline):
    """Protects simulator.testing: assert_metric passes inside bounds and names metric/value/bound outside."""
    v = assert_metric(guideline, "pathway.reached.first_line", between=(0.0, 1.0))
    assert 0 <= v <= 1
    with pytest.raises(AssertionError, match=r"pathway.reached.first_line = .* expected at most 0\.01"):
        assert_metric(guideline, "pathway.reached.first_line", at_most=0.01)
    with pytest.raises(AssertionError, match="did you mean"):
        assert_metric(guideline, "pathway.reached.first_lin", at_least=0)
    assert_no_violations(guideline)
    with pytest.raises(AssertionError, match="strong_opioid_prerequisites: replication 0 patient"):
        assert_no_violations(painpath_run(DATA / "early-opioid.yaml", patients=200))


def test_scenario_files_load():
    """Protects tests/data: the test scenarios stay valid scenario files."""
    for f in DATA.glob("*.yaml"):
        assert load_scenario(f).name
