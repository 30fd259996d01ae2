"""P9.re_referral's minimum interval: a patient is referred again no sooner than referral.re_referral_after_days
after his last consult started (assumption, default 91 days).

Protects the engine (simulator/engine/referral.py defers the referral: primary care until then,
P9.re_referral_deferred, tests/test_re_referral_deferral.py), the
oracle (check's re_referral_interval, simulator/regression/invariants/care.py, which reads only the event log
and the policy) and the input contract (a negative or non-finite interval is one paragraph naming the file and
the field, exit 2). Before the parameter existed a patient refractory again soon after a consult was queued at
once: on the guideline, 2,000 patients, seed 7, 46 of 54 referrals after a consult came within 91 days of it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner

from simulator.analysis.runner import simulate
from simulator.cli import main
from simulator.regression.invariants import check_events
from simulator.regression.invariants.care import care_checks
from simulator.scenario import load_scenario

ROOT = Path(__file__).parent.parent
EARLY = ROOT / "scenarios" / "early-referral.yaml"  # refers early: many patients see the clinic, some twice


def _gaps(events: pd.DataFrame) -> list[float]:
    """Days from each consult's start to the next referral of the same patient (the test's own reading)."""
    ev = events[events["event"].astype(str).isin(["consult", "referral_queued"])]
    out = []
    for _, g in ev.groupby(["replication", "patient"], sort=False):
        last = None
        for day, kind, wait in zip(g["day"], g["event"].astype(str), g["wait_days"], strict=True):
            if kind == "consult" and wait == wait:
                last = day
            elif kind == "referral_queued" and last is not None:
                out.append(float(day - last))
    return out


def _run(days: int, patients: int = 700):
    sc = load_scenario(EARLY)
    referral = {**sc.policy.referral.model_dump(), "re_referral_after_days": days}
    sc = sc.with_overrides(policy={**sc.policy.model_dump(), "referral": referral})
    return sc, simulate(sc, patients=patients, seed=3, replications=1)


@pytest.mark.parametrize("days", [30, 91, 182])
def test_no_referral_comes_sooner_than_the_interval_after_a_consult(days):
    """Engine: at each interval every referral after a consult is queued at least that many days after the consult
    started, and there are such referrals (the property is not vacuous); check finds no violation."""
    sc, res = _run(days)
    gaps = _gaps(res.events)
    assert len(gaps) >= 5, gaps
    assert min(gaps) >= days - 1e-3, sorted(gaps)[:5]
    report = check_events(res.events, res.patients, sc.policy)
    assert report.by_invariant()["re_referral_interval"].violations == []
    assert 0 < report.by_invariant()["re_referral_interval"].applicable <= len(gaps)  # patients, not referrals


def test_without_the_interval_referrals_come_at_once_and_check_flags_them():
    """0 days is the engine before the parameter (re-referred at once): referrals within 91 days of a consult
    occur, and the oracle, told the default 91 days, flags exactly those (so the check can fail)."""
    _, res = _run(0)
    early = [g for g in _gaps(res.events) if g < 91 - 1e-3]
    assert early
    policy = SimpleNamespace(declared_departures=[], referral=SimpleNamespace(re_referral_after_days=91, max_consults=2,
                                                                              while_waiting="continue"))
    flagged = check_events(res.events, res.patients, policy).by_invariant()["re_referral_interval"].violations
    assert len(flagged) == len(early)
    assert all(v.event == "referral_queued" for v in flagged)


def test_the_oracle_reads_the_log_and_the_policy_only():
    """A hand-made log: a consult starting on day 100, then a referral on day 150 (50 days): a violation at 91
    days, none at 30; a referral before any consult is not judged."""
    cols = ["replication", "patient", "day", "event", "state", "drug", "rule", "consult_outcome", "wait_days",
            "outcome"]
    rows = [(0, 0, 10.0, "referral_queued", "specialist_referral", None, "P9.refractory_referral", None, None, None),
            (0, 0, 100.0, "consult", "specialist_referral", None, "P9.specialist_consult", None, 90.0, None),
            (0, 0, 107.0, "consult", "specialist_care", None, "P9.specialist_consult", "no_relief", None, None),
            (0, 0, 150.0, "referral_queued", "specialist_referral", None, "P9.re_referral", None, None, None)]
    events = pd.DataFrame(rows, columns=cols)
    patients = pd.DataFrame({"replication": [0], "patient": [0], "followup_days": [365.0]})

    def result(days: float):
        pol = SimpleNamespace(referral=SimpleNamespace(re_referral_after_days=days, max_consults=2))
        return next(r for r in care_checks(events, patients, pol, 1) if r.invariant.name == "re_referral_interval")

    bad = result(91)
    assert [(v.day, v.rule) for v in bad.violations] == [(150.0, "P9.re_referral")]
    assert "50 days after the consult of day 100" in bad.violations[0].detail
    assert result(30).violations == [] and result(30).applicable == 1


@pytest.mark.parametrize("value,words", [("-5", "greater than or equal to 0"), (".nan", "finite")])
def test_a_bad_interval_is_one_paragraph_naming_file_and_field(tmp_path, value, words):
    """A negative or NaN referral.re_referral_after_days: exit 2, one paragraph naming the file and the field and
    the fix, no traceback, no run folder."""
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\ncohort: mixed-primary-care\npatients: 20\npolicy:\n  name: guideline\n"
                 f"  referral: {{re_referral_after_days: {value}}}\n")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(f), "--out", str(out), "--no-report", "--quiet"])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "Traceback" not in r.output and text.count("Error") == 1
    assert "bad.yaml" in text and "policy.referral.re_referral_after_days" in text and words in text
    assert "Fix:" in text and not out.exists()


def test_an_interval_without_re_referral_is_refused(tmp_path):
    """With referral.max_consults 1 nobody is referred again, so re_referral_after_days would do nothing: an
    option that does nothing is an input error (exit 2) naming the field and both fixes."""
    f = tmp_path / "idle.yaml"
    f.write_text("name: idle\ncohort: mixed-primary-care\npatients: 20\npolicy:\n  name: guideline\n"
                 "  referral: {max_consults: 1, re_referral_after_days: 30}\n")
    r = CliRunner().invoke(main, ["run", str(f), "--out", str(tmp_path / "run"), "--no-report", "--quiet"])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "policy.referral" in text and "re_referral_after_days does nothing" in text and "raise max_consults" in text
