"""Clinical overrides, parameter sweeps and one-way (tornado) sensitivity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator import load_scenario, simulate
from simulator.analysis.sweep import load_tornado_params, sweep, tornado, with_param
from simulator.cli import main
from simulator.inputs.errors import InputError
from simulator.model.clinical import load_clinical
from simulator.model.overrides import apply_overrides, describe
from simulator.output.folders import write_sweep, write_tornado

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "scenarios" / "guideline.yaml"


def test_override_semantics() -> None:
    """Protects the documented meaning: dose curves and per-etiology values scale, scalars are replaced."""
    base = load_clinical()
    m = apply_overrides({"drugs.duloxetine.responder_prob": 0.5, "combination_factor": 0.2,
                         "nonspecific.placebo_r50": 2.0})
    assert [p for _, p in m.drugs["duloxetine"].responder_prob.value] == pytest.approx(
        [0.5 * p for _, p in base.drugs["duloxetine"].responder_prob.value])
    assert m.combination_factor.value == 0.2
    assert m.nonspecific.placebo_r50.default == pytest.approx(2 * base.nonspecific.placebo_r50.default)
    assert describe("drugs.duloxetine.responder_prob")[0] == "dose_curve"
    assert base.combination_factor.value != 0.2  # the packaged model is untouched


@pytest.mark.parametrize("overrides, match", [
    ({"drugs.nodrug.responder_prob": 1.0}, "does not exist"),
    ({"drugs.duloxetine": 1.0}, "group of parameters"),
    ({"drugs.pregabalin.responder_prob": 5.0}, "outside"),
    ({"combination_factor": 1.5}, "outside"),
])
def test_override_errors(overrides: dict, match: str) -> None:
    """Protects: a wrong path or an override that makes a probability leave [0, 1] is an input error."""
    with pytest.raises(InputError, match=match):
        apply_overrides(overrides)


def test_scenario_file_with_bad_override_is_input_error(tmp_path: Path) -> None:
    """Protects: validation at load time, naming the field clinical_overrides."""
    f = tmp_path / "s.yaml"
    f.write_text(f"name: s\ncohort: {ROOT / 'cohorts' / 'mixed-primary-care.yaml'}\n"
                 "clinical_overrides: {drugs.pregabalin.responder_prob: 9}\n")
    with pytest.raises(InputError) as e:
        load_scenario(f)
    assert "clinical_overrides" in str(e.value)


def test_override_reaches_the_engine() -> None:
    """Protects the runner hook: no drug response at all means fewer patients relieved on the same seed."""
    sc = load_scenario(GUIDE)
    nodrug = sc.with_overrides(clinical_overrides={f"drugs.{d}.responder_prob": 0.0 for d in load_clinical().drugs})
    a = simulate(sc, patients=300, seed=2).summary["time_to_relief"]["relieved_by_day"]["182"]
    b = simulate(nodrug, patients=300, seed=2).summary["time_to_relief"]["relieved_by_day"]["182"]
    assert b < a - 0.1


def test_with_param_paths() -> None:
    """Protects: scenario settings are replaced and validated; unknown paths are input errors."""
    sc = load_scenario(GUIDE)
    assert with_param(sc, "policy.visit_interval_days", 28).policy.visit_interval_days == 28
    assert with_param(sc, "clinical.combination_factor", 0.3).clinical_overrides == {"combination_factor": 0.3}
    with pytest.raises(InputError, match="no parameter"):
        with_param(sc, "policy.visit_days", 3)
    with pytest.raises(InputError):
        with_param(sc, "policy.visit_interval_days", -1)


def test_sweep_table_and_folder(tmp_path: Path) -> None:
    """Protects: a sweep gives one row per value and metric, with CIs, and writes json/csv/report."""
    sc = load_scenario(GUIDE)
    data, runs = sweep(sc, "specialist.slots_per_week_per_1000", [4, 16], patients=250, replications=2, seed=3)
    rows = [r for r in data["rows"] if r["metric"] == "specialist.wait_days_median"]
    assert [r["value"] for r in rows] == [4, 16]
    assert rows[1]["mean"] < rows[0]["mean"]  # more clinic capacity, shorter waits
    folder = write_sweep(data, runs, tmp_path / "sw")
    assert json.loads((folder / "sweep.json").read_text())["kind"] == "sweep"
    assert (folder / "sweep.csv").exists() and "data:image/png;base64" in (folder / "report.html").read_text()


def test_tornado_table_and_folder(tmp_path: Path) -> None:
    """Protects: one-way sensitivity rows with low/high results sorted by swing, and its report."""
    pf = tmp_path / "params.yaml"
    pf.write_text("- {path: policy.visit_interval_days, low: 7, high: 28, label: visit interval}\n"
                  "- {path: clinical.drugs.pregabalin.responder_prob, low: 0.5, high: 1.5, label: pregabalin response}\n")
    params = load_tornado_params(pf)
    data, base = tornado(load_scenario(GUIDE), params, patients=200, replications=2, seed=3)
    assert {r["label"] for r in data["rows"]} == {"visit interval", "pregabalin response"}
    assert data["rows"][0]["swing"] >= data["rows"][1]["swing"]
    prega = next(r for r in data["rows"] if r["label"] == "pregabalin response")
    assert data["metric"] == "time_to_relief.rmst_days"  # the default: restricted mean days to relief
    assert prega["at_high"] < prega["at_low"]  # a better-responding drug relieves sooner
    folder = write_tornado(data, base, tmp_path / "t")
    text = (folder / "report.html").read_text()
    assert all(f'id="{s}"' in text for s in ("summary", "time-to-relief", "specialist-queue", "reproducibility"))
    assert text.count("data:image/png;base64") >= 5 and (folder / "tornado.csv").exists()


def test_cli_sweep_bad_param_exits_2(tmp_path: Path) -> None:
    """Protects: an unknown parameter prints one paragraph, exits 2 and leaves no folder."""
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["sweep", str(GUIDE), "--param", "policy.nope", "--values", "1,2",
                                    "--out", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output and not out.exists()
