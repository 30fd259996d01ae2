"""Virtual-trial protocols: every design feature runs a small trial and the per-patient output shows the
design was followed (doses, timings, who was escalated, who was evaluated)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.analysis.trial import TrialDesignFile, TrialSpec, load_design, run_trial
from simulator.cli import main
from simulator.inputs.errors import InputError
from simulator.model.clinical_tables import compile_model
from simulator.model.response import RESPONSE_COLUMNS, draw_latents

TABLES = compile_model()
DPN = "cohorts/trials/dpn.yaml"


def design(**kw) -> TrialDesignFile:
    base = {"cohort": DPN, "weeks": 12, "patients": 600, "seed": 3}
    return TrialDesignFile.model_validate({**base, **kw})


def run(d: TrialDesignFile):
    return run_trial(d, TABLES, keep_patients=True)


# --- the clinical model's twins ------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(i=st.integers(0, 49), drug=st.sampled_from([d.name for d in TABLES.drugs]), day=st.floats(0, 400))
def test_scalar_responsiveness_equals_vectorised(i, drug, day):
    """Protects 'same clinical model': the engine's per-patient latent uniform and nonspecific reduction
    on a day equal the trial's vectorised ones."""
    rng = np.random.default_rng(0)
    lat = draw_latents(TABLES, np.zeros(50, dtype=int), rng.random((50, RESPONSE_COLUMNS)))
    d = TABLES.by_name[drug]
    # same formula; the vectorised twin computes the drift's cosines in single precision (1e-5 is ample)
    assert lat.u_scalar(i, d.index, day) == pytest.approx(float(lat.u_at(np.array([i]), d.index, day)[0]), abs=1e-5)
    assert lat.ns_scalar(i, day) == float(lat.ns_at(np.array([i]), day)[0])


def test_drift_keeps_responder_share_stationary_but_moves_patients():
    """Protects the drift structure: across patients the latent uniform stays uniform on any day (responder
    shares do not depend on the day), while individual patients change over weeks."""
    rng = np.random.default_rng(1)
    lat = draw_latents(TABLES, np.zeros(20000, dtype=int), rng.random((20000, RESPONSE_COLUMNS)))
    d = TABLES.by_name["duloxetine"].index
    rows = np.arange(20000)
    u0, u60 = lat.u_at(rows, d, 0.0), lat.u_at(rows, d, 60.0)
    assert abs(np.mean(u0 < 0.3) - 0.3) < 0.015 and abs(np.mean(u60 < 0.3) - 0.3) < 0.015
    moved = np.mean((u0 < 0.3) != (u60 < 0.3))
    assert moved > 0.1


# --- design features -------------------------------------------------------------------------------------


def test_increase_dose_only_for_patients_meeting_the_condition():
    """Protects increase_dose and conditions on relative change: exactly the patients with < 50% reduction at
    day 28 are escalated, from day 28, to the stated dose; the others stay on the first dose."""
    d = design(endpoint={"evaluation_days": [28]}, guideline_gates=False, arms=[{"name": "esc", "steps": [
        {"day": 0, "start": "pregabalin", "dose": 300},
        {"day": 28, "when": {"reduction_below": 0.5}, "increase_dose": "pregabalin", "dose": 600}]}])
    p = run(d).patients
    on = p[p.status.isin(["completed"])]
    red = (on.baseline_nrs - on.nrs_day_28) / on.baseline_nrs
    assert on.escalated.sum() > 50
    assert (on.escalated == (red < 0.5 - 1e-9)).all()
    assert (on.loc[on.escalated, "dose_end_pregabalin"] == 600).all()
    assert (on.loc[~on.escalated, "dose_end_pregabalin"] == 300).all()


def test_nrs_condition_and_add_on():
    """Protects NRS conditions and add: duloxetine is added at day 42 to exactly the patients with NRS > 3."""
    d = design(endpoint={"evaluation_days": [42]}, guideline_gates=False, arms=[{"name": "add", "steps": [
        {"day": 0, "start": "pregabalin", "dose": 300}, {"day": 42, "when": {"nrs_above": 3}, "add": "duloxetine", "dose": 60}]}])
    p = run(d).patients
    done = p[p.status == "completed"]
    assert ((done.dose_end_duloxetine > 0) == (done.nrs_day_42 > 3)).all()


