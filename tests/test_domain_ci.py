"""Confidence intervals respect each metric's domain, and every command takes them from one place.

Protects :mod:`simulator.analysis.stats` (``level_ci``, ``metric_level``, ``metric_difference``) and its use by
``run`` (summary table and report), ``compare``, ``sweep``/``tornado`` and ``diff``. The defect this replaces:
``compare`` over 2 replications showed a median wait of "162.5 [-56.2, 381.1]" days and serious adverse events
of "1.45 [-1.73, 4.63]" per 100 patients: t-intervals (t = 12.7 at 1 df) on quantities that cannot be
negative. Differences between scenarios may be negative; levels of non-negative quantities may not."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from simulator.analysis.compare import analyse
from simulator.analysis.metrics import REGISTRY, summary_rows
from simulator.analysis.stats import (
    diff_domain,
    domain,
    level_ci,
    metric_difference,
    metric_level,
    replications_note,
)

KINDS = sorted({m.kind for m in REGISTRY})
WAITS = [161.9, 191.5]  # median waits (days) of 2 replications: mean 176.7, t-interval [-11.3, 364.7]
SERIOUS = [1.2, 1.7]  # serious adverse events per 100 patients in 2 replications: t-interval [-1.73, 4.63]


def _fake(name: str, per: list[dict], pooled: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(scenario=SimpleNamespace(name=name), summary={**(pooled or {}), "per_replication": per})


def test_kinds_have_a_domain() -> None:
    """Every kind of the registry is known to the interval code (a new kind must say its domain)."""
    assert set(KINDS) == {"share", "nrs", "days", "rate", "per100", "count", "per_patient"}
    for k in KINDS:
        lo, hi = domain(k)
        assert lo == 0.0 and hi > 0.0, k


def test_compare_median_wait_over_two_replications_is_not_negative() -> None:
    """The reported defect, through `compare` (compare.analyse, also used by sweep): failed before the fix
    (lower bound -11.3 days)."""
    per = [{"specialist.wait_days_median": w, "adverse_events.serious_per_100_patients": s}
           for w, s in zip(WAITS, SERIOUS, strict=True)]
    metrics, _ = analyse([_fake("a", per), _fake("b", per)])
    for _, row in metrics.iterrows():
        assert 0.0 < row["lo"] <= row["mean"] <= row["hi"], row.to_dict()
    wait = metrics[metrics["metric"] == "specialist.wait_days_median"].iloc[0]
    # the log-scale interval: est * exp(+-t se / est), t = 12.706 with 1 df
    t = sst.t.ppf(0.975, 1)
    se = abs(WAITS[1] - WAITS[0]) / 2
    m = sum(WAITS) / 2
    assert wait["lo"] == pytest.approx(m * math.exp(-t * se / m)) and wait["hi"] == pytest.approx(m * math.exp(t * se / m))


def test_run_table_serious_adverse_events_over_two_replications_is_not_negative() -> None:
    """The same defect in `painpath run`'s table and report (metrics.summary_rows): failed before the fix."""
    per = [{"adverse_events.serious_per_100_patients": s} for s in SERIOUS]
    summary = {"adverse_events": {"serious_per_100_patients": 1.45}, "replications": 2, "per_replication": per}
    row = next(r for r in summary_rows(summary) if r[0] == "adverse_events.serious_per_100_patients")
    lo, hi = (float(x) for x in row[2].split("[", 1)[1].rstrip("]").split(","))
    assert 0.0 < lo < 1.45 < hi, row


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_level_interval_contains_the_estimate_and_stays_in_the_domain(kind: str, data: st.DataObject) -> None:
    """For random replication values of every kind (and a pooled estimate anywhere within their range, as a
    pooled ratio, share or median is), the CI contains the estimate and lies inside the domain."""
    lo_d, hi_d = domain(kind)
    top = hi_d if math.isfinite(hi_d) else 1e4
    values = data.draw(st.lists(st.floats(lo_d, top), min_size=2, max_size=8))
    est = data.draw(st.one_of(st.none(), st.floats(min(values), max(values))))
    e, lo, hi = level_ci(kind, values, est)
    assert e == est if est is not None else math.isclose(e, sum(values) / len(values), abs_tol=1e-9)
    assert lo_d <= lo <= e * (1 + 1e-12) + 1e-12, (values, est, e, lo, hi)
    assert e * (1 - 1e-12) - 1e-12 <= hi <= hi_d, (values, est, e, lo, hi)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_every_command_shows_in_domain_levels(kind: str, data: st.DataObject) -> None:
    """The same property through the function every command calls, for each kind (counts are totals over
    replications: each replication's count x replications estimates the total)."""
    lo_d, hi_d = domain(kind)
    top = hi_d if math.isfinite(hi_d) else 1e4
    values = data.draw(st.lists(st.floats(lo_d, top), min_size=2, max_size=8))
    r = len(values)
    scale = r if kind == "count" else 1
    pooled = data.draw(st.floats(min(values) * scale, max(values) * scale))
    est = metric_level(kind, values, pooled)
    assert est.method == "replications" and est.value == pooled
    assert lo_d <= est.lo <= pooled * (1 + 1e-12) + 1e-12 and pooled * (1 - 1e-12) - 1e-12 <= est.hi <= hi_d * scale


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_differences_may_be_negative_but_stay_in_their_range(kind: str, data: st.DataObject) -> None:
    """Paired and unpaired CIs of a difference contain the difference and stay within what a difference of
    two levels can be ([-1, 1] for shares, [-10, 10] NRS), and may go below 0."""
    lo_d, hi_d = domain(kind)
    top = hi_d if math.isfinite(hi_d) else 1e4
    r = data.draw(st.integers(2, 8))
    new = data.draw(st.lists(st.floats(lo_d, top), min_size=r, max_size=r))
    old = data.draw(st.lists(st.floats(lo_d, top), min_size=r, max_size=r))
    d, plo, phi, ulo, uhi = metric_difference(kind, new, old)
    a, b = diff_domain(kind)
    for lo, hi in ((plo, phi), (ulo, uhi)):
        assert a * (1 if kind != "count" else r) <= lo <= d + 1e-9 and d - 1e-9 <= hi <= b * (1 if kind != "count" else r)


