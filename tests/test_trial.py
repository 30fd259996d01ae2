"""Virtual trials: same model as the engine, bad input is one paragraph with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.analysis.trial import TrialSpec, arm_schedule, nnt, run_trial
from simulator.cli import main
from simulator.model.clinical_tables import compile_model
from simulator.model.response import drug_effect, drug_effect_array, observed_pain, observed_pain_array

TABLES = compile_model()
DPN = "cohorts/trials/dpn.yaml"


@settings(max_examples=60, deadline=None)
@given(drug=st.sampled_from([d.name for d in TABLES.drugs]), frac=st.floats(0.05, 1.0),
       days=st.floats(0.0, 120.0), etiology=st.integers(0, 7), u=st.floats(0.0, 0.999), z=st.floats(-3, 3),
       localized=st.booleans())
def test_vectorised_drug_effect_equals_engine_function(drug, frac, days, etiology, u, z, localized):
    """Protects 'same clinical model': the trial's vectorised effect equals the engine's drug_effect."""
    d = TABLES.by_name[drug]
    dose = frac * d.max_dose
    scalar = drug_effect(TABLES, d, dose, days, etiology, u, z, localized)
    vec = drug_effect_array(TABLES, d, dose, days, np.array([etiology]), np.array([u]), np.array([z]),
                            np.array([localized]))
    assert vec[0] == pytest.approx(scalar, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(base=st.floats(0, 10), ns=st.floats(-0.3, 0.95), day=st.floats(0, 200), e1=st.floats(0, 0.95),
       z=st.floats(-3, 3))
def test_vectorised_observed_pain_equals_engine_function(base, ns, day, e1, z):
    """Protects 'same clinical model': vectorised observed pain equals the engine's observed_pain."""
    s = observed_pain(base, ns, 21.0, day, [e1], 0.7, z)
    v = observed_pain_array(np.array([base]), np.array([ns]), 21.0, day, [np.array([e1])], 0.7, np.array([z]))
    assert v[0] == pytest.approx(s, abs=0.1000001)  # rounding to 0.1 may differ only at exact halves


def test_arm_schedule_titrates_then_holds_above_catalogue_target():
    """Protects the fixed-dose arm: catalogue titration, then the arm dose one interval later."""
    steps = arm_schedule(TABLES.by_name["pregabalin"], 600)
    assert steps == ((0.0, 150.0), (7.0, 300.0), (14.0, 600.0))
    assert arm_schedule(TABLES.by_name["pregabalin"], 150) == ((0.0, 150.0),)


def test_trial_is_deterministic_and_drug_beats_placebo():
    """Protects reproducibility (same seed -> same result) and that an effective drug separates."""
    spec = TrialSpec(DPN, ("duloxetine:60", "placebo"), 12, 3000, 5)
    a, b = run_trial(spec, TABLES).as_dict(), run_trial(spec, TABLES).as_dict()
    assert a == b
    dlx, pbo = run_trial(spec, TABLES).arms
    assert dlx.responders50 > pbo.responders50 + 0.05
    assert 0.0 < pbo.ae_withdrawal < dlx.ae_withdrawal  # nocebo withdrawals on placebo, fewer than on the drug
    assert dlx.nnt50["ci_low"] <= dlx.nnt50["nnt"] <= (dlx.nnt50["ci_high"] or float("inf"))


def test_untitrated_design_starts_at_the_arm_dose_and_onset_orders_by_dose():
    """Protects the Freeman-style fixed-dose design: without titration a higher dose improves sooner."""
    res = run_trial(TrialSpec(DPN, ("pregabalin:150", "pregabalin:600", "placebo"), 12, 3000, 3, titrate=False), TABLES)
    lo, hi, pbo = res.arms
    assert hi.onset_median_days is not None and lo.onset_median_days is not None
    assert hi.onset_median_days < lo.onset_median_days
    assert pbo.onset_median_days is None or pbo.onset_median_days > lo.onset_median_days


def test_placebo_scale_moves_the_placebo_arm_only_through_the_responder_share():
    """Protects the trial-population modifier: a larger placebo_scale raises placebo responders; 0 removes them."""
    base = run_trial(TrialSpec(DPN, ("placebo",), 12, 3000, 4), TABLES).arms[0]
    more = run_trial(TrialSpec(DPN, ("placebo",), 12, 3000, 4, placebo_scale=1.5), TABLES).arms[0]
    none = run_trial(TrialSpec(DPN, ("placebo",), 12, 3000, 4, placebo_scale=0.0), TABLES).arms[0]
    assert none.responders50 < base.responders50 < more.responders50


def test_whole_point_recording_makes_ties():
    """Protects nrs_resolution: whole-point ratings leave many patients with no recorded change."""
    fine = run_trial(TrialSpec(DPN, ("placebo",), 5, 3000, 6), TABLES).arms[0]
    whole = run_trial(TrialSpec(DPN, ("placebo",), 5, 3000, 6, nrs_resolution=1.0), TABLES).arms[0]
    assert whole.any_reduction < fine.any_reduction


def test_crossover_gives_every_patient_every_arm():
    """Protects the crossover design: each arm analyses all randomised patients."""
    res = run_trial(TrialSpec("cohorts/trials/gilron-2009.yaml", ("gabapentin:2400", "nortriptyline:75"), 6, 500, 2,
                              "crossover"), TABLES)
    assert [a.n for a in res.arms] == [500, 500]


def test_nnt_ci_unbounded_when_difference_not_significant():
    """Protects the NNT CI: when the risk difference CI includes 0 the upper NNT bound is infinite (None)."""
    r = nnt(0.22, 50, 0.20, 50)
    assert r["ci_high"] is None and r["nnt"] == pytest.approx(50.0)


@pytest.mark.parametrize("args, needle", [
    (["--arm", "aspirin", "--arm", "placebo", "--weeks", "4"], "unknown drug 'aspirin'"),
    (["--arm", "pregabalin:900", "--arm", "placebo", "--weeks", "4"], "above its maximum dose"),
    (["--arm", "pregabalin:abc", "--arm", "placebo", "--weeks", "4"], "is not a number"),
    (["--arm", "pregabalin:300", "--arm", "placebo", "--weeks", "0"], "weeks must be positive"),
    (["--arm", "pregabalin:300", "--arm", "placebo", "--weeks", "-2"], "weeks must be positive"),
    (["--arm", "pregabalin:300", "--arm", "placebo", "--weeks", "4", "--patients", "0"], "patients must be at least 1"),
    (["--arm", "pregabalin:-5", "--arm", "placebo", "--weeks", "4"], "must be positive"),
])
def test_trial_bad_input_is_one_paragraph_exit_2(args, needle):
    """Protects the house rule: bad trial input -> one paragraph naming the problem, exit code 2, no traceback."""
    r = CliRunner().invoke(main, ["trial", "--cohort", DPN, *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output


def test_trial_cli_writes_json(tmp_path):
    """Protects the JSON output of `painpath trial`."""
    out = tmp_path / "t.json"
    r = CliRunner().invoke(main, ["trial", "--cohort", DPN, "--arm", "pregabalin:300", "--arm", "placebo",
                                  "--weeks", "4", "--patients", "200", "--json", str(out)])
    assert r.exit_code == 0, r.output
    import json
    data = json.loads(out.read_text())
    assert [a["arm"] for a in data["arms"]] == ["pregabalin:300", "placebo"]