def test_placebo_arm_has_nocebo_events_and_nnh():
    """Protects placebo arms: nocebo adverse events and AE withdrawal at the placebo rates; NNH next to NNT."""
    res = run(design(patients=4000, arms=["duloxetine:60", "placebo"], guideline_gates=False))
    dlx, pbo = res.arms
    assert 0.03 < pbo.ae_withdrawal < 0.09 and 0.05 < pbo.ae_incidence["nausea"] < 0.14
    assert dlx.nnh_ae_withdrawal["nnt"] is not None and dlx.nnt50["nnt"] is not None
    assert pbo.any_ae_moderate_severe < pbo.any_ae


def test_crossover_periods_and_washout():
    """Protects crossover designs: every patient gets every arm once, one period each, and the nonspecific
    response keeps building across periods (later periods start from a later day)."""
    d = design(design="crossover", weeks=4, washout_days=7, guideline_gates=False, arms=["gabapentin:1800", "placebo"])
    p = run(d).patients
    per = p.groupby("patient").agg(arms=("arm", "nunique"), periods=("period", "nunique"), rows=("arm", "size"))
    assert (per.arms == 2).all() and (per.periods == 2).all() and (per.rows == 2).all()
    assert set(p.period) == {0, 1}
    # the washout separates the periods: period q starts on day q * (28 + 7)
    assert (p.period_start_day == p.period * (28 + 7)).all()


def test_inclusion_criteria_are_applied():
    """Protects inclusion and exclusion: every enrolled patient meets age, baseline NRS, CrCl and no hepatic disease."""
    d = design(arms=["placebo"], inclusion={"age_min": 40, "age_max": 70, "min_baseline_nrs": 5, "min_crcl": 60,
                                             "exclude": ["hepatic_disease"]})
    res = run(d)
    p = res.patients
    assert p.age.between(40, 70).all() and (p.baseline_nrs >= 5 - 1e-9).all()
    assert res.screened > len(p)


def test_lead_in_randomises_inadequate_responders_only():
    """Protects the lead-in: only patients with < 30% reduction after 4 weeks of pregabalin are randomised."""
    d = design(patients=1500, lead_in={"drug": "pregabalin", "dose": 300, "weeks": 4, "keep_if": {"reduction_below": 0.3}},
               guideline_gates=False, arms=["duloxetine:60", "placebo"])
    res = run(d)
    assert 0 < res.lead_in_excluded < 1500
    assert len(res.patients) == 1500 - res.lead_in_excluded
    # the selection follows the criterion: a looser one (< 60% reduction) keeps more of the same patients
    loose = run(design(patients=1500, lead_in={"drug": "pregabalin", "dose": 300, "weeks": 4,
                                              "keep_if": {"reduction_below": 0.6}},
                       guideline_gates=False, arms=["duloxetine:60", "placebo"]))
    assert loose.lead_in_excluded < res.lead_in_excluded
    assert set(res.patients.patient) < set(loose.patients.patient)


@pytest.mark.parametrize("handling", ["withdraw", "stop_drug", "down_titrate"])
def test_intolerance_handling(handling):
    """Protects per-protocol intolerance: withdraw ends the trial (BOCF keeps baseline), stop_drug stops the drug
    and keeps the patient, down_titrate keeps the patient at a lower dose (maximum tolerated dose)."""
    d = design(patients=1500, on_intolerance=handling, guideline_gates=False,
               arms=[{"name": "pgb", "steps": [{"day": 0, "start": "pregabalin", "dose": 600}]}])
    p = run(d).patients
    hit = p[p.intolerable_ae]
    assert len(hit) > 50
    if handling == "withdraw":
        assert (hit.status == "withdrawn_adverse_event").all()
        assert np.allclose(hit.endpoint_nrs, hit.baseline_nrs)
    elif handling == "stop_drug":
        assert (hit.status == "completed").all() and (hit.dose_end_pregabalin == 0).all()
    else:
        assert (hit.status == "completed").all()
        assert (hit.dose_end_pregabalin < 600).all() and (hit.dose_end_pregabalin > 0).any()


