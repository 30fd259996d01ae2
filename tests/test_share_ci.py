"""Share CIs across replications stay inside [0, 1] (issue 11 leftover: "referred 0.2% [-0.3, 0.7]").

Protects :func:`simulator.analysis.stats.share_ci` and its use for every share in run summaries and comparisons."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from simulator.analysis.metrics import summary_rows
from simulator.analysis.stats import log_ci, mean_ci, share_ci

RARE = [0.0, 0.001, 0.005]  # a rare share over 3 replications: the t-interval's lower bound is negative


def test_rare_share_interval_stays_in_bounds_where_t_interval_does_not():
    assert mean_ci(RARE)[1] < 0  # the defect this replaces
    p, lo, hi = share_ci(RARE)
    assert p == sum(RARE) / 3
    assert 0.0 < lo < p < hi < 1.0


def test_endpoints_invert_the_score_test_on_the_effective_sample_size():
    # Independent of the closed form: each endpoint p0 solves |p - p0| = t * sqrt(p0 (1 - p0) / n_eff).
    for values in (RARE, [0.4, 0.42, 0.41, 0.43], [0.97, 0.99, 1.0]):
        n = len(values)
        p = sum(values) / n
        se2 = sum((v - p) ** 2 for v in values) / (n - 1) / n
        n_eff = p * (1 - p) / se2
        t = sst.t.ppf(0.975, n - 1)
        _, lo, hi = share_ci(values)
        for p0 in (lo, hi):
            assert math.isclose(abs(p - p0), t * math.sqrt(p0 * (1 - p0) / n_eff), rel_tol=1e-9)


def test_close_to_the_t_interval_away_from_the_bounds():
    vals = [0.40, 0.42, 0.41, 0.43, 0.39]
    _, tlo, thi = mean_ci(vals)
    _, lo, hi = share_ci(vals)
    assert abs(lo - tlo) < 0.002 and abs(hi - thi) < 0.002


def test_degenerate_and_missing_cases():
    assert share_ci([0.3]) == (0.3, 0.3, 0.3)
    assert share_ci([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)
    assert all(math.isnan(x) for x in share_ci([0.1, None, 0.2]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6))
def test_any_shares_give_an_interval_inside_zero_one_around_the_mean(values):
    p, lo, hi = share_ci(values)
    assert 0.0 <= lo <= hi <= 1.0
    assert lo - 1e-12 <= p <= hi + 1e-12


def test_run_summary_table_shows_a_rare_share_without_a_negative_bound():
    per = [{"specialist.referred": v} for v in RARE]
    summary = {"specialist": {"referred": sum(RARE) / 3}, "replications": 3, "per_replication": per}
    row = next(r for r in summary_rows(summary) if r[0] == "specialist.referred")
    assert "-" not in row[2].split("[", 1)[1], row


def test_comparison_table_bounds_a_rare_share_and_keeps_positive_levels_positive():
    """`painpath compare` (compare.analyse) uses the bounded interval for shares, the log-scale interval for
    non-negative levels (tests/test_domain_ci.py covers every kind)."""
    from types import SimpleNamespace

    from simulator.analysis.compare import analyse

    def run(name, referred, visits):
        per = [{"specialist.referred": r, "resources.visits_per_patient": v} for r, v in zip(referred, visits, strict=True)]
        return SimpleNamespace(scenario=SimpleNamespace(name=name), summary={"per_replication": per})

    metrics, _ = analyse([run("a", RARE, [4.0, 5.0, 6.0]), run("b", [0.01, 0.02, 0.0], [4.5, 5.0, 5.5])])
    for _, row in metrics.iterrows():
        if row["metric"] == "specialist.referred":
            assert 0.0 <= row["lo"] <= row["mean"] <= row["hi"] <= 1.0, row.to_dict()
        else:
            vals = [4.0, 5.0, 6.0] if row["scenario"] == "a" else [4.5, 5.0, 5.5]
            assert (row["lo"], row["hi"]) == pytest.approx(log_ci(vals)[1:])
            assert 0.0 < row["lo"] < row["mean"] < row["hi"]
