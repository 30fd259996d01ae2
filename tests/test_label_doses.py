"""Doses against the product labels' figures (issue 9 review, rev9).

The catalogue scales a gabapentinoid's whole schedule by a CrCl band factor (P5.renal_dose, S000, S001). A
factor is an approximation of the label's renal table: the label's maximum daily dose in each band is a hard
figure that neither the engine nor dose optimisation (P3, "maximum dose 3600 mg/day may be needed") may pass.
The figures are written here, from the labels, not read from drugs.yaml (a check must not share what it
checks).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.analysis.outcomes import events_frame
from simulator.engine.simulation import EngineConfig, Simulation
from simulator.model.clinical_tables import compile_model
from simulator.model.policy import Policy
from simulator.model.policy_context import PolicyContext
from simulator.population.cohort import generate_cohort
from simulator.population.cohort_spec import load_cohort_spec
from simulator.regression.invariants import check_events

ROOT = Path(__file__).resolve().parents[1]

# US labels' renal tables: (CrCl low, CrCl high, maximum daily dose)
LABEL_MAX = {
    "gabapentin": [(30, 60, 1400.0), (15, 30, 700.0), (5, 15, 300.0)],  # Neurontin
    "pregabalin": [(30, 60, 300.0), (15, 30, 150.0), (5, 15, 75.0)],  # Lyrica
}
FIRST = {"gabapentin": "gabapentin_first", "pregabalin": "pregabalin_first"}
BASE_PATIENT = dict(replication=0, patient=0, age=50.0, crcl=45.0, etiology="diabetic_neuropathy",
                    localized=False, allodynia=False, hepatic_disease=False, recent_mi=False, arrhythmia=False,
                    heart_block=False, cardiovascular_disease=False, glaucoma=False, orthostatic_hypotension=False,
                    ssri_use=False, depression=False)


def _row(day, event, drug=None, dose=None, rule=None, pain=None):
    return dict(replication=0, patient=0, day=float(day), event=event, drug=drug,
                dose=math.nan if dose is None else float(dose), pain_nrs=math.nan if pain is None else float(pain),
                outcome=None, check=None, rule=rule)


def test_oracle_reports_a_gabapentin_dose_above_the_labels_renal_maximum():
    """Protects `check` as an oracle of the label: at CrCl 45 Neurontin's maximum is 1400 mg/day; v0.2's
    catalogue factor (3600 x 0.4 = 1440) let the engine reach 1440 and `check` agreed (it read the same
    factor). 1440 must be reported under max_dose, 1400 must pass."""
    def report(top):
        rows = [_row(0, "assessment", pain=7, rule="P1"),
                _row(0, "transition", rule="P1.gabapentin_cost"),
                _row(0, "drug_start", "gabapentin", 100, rule="P1.gabapentin_cost"),
                *[_row(d, "dose_change", "gabapentin", x, rule="P2.titration_step")
                  for d, x in ((1, 200), (2, 300), (7, 400), (14, 700))],
                _row(42, "evaluation", "gabapentin", 700, rule="P3.adequate_trial", pain=6),
                *[_row(42 + 7 * i, "dose_change", "gabapentin", x, rule="P3.dose_optimisation")
                  for i, x in enumerate((900, 1100, top))]]
        return check_events(pd.DataFrame(rows), pd.DataFrame([BASE_PATIENT]), Policy(first_line="gabapentin_first"))
    bad = report(1440)
    assert "max_dose" in {v.invariant for v in bad.violations()}
    assert report(1400).ok


@pytest.mark.parametrize("drug", sorted(LABEL_MAX))
def test_no_gabapentinoid_dose_above_the_labels_renal_maximum(drug):
    """Protects P5.renal_dose against the labels on simulated trajectories: younger patients in each CrCl
    band, the gabapentinoid first and raised to the maximum before judging failure (P3 to_maximum), never
    get a daily dose above the label's maximum for the band (v0.2: gabapentin 1440 / 720 / 360 mg/day
    against Neurontin's 1400 / 700 / 300)."""
    tables = compile_model()
    spec = load_cohort_spec(ROOT / "cohorts" / "mixed-primary-care.yaml")
    ctx = PolicyContext.build(Policy(first_line=FIRST[drug]), tables)
    for lo, hi, label_max in LABEL_MAX[drug]:
        c = generate_cohort(spec, 200, 11)
        crcl = np.linspace(lo, hi - 0.5, 200)
        c = dataclasses.replace(c, crcl=crcl.astype(c.crcl.dtype), age=np.full(200, 50.0, dtype=c.age.dtype))
        sim = Simulation(ctx, c, EngineConfig(horizon_days=365, specialist_slots_per_week=2, seed=11), 0)
        ev = events_frame([sim.run()], tables)
        doses = ev[ev["event"].isin(["drug_start", "dose_change"]) & (ev["drug"] == drug)]["dose"]
        assert len(doses), (drug, lo, hi)
        assert doses.max() <= label_max + 1e-9, (drug, lo, hi, doses.max())


def test_the_policys_tricyclic_is_the_only_tricyclic():
    """Protects P1 (S000: "use secondary amines (nortriptyline or desipramine) over tertiary amines due to fewer
    anticholinergic effects"): under the guideline (tca: nortriptyline) no patient is moved on to
    amitriptyline after nortriptyline. v0.2's default order ended with amitriptyline, so 72-year-olds whose
    nortriptyline caused constipation got amitriptyline, nortriptyline's tertiary-amine parent drug (it is
    demethylated to nortriptyline), with more anticholinergic effect. With tca: amitriptyline (S001) the
    converse holds."""
    tables = compile_model()
    spec = load_cohort_spec(ROOT / "cohorts" / "older-renal.yaml")
    c = generate_cohort(spec, 1500, 5)
    for tca, other in (("nortriptyline", "amitriptyline"), ("amitriptyline", "nortriptyline")):
        ctx = PolicyContext.build(Policy(tca=tca), tables)
        sim = Simulation(ctx, c, EngineConfig(horizon_days=730, specialist_slots_per_week=2, seed=5), 0)
        ev = events_frame([sim.run()], tables)
        starts = ev[ev["event"] == "drug_start"]["drug"].astype(str)
        assert (starts == tca).sum() > 0, tca
        assert (starts == other).sum() == 0, (tca, (starts == other).sum())