@pytest.mark.parametrize("handling", ["withdraw", "stop_drug", "down_titrate"])
def test_placebo_intolerance_follows_the_protocol(handling):
    """Protects blinded intolerance handling: a placebo patient with an intolerable nocebo event is withdrawn
    only when the protocol withdraws; under stop_drug or down_titrate the patient stays, as on the drug arm
    (withdrawing placebo patients alone made placebo lose more patients to adverse events than the drug)."""
    p = run(design(patients=3000, on_intolerance=handling, guideline_gates=False, arms=["placebo"])).patients
    hit = p[p.intolerable_ae]
    assert len(hit) > 30
    expected = "withdrawn_adverse_event" if handling == "withdraw" else "completed"
    assert (hit.status == expected).all()


def test_locf_observed_and_dropout():
    """Protects endpoint analyses and protocol drop-out: with drop-out, LOCF keeps the last evaluation, observed
    analyses completers only; no drop-out when the protocol sets none."""
    arms = [{"name": "dlx", "steps": [{"day": 0, "start": "duloxetine", "dose": 60}]}]
    none = run(design(arms=arms, guideline_gates=False)).patients
    assert (none.status != "dropout").all()
    d = design(arms=arms, dropout_per_week=0.05, endpoint={"analysis": "locf", "evaluation_days": [28, 56]},
               guideline_gates=False)
    p = run(d).patients
    gone = p[p.status == "dropout"]
    assert len(gone) > 100
    late = gone[gone.left_on_day > 56]
    assert np.allclose(late.endpoint_nrs, late.nrs_day_56)
    obs = run(d.model_copy(update={"endpoint": d.endpoint.model_copy(update={"analysis": "observed"})})).patients
    assert obs[obs.status == "dropout"].endpoint_nrs.isna().all()


def test_diary_mean_and_onset_endpoints():
    """Protects NRS endpoints: a 7-day diary mean varies less than one visit rating; time-to-onset endpoints
    (first day of a 1-point improvement, of a 30% reduction) are ordered."""
    visit = run(design(arms=["duloxetine:60"], guideline_gates=False)).patients
    diary = run(design(arms=["duloxetine:60"], endpoint={"nrs": "diary7"}, guideline_gates=False)).patients
    assert np.nanvar(diary.endpoint_nrs - visit.endpoint_nrs) > 0
    assert np.nanstd(diary.endpoint_nrs) < np.nanstd(visit.endpoint_nrs)
    both = visit.dropna(subset=["onset_1pt_day", "onset_30pct_day"])
    assert len(both) > 50


def test_any_drug_in_any_step_and_gates_logged():
    """Protects any drug in any step: a strong opioid first and an oral drug after a topical are given; a
    contraindicated start is a logged exclusion (rule id), never silent."""
    d = design(arms=[{"name": "opioid_first", "steps": [{"day": 0, "start": "morphine", "dose": 60}]},
                     {"name": "after_topical", "steps": [{"day": 0, "start": "lidocaine_5pct", "dose": 1},
                                                         {"day": 28, "add": "nortriptyline", "dose": 50}]}])
    res = run(d)
    p = res.patients
    opioid = p[p.arm == "opioid_first"]
    assert (opioid[opioid.status == "completed"].dose_end_morphine > 0).all()
    topical = p[p.arm == "after_topical"]
    assert (topical[topical.status == "completed"].dose_end_nortriptyline > 0).all()
    excluded = p[p.status == "excluded"]
    assert len(excluded) > 0 and excluded.exclusion.str.contains("P5|P6").all()
    assert sum(res.arm("after_topical").excluded.values()) == len(excluded[excluded.arm == "after_topical"])


def test_open_label_raises_nonspecific_response():
    """Protects the expectation option: the same arm open-label has more responders than blinded."""
    blind = run_trial(TrialSpec(DPN, ("placebo",), 12, 3000, 4), TABLES).arms[0]
    open_ = run_trial(TrialSpec(DPN, ("placebo",), 12, 3000, 4, blinding="open_label"), TABLES).arms[0]
    assert open_.responders50 > blind.responders50 + 0.02