def test_a_negative_difference_keeps_its_negative_interval() -> None:
    """Differences are not forced positive: fewer waiting days in the new scenario give a CI below 0."""
    d, lo, hi, _, _ = metric_difference("days", [100.0, 110.0, 105.0], [150.0, 161.0, 149.0])
    assert d == pytest.approx(105.0 - 460.0 / 3) and lo < hi < 0


@settings(max_examples=100, deadline=None)
@given(st.floats(10.0, 1000.0), st.lists(st.floats(-0.01, 0.01), min_size=4, max_size=8))
def test_log_interval_is_the_t_interval_when_the_spread_is_small(centre: float, jitter: list[float]) -> None:
    """Away from 0 the log-scale interval is within 1% of the t-interval's half-width (it only matters near 0)."""
    values = [centre * (1 + j) for j in jitter]
    assume(len(set(values)) > 1)
    m, lo, hi = level_ci("days", values)
    se = sst.sem(values)
    half = sst.t.ppf(0.975, len(values) - 1) * se
    assert lo == pytest.approx(m - half, abs=0.01 * half + 1e-9) and hi == pytest.approx(m + half, abs=0.01 * half + 1e-9)


def test_one_replication_or_a_missing_value_falls_back_to_the_summary_ci() -> None:
    """One replication: the summary's own (Kaplan-Meier) CI, or none; never an interval from one value."""
    km = metric_level("days", [140.0], 140.0, (135.0, 145.0))
    assert (km.value, km.lo, km.hi, km.method) == (140.0, 135.0, 145.0, "kaplan-meier")
    none = metric_level("rate", [1.2], 1.2)
    assert none.value == 1.2 and math.isnan(none.lo) and none.method == "none"
    half = metric_level("days", [84.0, None], 91.0, (84.0, math.nan))
    assert (half.value, half.lo, half.method) == (91.0, 84.0, "kaplan-meier") and math.isnan(half.hi)


def test_run_compare_and_diff_give_the_same_numbers() -> None:
    """One place: the run table, compare (levels and paired differences) and diff show the same estimate and
    CI for the same replication values."""
    from simulator.regression.diff import Side, metric_diffs

    key = "specialist.wait_days_median"
    a_vals, b_vals = [150.0, 170.0, 160.0], [200.0, 230.0, 209.0]
    a = {"specialist": {"wait_days_median": 158.0}, "replications": 3,
         "per_replication": [{key: v} for v in a_vals]}
    b = {"specialist": {"wait_days_median": 214.0}, "replications": 3,
         "per_replication": [{key: v} for v in b_vals]}
    metrics, diffs = analyse([_fake("a", a["per_replication"], a), _fake("b", b["per_replication"], b)])
    row = metrics[(metrics["scenario"] == "a") & (metrics["metric"] == key)].iloc[0]
    want = metric_level("days", a_vals, 158.0)
    assert (row["mean"], row["lo"], row["hi"]) == (want.value, want.lo, want.hi)
    text = next(r for r in summary_rows(a) if r[0] == key)[2]
    assert text == f"158.0 [{want.lo:.1f}, {want.hi:.1f}]"
    d = diffs[diffs["metric"] == key].iloc[0]
    want_d = metric_difference("days", b_vals, a_vals, 214.0, 158.0)
    assert (d["diff"], d["paired_lo"], d["paired_hi"]) == want_d[:3] and d["diff"] == 56.0

    def side(s: dict, name: str) -> Side:
        return Side(name, {}, {key: s["specialist"]["wait_days_median"]}, s["per_replication"], {})

    md = next(m for m in metric_diffs(side(a, "a"), side(b, "b")) if m.metric == key)
    assert (md.diff, md.ci_lo, md.ci_hi) == (56.0, round(want_d[1], 6), round(want_d[2], 6))
    assert md.ci_lo <= md.diff <= md.ci_hi  # diff centred its CI on the mean paired difference before


def test_few_replications_are_said_to_give_uninformative_intervals() -> None:
    assert "t = 12.7" in replications_note(2) and "uninformative" in replications_note(2)
    assert "t = 4.3" in replications_note(3)
    assert replications_note(4) == "" and replications_note(8) == ""
    assert "one replication" in replications_note(1)