def test_a_tricyclic_with_an_ssri_or_snri_gets_the_serotonin_check():
    """Protects P5.serotonin_check_snri for tricyclics: drugs.yaml marks TCAs serotonergic and `serotonin:
    avoid` keeps them from SSRI users, yet under `monitor` v0.2 started nortriptyline in SSRI users, and while
    duloxetine or venlafaxine was being tapered, with no check (the rule text said "any two serotonergic
    drugs"). The oracle must report it, and the engine must log the check before every such start."""
    pat = {**BASE_PATIENT, "crcl": 90.0, "ssri_use": True}
    rows = [_row(0, "assessment", pain=7, rule="P1"), _row(0, "transition", rule="P1.tca_first"),
            _row(0, "safety_check", "nortriptyline", rule="P5.tca_ecg") | {"check": "ecg"},
            _row(0, "drug_start", "nortriptyline", 25, rule="P1.tca_first")]
    bad = check_events(pd.DataFrame(rows), pd.DataFrame([pat]), Policy(first_line="tca_first"))
    assert "serotonin_check" in {v.invariant for v in bad.violations()}
    checked = rows[:3] + [_row(0, "safety_check", "nortriptyline", rule="P5.serotonin_check_snri")
                          | {"check": "serotonin_check"}] + rows[3:]
    assert check_events(pd.DataFrame(checked), pd.DataFrame([pat]), Policy(first_line="tca_first")).ok

    tables = compile_model()
    spec = load_cohort_spec(ROOT / "cohorts" / "mixed-primary-care.yaml")
    c = generate_cohort(spec, 300, 7)
    c = dataclasses.replace(c, ssri_use=np.ones(300, dtype=c.ssri_use.dtype))
    ctx = PolicyContext.build(Policy(), tables)
    ev = events_frame([Simulation(ctx, c, EngineConfig(horizon_days=730, specialist_slots_per_week=2, seed=7),
                                  0).run()], tables)
    tca = ev[(ev["event"] == "drug_start") & (ev["drug"] == "nortriptyline")]
    assert len(tca) > 10
    for _, s in tca.iterrows():
        chk = ev[(ev["patient"] == s["patient"]) & (ev["day"] == s["day"]) & (ev["event"] == "safety_check")
                 & (ev["check"] == "serotonin_check") & (ev["drug"] == "nortriptyline")]
        assert len(chk), (s["patient"], s["day"])


def test_venlafaxine_is_halved_below_crcl_30():
    """Protects the Effexor XR label in the catalogue: below CrCl 30 mL/min venlafaxine's total daily dose is
    reduced by 50% or more. Venlafaxine is the SNRI these patients get (duloxetine is avoided below CrCl 30),
    and v0.2 titrated it to 150-225 mg/day at CrCl 17. Now no dose passes 112.5 mg/day there, and the
    patients still reach venlafaxine."""
    tables = compile_model()
    spec = load_cohort_spec(ROOT / "cohorts" / "chemotherapy-induced.yaml")
    c = generate_cohort(spec, 300, 3)
    c = dataclasses.replace(c, crcl=np.linspace(10, 29.5, 300).astype(c.crcl.dtype),
                            age=np.full(300, 55.0, dtype=c.age.dtype))
    ctx = PolicyContext.build(Policy(), tables)
    ev = events_frame([Simulation(ctx, c, EngineConfig(horizon_days=365, specialist_slots_per_week=2, seed=3),
                                  0).run()], tables)
    doses = ev[ev["event"].isin(["drug_start", "dose_change"]) & (ev["drug"] == "venlafaxine")]["dose"]
    assert len(doses) > 10
    assert doses.max() <= 112.5 + 1e-9, doses.max()


def test_a_switch_after_the_patients_own_stop_cites_a_rule_that_says_so():
    """Protects narration truth (issue 9 item 12): when the patient stops a drug for reasons other than adverse
    events (X.patient_stop, issue 10 persistence), the engine decides the next step as after an intolerable
    drug and cites P4.intolerance_switch / P4.intolerance_same_class; v0.2's texts said "the drug was not
    tolerated" (228 of 2,000 guideline patients, seed 7). The rule text of every rule that follows such a
    stop on the same day must cover the patient's own stop."""
    from simulator.model.rules import load_rules

    tables = compile_model()
    spec = load_cohort_spec(ROOT / "cohorts" / "mixed-primary-care.yaml")
    c = generate_cohort(spec, 800, 7)
    ctx = PolicyContext.build(Policy(), tables)
    ev = events_frame([Simulation(ctx, c, EngineConfig(horizon_days=730, specialist_slots_per_week=2, seed=7),
                                  0).run()], tables)
    stops = ev[ev["rule"] == "X.patient_stop"][["patient", "day"]].drop_duplicates()
    starts = ev[ev["event"] == "drug_start"].merge(stops, on=["patient", "day"])
    rules = load_rules()
    after = set(starts["rule"].astype(str)) & {"P4.intolerance_switch", "P4.intolerance_same_class"}
    assert "P4.intolerance_switch" in after
    for rid in after:
        assert "X.patient_stop" in rules.get(rid).text, rid