def test_randomise_branches_split_non_responders():
    """Protects re-randomisation: non-responders at the step are split evenly into the branches, responders
    stay out, and each branch's step is applied to its members only."""
    res = run_trial(load_design("trials/combo-dn.yaml").model_copy(update={"patients": 2000, "cohort": DPN}),
                    TABLES, keep_patients=True)
    p = res.patients
    br = p[p.branch != ""]
    assert abs((br.branch == "high_dose").sum() - (br.branch == "combination").sum()) <= 2
    assert (((br.baseline_nrs - br.branch_entry_nrs) / br.baseline_nrs) < 0.5).all()
    hd = br[(br.branch == "high_dose") & (br.status == "completed") & (br.arm == "duloxetine")]
    assert (hd.dose_end_duloxetine == 120).all() and (hd.dose_end_pregabalin == 0).all()
    combo = br[(br.branch == "combination") & (br.status == "completed") & (br.arm == "duloxetine")]
    assert (combo.dose_end_pregabalin > 0).all() and (combo.dose_end_duloxetine == 60).all()


# --- README worked examples -------------------------------------------------------------------------------


def test_readme_sequential_add_on_follows_its_design():
    """Protects README example 1: escalation at day 28 only for NRS > 3, add-on at day 56 only for < 50%
    reduction, nothing for placebo, evaluations on days 28 and 56."""
    res = run_trial(load_design("trials/sequential-add-on.yaml").model_copy(update={"patients": 800}), TABLES,
                    keep_patients=True)
    p = res.patients
    st_ = p[(p.arm == "stepped") & (p.status == "completed")]
    assert {"nrs_day_28", "nrs_day_56"} <= set(p.columns)
    esc = st_[st_.escalated]
    assert len(esc) > 50 and (esc.nrs_day_28 > 3).all()
    kept = st_[~st_.escalated & (st_.nrs_day_28 > 3)]  # only when the gates capped the dose (logged) or after intolerance
    assert ((kept.dose_capped != "") | kept.intolerable_ae).all()
    added = st_.dose_end_duloxetine > 0
    red56 = (st_.baseline_nrs - st_.nrs_day_56) / st_.baseline_nrs
    follows = added == (red56 < 0.5 - 1e-9)
    assert follows.mean() > 0.95 and st_[~follows].intolerable_ae.all()  # stopped at the lowest dose on intolerance
    pbo = p[p.arm == "placebo"]
    assert (pbo.dose_end_pregabalin == 0).all() and (pbo.dose_end_duloxetine == 0).all()


def test_readme_crossover_follows_its_design():
    """Protects README example 3: three periods, each arm once per patient, combination periods give both drugs."""
    res = run_trial(load_design("trials/crossover-washout.yaml").model_copy(update={"patients": 300}), TABLES,
                    keep_patients=True)
    p = res.patients
    assert (p.groupby("patient").arm.nunique() == 3).all()
    combo = p[(p.arm == "combination") & (p.status == "completed")]
    both = (combo.dose_end_gabapentin > 0) & (combo.dose_end_nortriptyline > 0)
    assert both.mean() > 0.9 and combo[~both].intolerable_ae.all()
    gbp = p[p.arm == "gabapentin"]
    assert (gbp.dose_end_nortriptyline == 0).all()
    assert (p.period_start_day == p.period * (42 + 7)).all()  # 6-week periods, 1-week washout


# --- input errors and the CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize("arms, needle", [
    ([{"name": "a", "steps": [{"day": 0, "increase_dose": "pregabalin", "dose": 600}]}], "no earlier step"),
    ([{"name": "a", "steps": [{"day": 0, "start": "aspirin"}]}], "unknown drug 'aspirin'"),
    ([{"name": "a", "steps": [{"day": 0, "start": "pregabalin", "dose": 900}]}], "above its maximum dose"),
    ([{"name": "a", "steps": [{"day": 200, "start": "pregabalin", "dose": 300}]}], "after the end of the period"),
])
def test_design_errors_name_the_step(arms, needle):
    """Protects 'never silent': a step that cannot be given is an input error naming the step."""
    with pytest.raises(InputError) as e:
        run_trial(design(arms=arms), TABLES)
    assert needle in str(e.value) and "arms[0].steps[0]" in str(e.value)


