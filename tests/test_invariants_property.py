"""Property tests: guideline invariants hold over random valid cohorts and policies; runs are
reproducible by seed and change with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.catalog import load_catalog
from simulator.cohort import ETIOLOGIES, load_cohort_spec
from simulator.invariants import check_run
from simulator.policy import Policy
from simulator.runner import simulate
from simulator.scenario import Scenario

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
    trial = {c: draw(st.one_of(st.none(), st.integers(CLASS_TRIAL[c], CLASS_TRIAL[c] + 28))) for c in CLASS_TRIAL}
    return Policy(
        first_line=draw(st.sampled_from(["guideline", "pregabalin_first", "duloxetine_first", "gabapentin_first",
                                         "tca_first", "comorbidity_guided"])),
        on_partial=draw(st.sampled_from(["add", "switch"])),
        tramadol=draw(st.sampled_from(["second_line", "third_line", "never"])),
        topicals=draw(st.sampled_from(["guideline", "first", "add_on", "never"])),
        trial_days=trial,
        visit_interval_days=draw(st.integers(7, 42)),
        titration_speed=draw(st.sampled_from([1.0, 1.5, 2.0])),
        max_first_line_regimens=draw(st.integers(1, 4)),
    )


def _scenario(spec, policy, seed=1):
    sc = Scenario(name="prop", cohort="mixed-primary-care.yaml", patients=PATIENTS, horizon_days=HORIZON,
                  seed=seed, policy=policy)
    return sc.model_copy(update={"cohort_spec": spec})


@pytest.mark.xfail(reason="superseded by issue 9: v0.1 invariants re-derive v0.1 caps and schedules; the independent oracle (branch i9c) replaces invariants.py", strict=False)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=cohorts(), policy=policies(), seed=st.integers(0, 10_000))
def test_invariants_hold_for_valid_policies(spec, policy, seed):
    """Protects the safety rules across the policy space: no policy without declared departures, on any
    cohort, makes the engine break a guideline invariant."""
    report = check_run(simulate(_scenario(spec, policy, seed)))
    assert report.ok, [str(v) for v in report.violations()[:5]]


@settings(max_examples=5, deadline=None)
@given(spec=cohorts(), seed=st.integers(0, 10_000))
def test_same_seed_same_events_other_seed_differs(spec, seed):
    """Protects reproducibility: same seed -> identical events; changing only the seed changes them."""
    sc = _scenario(spec, Policy(), seed)
    a, b = simulate(sc), simulate(sc)
    assert a.events.equals(b.events)
    c = simulate(sc, seed=seed + 1)
    assert not a.events.equals(c.events)
