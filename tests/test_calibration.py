"""Calibration battery, its power to fail, and the parameter audit.

Size: the battery runs at its full size (20,000 patients per trial, ~2 s in all). With 2-6 arms per
trial each arm has >= 3,300 patients, so the binomial SE of a proportion near 0.4 is <= 0.85 points:
a +/-5-point tolerance is ~6 SE and a +/-3-point tolerance ~3.5 SE, so a verdict reflects the model,
not the noise. Targets the model does not reach yet are listed in KNOWN_FAILING (strict xfail: the
test fails once one of them starts passing, so the list cannot go stale).
"""

from __future__ import annotations

import dataclasses

import pytest

from simulator.calibrate import FULL_PATIENTS, load_battery, run_battery
from simulator.clinical import compile_model
from simulator.parameters import Parameter, clinical_parameters, missing

BATTERY = load_battery()
KNOWN_FAILING = {
    "nnt_tca", "pgb300_r50", "pgb_placebo_r50", "dlx_r50", "dlx_r30", "tramadol_r50", "tramadol_placebo_r50",
    "opioid_r50", "opioid_placebo_r50", "pgb600_dizziness", "pgb600_somnolence", "pgb300_dizziness",
    "pgb600_withdrawal", "dlx_nausea", "dlx_withdrawal", "pgb600_onset", "pgb300_onset", "pgb150_onset",
    "cipn_dlx_any", "cipn_placebo_any", "cipn_dlx_change", "cipn_placebo_change", "gilron09_gabapentin",
    "gilron09_nortriptyline", "gilron09_combination", "gilron05_combination",
}


@pytest.fixture(scope="module")
def checks():
    return {c.target.id: c for c in run_battery(FULL_PATIENTS)}


@pytest.mark.parametrize("target_id", [
    pytest.param(t.id, marks=pytest.mark.xfail(strict=True, reason="not yet reached by the model; see report"))
    if t.id in KNOWN_FAILING else t.id for t in BATTERY.targets])
def test_calibration_target(checks, target_id):
    """Protects each published target: the simulated value lies within its tolerance or CI."""
    c = checks[target_id]
    assert c.passed, f"{target_id}: simulated {c.simulated} vs {c.target.target} ({c.rule})"


def test_battery_can_fail_when_a_drug_effect_changes():
    """Protects the battery's power: halving gabapentin's responder probability fails its targets."""
    tables = compile_model()
    gbp = tables.by_name["gabapentin"]
    weak = dataclasses.replace(gbp, responder_prob=tuple((d, p * 0.5) for d, p in gbp.responder_prob))
    drugs = tuple(weak if d.name == "gabapentin" else d for d in tables.drugs)
    perturbed = dataclasses.replace(tables, drugs=drugs, by_name={d.name: d for d in drugs})
    ids = ["gbp_dpn_r50", "gbp_phn_r50"]
    base = run_battery(FULL_PATIENTS, only=ids)
    after = run_battery(FULL_PATIENTS, tables=perturbed, only=ids)
    assert all(c.passed for c in base)
    assert not any(c.passed for c in after)


def test_every_clinical_parameter_has_source_and_tag():
    """Protects the audit: no clinical.yaml parameter without a source or tag."""
    params = clinical_parameters()
    assert len(params) > 100
    assert missing(params) == []


def test_audit_flags_a_parameter_without_source():
    """Protects the audit itself: an unsourced parameter is reported."""
    bad = Parameter("x.yaml", "p", "1", "", "", "assumption")
    assert missing([bad]) == [bad]


@pytest.mark.slow
def test_battery_verdicts_stable_at_five_times_the_size():
    """Protects against luck: at 100,000 patients per trial the verdicts match the full-size ones."""
    small = {c.target.id: c.passed for c in run_battery(FULL_PATIENTS)}
    big = {c.target.id: c.passed for c in run_battery(5 * FULL_PATIENTS, seed=7)}
    assert small == big
