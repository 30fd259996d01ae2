"""Calibration battery, its power to fail, and the parameter audit.

Size: the battery runs at its full size (20,000 patients per trial, ~10-15 s in all). With 2-6 arms per
trial each arm has >= 3,300 patients, so the binomial SE of a proportion near 0.4 is <= 0.85 points:
a +/-5-point tolerance is ~6 SE and a +/-3-point tolerance ~3.5 SE, so a verdict reflects the model,
not the noise (the slow test re-checks every verdict at five times the size with another seed). Every
target is enforced: there is no list of known failures.
"""

from __future__ import annotations

import dataclasses

import pytest

from simulator.analysis.calibrate import FULL_PATIENTS, load_battery, run_battery
from simulator.model.clinical_tables import compile_model
from simulator.model.parameters import Parameter, clinical_parameters, missing

BATTERY = load_battery()


@pytest.fixture(scope="module")
def checks():
    return {c.target.id: c for c in run_battery(FULL_PATIENTS)}


@pytest.mark.parametrize("target_id", [t.id for t in BATTERY.targets])
def test_calibration_target(checks, target_id):
    """Protects each published target: the simulated value lies within its tolerance or CI."""
    c = checks[target_id]
    assert c.passed, f"{target_id}: simulated {c.simulated} vs {c.target.target} ({c.rule})"


def test_battery_can_fail_when_a_drug_effect_changes(checks):
    """Protects the battery's power: halving gabapentin's responder probability fails its targets. (The
    unperturbed verdicts are the module's battery run: each trial is simulated from (design, size, seed) alone,
    so ``run_battery(only=ids)`` would repeat the same simulation.)"""
    tables = compile_model()
    gbp = tables.by_name["gabapentin"]
    weak = dataclasses.replace(gbp, responder_prob=tuple((d, p * 0.5) for d, p in gbp.responder_prob))
    drugs = tuple(weak if d.name == "gabapentin" else d for d in tables.drugs)
    perturbed = dataclasses.replace(tables, drugs=drugs, by_name={d.name: d for d in drugs})
    ids = ["gbp_dpn_r50", "gbp_phn_r50"]
    base = [checks[i] for i in ids]
    after = run_battery(FULL_PATIENTS, tables=perturbed, only=ids)
    assert all(c.passed for c in base)
    assert not any(c.passed for c in after)


COMBO_DN = ["combo_dn_combination_change", "combo_dn_high_dose_change", "combo_dn_combination_r50", "combo_dn_high_dose_r50"]


def test_combo_dn_targets_can_fail():
    """Protects the COMBO-DN targets' power: without drifting responsiveness (fixed responder status) the
    week-8 non-responders improve too little over weeks 8-16 and the targets fail."""
    fixed = dataclasses.replace(compile_model(), drift_share=0.0)
    after = {c.target.id: c for c in run_battery(FULL_PATIENTS, tables=fixed, only=COMBO_DN)}
    assert not after["combo_dn_high_dose_change"].passed and not after["combo_dn_combination_change"].passed
    assert after["combo_dn_high_dose_change"].simulated > -1.5


def test_trial_design_properties_are_sourced():
    """Protects the per-trial modifiers: a design that sets placebo_scale, titrate or nrs_resolution says why."""
    for name, d in BATTERY.trials.items():
        if d.placebo_scale != 1.0 or not d.titrate or d.nrs_resolution != 0.1:
            assert len(d.design_source) > 40, name


def test_calibrated_parameters_name_their_targets():
    """Protects the audit: every 'calibrated' clinical parameter names a battery target it was fitted to."""
    ids = {t.id for t in BATTERY.targets}
    ids |= {t.id for s in BATTERY.usual_care.values() for t in s.targets}
    for p in clinical_parameters():
        if p.tag == "calibrated":
            assert any(i in p.source for i in ids), p.name


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


def test_calibration_report_writes_plots_and_regenerates_the_readme_table(tmp_path):
    """Protects `painpath calibrate --report`: one plot per target family present (PNGs without a version
    chunk), a markdown table with every target, and the README table replaced between its markers (and
    nothing else of the README touched)."""
    from simulator.analysis.calibrate import README_END, README_START, family, write_report

    ids = ["pgb300_r50", "nnt_pregabalin", "pgb_placebo_dizziness", "combo_dn_high_dose_change"]
    checks = run_battery(2000, only=ids)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{README_START}\nold table\n{README_END}\nafter\n", encoding="utf-8")
    files = write_report(checks, 2000, 2015, tmp_path / "rep", readme)
    pngs = sorted(p.name for p in files if p.suffix == ".png")
    assert len(pngs) == len({family(c.target) for c in checks}) == 4
    # no PNG text chunk (matplotlib's default names its version): the same checks give the same bytes anywhere
    assert not any(b"tEXt" in p.read_bytes() for p in files if p.suffix == ".png")
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text and text.startswith("# x\nbefore\n") and text.endswith("after\n")
    for i in ids:
        assert f"`{i}`" in text
    assert all(c.ci is not None and c.ci[0] <= c.simulated <= c.ci[1] for c in checks)
