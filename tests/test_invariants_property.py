"""Property tests: guideline invariants hold over random valid cohorts and policies; runs are
reproducible by seed and change with it."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.analysis.runner import simulate
from simulator.model.catalog import load_catalog
from simulator.model.policy import Policy, Referral, StrongOpioidGate
from simulator.population.cohort_spec import ETIOLOGIES, load_cohort_spec
from simulator.regression.invariants import check_run
from simulator.scenario import Scenario, load_scenario

ROOT = Path(__file__).parent.parent
BASE = load_cohort_spec(ROOT / "cohorts" / "mixed-primary-care.yaml")
CAT = load_catalog()
CLASS_TRIAL = {c: max(d.adequate_trial_days for d in CAT.drugs.values() if d.drug_class == c)
               for c in ("gabapentinoid", "snri", "tca", "weak_opioid", "strong_opioid", "topical")}
PATIENTS, HORIZON = 150, 365


@st.composite
def cohorts(draw):
    mix = draw(st.lists(st.floats(0.0, 1.0), min_size=len(ETIOLOGIES), max_size=len(ETIOLOGIES)).filter(
        lambda xs: sum(xs) > 0.1))
    total = sum(mix)
    spec = BASE.model_dump()
    spec["etiology"] = {e: w / total for e, w in zip(ETIOLOGIES, mix, strict=True) if w > 0}
    spec["age"]["mean"] = draw(st.floats(35, 80))
    spec["age"]["sd"] = draw(st.floats(3, 18))
    spec["age"]["by_etiology"] = {}
    for c in ("recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "hepatic_disease", "depression"):
        spec["comorbidities"][c]["p_at_ref_age"] = draw(st.floats(0.0, 0.5))
    spec["comorbidities"]["ssri_use"]["given_depression"] = draw(st.floats(0, 1))
    spec["localized"]["probability"] = draw(st.floats(0, 1))
    spec["renal"]["crcl_at_ref_age"] = draw(st.floats(30, 110))
    return type(BASE).model_validate(spec)


@st.composite
def policies(draw):
    """Every legal policy option (lint-clean, no declared departure): the guideline's choices and the seed
    positions of issue 9 (targets within [min effective, max], duloxetine starting at 60, dose optimisation,
    add on no response, escalation after a combination, cross-taper, serotonin avoid/monitor, tramadol add
    or replace, topical per patient or fixed, amitriptyline, CIPN exclusions and HIV caution off on purpose)."""
    trial = {c: draw(st.one_of(st.none(), st.integers(CLASS_TRIAL[c], CLASS_TRIAL[c] + 28))) for c in CLASS_TRIAL}
    oral = [n for n, d in CAT.drugs.items() if d.drug_class in ("gabapentinoid", "snri", "tca", "weak_opioid")]
    names = draw(st.lists(st.sampled_from(oral), max_size=3, unique=True))
    targets = {n: draw(st.floats(CAT.drugs[n].min_effective_dose or CAT.drugs[n].target_dose, CAT.drugs[n].max_dose))
               for n in names}
    return Policy(
        first_line=draw(st.sampled_from(["guideline", "pregabalin_first", "duloxetine_first", "gabapentin_first",
                                         "tca_first", "comorbidity_guided"])),
        on_partial=draw(st.sampled_from(["add", "switch"])),
        on_no_response=draw(st.sampled_from(["switch", "add"])),
        after_combination=draw(st.sampled_from(["switch", "escalate"])),
        tramadol=draw(st.sampled_from(["second_line", "third_line", "never"])),
        tramadol_mode=draw(st.sampled_from(["add", "replace"])),
        topicals=(topicals := draw(st.sampled_from(["guideline", "first", "add_on", "never"]))),
        topical_add=draw(st.sampled_from(["any_stage", "after_combination", "never"])),
        # topicals: never with a topical_drug is an input error (an option that does nothing, issue 14)
        topical_drug=(draw(st.sampled_from(["per_patient", "lidocaine_5pct", "capsaicin_8pct"])) if topicals != "never"
                      else Policy.model_fields["topical_drug"].default),
        tca=draw(st.sampled_from(["nortriptyline", "amitriptyline"])),
        dose_optimisation=draw(st.sampled_from(["to_maximum", "before_switch", "off"])),
        start_doses=draw(st.sampled_from([{}, {"duloxetine": 60.0}])),
        cross_taper=draw(st.booleans()),
        serotonin=draw(st.sampled_from(["monitor", "avoid"])),
        cipn_exclusions=draw(st.booleans()),
        strong_opioid=StrongOpioidGate(hiv=draw(st.sampled_from(["avoid", "caution"])),
                                       min_nrs=draw(st.floats(4.0, 6.0)),
                                       keep_gabapentinoid=draw(st.booleans())),
        target_doses=targets,
        trial_days=trial,
        visit_interval_days=draw(st.integers(7, 42)),
        titration_speed=draw(st.sampled_from([1.0, 1.5, 2.0])),
        max_first_line_regimens=draw(st.integers(1, 4)),
        # the gaps of the issue 9/10 review: re-offers after the patient's own stop, re-referral, early referral
        reoffer_own_stop=draw(st.booleans()),
        tramadol_reoffer=draw(st.booleans()),
        restart_dose=draw(st.sampled_from(["retitrate", "relieving_dose"])),  # P4.restart_dose
        referral=Referral(max_consults=draw(st.integers(1, 3)),
                          after_failed_lines=draw(st.one_of(st.none(), st.integers(1, 3))),
                          while_waiting=draw(st.sampled_from(["continue", "stop"])),
                          deferral_review_days=draw(st.sampled_from([14, 28, 91]))),  # P9.re_referral_deferred
    )


def _scenario(spec, policy, seed=1):
    sc = Scenario(name="prop", cohort="mixed-primary-care.yaml", patients=PATIENTS, horizon_days=HORIZON,
                  seed=seed, policy=policy)
    return sc.model_copy(update={"cohort_spec": spec})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=cohorts(), policy=policies(), seed=st.integers(0, 10_000))
def test_invariants_hold_for_valid_policies(spec, policy, seed):
    """Protects the safety rules across the policy space, and the oracle's agreement with the engine on
    every legal option: no policy without declared departures, on any cohort, makes the engine break a
    guideline invariant (declared departures and policy options outside the guideline are reported as
    declared, not as failures)."""
    report = check_run(simulate(_scenario(spec, policy, seed)))
    violations = report.violations()
    assert not violations, [str(v) for v in violations[:5]]


def test_evaluation_after_stopped_topical_names_a_running_drug():
    """Protects item 12 (the log tells the truth) and P3: after a topical added alongside an oral drug is
    stopped for intolerance, the evaluation names a drug that is still running (v0.2 review: it named the
    stopped topical)."""
    report = check_run(simulate(load_scenario(ROOT / "tests" / "data" / "guideline-small.yaml")))
    stale = [v for v in report.violations() if v.invariant == "adequate_trial"
             and CAT.drugs[v.drug].drug_class == "topical" and "judged while not running" in v.detail]
    assert not stale, [str(v) for v in stale[:3]]


@settings(max_examples=5, deadline=None)
@given(spec=cohorts(), seed=st.integers(0, 10_000))
def test_same_seed_same_events_other_seed_differs(spec, seed):
    """Protects reproducibility: same seed -> identical events; changing only the seed changes them."""
    sc = _scenario(spec, Policy(), seed)
    a, b = simulate(sc), simulate(sc)
    assert a.events.equals(b.events)
    c = simulate(sc, seed=seed + 1)
    assert not a.events.equals(c.events)


def test_tca_started_with_tramadol_gets_serotonin_check():
    """Protects the serotonin check (S000, S004): tramadol meeting a tricyclic is checked, whichever starts
    last (v0.2 review: a tricyclic started while tramadol tapered got none)."""
    report = check_run(simulate(load_scenario(ROOT / "tests" / "data" / "escalation-s002-small.yaml")))
    missing = [v for v in report.violations() if v.invariant == "serotonin_check"
               and CAT.drugs[v.drug].drug_class == "tca" and "with tramadol" in v.detail]
    assert not missing, [str(v) for v in missing[:3]]


def test_dose_optimisation_in_a_renal_band_keeps_the_schedule_pace():
    """Protects P13 (optimisation no faster than titration) where rounding to marketed units meets a renal
    band: at CrCl ~24 pregabalin went 50 -> 75 -> 125 mg/day a week apart (300 -> 500 in normal-clearance
    terms in one week, where the schedule takes two), because the unrounded steps caught up after a round
    down. Found by the property test above in CI (seed 0); pinned here with its cohort and policy."""
    spec = BASE.model_dump()
    spec["etiology"] = {"other": 1.0}
    spec["age"].update(mean=35.0, sd=3.0, by_etiology={})
    spec["localized"]["probability"] = 0.0
    spec["renal"]["crcl_at_ref_age"] = 30.0
    policy = Policy(target_doses={"pregabalin": 200.0}, visit_interval_days=7, dose_optimisation="to_maximum")
    run = simulate(_scenario(type(BASE).model_validate(spec), policy, seed=0))
    ev, pts = run.events, run.patients
    renal = set(pts.loc[pts.crcl < 30, "patient"])
    opt = ev[(ev.rule == "P3.dose_optimisation") & ev.patient.isin(renal) & (ev.drug == "pregabalin")]
    assert len(opt) > 10  # the case is exercised: optimisation in the lowest renal bands
    raised = [v for v in check_run(run).violations() if v.invariant == "titration_schedule"]
    assert not raised, [str(v) for v in raised[:3]]