def test_cli_design_file_parquet_and_bad_yaml(tmp_path):
    """Protects `painpath trial --design`: per-patient Parquet written; a malformed design is one paragraph, exit 2."""
    out = tmp_path / "p.parquet"
    r = CliRunner().invoke(main, ["trial", "--design", "trials/sequential-add-on.yaml", "--patients", "200",
                                  "--patients-out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(out)) == 200
    bad = tmp_path / "bad.yaml"
    bad.write_text("cohort: cohorts/trials/dpn.yaml\nweeks: 4\narms:\n  - {name: a, steps: [{day: 0, start: pregabalin, stop: pregabalin}]}\n")
    r = CliRunner().invoke(main, ["trial", "--design", str(bad)])
    assert r.exit_code == 2 and "exactly one of" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["trial", "--cohort", DPN, "--arm", "placebo", "--weeks", "4", "--patients", "200",
                                  "--placebo-scale", "1.5"])
    assert r.exit_code == 0, r.output


def test_protocol_scenario_runs_as_a_trial_with_its_own_rules():
    """Protects the shared facility: a scenario's protocol policy run as a trial follows the protocol, not the
    pathway's relief rule: every patient with NRS > 3 at week 6 gets nortriptyline (unless excluded by a
    logged gate or stopped for intolerance) and every enrolled patient has a week-16 value."""
    from simulator.analysis.trial import protocol_design

    d = protocol_design("tests/data/protocol-gilron.yaml")
    assert d.weeks == 16 and d.on_intolerance == "down_titrate"
    p = run_trial(d, TABLES, keep_patients=True).patients
    kept = p[p.status != "excluded"]
    assert kept.endpoint_nrs.notna().all()
    high = kept[kept.nrs_day_42 > 3]
    given = high.dose_end_nortriptyline > 0
    assert given.mean() > 0.8 and high[~given].intolerable_ae.all()
    assert (kept[kept.nrs_day_42 <= 3].dose_end_nortriptyline == 0).all()
    assert p[p.status == "excluded"].exclusion.str.startswith("nortriptyline: P5").all()


def test_restarted_drug_draws_fresh_adverse_events():
    """Protects against replayed draws: a drug stopped and started again gives new patients its adverse events
    (a replay of the first course's draws would add none)."""
    once = [{"name": "a", "steps": [{"day": 0, "start": "pregabalin", "dose": 300},
                                    {"day": 28, "stop": "pregabalin"}]}]
    twice = [{"name": "a", "steps": [{"day": 0, "start": "pregabalin", "dose": 300},
                                     {"day": 28, "stop": "pregabalin"}, {"day": 42, "start": "pregabalin", "dose": 300}]}]
    a = run_trial(design(patients=2000, arms=once, guideline_gates=False), TABLES).arms[0]
    b = run_trial(design(patients=2000, arms=twice, guideline_gates=False), TABLES).arms[0]
    assert b.ae_incidence["dizziness"] > a.ae_incidence["dizziness"] + 0.03


def test_engine_protocol_mode_relief_does_not_preempt_steps():
    """Protects protocol mode in the engine: the pathway's relief rule does not end follow-up before the
    protocol's last step, so every patient evaluated above NRS 3 at week 6 gets nortriptyline (unless a
    gate excluded it or the patient dropped out), and no patient is relieved before the last step."""
    from simulator.analysis.runner import simulate
    from simulator.scenario import load_scenario

    ev = simulate(load_scenario("tests/data/protocol-gilron.yaml")).events
    e42 = ev[(ev.event == "evaluation") & (ev.day == 42.0)].set_index("patient").pain_nrs
    added = set(ev[(ev.event == "drug_start") & (ev.drug == "nortriptyline")].patient)
    excluded = set(ev[(ev.event == "excluded") & (ev.drug == "nortriptyline")].patient)
    left = set(ev[(ev.event == "dropout") & (ev.day == 42.0)].patient)
    above = set(e42[e42 > 3].index)
    assert len(above) > 100 and above - excluded - left <= added
    relieved = ev[(ev.event == "transition") & (ev.state == "relieved")]
    assert len(relieved) > 50 and (relieved.day > 42.0).all()
