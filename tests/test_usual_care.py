"""Usual care's drug-change metric (Hall 2006/2008) on hand-made drug spells, and the usual-care targets.

Protects the definition in ``simulator.analysis.persistence.drug_changes``: a drug change is a drug start, the first
prescription included; a stable regimen is a non-empty set of drugs unchanged for 182 days within follow-up;
the denominator is the patients who reach one.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from simulator.analysis.persistence import STABLE_DAYS, drug_changes

INF = math.inf


def _spells(rows: list[tuple[int, str, float, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["patient", "drug", "start", "stop"])
    df.insert(0, "replication", 0)
    df["stop_rule"] = ""
    df["order"] = df.groupby("patient").cumcount()
    return df


@pytest.mark.parametrize("rows,expected", [
    ([(0, "gabapentin", 0, INF)], 1),  # stable on the first drug: one change (its start)
    ([(0, "gabapentin", 0, 40), (0, "duloxetine", 40, INF)], 2),  # a switch, then stable
    ([(0, "gabapentin", 0, 400), (0, "duloxetine", 60, 90)], 2),  # an add-on tried and stopped: the regimen
    # {gabapentin} is stable from day 90 only, after 2 starts (a drug held 182 days is not enough)
    ([(0, "gabapentin", 0, 30), (0, "gabapentin", 100, INF)], 2),  # stopped, nothing for 70 days, restarted
])
def test_drug_changes_count_starts_up_to_the_first_stable_regimen(rows, expected):
    out = drug_changes(_spells(rows), horizon=730.0)
    assert out["drug_changes_before_stable_mean"] == expected
    assert out["drug_changes_after_index_mean"] == expected - 1
    assert out["reached_stable_regimen"] == 1.0


def test_no_stable_regimen_leaves_the_patient_out_of_the_denominator():
    """A regimen still running at the horizon that began less than 182 days before it is not (yet) stable,
    nor is a stretch with no drug; such patients are left out of the mean, not counted as 0."""
    rows = [(0, "gabapentin", 0, INF),  # stable: 1
            (1, "gabapentin", 0, 30), (1, "pregabalin", 30, 60), (1, "duloxetine", 60, INF),  # stable: 3
            (2, "gabapentin", 0, 20),  # stopped, no other drug: never stable
            (3, "gabapentin", 0, 100), (3, "duloxetine", 730 - STABLE_DAYS + 1, INF)]  # censored at the horizon
    out = drug_changes(_spells(rows), horizon=730.0)
    assert out["reached_stable_regimen"] == 0.5
    assert out["drug_changes_before_stable_mean"] == 2.0
    assert out["drug_changes_before_stable_median"] == 2.0


@pytest.mark.slow
def test_usual_care_targets_all_pass():
    """Protects the usual-care calibration: every MarketScan and Hall target within its tolerance."""
    from simulator.analysis.realworld import run_usual_care

    checks = run_usual_care()
    assert len(checks) == 16
    failed = [c.as_dict() for c in checks if not c.passed]
    assert not failed, failed
