"""Usual care's patient who leaves treatment (X.left_treatment) and the departure that excuses his untapered stops.

Protects the oracle's mapping (simulator/regression/invariants/registry.py, DEPARTURE_BY_RULE): a drug still
running when the patient does not come back (usual_care.return_after_stop) stops at once, which the taper
invariant (P5.taper_step, S001) flags; only the departure that names that behaviour, usual_care_leaves_care,
excuses it, not usual_care_index (the index drug's departure, which used to). A policy that lets patients leave
(return_after_stop below 1) must declare it (one clear paragraph, exit 2).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.regression.invariants import check_events, check_run
from simulator.testing import painpath_run

DATA = Path(__file__).parent / "data"
OLD_DEPARTURES = ["usual_care_index", "tramadol_first_line", "early_strong_opioid", "under_titration"]


@pytest.fixture(scope="module")
def declared():
    return painpath_run(DATA / "usual-care-leaves-care.yaml")


def _untapered_leaving_stops(res) -> int:
    """Stops citing X.left_treatment the taper invariant must judge: the oracle's own count is compared below."""
    ev = res.events
    return int(((ev["event"] == "drug_stop") & (ev["rule"].astype(str) == "X.left_treatment")).sum())


def test_leaving_care_untapered_is_excused_only_by_its_own_departure(declared):
    """The declared scenario checks clean with its untapered leaving stops reported as declared; the same event
    log checked against usual care's four older departures (usual_care_index among them) flags each of them as
    a taper violation citing X.left_treatment (on the code before, usual_care_index excused them: 0 flagged)."""
    report = check_run(declared)
    assert report.ok, report.violations()[:3]
    taper = report.by_invariant()["taper"]
    excused = [v for v in taper.declared if v.rule == "X.left_treatment"]
    assert excused and _untapered_leaving_stops(declared) >= len(excused)
    old = check_events(declared.events, declared.patients, SimpleNamespace(declared_departures=OLD_DEPARTURES))
    flagged = [v for v in old.by_invariant()["taper"].violations if v.rule == "X.left_treatment"]
    assert {(v.patient, v.day, v.drug) for v in flagged} == {(v.patient, v.day, v.drug) for v in excused}
    assert not old.ok


def test_a_policy_letting_patients_leave_must_declare_it(tmp_path):
    """tests/data/usual-care-leaves-care.yaml without usual_care_leaves_care among its departures (return_after_stop
    0.3; usual care's four older departures only) is refused before any simulation: exit 2, one paragraph naming
    the file, the field (policy.declared_departures), the departure and the fix, no traceback (on the code before it ran, exit 0)."""
    text = (DATA / "usual-care-leaves-care.yaml").read_text()
    text = text.replace(", usual_care_leaves_care]", "]").replace("../../cohorts/", str(DATA.parent.parent / "cohorts") + "/")
    assert "usual_care_leaves_care]" not in text
    bad = tmp_path / "usual-care-leaves-undeclared.yaml"
    bad.write_text(text)
    r = CliRunner().invoke(main, ["check", str(bad), "--patients", "50"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    text = " ".join(r.output.split())
    assert "usual-care-leaves-undeclared.yaml" in text and "return_after_stop" in text
    assert "add 'usual_care_leaves_care' to declared_departures" in text
    # the field where the fix goes (it named 'policy', the whole block, before)
    assert "field 'policy.declared_departures'" in text


def test_the_usual_care_scenarios_declare_what_they_do():
    """scenarios/usual-care.yaml lets patients leave (return_after_stop 0.3) and declares it; the UK scenario
    keeps every patient coming back (return_after_stop 1), so it neither needs nor declares it."""
    from simulator.scenario import load_scenario

    root = Path(__file__).parent.parent / "scenarios"
    us, uk = load_scenario(root / "usual-care.yaml"), load_scenario(root / "usual-care-uk.yaml")
    assert us.policy.usual_care.return_after_stop < 1 and "usual_care_leaves_care" in us.policy.declared_departures
    assert uk.policy.usual_care.return_after_stop == 1 and "usual_care_leaves_care" not in uk.policy.declared_departures


def test_the_trace_tells_the_untapered_stop(declared):
    """Narration tells the truth (issue 9 item 12): a drug the leaving patient stops is told as stopped at once by
    him, not as an ordinary stop (it used to read "duloxetine stopped"), on the day he leaves."""
    from simulator.scenario import load_scenario
    from simulator.teaching.narrate import setup_from_scenario, trace

    ev = declared.events
    left = ev[(ev["event"] == "drug_stop") & (ev["rule"].astype(str) == "X.left_treatment")]
    k, day = int(left["patient"].iloc[0]), float(left["day"].iloc[0])
    steps = trace(setup_from_scenario(load_scenario(DATA / "usual-care-leaves-care.yaml"), k)).steps
    told = [s for s in steps if s.rule == "X.left_treatment" and s.kind == "stop" and abs(s.day - day) < 1e-6]
    assert told and all("stopped at once by the patient" in s.text for s in told), [s.text for s in told]
