"""The engine's guarantees: reproducibility, worker independence, and the pathway's safety rules on
every simulated trajectory (property-based over random cohorts and seeds)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.clinical import compile_model
from simulator.runner import simulate
from simulator.safety import PatientFacts, dose_cap
from simulator.scenario import load_scenario

COHORTS = sorted(str(p) for p in Path("cohorts").glob("*.yaml"))
TABLES = compile_model()
FIRST_LINE = {"gabapentinoid", "snri", "tca"}


def _scenario(cohort: str | None = None, **policy):
    sc = load_scenario("scenarios/guideline.yaml")
    if cohort or policy:
        data = sc.model_dump(exclude={"source_path", "cohort_spec"})
        data["policy"].update(policy)
        from simulator.cohort import load_cohort_spec
        from simulator.scenario import Scenario

        spec = load_cohort_spec(cohort) if cohort else sc.cohort_spec
        sc = Scenario.model_validate(data).model_copy(update={"source_path": sc.source_path, "cohort_spec": spec})
    return sc


def test_same_seed_identical_results() -> None:
    """Same scenario and seed -> identical event log and summary."""
    sc = _scenario()
    a = simulate(sc, patients=300, seed=5)
    b = simulate(sc, patients=300, seed=5)
    assert a.summary == b.summary
    assert a.events.equals(b.events)


def test_other_seed_other_results() -> None:
    """Changing only the seed changes the patients and their trajectories."""
    sc = _scenario()
    a = simulate(sc, patients=300, seed=5)
    b = simulate(sc, patients=300, seed=6)
    assert not a.events.equals(b.events)


def test_workers_do_not_change_results() -> None:
    """Replications give identical results on one worker and on two."""
    sc = _scenario()
    one = simulate(sc, patients=200, seed=3, replications=4, workers=1)
    two = simulate(sc, patients=200, seed=3, replications=4, workers=2)
    assert one.summary == two.summary
    assert one.events.equals(two.events)


def test_summary_has_documented_keys_and_fractions() -> None:
    """summary.json carries every key of the documented schema, and proportions lie in [0, 1]."""
    s = simulate(_scenario(), patients=400, seed=2).summary
    for k in ("scenario", "n_patients", "replications", "seed", "horizon_days"):
        assert k in s
    assert set(s["time_to_relief"]) >= {"median_days", "median_ci95", "relieved_by_day"}
    assert set(s["time_to_relief"]["relieved_by_day"]) == {"84", "182", "365"}
    assert set(s["pain"]["mean_nrs_by_day"]) == {"0", "42", "84", "182", "365"}
    ae = s["adverse_events"]
    assert set(ae) >= {"per_patient_year", "patients_with_any", "discontinuations_per_100_patients",
                       "serious_per_100_patients", "by_type"}
    assert set(s["pathway"]["reached"]) == {"first_line", "add_on", "switch", "tramadol", "strong_opioid",
                                            "specialist_referral"}
    assert set(s["specialist"]) >= {"referred", "wait_days_median"}
    fractions = [ae["patients_with_any"], s["specialist"]["referred"], *s["pathway"]["reached"].values(),
                 *s["pathway"]["final_state"].values(), *s["time_to_relief"]["relieved_by_day"].values()]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert math.isclose(sum(s["pathway"]["final_state"].values()), 1.0, abs_tol=1e-3)


def _violations(result) -> list[str]:
    """Re-derive the safety rules from the event log and patient table (independently of the guards)."""
    ev = result.events
    pts = result.patients.set_index(["replication", "patient"])
    gate = result.scenario.policy.strong_opioid
    out: list[str] = []
    for (rep, pid), g in ev.groupby(["replication", "patient"], sort=False):
        pt = pts.loc[(rep, pid)]
        flags = frozenset(f for f in ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block",
                                      "cardiovascular_disease", "glaucoma", "orthostatic_hypotension") if pt[f])
        facts = PatientFacts(float(pt["age"]), 0, bool(pt["localized"]), float(pt["crcl"]), flags)
        failed: set[str] = set()
        combination_failed = False
        checks: set[tuple[str, str]] = set()
        tramadol = False
        state_before = "assessment"
        target_day: dict[str, float] = {}
        for row in g.itertuples(index=False):
            drug = row.drug if isinstance(row.drug, str) else None
            if row.event == "safety_check":
                checks.add((row.check, drug))
            elif row.event == "drug_start":
                d = TABLES.by_name[drug]
                if d.drug_class == "strong_opioid":
                    if sum(c in FIRST_LINE for c in failed) < gate.require_failed_classes:
                        out.append(f"P8 classes {rep}/{pid}")
                    if not combination_failed:
                        out.append(f"P8 combination {rep}/{pid}")
                    if not {("misuse_screen", drug), ("treatment_agreement", drug)} <= checks:
                        out.append(f"P8 screen {rep}/{pid}")
                if d.drug_class == "weak_opioid":
                    tramadol = True
                    if not failed:
                        out.append(f"P7 {rep}/{pid}")
                if d.drug_class == "tca":
                    if facts.age > 40 and ("ecg", drug) not in checks:
                        out.append(f"P5 ECG {rep}/{pid}")
                    if flags & {"recent_mi", "arrhythmia", "heart_block"}:
                        out.append(f"P5 TCA cardiac {rep}/{pid}")
                if drug == "duloxetine" and "hepatic_disease" in flags:
                    out.append(f"P5 duloxetine hepatic {rep}/{pid}")
            if row.event in ("drug_start", "dose_change") and not math.isnan(row.dose):
                cap, _ = dose_cap(TABLES.by_name[drug], facts)
                if row.dose > cap + 1e-9:
                    out.append(f"dose cap {drug} {row.dose}>{cap} {rep}/{pid}")
                d = TABLES.by_name[drug]
                if row.dose >= min(d.target_dose, cap) - 1e-9 and drug not in target_day:
                    target_day[drug] = row.day
            if row.event == "evaluation" and row.outcome != "relief":
                d = TABLES.by_name[drug]
                trial = result.scenario.policy.trial_days.model_dump().get(d.drug_class) or d.adequate_trial_days
                if d.drug_class == "strong_opioid":
                    trial = min(trial, gate.max_trial_days)
                if row.day + 1e-6 < target_day.get(drug, math.inf) + trial:
                    out.append(f"P3 early judgement {drug} day {row.day} {rep}/{pid}")
            if row.event == "drug_stop":
                c = TABLES.by_name[drug].drug_class
                failed.add(c)
                if state_before == "add_on" or row.state == "add_on":
                    combination_failed = True
            if row.event == "transition":
                state_before = row.state
        del tramadol
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cohort=st.sampled_from(COHORTS), seed=st.integers(0, 10_000),
       on_partial=st.sampled_from(["add", "switch"]), tramadol=st.sampled_from(["second_line", "third_line"]),
       first=st.sampled_from(["guideline", "duloxetine_first", "tca_first", "comorbidity_guided"]))
def test_safety_rules_hold_on_every_trajectory(cohort, seed, on_partial, tramadol, first) -> None:
    """No strong opioid before P8, no tramadol before a first-line failure (P7), no TCA over 40 without an
    ECG or with a cardiac contraindication, no duloxetine in hepatic disease (P5), no dose above its
    age/renal/caution-adjusted maximum, no failure judged before the adequate trial (P3, P13)."""
    sc = _scenario(cohort, on_partial=on_partial, tramadol=tramadol, first_line=first)
    res = simulate(sc, patients=150, seed=seed)
    assert _violations(res) == []


def test_safety_checker_catches_an_early_opioid() -> None:
    """The checker above is not vacuous: a gate opened early is reported."""
    sc = _scenario(strong_opioid={"require_failed_classes": 0, "require_combination": False,
                                  "require_tramadol": False, "misuse_screen": True},
                   tramadol="never", max_first_line_regimens=1, declared_departures=["early_strong_opioid"])
    res = simulate(sc, patients=300, seed=4)
    bad = _violations(res)
    assert any(v.startswith("P8") for v in bad)


@pytest.mark.parametrize("target", [600.0])
def test_target_dose_override_titrates_further(target: float) -> None:
    """policy.target_doses: pregabalin titrated to 600 mg reaches 600 in the event log (P2)."""
    sc = _scenario(target_doses={"pregabalin": target})
    res = simulate(sc, patients=200, seed=1)
    doses = res.events[(res.events["drug"] == "pregabalin") & (res.events["event"] == "dose_change")]["dose"]
    assert doses.max() == target
