"""`painpath check` against the simulated engine: it catches a broken engine, and agrees with a sound one.

Each test here breaks one rule inside the engine on purpose (monkeypatching the engine's safety helper
that applies it) and expects the oracle, which never imports the engine, to report the matching
invariant on a simulated run; the same run unbroken is clean. The violating scenarios of tests/data
reproduce policies that break an invariant without declaring a departure.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest

import simulator.engine.lines as lines
import simulator.engine.simulation as engine
import simulator.model.patient as patient
import simulator.model.safety as safety
from simulator.analysis.runner import simulate
from simulator.engine.evaluation import Evaluation
from simulator.regression.invariants import check_run
from simulator.scenario import load_scenario

DATA = Path(__file__).parent / "data"
OLDER_RENAL = load_scenario(DATA / "older-renal-small.yaml")
MIXED = load_scenario(DATA / "guideline-small.yaml")
CIPN = load_scenario(DATA / "cipn-small.yaml")


def _rules_without(**changes):
    original = safety.drug_rules

    def broken(name: str):
        return dataclasses.replace(original(name), **changes)
    return broken


def _no_floor():
    """No min_dose and givable doses down to an eighth of the smallest strength: the reductions multiply."""
    original = safety.drug_rules

    def broken(name: str):
        x = original(name)
        low = tuple(sorted(set(x.givable) | {g / k for g in x.givable[:1] for k in (2, 4, 8)}))
        return dataclasses.replace(x, min_dose=0.0, givable=low)
    return broken


def _maximum_doubled():
    original = lines.plan

    def broken(*args, **kwargs):
        p = original(*args, **kwargs)
        return dataclasses.replace(p, maximum=2 * p.maximum)
    return broken


def _checks_without(check: str):
    original = lines.required_checks

    def broken(*args, **kwargs):
        return tuple(c for c in original(*args, **kwargs) if c[0] != check)
    return broken


BREAKS = [
    # (what is broken, module, attribute, replacement factory, scenario, invariant that must catch it)
    ("renal band ignored (full doses at any CrCl)", safety, "exposure_factor", lambda: (lambda drug, facts: 1.0),
     OLDER_RENAL, "renal_dose"),
    ("morphine's renal band ignored", safety, "exposure_factor",
     lambda: (lambda drug, facts, f=safety.exposure_factor: 1.0 if drug.drug_class == "strong_opioid" else f(drug, facts)),
     OLDER_RENAL, "strong_opioid_renal"),
    ("older adults start at the adult dose", safety, "drug_rules", lambda: _rules_without(older_start=0.0),
     OLDER_RENAL, "older_adult_start"),
    ("renal and older-adult reductions below the smallest marketed dose", safety, "drug_rules",
     _no_floor, OLDER_RENAL, "min_dose"),
    ("drugs stopped without their taper", engine, "drug_rules", lambda: _rules_without(taper=(), taper_interval=0.0),
     MIXED, "taper"),
    ("dose optimisation up to twice the maximum", lines, "plan", _maximum_doubled, MIXED, "max_dose"),
    ("no ECG before a tricyclic", lines, "required_checks", lambda: _checks_without("ecg"), MIXED, "tca_ecg"),
    ("no serotonin check", lines, "required_checks", lambda: _checks_without("serotonin_check"), MIXED,
     "serotonin_check"),
    ("P8 gate always open", patient.PatientModel, "_gate_block", lambda: (lambda self: None), MIXED,
     "strong_opioid_prerequisites"),
    ("CIPN exclusions dropped", patient, "CIPN_EXCLUDED_CLASSES", lambda: (), CIPN, "cipn_no_tca_gabapentinoid"),
]


@pytest.fixture(scope="module")
def clean_runs():
    return {sc.name: check_run(simulate(sc)) for sc in (OLDER_RENAL, MIXED, CIPN)}


@pytest.mark.parametrize(("what", "module", "attr", "factory", "scenario", "invariant"), BREAKS,
                         ids=[b[0] for b in BREAKS])
def test_check_catches_a_broken_engine(monkeypatch, clean_runs, what, module, attr, factory, scenario, invariant):
    """Protects the oracle's independence: a rule broken inside the engine shows up as violations of the
    matching invariant on a simulated run, while the unbroken run of the same scenario has none."""
    clean = clean_runs[scenario.name].by_invariant()[invariant]
    assert clean.applicable > 0 and not clean.violations, clean.violations[:3]
    monkeypatch.setattr(module, attr, factory())
    broken = check_run(simulate(scenario)).by_invariant()[invariant]
    assert broken.violations, f"{what}: check did not report {invariant}"


@pytest.mark.parametrize(("scenario", "invariant"), [("short-trial.yaml", "adequate_trial"),
                                                     ("opioid-low-nrs.yaml", "strong_opioid_nrs"),
                                                     ("early-opioid.yaml", "strong_opioid_prerequisites")])
def test_violating_scenarios_are_reported(scenario, invariant):
    """Protects the check on policies that break a rule without declaring it (tests/data): a 2-week trial
    (P3), a strong opioid below NRS 4 (P8), the P8 gate opened after one failure."""
    res = _checked(scenario)[1].by_invariant()[invariant]
    assert res.violations and res.status == "FAIL"


@functools.cache
def _checked(scenario: str):
    """(run, check report) of a tests/data scenario, simulated once per session (read-only use)."""
    result = simulate(load_scenario(DATA / scenario))
    return result, check_run(result)


def test_low_nrs_violation_names_the_pain():
    """Protects P8.nrs_threshold: each reported strong-opioid start followed an NRS below 4."""
    result, report = _checked("opioid-low-nrs.yaml")
    viol = report.by_invariant()["strong_opioid_nrs"].violations
    ev = result.events
    for v in viol:
        before = ev[(ev["patient"] == v.patient) & (ev["day"] <= v.day) & ev["pain_nrs"].notna()]
        assert before["pain_nrs"].iloc[-1] < 4


def test_policy_option_outside_the_guideline_is_declared_not_failed():
    """Protects cipn_exclusions: false: tricyclics and gabapentinoids in CIPN are reported as declared."""
    report = check_run(simulate(load_scenario(DATA / "cipn-no-exclusions.yaml")))
    res = report.by_invariant()["cipn_no_tca_gabapentinoid"]
    assert not res.violations and res.declared and res.status == "declared departure"


def _judged_on_the_newest_drug_only(monkeypatch) -> None:
    """Break the engine's wait for drugs started together (``Evaluation._trial``: a regimen restarted after the
    patient's own stop is judged once each drug has had its adequate trial): the trial end of every other oral drug
    started with the newest counts for nothing, so the regimen is judged on the newest drug's timing only."""
    trial, trial_end = Evaluation._trial, Evaluation._trial_end
    newest = []  # the newest line of the trial being set up (its evaluation day is computed before its first wait)

    def broken_trial(self, p, lines, decision, obs, ltfu_day):
        newest[:] = [lines[-1]]
        return (yield from trial(self, p, lines, decision, obs, ltfu_day))

    def broken_trial_end(self, line, visit):
        if newest and line is not newest[0] and line.start == newest[0].start and not line.topical_addon:
            return -1.0  # not waited for
        return trial_end(self, line, visit)

    monkeypatch.setattr(Evaluation, "_trial", broken_trial)
    monkeypatch.setattr(Evaluation, "_trial_end", broken_trial_end)


def test_check_catches_drugs_restarted_together_judged_on_the_newest_only(monkeypatch):
    """Protects P3 for a regimen restarted together (P4.reoffer_own_stop): with the engine judging it on its newest
    drug's trial only, ``check`` reports ``adequate_trial`` for the other drug (guideline, 240 patients, seed 11:
    patient 237, pregabalin and duloxetine restarted together on day 231 and judged on day 273, 14 days after
    pregabalin reached 300 mg/day against its 28-day trial); the unbroken run is clean. Before the oracle read
    each drug's trial, only the drug the evaluation row names was checked and this passed."""
    sc = MIXED.model_copy(update={"patients": 240, "replications": 1, "seed": 11})
    clean = check_run(simulate(sc)).by_invariant()["adequate_trial"]
    assert clean.applicable > 0 and not clean.violations, clean.violations[:3]
    _judged_on_the_newest_drug_only(monkeypatch)
    broken = check_run(simulate(sc)).by_invariant()["adequate_trial"]
    together = [v for v in broken.violations if "started together" in v.detail]
    assert together, [(v.patient, v.drug, v.day, v.detail) for v in broken.violations]
