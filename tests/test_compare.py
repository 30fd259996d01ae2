"""Scenario comparison with common random numbers: CIs, paired differences, output folder, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator import load_scenario
from simulator.analysis.compare import ci_widths, compare
from simulator.cli import main
from simulator.inputs.errors import InputError
from simulator.output.folders import write_comparison

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "scenarios" / "guideline.yaml"
SWITCH = ROOT / "scenarios" / "switch-on-partial.yaml"


@pytest.fixture(scope="module")
def comp():
    return compare([load_scenario(GUIDE), load_scenario(SWITCH)], patients=300, replications=6, seed=3)


def test_paired_ci_narrower_than_unpaired(comp) -> None:
    """Protects the point of common random numbers: on the same runs, the paired 95% CI of a difference is
    narrower than the unpaired one (measured: relieved_by_day.182 paired ~0.02 vs unpaired ~0.1 wide)."""
    # Adverse events: the share of patients with any (measured paired/unpaired 0.65). The rate per
    # patient-year is not used: its denominator (follow-up) moves with stops, relapses and drop-out since the
    # maintenance phase (issue 10) and, with the recalibrated per-drug latents, it no longer pairs at this
    # size (measured 1.06, seed 3, 300 patients x 6 replications).
    for metric, ratio in (("time_to_relief.relieved_by_day.182", 0.6), ("time_to_relief.relieved_by_day.84", 0.6),
                          ("adverse_events.patients_with_any", 0.85)):
        paired, unpaired = ci_widths(comp, metric)
        assert 0 < paired < ratio * unpaired, (metric, paired, unpaired)


def test_metrics_have_cis_and_differences(comp) -> None:
    """Protects: every flat metric per scenario as mean within its 95% CI; differences = new - baseline."""
    mt = comp.metrics
    assert set(mt["scenario"]) == {"guideline", "switch-on-partial"}
    ok = mt.dropna(subset=["mean", "lo", "hi"])
    assert ((ok["lo"] <= ok["mean"] + 1e-12) & (ok["mean"] <= ok["hi"] + 1e-12)).all()
    # a mean without a CI is a pooled estimate where some replication could not estimate it, and says so
    pooled = mt[mt["mean"].notna() & (mt["lo"].isna() | mt["hi"].isna())]
    assert pooled["note"].astype(str).str.contains("not estimable").all(), pooled[["scenario", "metric"]]
    assert "adverse_events.by_type.dizziness" in set(mt["metric"])
    g = mt.set_index(["scenario", "metric"])["mean"]
    d = comp.diffs.set_index("metric")
    key = "pathway.reached.add_on"
    assert d.loc[key, "diff"] == pytest.approx(g[("switch-on-partial", key)] - g[("guideline", key)])
    assert d.loc[key, "paired_hi"] < 0  # switching on partial response removes add-on combinations


def test_identical_policies_differ_by_exactly_zero() -> None:
    """Protects the CRN guarantee: the same policy under two names gives identical replications."""
    a = load_scenario(GUIDE)
    b = a.model_copy(update={"name": "guideline-copy"})
    c = compare([a, b], patients=80, replications=2, seed=5)
    assert (c.diffs["diff"].fillna(0) == 0).all()


def test_write_comparison_folder(comp, tmp_path: Path) -> None:
    """Protects: comparison.json (with CIs, paired and unpaired), comparison.csv, runs and report.html."""
    folder = write_comparison(comp, tmp_path / "cmp")
    data = json.loads((folder / "comparison.json").read_text())
    assert data["scenarios"] == ["guideline", "switch-on-partial"]
    assert data["replications"] == 6 and data["seed"] == 3 and data["patients"] == 300
    m = data["metrics"]["guideline"]["time_to_relief.relieved_by_day.182"]
    assert m["ci95"][0] <= m["mean"] <= m["ci95"][1]
    d = data["differences_vs_baseline"]["switch-on-partial"]["time_to_relief.relieved_by_day.182"]
    assert set(d) == {"diff", "paired_ci95", "unpaired_ci95"}
    assert data["scenario_info"]["switch-on-partial"]["rationale"]
    assert (folder / "comparison.csv").read_text().startswith("baseline,scenario,metric")
    assert (folder / "report.html").exists()
    assert len(list((folder / "runs").iterdir())) == 2


def test_needs_same_cohort_and_two_replications(tmp_path: Path) -> None:
    """Protects: comparing different cohorts (no common random numbers) or without CIs is an input error."""
    other = tmp_path / "other.yaml"
    other.write_text(f"name: other\ncohort: {ROOT / 'cohorts' / 'older-renal.yaml'}\n")
    with pytest.raises(InputError, match="different cohort"):
        compare([load_scenario(GUIDE), load_scenario(other)], patients=10, replications=2)
    with pytest.raises(InputError, match="2 replications"):
        compare([load_scenario(GUIDE), load_scenario(SWITCH)], patients=10, replications=1)


def test_cli_compare_and_bad_input(tmp_path: Path) -> None:
    """Protects: the command prints the table and writes the folder; bad input exits 2 with no folder."""
    runner = CliRunner()
    out = tmp_path / "c"
    res = runner.invoke(main, ["compare", str(GUIDE), str(SWITCH), "--patients", "60", "--replications", "2",
                               "--seed", "1", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "relieved by day 182" in res.output and (out / "comparison.json").exists()
    # 2 replications: the table says its intervals are uninformative (t = 12.7), and so does comparison.json
    assert "uninformative" in res.output and "t = 12.7" in res.output
    assert "uninformative" in json.loads((out / "comparison.json").read_text())["ci_note"]
    bad = tmp_path / "bad"
    res = runner.invoke(main, ["compare", str(GUIDE), str(tmp_path / "missing.yaml"), "--out", str(bad)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not bad.exists()
    res = runner.invoke(main, ["compare", str(GUIDE), str(SWITCH), "--replications", "1", "--out", str(bad)])
    assert res.exit_code == 2 and not bad.exists()
