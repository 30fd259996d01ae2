"""P4.reoffer_own_stop on simulated trajectories: the relieving regimen restarted first on a relapse after the
patient's own stop (README: "the drug that relieved him is restarted first").

Protects what the review of main found failing in 57 of 239 eligible relapses (guideline, 3,000 patients, seed 11):
a drug whose inadequate evaluation was followed by dose optimisation or an add-on that then relieved was recorded as
failed and never restarted; a topical that relieved alone was not restarted in the topical state; under
``topical_add: after_combination`` the topical came before the restart; tramadol that relieved gave way to a strong
opioid. The check is the oracle's own ``relapse_restarts_own_stop`` (event log, catalogue and policy only); each test
fails on main's code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from simulator.analysis.runner import simulate
from simulator.regression.invariants.care import restart_checks
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


@cache
def _run(name: str, patients: int, seed: int):
    return simulate(load_scenario(ROOT / "scenarios" / f"{name}.yaml"), patients=patients, replications=1, seed=seed)


def test_guideline_restarts_what_relieved_after_an_optimised_dose_or_an_add_on():
    """Guideline policy (S004 sequence, topicals at any stage): every eligible relapse restarts the drugs the patient
    stopped himself while they relieved him, at the relapse's decision (main: 13 of 65 failed here)."""
    res = _run("guideline", 600, 11)
    r = restart_checks(res.events, res.scenario.policy, 600)
    assert r.applicable > 40  # relapses after an own stop of a relieving drug: the test has cases to judge
    assert not r.violations, [(v.patient, v.day, v.drug) for v in r.violations[:5]]


def test_escalation_restarts_before_the_topical_step():
    """S002's escalation (topical after the combination, tramadol added): the restart comes before the topical step
    and before tramadol (main: 29 of 65 failed, the topical or tramadol added instead)."""
    res = _run("escalation-s002", 600, 11)
    r = restart_checks(res.events, res.scenario.policy, 600)
    assert r.applicable > 40
    assert not r.violations, [(v.patient, v.day, v.drug) for v in r.violations[:5]]
    ev = res.events
    restarts = ev[(ev["event"] == "drug_start") & (ev["rule"] == "P4.reoffer_own_stop")]
    assert len(restarts) > 20
