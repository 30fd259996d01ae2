"""The engine's guarantees: reproducibility, worker independence, the summary schema, policy dose targets.

The safety rules on every trajectory are checked by simulator.regression.invariants (tests/test_invariants*.py)."""

from __future__ import annotations

import math

import pytest

from simulator.analysis.runner import simulate
from simulator.scenario import load_scenario


def _scenario(cohort: str | None = None, **policy):
    sc = load_scenario("scenarios/guideline.yaml")
    if cohort or policy:
        data = sc.model_dump(exclude={"source_path", "cohort_spec"})
        data["policy"].update(policy)
        from simulator.population.cohort_spec import load_cohort_spec
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
    from simulator.model.pathway import STATES

    assert set(s["pathway"]["reached"]) == set(STATES) - {"assessment"}  # every state, drop-out included
    assert "dropped_out" in s["pathway"]["reached"]
    assert set(s["specialist"]) >= {"referred", "wait_days_median"}
    fractions = [ae["patients_with_any"], s["specialist"]["referred"], *s["pathway"]["reached"].values(),
                 *s["pathway"]["final_state"].values(), *s["time_to_relief"]["relieved_by_day"].values()]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert math.isclose(sum(s["pathway"]["final_state"].values()), 1.0, abs_tol=1e-3)


@pytest.mark.parametrize("target", [600.0])
def test_target_dose_override_titrates_further(target: float) -> None:
    """policy.target_doses: pregabalin titrated to 600 mg reaches 600 in the event log (P2)."""
    sc = _scenario(target_doses={"pregabalin": target})
    res = simulate(sc, patients=200, seed=1)
    doses = res.events[(res.events["drug"] == "pregabalin") & (res.events["event"] == "dose_change")]["dose"]
    assert doses.max() == target
