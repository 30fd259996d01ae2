"""Issue 9: the seeds' pathway drug by drug. Each test reproduces a v0.1 fault as a small cohort and asserts
the corrected behaviour on simulated trajectories (the event log, docs/event-log.md)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.analysis.outcomes import events_frame
from simulator.engine.simulation import EngineConfig, Simulation
from simulator.model.catalog import load_catalog
from simulator.model.clinical_tables import compile_model
from simulator.model.policy import Policy, Protocol, ProtocolStep
from simulator.model.policy_context import PolicyContext
from simulator.model.rules import load_rules
from simulator.population.cohort import generate_cohort
from simulator.population.cohort_spec import ETIOLOGIES, load_cohort_spec
from simulator.regression.lint import lint_policy

ROOT = Path(__file__).resolve().parents[1]
TABLES = compile_model()
CAT = load_catalog().drugs
# Daily doses the US labels' units give (written here, not read from drugs.yaml): Lyrica capsules, at most 3 a
# day; Neurontin capsules and tablets, at most 6 a day (P2.givable_dose).
LABEL_UNITS = {"pregabalin": ((25, 50, 75, 100, 150, 200, 225, 300), 3),
               "gabapentin": ((100, 300, 400, 600, 800), 6), "duloxetine": ((20, 30, 60), 2)}


@lru_cache(maxsize=8)
def _givable(drug: str) -> tuple[float, ...]:
    strengths, most = LABEL_UNITS[drug]
    sums: set[float] = set()
    level = {0.0}
    for _ in range(most):
        level = {a + b for a in level for b in strengths}
        sums |= level
    return tuple(sorted(sums))


def _down(drug: str, dose: float) -> float:
    """The largest givable daily dose not above ``dose``, never below the smallest unit."""
    g = _givable(drug)
    return max([x for x in g if x <= dose + 1e-9], default=g[0])
N = 400


@lru_cache(maxsize=4)
def _base(n: int = N, seed: int = 3):
    return generate_cohort(load_cohort_spec(ROOT / "cohorts" / "mixed-primary-care.yaml"), n, seed)


def cohort(n: int = N, seed: int = 3, **fixed):
    """The mixed primary-care cohort with some attributes fixed for everyone (v0.1 fault scenarios)."""
    c = _base(n, seed)
    cols = {}
    for k, v in fixed.items():
        if k == "etiology":
            v = ETIOLOGIES.index(v)
        cols[k] = np.full(n, v, dtype=getattr(c, k).dtype)
    return dataclasses.replace(c, **cols)


def run(c, policy: Policy | None = None, seed: int = 3, horizon: float = 730.0) -> pd.DataFrame:
    ctx = PolicyContext.build(policy or Policy(), TABLES)
    sim = Simulation(ctx, c, EngineConfig(horizon_days=horizon, specialist_slots_per_week=2, seed=seed), 0)
    return events_frame([sim.run()], TABLES)


def rows(ev: pd.DataFrame, event: str | None = None, drug: str | None = None, rule: str | None = None) -> pd.DataFrame:
    m = np.ones(len(ev), dtype=bool)
    if event:
        m &= (ev["event"] == event).to_numpy()
    if drug:
        m &= (ev["drug"] == drug).to_numpy()
    if rule:
        m &= (ev["rule"] == rule).to_numpy()
    return ev[m]


def dosed(ev: pd.DataFrame, drug: str) -> pd.DataFrame:
    """Rows that give a dose of ``drug`` (start and dose changes)."""
    return ev[ev["event"].isin(["drug_start", "dose_change"]) & (ev["drug"] == drug)]


# ---- item 1: renal dosing by exposure -------------------------------------------------------------

def _factor(crcl: float) -> float:
    f = 1.0
    for band in sorted(CAT["pregabalin"].renal_exposure, key=lambda b: -b.crcl_below):
        if crcl < band.crcl_below:
            f = band.factor
    return f


@settings(max_examples=12, deadline=None)
@given(crcl=st.floats(min_value=6, max_value=120))
def test_renal_band_scales_the_whole_pregabalin_schedule(crcl: float) -> None:
    """v0.1: at CrCl 30-59 pregabalin titrated to 300 like normal kidneys (only a cap). Now every dose, from
    the first, is the normal one times the band factor, and no dose exceeds max_dose * factor."""
    c = cohort(40, age=50.0, crcl=crcl, localized=False)
    ev = run(c, Policy(first_line="pregabalin_first"), horizon=200)
    f = _factor(crcl)
    starts = rows(ev, "drug_start", "pregabalin")
    # P2.min_dose, then P2.givable_dose (37.5 mg/day at CrCl 15-29 is given as 25)
    assert len(starts) and np.allclose(starts["dose"], _down("pregabalin", max(150 * f, CAT["pregabalin"].min_dose)))
    assert dosed(ev, "pregabalin")["dose"].max() <= 600 * f + 1e-9
    if f < 1:
        assert len(rows(ev, "dose_limit", "pregabalin", "P5.renal_dose")) == len(starts)


def test_reduced_dose_in_reduced_clearance_acts_like_full_dose() -> None:
    """v0.1: relief 4.8% at CrCl < 15 against 44% at normal CrCl (effect followed the nominal capped dose).
    Now exposure is what acts: the same patients judged on pregabalin have the same pain at the first
    evaluation whatever their clearance band."""
    kw = dict(age=50.0, localized=False, etiology="diabetic_neuropathy")
    normal = run(cohort(crcl=95.0, **kw), Policy(first_line="pregabalin_first"), horizon=120)
    # CrCl 20 (factor 1/4): no dose of the band's schedule is raised to the 25 mg floor (P2.min_dose)
    low = run(cohort(crcl=20.0, **kw), Policy(first_line="pregabalin_first"), horizon=120)

    def first_eval(ev):
        e = rows(ev, "evaluation", "pregabalin")
        return e.groupby("patient")["pain_nrs"].first()

    a, b = first_eval(normal), first_eval(low)
    common = a.index.intersection(b.index)
    assert len(common) > 100
    assert np.allclose(a[common], b[common])


# ---- item 2: older adults start lower; TCAs < 100 mg/day with age or cardiac disease ---------------

def test_older_adult_starts_pregabalin_lower_and_slower() -> None:
    """v0.1: an 84-year-old started pregabalin at 150 mg/day. Now the older-adult start dose (75), logged
    with P2.older_adult_start, and the next step comes later than in a younger adult."""
    old = run(cohort(age=84.0, crcl=90.0, localized=False), Policy(first_line="pregabalin_first"), horizon=120)
    young = run(cohort(age=50.0, crcl=90.0, localized=False), Policy(first_line="pregabalin_first"), horizon=120)
    assert set(rows(old, "drug_start", "pregabalin")["dose"]) == {CAT["pregabalin"].older_adult.start_dose}
    assert len(rows(old, "dose_limit", "pregabalin", "P2.older_adult_start")) == len(rows(old, "drug_start", "pregabalin"))
    first_step = lambda ev: rows(ev, "dose_change", "pregabalin").groupby("patient")["day"].min().median()  # noqa: E731
    assert first_step(old) > first_step(young)


GABAPENTINOID_FIRST = {"pregabalin": "pregabalin_first", "gabapentin": "gabapentin_first"}


@settings(max_examples=10, deadline=None)
@given(crcl=st.floats(min_value=6, max_value=120), age=st.sampled_from([50.0, 70.0, 84.0]),
       drug=st.sampled_from(["pregabalin", "gabapentin"]))
def test_older_adult_and_renal_reductions_do_not_stack(crcl: float, age: float, drug: str) -> None:
    """Issue 9 review: an older adult at CrCl < 15 started pregabalin at 9.375 mg/day (the older-adult start
    75 times the band's 1/8). Now, on simulated trajectories of every age and clearance: the first dose is
    the lower of the older-adult start and the band's first dose, never their product (P2.older_renal_start),
    and no treating dose (taper steps aside) is below the smallest marketed daily dose (P2.min_dose)."""
    d = CAT[drug]
    c = cohort(40, age=age, crcl=crcl, localized=False, etiology="diabetic_neuropathy")
    ev = run(c, Policy(first_line=GABAPENTINOID_FIRST[drug]), horizon=200)
    f = 1.0
    for band in d.renal_exposure:
        if crcl < band.crcl_below:
            f = min(f, band.factor)
    first = d.titration[0].dose * f
    if age >= d.older_adult.min_age:
        first = min(first, d.older_adult.start_dose)
    first = _down(drug, max(first, d.min_dose))  # P2.givable_dose
    starts = rows(ev, "drug_start", drug)
    assert len(starts) and np.allclose(starts["dose"], first)
    treating = dosed(ev, drug)
    treating = treating[treating["rule"] != "P5.taper_step"]
    assert treating["dose"].min() >= d.min_dose - 1e-9
    older_renal = rows(ev, "dose_limit", drug, "P2.older_renal_start")
    assert len(older_renal) == (len(starts) if age >= d.older_adult.min_age and f < 1 else 0)
    assert (len(rows(ev, "dose_limit", drug, "P2.min_dose")) > 0) == (d.titration[0].dose * f < d.min_dose
                                                                        or (age >= d.older_adult.min_age and f < 1
                                                                            and d.older_adult.start_dose < d.min_dose))


def test_every_reduced_drug_has_a_floor_at_or_below_its_lowest_start() -> None:
    """Every drug with a renal or age reduction (gabapentinoids, duloxetine's CrCl < 30 avoidance, TCAs and
    the others' older-adult start) names its smallest marketed daily dose, and every older-adult start dose
    is at least that dose (so an age reduction alone never goes below it); duloxetine is excluded, not
    reduced, below CrCl 30."""
    for name, d in CAT.items():
        if d.drug_class == "topical":
            continue
        if d.renal_exposure or d.older_adult.start_dose or d.renal_caps:
            assert d.min_dose is not None, name
        if d.older_adult.start_dose is not None:
            assert d.older_adult.start_dose >= d.min_dose, name
    assert [(c.crcl_below, c.max_dose) for c in CAT["duloxetine"].renal_caps] == [(30, 0)]
    ev = run(cohort(60, age=84.0, crcl=20.0, localized=False), Policy(first_line="duloxetine_first"), horizon=120)
    assert rows(ev, "drug_start", "duloxetine").empty


@pytest.mark.parametrize("fixed", [{"age": 75.0}, {"age": 50.0, "cardiovascular_disease": True}])
def test_tca_stays_below_100_with_age_or_cardiac_disease(fixed: dict) -> None:
    """P5 (S000): a tricyclic stays below 100 mg/day in older adults and cardiac disease, even when the dose
    is optimised toward the maximum."""
    ev = run(cohort(localized=False, crcl=90.0, **fixed), Policy(first_line="tca_first"))
    tca = dosed(ev, "nortriptyline")
    assert len(tca) and tca["dose"].max() < 100


# ---- item 3: dose optimisation before judging failure ---------------------------------------------

def test_dose_is_optimised_before_add_or_switch() -> None:
    """v0.1: no dose ever went above target. Now, after an inadequate adequate trial, pregabalin is raised
    toward 600 (P3.dose_optimisation) and judged again after an adequate trial at the new dose; with the
    policy off, nothing goes above 300."""
    c = cohort(age=50.0, crcl=95.0, localized=False, etiology="diabetic_neuropathy")
    ev = run(c, Policy(first_line="pregabalin_first"))
    opt = rows(ev, "dose_change", "pregabalin", "P3.dose_optimisation")
    assert len(opt) and opt["dose"].max() == 600
    for _pid, g in ev[ev["patient"].isin(opt["patient"].unique())].groupby("patient"):
        if (g["rule"] == "X.patient_stop").any():  # stopped by the patient (issue 10): no judgement to wait for
            continue
        top = g[(g["drug"] == "pregabalin") & (g["dose"] == 600) & (g["event"] == "dose_change")]["day"].min()
        later = g[(g["day"] > top) & g["event"].isin(["evaluation", "transition"])]
        if len(later):  # the first thing after reaching 600 is an evaluation after the adequate trial
            assert later.iloc[0]["event"] == "evaluation"
            assert later.iloc[0]["day"] - top >= CAT["pregabalin"].adequate_trial_days - 1e-9
    off = run(c, Policy(first_line="pregabalin_first", dose_optimisation="off"))
    assert dosed(off, "pregabalin")["dose"].max() == 300


# ---- item 4: intolerance -------------------------------------------------------------------------

def test_duloxetine_intolerance_leaves_venlafaxine_open() -> None:
    """v0.1: 0 of 1668 duloxetine-intolerant patients reached venlafaxine (intolerance failed the class).
    Now intolerance fails the drug: venlafaxine is tried next (P4.intolerance_same_class, S001)."""
    ev = run(cohort(800, age=50.0, crcl=95.0, localized=False, hepatic_disease=False),
             Policy(first_line="duloxetine_first"))
    stopped = set(rows(ev, None, "duloxetine", "P4.intolerance_stop")["patient"])
    assert stopped
    venla = set(rows(ev, "drug_start", "venlafaxine")["patient"])
    assert len(stopped & venla) / len(stopped) > 0.5
    assert len(rows(ev, "transition", rule="P4.intolerance_same_class"))


def test_intolerable_add_on_stops_alone() -> None:
    """v0.1: an add-on that was not tolerated stopped both drugs and counted a failed combination. Now only
    the add-on stops (P4.addon_not_tolerated); the base drug keeps running that day."""
    ev = run(cohort(800, age=55.0, crcl=95.0, localized=False, etiology="diabetic_neuropathy"))
    hits = rows(ev, None, None, "P4.addon_not_tolerated")
    hits = hits[hits["event"].isin(["drug_stop", "taper_start"])]
    assert len(hits)
    for _, h in hits.iterrows():
        g = ev[(ev["patient"] == h["patient"]) & (ev["day"] == h["day"])]
        stops = g[g["event"].isin(["drug_stop", "taper_start"])]
        # the base drug is not stopped by the intolerance; a switch decided the same day may stop it (with its
        # own rule), e.g. when no other add-on is left (more varied histories since issue 10)
        others = stops[stops["drug"].astype(str) != str(h["drug"])]
        assert (others["rule"].astype(str) != "P4.addon_not_tolerated").all()
        assert others.empty or (g["event"] == "transition").any()


def test_add_on_replacing_an_intolerable_add_on_cites_its_own_rule() -> None:
    """Item 12 (narration tells the truth): when an add-on was not tolerated and another first-line class is
    added in its place, the add is not a partial response after an adequate trial (P4.partial_add's text), so
    it cites P4.addon_replaced; every P4.partial_add add-on follows a same-day 'partial' evaluation (or, since
    issue 10, a same-day 'partial' maintenance visit confirming a relapse, P4.relapse, decided as one)."""
    ev = run(cohort(800, age=55.0, crcl=95.0, localized=False, etiology="diabetic_neuropathy"))
    replaced = rows(ev, "transition", rule="P4.addon_replaced")
    assert len(replaced)
    for _, t in replaced.iterrows():
        g = ev[(ev["patient"] == t["patient"]) & (ev["day"] == t["day"])]
        assert (g["rule"] == "P4.addon_not_tolerated").any()
    for _, t in rows(ev, "transition", rule="P4.partial_add").iterrows():
        g = ev[(ev["patient"] == t["patient"]) & (ev["day"] == t["day"])
               & ev["event"].isin(["evaluation", "maintenance_visit"])]
        assert (g["outcome"] == "partial").any(), f"patient {t['patient']} day {t['day']}"


def test_reduction_goes_to_an_effective_tolerated_step() -> None:
    """P4.intolerance_reduce: the dose falls to a lower step that is still at least the minimum effective dose."""
    ev = run(cohort(800, age=50.0, crcl=95.0, localized=False), Policy(first_line="tca_first"))
    red = rows(ev, "dose_change", rule="P4.intolerance_reduce")
    assert len(red)
    for _, r in red.iterrows():
        assert r["dose"] >= (CAT[str(r["drug"])].min_effective_dose or 0) - 1e-9


# ---- item 5: tapering and cross-taper --------------------------------------------------------------

@pytest.mark.parametrize("cross", [True, False])
def test_duloxetine_is_tapered_and_next_drug_overlaps_or_waits(cross: bool) -> None:
    """v0.1: all 781 duloxetine stops were abrupt. Now a duloxetine stop (other than a serious event or
    drop-out) is a taper: taper_start, P5.taper_step rows, then P5.taper_complete after the schedule; the
    next drug starts the same day (cross-taper) or once the taper is complete."""
    ev = run(cohort(600, age=50.0, crcl=95.0, localized=False), Policy(first_line="duloxetine_first",
                                                                         cross_taper=cross))
    taper = CAT["duloxetine"].taper
    abrupt = rows(ev, "drug_stop", "duloxetine")
    # (P4.taper_reversed: a taper stopped at its step for the restart on a relapse, P4.restart_dose)
    abrupt = abrupt[~abrupt["rule"].isin(["P5.taper_complete", "X.dropout", "X.serious_event", "P4.taper_reversed"])]
    # a stop at once is explained by its dose_limit row: taken under taper.after_days, or at the smallest dose
    why = rows(ev, "dose_limit", "duloxetine")
    why = set(zip(why.loc[why["rule"].isin(["P5.taper_short_use", "P5.taper_smallest_dose"]), "patient"],
                  why.loc[why["rule"].isin(["P5.taper_short_use", "P5.taper_smallest_dose"]), "day"], strict=True))
    assert len(abrupt) and all((r.patient, r.day) in why for r in abrupt.itertuples())
    starts = rows(ev, "taper_start", "duloxetine")
    assert len(starts)
    for _, s in starts.iterrows():
        g = ev[(ev["patient"] == s["patient"]) & (ev["drug"] == "duloxetine") & (ev["day"] >= s["day"])]
        steps = g[g["rule"] == "P5.taper_step"]
        # each fraction of the dose rounded down to a givable dose, lower each time, the smallest dose last
        want: list[float] = []
        for frac in taper.steps:
            x = _down("duloxetine", s["dose"] * frac)
            if x < (want[-1] if want else s["dose"]) - 1e-9:
                want.append(x)
                if x <= 20 + 1e-9:
                    break
        end = s["day"] + taper.interval_days * len(want)
        done = g[g["rule"] == "P5.taper_complete"]
        cut = g[(g["rule"] == "P4.taper_reversed") & (g["day"] < end)]  # reversed for a restart (P4.restart_dose)
        if len(cut):
            assert (steps[steps["day"] <= cut["day"].iloc[0]]["dose"] > cut["dose"].iloc[0] - 1e-9).all()
            continue
        if end < 700 and not len(ev[(ev["patient"] == s["patient"]) & (ev["event"] == "dropout")]):
            assert np.allclose(steps["dose"].to_numpy()[:len(want)], want)
            # (a later exposure after a relapse has its own taper: the first completion is this one's)
            assert len(done) >= 1 and abs(done["day"].iloc[0] - end) < 1e-6
        nxt = ev[(ev["patient"] == s["patient"]) & (ev["event"] == "drug_start") & (ev["day"] >= s["day"])]
        if len(nxt) and len(done) and s["rule"] != "X.patient_stop":  # a patient's own stop decides nothing
            assert (nxt["day"].iloc[0] == s["day"]) if cross else (nxt["day"].iloc[0] >= done["day"].iloc[0])


# ---- item 6: combinations as the seeds define them ---------------------------------------------------

def _combination_failed_before(ev: pd.DataFrame, pid: int, day: float) -> bool:
    """A gabapentinoid and an antidepressant running together at an evaluation with partial/no relief."""
    g = ev[(ev["patient"] == pid) & (ev["day"] <= day)]
    running: set[str] = set()
    for _, r in g.iterrows():
        d = str(r["drug"])
        if r["event"] == "drug_start":
            running.add(d)
        elif r["event"] == "drug_stop":
            running.discard(d)
        elif r["event"] == "evaluation" and r["outcome"] in ("partial", "none"):
            classes = {CAT[x].drug_class for x in running}
            if "gabapentinoid" in classes and classes & {"snri", "tca"}:
                return True
    return False


def test_topical_add_on_is_not_a_combination_for_the_opioid_gate() -> None:
    """v0.1: 27/178 morphine starts under topicals: add_on passed the gate with oral + topical. Now every
    morphine start follows a failed gabapentinoid + antidepressant combination."""
    ev = run(cohort(800, age=55.0, crcl=95.0, localized=True, misuse_risk=0), Policy(topicals="add_on"))
    starts = rows(ev, "drug_start", "morphine")
    assert len(starts)
    assert all(_combination_failed_before(ev, int(r["patient"]), float(r["day"])) for _, r in starts.iterrows())


def test_protocol_strong_opioid_passes_the_gate_or_is_declared() -> None:
    """v0.1: a protocol 'add' of morphine skipped P8 (morphine after one drug in 293/500 patients, 24 with
    high misuse risk) and lint was silent. Now the gate applies, lint warns, and only a declared departure
    starts morphine early (still never with high misuse risk)."""
    steps = [ProtocolStep(drug="pregabalin", weeks=6, next_if_nrs_above=3.0, action="add"),
             ProtocolStep(drug="morphine", weeks=6)]
    pol = Policy(protocol=Protocol(steps=steps))
    assert any(f.check == "protocol_gate" and f.severity == "warning" for f in lint_policy(pol))
    c = cohort(300, age=55.0, crcl=95.0, localized=False)
    assert rows(run(c, pol), "drug_start", "morphine").empty
    dep = Policy(protocol=Protocol(steps=steps), declared_departures=["early_strong_opioid"])
    ev = run(c, dep)
    starts = rows(ev, "drug_start", "morphine")
    assert len(starts)
    high = set(np.flatnonzero(np.asarray(c.misuse_risk) == 2))
    assert not set(starts["patient"]) & high


# ---- item 7: opioids ------------------------------------------------------------------------------

def test_opioid_checks_and_strong_opioid_threshold_and_titration() -> None:
    """S004: misuse screen and agreement before any opioid (tramadol included); serotonin check when tramadol
    meets an SNRI, SSRI or TCA; strong opioid only at NRS >= 4; titration stops at response."""
    ev = run(cohort(800, age=55.0, crcl=95.0, localized=False, misuse_risk=0))
    for drug in ("tramadol", "morphine"):
        for _, s in rows(ev, "drug_start", drug).iterrows():
            checks = ev[(ev["patient"] == s["patient"]) & (ev["day"] == s["day"]) & (ev["event"] == "safety_check")
                        & (ev["drug"] == drug)]
            assert {"misuse_screen", "treatment_agreement"} <= set(checks["check"].astype(str))
    for _, s in rows(ev, "drug_start", "morphine").iterrows():
        # the deciding observation: an evaluation, or a maintenance visit that found relief lost (issue 10)
        last = ev[(ev["patient"] == s["patient"]) & (ev["day"] <= s["day"])
                  & ev["event"].isin(["evaluation", "maintenance_visit"])]
        assert last["pain_nrs"].iloc[-1] >= 4
    stop_at = rows(ev, "evaluation", "morphine", "P8.titrate_to_response")
    for _, r in stop_at[stop_at["outcome"] == "relief"].iterrows():
        later = dosed(ev, "morphine")
        later = later[(later["patient"] == r["patient"]) & (later["day"] > r["day"]) & (later["rule"] != "P5.taper_step")]
        assert later.empty or later["dose"].max() <= r["dose"]


@pytest.mark.parametrize("mode", ["add", "replace"])
def test_tramadol_add_or_replace_with_serotonin_check(mode: str) -> None:
    """P7: tramadol added to the regimen (S002) keeps the running drugs; replace stops them; whenever tramadol
    starts with an SNRI, SSRI or TCA running or tapering, the serotonin check is logged first."""
    c = cohort(600, age=55.0, crcl=95.0, localized=False, ssri_use=False)
    ev = run(c, Policy(first_line="duloxetine_first", tramadol_mode=mode))
    starts = rows(ev, "drug_start", "tramadol")
    assert len(starts)
    tr = rows(ev, "transition", rule="P7.tramadol_add")
    assert (len(tr) > 0) == (mode == "add")
    for _, s in starts.iterrows():
        g = ev[(ev["patient"] == s["patient"]) & (ev["day"] <= s["day"])]
        running = set()
        for _, r in g.iterrows():
            if r["event"] == "drug_start" and r["day"] < s["day"]:
                running.add(str(r["drug"]))
            elif r["event"] == "drug_stop":
                running.discard(str(r["drug"]))
        sero = {d for d in running if CAT[d].serotonergic}
        checks = g[(g["day"] == s["day"]) & (g["check"] == "serotonin_check") & (g["drug"] == "tramadol")]
        if sero:
            assert len(checks) == 1


# ---- item 8: interactions and comorbidity -----------------------------------------------------------

def test_ssri_user_gets_serotonin_check_before_an_snri_or_avoids_it() -> None:
    """v0.1: 1015 of 1689 SSRI users got duloxetine or venlafaxine with no check. Now every SNRI start in an
    SSRI user has P5.serotonin_check_snri first; with serotonin: avoid, no SNRI starts at all."""
    c = cohort(300, age=55.0, crcl=95.0, localized=False, ssri_use=True, hepatic_disease=False)
    ev = run(c, Policy(first_line="duloxetine_first"))
    starts = ev[(ev["event"] == "drug_start") & ev["drug"].isin(["duloxetine", "venlafaxine"])]
    assert len(starts)
    for _, s in starts.iterrows():
        chk = ev[(ev["patient"] == s["patient"]) & (ev["day"] == s["day"]) & (ev["rule"] == "P5.serotonin_check_snri")
                 & (ev["drug"] == s["drug"])]
        assert len(chk) == 1
    avoid = run(c, Policy(first_line="duloxetine_first", serotonin="avoid"))
    assert avoid[(avoid["event"] == "drug_start") & avoid["drug"].isin(["duloxetine", "venlafaxine"])].empty
    assert len(rows(avoid, "excluded", "duloxetine", "P5.serotonin_avoid")) == 300


@pytest.mark.parametrize("strategy", ["guideline", "tca_first", "gabapentin_first", "comorbidity_guided"])
def test_cardiovascular_disease_prefers_duloxetine_over_tca(strategy: str) -> None:
    """v0.1: tca_first started 593 CVD patients on nortriptyline. Under every strategy a CVD patient gets
    duloxetine before any tricyclic (P5.cardiac_prefer_duloxetine)."""
    c = cohort(300, age=55.0, crcl=95.0, localized=False, cardiovascular_disease=True, hepatic_disease=False,
               recent_mi=False, arrhythmia=False, heart_block=False)
    ev = run(c, Policy(first_line=strategy))
    for _pid, g in ev[ev["event"] == "drug_start"].groupby("patient"):
        names = list(g["drug"].astype(str))
        if "nortriptyline" in names:
            assert "duloxetine" in names[:names.index("nortriptyline")]


def test_glaucoma_and_orthostatic_hypotension_have_their_own_rules() -> None:
    """v0.1 cited the cardiac cap for glaucoma and orthostatic hypotension. Now each has its own rule id and cap."""
    ev = run(cohort(200, age=50.0, crcl=95.0, localized=False, glaucoma=True, orthostatic_hypotension=True,
                    cardiovascular_disease=False), Policy(first_line="tca_first"))
    lims = rows(ev, "dose_limit", "nortriptyline")
    assert {"P5.tca_glaucoma", "P5.tca_orthostatic"} <= set(lims["rule"].astype(str))
    assert "P5.tca_cardiac_cap" not in set(lims["rule"].astype(str))
    assert dosed(ev, "nortriptyline")["dose"].max() <= 50


# ---- item 9: topicals at any stage ------------------------------------------------------------------

def test_topicals_at_any_stage_chosen_per_patient() -> None:
    """v0.1: 0 of 834 younger localized-pain patients ever got a topical. Now a topical is added alongside oral
    drugs (P6.topical_add); lidocaine only with allodynia, capsaicin 8% otherwise."""
    c = cohort(400, age=45.0, crcl=95.0, localized=True)
    ev = run(c)
    added = rows(ev, "drug_start", rule="P6.topical_add")  # alongside the oral step's own transition
    assert added["patient"].nunique() > 50
    allo = np.asarray(c.allodynia)
    lido = set(rows(ev, "drug_start", "lidocaine_5pct")["patient"])
    caps = set(rows(ev, "drug_start", "capsaicin_8pct")["patient"])
    assert lido and caps
    assert all(allo[p] for p in lido) and not any(allo[p] for p in caps)


TOPICALS = [n for n, d in CAT.items() if d.drug_class == "topical"]


def _oral_steps_on(ev: pd.DataFrame, patient: int, day: float) -> list[tuple[str, str, str]]:
    """The oral (and opioid) steps of one patient on one day: transitions other than add_topical, their drug
    starts, and dose optimisations, as (event, trigger or drug, rule)."""
    e = ev[(ev["patient"] == patient) & ((ev["day"] - day).abs() < 1e-6)]
    out = []
    for r in e.itertuples():
        if r.event == "transition" and r.trigger not in ("add_topical", "relapse"):
            out.append(("transition", str(r.trigger), str(r.rule)))
        elif r.event == "drug_start" and r.drug not in TOPICALS:
            out.append(("drug_start", str(r.drug), str(r.rule)))
        elif r.event == "dose_change" and r.rule == "P3.dose_optimisation":
            out.append(("dose_change", str(r.drug), str(r.rule)))
    return out


@pytest.mark.parametrize("etiology", ["lumbosacral_radiculopathy", "diabetic_neuropathy"])
def test_topical_added_at_any_stage_does_not_postpone_the_oral_step(etiology: str) -> None:
    """Issue 9 review: a topical added on no response took the place of the oral step (about 8 weeks later
    in radiculopathy, the capsaicin trial). Now the oral decision (optimise, add, switch, escalate) is taken at
    the same visit: on the same localized-pain patients and luck (common random numbers), the day a topical
    is first added carries exactly the oral step the same patient gets that day when no topical is ever added
    (the trajectories are identical up to that day)."""
    c = cohort(300, age=55.0, crcl=90.0, localized=True, etiology=etiology)
    ev = run(c, Policy(), horizon=365)
    ev0 = run(c, Policy(topical_add="never"), horizon=365)
    added = rows(ev, "drug_start", rule="P6.topical_add").groupby("patient")["day"].min()
    assert len(added) > 50 and rows(ev0, "drug_start", rule="P6.topical_add").empty
    with_step = 0
    for pat, day in added.items():
        oral = _oral_steps_on(ev, pat, day)
        assert oral == _oral_steps_on(ev0, pat, day), (pat, day)
        with_step += bool(oral)
    assert with_step > 0.9 * len(added)  # the rest: no oral step left (referral), the topical is the step


def test_topical_alongside_is_judged_only_after_its_own_trial() -> None:
    """When the oral drug a topical was added alongside is stopped by the patient, the evaluation is not
    logged on the topical before its own adequate trial (first seen by `painpath check` at seed 13: capsaicin
    8% judged 42 days after it was added, adequate_trial needs 56): the remaining oral drug is judged, or the
    topical left alone after its own trial. Checked by the oracle on a radiculopathy run."""
    from simulator.analysis.runner import simulate
    from simulator.population.cohort_spec import load_cohort_spec
    from simulator.regression.invariants import check_run
    from simulator.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml").model_copy(update={
        "cohort_spec": load_cohort_spec(ROOT / "cohorts" / "lumbosacral-radiculopathy.yaml"), "seed": 13,
        "patients": 1500, "horizon_days": 365})
    res = simulate(sc)
    ev = res.events
    assert (ev["rule"] == "P6.topical_add").sum() > 50
    assert not check_run(res).by_invariant()["adequate_trial"].violations


# ---- item 10: etiology modifiers ---------------------------------------------------------------------

def test_cipn_gets_no_tca_or_gabapentinoid_and_duloxetine_then_venlafaxine() -> None:
    """v0.1: 225/412 platinum CIPN patients got nortriptyline. Under the guideline no tricyclic or
    gabapentinoid starts in CIPN; duloxetine comes first and venlafaxine next (P11)."""
    c = cohort(300, age=60.0, crcl=95.0, localized=False, etiology="cipn_platinum", hepatic_disease=False)
    ev = run(c)
    starts = rows(ev, "drug_start")
    classes = {CAT[str(d)].drug_class for d in starts["drug"]}
    assert not classes & {"tca", "gabapentinoid"}
    first = starts.groupby("patient")["drug"].first().astype(str)
    assert set(first) == {"duloxetine"}
    assert len(rows(ev, "transition", rule="P11.cipn_venlafaxine"))


def test_hiv_neuropathy_gets_no_strong_opioid() -> None:
    """S004: opioids may worsen pain in HIV neuropathy: P8.hiv_caution keeps strong opioids out."""
    ev = run(cohort(400, age=45.0, crcl=95.0, localized=False, etiology="hiv_neuropathy", misuse_risk=0))
    assert rows(ev, "drug_start", "morphine").empty
    assert len(rows(ev, "excluded", "morphine", "P8.hiv_caution"))


# ---- item 11: every seed position is a policy ---------------------------------------------------------

def test_seed_positions_as_policies() -> None:
    """Duloxetine first at 60 mg (S001); amitriptyline as the TCA (S001); tramadol second line after a switch
    (S001, S004); comorbidity-guided nortriptyline when duloxetine is excluded (S004)."""
    c = cohort(300, age=50.0, crcl=95.0, localized=False, hepatic_disease=False, ssri_use=False)
    ev = run(c, Policy(first_line="duloxetine_first", start_doses={"duloxetine": 60}))
    assert set(rows(ev, "drug_start", "duloxetine")["dose"]) == {60}
    assert len(rows(ev, "dose_limit", "duloxetine", "P2.start_dose_policy"))
    ami = run(c, Policy(first_line="tca_first", tca="amitriptyline"))
    assert rows(ami, "drug_start", "nortriptyline").empty and len(rows(ami, "drug_start", "amitriptyline"))
    second = run(c, Policy(tramadol="second_line"))
    for pid, s in rows(second, "drug_start", "tramadol").groupby("patient"):
        before = second[(second["patient"] == pid) & (second["event"] == "drug_start") & (second["day"] < s["day"].min())]
        assert before["drug"].astype(str).map(lambda d: CAT[d].first_line).sum() >= 2
    hep = cohort(100, age=50.0, crcl=95.0, localized=False, hepatic_disease=True, depression=True,
                 cardiovascular_disease=False, etiology="diabetic_neuropathy", glaucoma=False,
                 orthostatic_hypotension=False, recent_mi=False, arrhythmia=False, heart_block=False)
    cg = run(hep, Policy(first_line="comorbidity_guided"))
    assert set(rows(cg, "drug_start").groupby("patient")["drug"].first().astype(str)) == {"nortriptyline"}


def test_seed_002_escalation_adds_a_third_drug() -> None:
    """v0.1: S002's third 'add' (a topical after duloxetine + pregabalin) was refused and patients were silently
    referred. The S002 scenario adds the topical to the combination."""
    from simulator.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "escalation-s002.yaml")
    ev = run(cohort(600, age=55.0, crcl=95.0, localized=True, hepatic_disease=False), sc.policy)
    third = rows(ev, "transition", rule="P6.topical_add")
    third = third[third["state"] == "add_on"]
    assert len(third)


# ---- item 12: narration tells the truth --------------------------------------------------------------

def test_every_dose_limit_stop_and_taper_row_has_its_rule() -> None:
    """Every cap, reduction, taper and stop is logged with a resolvable rule id of its own kind."""
    ev = run(cohort(600, seed=5))
    book = load_rules()
    kinds = ["dose_change", "dose_limit", "drug_stop", "taper_start", "drug_start", "evaluation", "transition"]
    sub = ev[ev["event"].isin(kinds)]
    assert sub["rule"].notna().all()
    assert all(book.is_resolvable(str(r)) for r in sub["rule"].unique())
    assert set(rows(ev, "dose_limit")["rule"].astype(str)) <= {
        "P2.older_adult_start", "P2.older_renal_start", "P2.min_dose", "P2.start_dose_policy", "P5.renal_dose",
        "P5.renal_cap", "P5.older_adult_cap", "P5.tca_cardiac_cap", "P5.tca_glaucoma", "P5.tca_orthostatic", "P2.max_dose_cap",
        "P2.givable_dose", "P5.taper_short_use", "P5.taper_smallest_dose", "P4.restart_dose"}
    assert "150 mg/day (75" not in book.text_of("P1.pregabalin_first")


def test_trace_names_the_drugs_stopped_at_a_switch() -> None:
    """v0.1: the trace did not say which drugs a switch stopped. Now the decision names them."""
    from simulator.scenario import load_scenario
    from simulator.teaching.narrate import setup_from_scenario, trace

    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    found = False
    for k in range(40):
        j = trace(setup_from_scenario(sc, patient=k))
        for s in j.decisions:
            # a switch that stops drugs names them (after the patient's own stop nothing is left to name)
            if "switch to" in s.text and ("stopped" in s.text or "tapering off" in s.text):
                found = True
        if found:
            break
    assert found


def test_trace_tells_the_evaluation_before_the_drop_out_stops() -> None:
    """Item 12: the event log has the evaluation, then drug_stop X.dropout, then dropout on the same day; the
    trace told 'pregabalin stopped [X.dropout]' before the evaluation that preceded it. Guideline patients
    48 and 1413 (seed 1) are evaluated and then lost to follow-up on the same day."""
    from simulator.scenario import load_scenario
    from simulator.teaching.narrate import setup_from_scenario, trace

    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    checked = 0
    for k in (48, 1413):
        steps = trace(setup_from_scenario(sc, patient=k)).steps
        drop = [n for n, s in enumerate(steps) if s.kind == "stop" and s.rule == "X.dropout"]
        for n in drop:
            same_day_evals = [m for m, s in enumerate(steps) if s.kind == "evaluation" and s.day == steps[n].day]
            assert all(m < n for m in same_day_evals), [s.line() for s in steps[-4:]]
            checked += len(same_day_evals)
    assert checked


def _journeys(path: str, n: int = 20, cohort_file: str | None = None, seed: int = 7, policy: dict | None = None):
    from simulator.population.cohort_spec import load_cohort_spec
    from simulator.scenario import load_scenario
    from simulator.teaching.narrate import setup_from_scenario, trace

    sc = load_scenario(ROOT / "scenarios" / path)
    if policy:  # policy fields changed for the test (e.g. a guideline re-offer in a usual-care setting)
        sc = sc.model_copy(update={"policy": sc.policy.model_copy(update=policy)})
    if cohort_file:
        sc = sc.model_copy(update={"cohort_spec": load_cohort_spec(ROOT / "cohorts" / cohort_file)})
    return [trace(setup_from_scenario(sc, patient=k, seed=seed)) for k in range(n)]


def test_trace_rule_ids_match_what_happened() -> None:
    """Issue 9 review (item 12, 'the rule text matches what happened'), walked on 20 older/renal patients with
    localized pain and 20 radiculopathy patients: a topical started first and stopped for an oral drug cites
    P6.topical_stop (it cited P1.pregabalin_first); a topical added at the same visit as an oral step is told
    as its own step citing P6.topical_add (the oral decision keeps its own rule and names only its drug); a
    strong opioid stopped as not tolerated is followed by a referral citing P9.refractory_referral, not
    'did not give relief' (P8.stop_ineffective); units agree with the dose ('1 application', not '1
    applications'); the older-adult renal start and the dose floor have their own words."""
    journeys = _journeys("guideline.yaml", 20, "older-renal.yaml") + \
        _journeys("guideline.yaml", 20, "lumbosacral-radiculopathy.yaml")
    topical_stops = alongside = 0
    for j in journeys:
        topicals = set(TOPICALS) | {t.replace("_5pct", " 5%").replace("_8pct", " 8%") for t in TOPICALS}
        for s in j.steps:
            assert "1 applications" not in s.text and "1 plasters" not in s.text, s.line()
            assert " limit " not in s.text, s.line()  # every dose_limit rule has its own words
            if s.kind == "stop" and any(s.text.startswith(t) for t in topicals):
                assert not s.rule.startswith("P1"), s.line()
                topical_stops += s.rule == "P6.topical_stop"
            if s.kind == "decision" and s.rule not in ("P6.topical_add", "P9.discharge_plan"):  # a discharge
                # names the regimen that goes on, a topical included
                assert not any(f"{t} " in s.text.split("(")[0] for t in topicals if "start" not in s.text), s.line()
            if s.rule == "P6.topical_add":
                alongside += 1
        ev = j.events
        so_stop = ev[(ev["event"].isin(["drug_stop", "taper_start"])) & (ev["drug"] == "morphine")
                     & (ev["rule"] == "P4.intolerance_stop")]
        for day in so_stop["day"]:
            refer = ev[(ev["event"] == "transition") & (ev["trigger"] == "refer") & (abs(ev["day"] - day) < 1e-9)]
            assert set(refer["rule"]) <= {"P9.refractory_referral"}
    assert topical_stops > 0 and alongside > 0


def test_trace_names_a_start_deferred_by_a_taper() -> None:
    """Issue 10 review: a drug whose start waits for a taper (policy ``cross_taper: false``, P5; or a serotonergic
    drug that must go first) starts when the taper ends, so the decision row has no start beside it. The trace
    said "step up to - (P7)" and, at the start, "... added alongside" with nothing running (first found on
    P7.tramadol_reoffer, which no longer restarts a drug at its own stop's decision, P4.reoffer_own_stop). The
    decision names the drug and the day it starts; the start says it follows the taper."""
    journeys = _journeys("usual-care-uk.yaml", 60, seed=13, policy={"cross_taper": False})
    deferred = 0
    for j in journeys:
        for s in j.steps:
            assert "to - " not in s.text and not s.text.startswith("step up to -"), s.line()
            if s.kind == "decision" and "once the taper ends" in s.text:
                deferred += 1
    assert deferred >= 3
    steps = [s.text for s in journeys[0].steps if min(abs(s.day - 56), abs(s.day - 70)) < 0.5]
    assert any("switch to gabapentin 100 mg/day once the taper ends (day 70)" in t for t in steps), steps
    assert not any("added alongside" in t for t in steps), steps


def test_relapse_words_match_what_ended_relief() -> None:
    """P4.relapse is told "relief lost at the maintenance visit" only when a maintenance visit found it (issue 10
    review: UK usual-care patient 14, seed 13, stopped gabapentin on day 110 and was told he lost relief at a
    visit). The patient's own stop of what relieved him decides nothing (P4.reoffer_own_stop): the relapse after
    it is told at the visit that found his pain back, off drugs, never on the stop's day."""
    off_drugs = 0
    for j in _journeys("usual-care-uk.yaml", 60, seed=13):
        visits = {round(s.day, 3): s.text for s in j.steps  # maintenance visits, opioid reassessments, queue reviews
                  if s.rule in ("P4.maintenance_visit", "P8.reassessment", "P9.care_while_waiting")}
        for s in j.steps:
            if s.rule != "P4.relapse":
                continue
            if "not tolerated" in s.text:  # a stop for intolerance has its own words (test_narration_truth)
                continue
            assert "at the maintenance visit" in s.text and round(s.day, 3) in visits, s.line()
            off_drugs += "no drug running" in visits[round(s.day, 3)]
    assert off_drugs > 0


def test_units_agree_with_the_dose() -> None:
    """'1 applications' (issue 9 review): the catalogue's plural unit is made singular for a dose of 1."""
    from simulator.teaching.narrate import unit_for

    assert unit_for("applications", 1.0) == "application"
    assert unit_for("plasters/day", 1.0) == "plaster/day"
    assert unit_for("plasters/day", 2.0) == "plasters/day"
    assert unit_for("mg/day", 1.0) == "mg/day" and unit_for("MME/day", 1.0) == "MME/day"


def test_radiculopathy_limits_nortriptyline_morphine_and_pregabalin() -> None:
    """S000: limited efficacy of nortriptyline, morphine and pregabalin in lumbosacral radiculopathy. The same
    patients judged on the same first drug do worse with radiculopathy than with diabetic neuropathy."""
    for strategy, drug in (("tca_first", "nortriptyline"), ("pregabalin_first", "pregabalin")):
        kw = dict(age=50.0, crcl=95.0, localized=False, cardiovascular_disease=False, glaucoma=False,
                  orthostatic_hypotension=False, recent_mi=False, arrhythmia=False, heart_block=False)
        res = {}
        for etiology in ("diabetic_neuropathy", "lumbosacral_radiculopathy"):
            ev = run(cohort(etiology=etiology, **kw), Policy(first_line=strategy, dose_optimisation="off"), horizon=150)
            first = rows(ev, "evaluation", drug).groupby("patient")["pain_nrs"].first()
            res[etiology] = first
        common = res["diabetic_neuropathy"].index.intersection(res["lumbosacral_radiculopathy"].index)
        assert (res["lumbosacral_radiculopathy"][common] >= res["diabetic_neuropathy"][common] - 1e-9).all()
        # issue-16 model (drifting responsiveness, per-etiology placebo): about 27% worse (was > 30%)
        assert (res["lumbosacral_radiculopathy"][common] > res["diabetic_neuropathy"][common]).mean() > 0.2
    assert TABLES.by_name["morphine"].etiology_modifier[ETIOLOGIES.index("lumbosacral_radiculopathy")] < 1


def _independent_max(drug: str, age: float, crcl: float, flags: set[str]) -> float:
    """The patient's maximum daily dose read straight from drugs.yaml (not through simulator.model.safety)."""
    d = CAT[drug]
    f = 1.0
    for band in d.renal_exposure:
        if crcl < band.crcl_below:
            f = min(f, band.factor)
    cap = d.max_dose * f
    if age >= d.older_adult.min_age and d.older_adult.max_dose:
        cap = min(cap, d.older_adult.max_dose * f)
    for rc in d.renal_caps:
        if crcl < rc.crcl_below and rc.max_dose > 0:
            cap = min(cap, rc.max_dose)
    for c in d.cautions:
        if c.flag in flags:
            cap = min(cap, c.max_dose * f)
    return cap


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), optimise=st.sampled_from(["to_maximum", "before_switch", "off"]),
       mode=st.sampled_from(["add", "replace"]), cross=st.booleans(), strategy=st.sampled_from(
           ["guideline", "tca_first", "duloxetine_first", "gabapentin_first", "comorbidity_guided"]))
def test_no_dose_above_the_patients_maximum_and_no_nan(seed: int, optimise: str, mode: str, cross: bool,
                                                       strategy: str) -> None:
    """Engine invariant under any mix of the new policy options: every dose given is a number within the
    patient's maximum from drugs.yaml (renal band, older adult, renal cap, cautions), and every drug that
    starts a taper is stopped once, at its end or at drop-out, unless the horizon comes first."""
    c = _base(120, seed % 7 + 1)
    pol = Policy(first_line=strategy, dose_optimisation=optimise, tramadol_mode=mode, cross_taper=cross)
    ev = run(c, pol, seed=seed, horizon=400)
    given_ = ev[ev["event"].isin(["drug_start", "dose_change"])]
    assert given_["dose"].notna().all() and np.isfinite(given_["dose"].to_numpy()).all()
    flag_names = ["cardiovascular_disease", "glaucoma", "orthostatic_hypotension"]
    for r in given_.itertuples():
        pid = int(r.patient)
        flags = {f for f in flag_names if bool(getattr(c, f)[pid])}
        cap = _independent_max(str(r.drug), float(c.age[pid]), float(c.crcl[pid]), flags)
        assert r.dose <= cap + 1e-6, (r.drug, r.dose, cap)
    for r in rows(ev, "taper_start").itertuples():
        g = ev[(ev["patient"] == r.patient) & (ev["drug"] == r.drug) & (ev["day"] >= r.day)
               & (ev["event"] == "drug_stop")]
        assert len(g) >= 1 or r.day + 28 > 400
