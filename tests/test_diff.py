"""`painpath diff` and `painpath snapshot`: version comparison on the same patients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.inputs.errors import InputError
from simulator.regression.diff import diff_scenarios, first_divergence, parse_fail_if
from simulator.scenario import load_scenario

DATA = Path(__file__).parent / "data"
OLD, NEW = str(DATA / "guideline-small.yaml"), str(DATA / "switch-on-partial-small.yaml")


@pytest.fixture(scope="module")
def report():
    return diff_scenarios(load_scenario(OLD), load_scenario(NEW), patients=120, replications=2)


def test_identical_scenarios_have_zero_divergence():
    """Protects common random numbers: the same scenario twice gives no divergence and zero differences."""
    sc = load_scenario(OLD)
    rep = diff_scenarios(sc, sc, patients=80, replications=2)
    assert rep.divergence.diverged == 0 and rep.divergence.trajectories == 160
    assert rep.changes == []
    assert all(m.diff in (0, None) for m in rep.metrics)


def test_policy_change_is_reported(report):
    """Protects (a)-(c): on_partial add->switch shows as a policy change, add_on use falls with a CI,
    and diverging patients first differ where the old trajectory added a drug."""
    assert [(c.section, c.field) for c in report.changes if c.field != "name"] == [("policy", "on_partial")]
    m = report.metric("pathway.reached.add_on")
    assert m.new == 0 and m.diff < 0 and m.ci_lo is not None and m.ci_lo <= m.diff <= m.ci_hi
    d = report.divergence
    assert 0 < d.diverged < d.trajectories
    assert sum(c for _, _, c in d.by_step) == d.diverged
    assert any(lab == "add_on transition" for _, lab, _ in d.by_step)
    assert len(d.examples) == 3
    for ex in d.examples:
        assert ex["old"][: ex["step"]] == ex["new"][: ex["step"]]
        assert first_divergence(tuple(ex["old"]), tuple(ex["new"])) == ex["step"]


def test_fail_if_parsing():
    """Protects the --fail-if grammar: signed = change, plain = new value, bad ones are InputError."""
    f = parse_fail_if("time_to_relief.median_days > +7")
    assert (f.metric, f.op, f.value, f.change) == ("time_to_relief.median_days", ">", 7.0, True)
    g = parse_fail_if("adverse_events.per_patient_year <= 1.5")
    assert (g.op, g.value, g.change) == ("<=", 1.5, False)
    assert parse_fail_if("x.y < -0.25").value == -0.25
    for bad in ("median > seven", "=> 3", "a.b == 1", ""):
        with pytest.raises(InputError):
            parse_fail_if(bad)
    with pytest.raises(InputError, match="did you mean"):
        parse_fail_if("pathway.reached.addon < 1", known=["pathway.reached.add_on"])


def test_fail_if_bounds(report):
    """Protects the gate: a bound is crossed exactly when the change (or new value) crosses it."""
    report.apply_bounds(["pathway.reached.add_on < -0.1", "pathway.reached.add_on > +0.1",
                         "pathway.reached.add_on <= 0"])
    assert [b["crossed"] for b in report.bounds] == [True, False, True]
    assert report.failed


def test_cli_diff_exit_codes(tmp_path):
    """Protects `painpath diff --fail-if`: exit 1 when crossed, 0 when not, 2 for a bad expression."""
    r = CliRunner()
    base = ["diff", OLD, NEW, "--patients", "60", "--replications", "2"]
    crossed = r.invoke(main, [*base, "--fail-if", "pathway.reached.add_on < -0.05"])
    assert crossed.exit_code == 1, crossed.output
    out = tmp_path / "d.json"
    held = r.invoke(main, [*base, "--fail-if", "pathway.reached.add_on > +0.05", "--json", str(out)])
    assert held.exit_code == 0, held.output
    assert json.loads(out.read_text())["divergence"]["diverged"] > 0
    assert any("uninformative" in n for n in json.loads(out.read_text())["notes"])  # 2 replications
    bad = r.invoke(main, [*base, "--fail-if", "median_days >> 7"])
    assert bad.exit_code == 2 and "--fail-if" in bad.output and "Traceback" not in bad.output
    assert r.invoke(main, ["diff", OLD]).exit_code == 2


def test_snapshot_roundtrip(tmp_path):
    """Protects golden snapshots: diff --against the snapshot of the same scenario shows no divergence;
    against a changed policy it shows the change, run with the snapshot's seed and size."""
    r = CliRunner()
    snap = tmp_path / "golden.json"
    res = r.invoke(main, ["snapshot", OLD, "--out", str(snap), "--patients", "50", "--replications", "2", "--seed", "4"])
    assert res.exit_code == 0, res.output
    data = json.loads(snap.read_text())
    assert (data["seed"], data["patients"], data["replications"]) == (4, 50, 2)
    assert len(data["trajectories"]) == 100 and len(data["per_replication"]) == 2
    assert set(data["hashes"]) >= {"pathway", "model", "policy", "cohort"}
    out = tmp_path / "same.json"
    same = r.invoke(main, ["diff", "--against", str(snap), OLD, "--json", str(out)])
    assert same.exit_code == 0, same.output
    assert json.loads(out.read_text())["divergence"]["diverged"] == 0
    out2 = tmp_path / "other.json"
    other = r.invoke(main, ["diff", "--against", str(snap), NEW, "--json", str(out2)])
    rep = json.loads(out2.read_text())
    assert other.exit_code == 0 and rep["divergence"]["diverged"] > 0 and rep["seed"] == 4
    assert any(c["field"] == "on_partial" for c in rep["changes"])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert r.invoke(main, ["diff", "--against", str(bad), NEW]).exit_code == 2
