"""`--patients` on an open population is an error, not silently ignored.

Protects the README's rule that options that do nothing are errors (Input validation) and its sentence
"`--patients` does not apply to an open population": an open population's patients enter over the run from its
``population`` block, so ``--patients`` changes nothing. Every command that takes the option refuses it on an
open population with one paragraph naming the option, the file and the fix, exit 2, no traceback and no result
folder (simulator/scenario.py ``Scenario.with_overrides``). On main before the fix ``painpath run
scenarios/open-population.yaml --patients 100`` simulated 9,892 patients and its manifest recorded
``patients: 100``, and ``painpath trace ... --patients 100 --patient 4000`` was accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator import load_scenario, simulate
from simulator.cli import main
from simulator.inputs.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
OPEN = str(ROOT / "scenarios" / "open-population.yaml")


def _second_open(tmp_path: Path) -> str:
    """A copy of the open population under another name (compare and diff need two scenarios)."""
    text = Path(OPEN).read_text().replace("name: open-population", "name: open-population-b")
    text = text.replace("cohort: ../cohorts/", f"cohort: {ROOT / 'cohorts'}/")
    path = tmp_path / "open-b.yaml"
    path.write_text(text)
    return str(path)


COMMANDS = {
    "run": lambda tmp, out: ["run", OPEN, "--patients", "100", "--out", out],
    "check": lambda tmp, out: ["check", OPEN, "--patients", "100"],
    "trace": lambda tmp, out: ["trace", OPEN, "--patients", "100", "--patient", "4000"],
    "snapshot": lambda tmp, out: ["snapshot", OPEN, "--patients", "100", "--out", out + ".json"],
    "compare": lambda tmp, out: ["compare", OPEN, _second_open(tmp), "--patients", "100", "--replications", "2",
                                 "--out", out],
    "diff": lambda tmp, out: ["diff", OPEN, _second_open(tmp), "--patients", "100"],
    "sweep": lambda tmp, out: ["sweep", OPEN, "--param", "specialist.slots_per_week_per_100k", "--values", "1,2",
                               "--patients", "100", "--replications", "2", "--out", out],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_patients_on_an_open_population_is_refused(command: str, tmp_path: Path) -> None:
    """Exit 2, one paragraph naming --patients, the scenario file and the fix (population.size); no traceback,
    nothing written (on main: run, check, snapshot, trace simulated and exited 0)."""
    out = tmp_path / "out"
    r = CliRunner().invoke(main, COMMANDS[command](tmp_path, str(out)))
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    assert "option '--patients'" in r.output and "open-population.yaml" in r.output, r.output
    assert "leave out --patients" in r.output and "population.size" in r.output, r.output
    assert len([ln for ln in r.output.strip().splitlines() if ln.strip()]) <= 3, r.output  # one paragraph
    assert not out.exists() and not Path(str(out) + ".json").exists()


def test_the_api_refuses_it_and_an_open_population_still_runs_without_it() -> None:
    """``simulate(open, patients=...)`` raises the same InputError; without it the scenario runs, and its manifest
    records no patients count of its own (the summary's n_patients is who entered)."""
    sc = load_scenario(OPEN)
    with pytest.raises(InputError, match="--patients does not apply to an open population"):
        simulate(sc, patients=100, replications=1, seed=2)
    small = sc.with_overrides(population={**sc.population.model_dump(), "size": 3000}, horizon_days=1600)
    res = simulate(small, replications=1, seed=2)
    assert res.manifest["patients"] is None
    assert res.summary["n_patients"] == len(res.patients) > 0


def test_compare_refuses_an_open_population_beside_a_closed_cohort(tmp_path: Path) -> None:
    """A comparison shares patients (common random numbers): a closed cohort and an open population have none in
    common, so the pair is refused, naming the field (population)."""
    from simulator.analysis.compare import check_comparable

    closed = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    sc = load_scenario(OPEN)
    opened = sc.with_overrides(horizon_days=closed.horizon_days,
                               population={**sc.population.model_dump(), "warmup_days": 100})
    with pytest.raises(InputError, match="open population"):
        check_comparable([closed, opened])
