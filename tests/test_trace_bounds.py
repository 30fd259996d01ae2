"""`painpath trace` (and the tutor's --cohort) accept only a patient of the run they claim to trace.

Protects the teaching CLI's input contract: keyed draws make patient K well defined at any K, but a patient at
or beyond the scenario's patients per replication (or a replication at or beyond its replications) is not one
of the run, so a trace of him is a journey no run of the scenario contains. Such an index is refused as bad
input (exit 2, one paragraph naming the option, the valid range and the fix, no traceback, no --html file)
unless --patients / --replications make the run large enough.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.cli import main

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
SMALL = DATA / "guideline-small.yaml"  # 200 patients, 2 replications


def _refused(args: list[str], option: str, *words: str) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    text = " ".join(r.output.split())
    assert text.startswith("Error") and text.count("Error") == 1, text  # one paragraph
    assert f"option '{option}'" in text, text
    for w in words:
        assert w in text, (w, text)
    return text


@pytest.mark.parametrize("patient", [200, 201, 10_000])
def test_a_patient_beyond_the_cohort_is_refused_with_the_range_and_the_fix(tmp_path, patient):
    """guideline-small runs 200 patients: --patient 200 and above are not in it (on the code before, the trace
    told the journey of a patient no run contains, exit 0); the error names the range 0-199 and --patients;
    the --html page is not written."""
    page = tmp_path / "journey.html"
    _refused(["trace", str(SMALL), "--patient", str(patient), "--html", str(page)], "--patient",
             "0 to 199", f"--patients {patient + 1}")
    assert not page.exists()


def test_patients_large_enough_makes_him_one_of_the_run():
    """--patients 201 makes patient 200 one of the run: traced (exit 0), as ``painpath run --patients 201`` has him."""
    r = CliRunner().invoke(main, ["trace", str(SMALL), "--patient", "200", "--patients", "201"])
    assert r.exit_code == 0, r.output
    assert "patient 200" in r.output.splitlines()[0]
    _refused(["trace", str(SMALL), "--patient", "201", "--patients", "201"], "--patient", "0 to 200")


def test_a_replication_beyond_the_run_is_refused_unless_replications_say_so():
    """guideline-small runs 2 replications (0 and 1): replication 2 is refused, with --replications as the fix;
    --replications 3 makes it one of the run."""
    _refused(["trace", str(SMALL), "--patient", "0", "--replication", "2"], "--replication", "0 to 1",
             "--replications 3")
    r = CliRunner().invoke(main, ["trace", str(SMALL), "--patient", "0", "--replication", "2", "--replications", "3"])
    assert r.exit_code == 0, r.output


def test_an_open_population_patient_is_bounded_by_its_replications_entries():
    """An open population's run holds the patients its replication brings in (scenarios/open-population.yaml:
    a few thousand over five years, replication 0 seed 1), not `patients`: beyond them the trace is refused and
    the range is named."""
    from simulator.analysis.open_population import replication_setup
    from simulator.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "open-population.yaml")
    n = replication_setup(sc, 0)[0]
    _refused(["trace", str(ROOT / "scenarios" / "open-population.yaml"), "--patient", str(n)], "--patient",
             f"0 to {n - 1}")


def test_the_tutor_cohort_patient_is_bounded_by_what_a_run_holds():
    """The tutor's --cohort has no run size (a cohort file is not a run): any patient of a run-sized cohort is
    allowed, and an index past the most patients a run holds (scenario.MAX_PATIENTS) is refused before its
    cohort is generated (it used to build a cohort up to him)."""
    from simulator.scenario import MAX_PATIENTS

    _refused(["tutor", "--cohort", str(ROOT / "cohorts" / "mixed-primary-care.yaml"), "--patient", str(MAX_PATIENTS)],
             "--patient", f"0 to {MAX_PATIENTS - 1}")


def test_run_size_options_with_a_case_are_refused():
    """--patients / --replications size a scenario's run; a teaching case is one patient, so they would do nothing:
    refused (exit 2) rather than silently ignored."""
    _refused(["trace", "--case", "arrhythmia-no-tca", "--patients", "5"], "--patients", "--case")
    _refused(["trace", "--case", "arrhythmia-no-tca", "--replications", "2"], "--replications")


def _same_journey(alone, mine) -> bool:
    return (len(alone) == len(mine) and list(alone["event"].astype(str)) == list(mine["event"].astype(str))
            and list(alone["rule"].astype(str)) == list(mine["rule"].astype(str))
            and bool(np.allclose(alone["day"].astype(float), mine["day"].astype(float), atol=1e-3)))


def test_an_open_population_patient_is_traced_as_the_run_has_him():
    """The trace builds the replication as `painpath run` does: an open population's patient K enters on his own
    day (he used to be traced from day 0 with the closed cohort's settings, another journey: 3 of 4 patients
    differed at 100,000 people), and his events are the run's, day for day."""
    from simulator.analysis.runner import simulate
    from simulator.scenario import load_scenario
    from simulator.teaching.one_patient import setup_from_scenario
    from simulator.teaching.one_patient import simulate as simulate_one

    sc = load_scenario(ROOT / "scenarios" / "open-population.yaml")
    sc = sc.with_overrides(population={**sc.population.model_dump(), "size": 50000}, replications=1)
    ev = simulate(sc).events
    for k in (3, 50, 200):
        mine = ev[ev["patient"] == k].reset_index(drop=True)
        assert _same_journey(simulate_one(setup_from_scenario(sc, k)), mine), k


def test_clinical_overrides_are_the_runs():
    """A scenario's clinical_overrides are part of its run: the trace uses them (it used the packaged model). With
    relapses made frequent, patients never referred (the clinic's queue is shared in a run) have the run's
    journey, and at least one of them differs from the packaged model's."""
    from simulator.analysis.runner import simulate
    from simulator.scenario import load_scenario
    from simulator.teaching.one_patient import setup_from_scenario
    from simulator.teaching.one_patient import simulate as simulate_one

    base = load_scenario(SMALL)
    sc = base.with_overrides(clinical_overrides={"persistence.relapse_per_year": 1.5}, replications=1)
    ev = simulate(sc, patients=40).events
    checked = differs = 0
    for k in range(20):
        mine = ev[ev["patient"] == k].reset_index(drop=True)
        if (mine["event"] == "referral_queued").any():
            continue
        assert _same_journey(simulate_one(setup_from_scenario(sc, k, patients=40)), mine), k
        differs += not _same_journey(simulate_one(setup_from_scenario(base, k, patients=40)), mine)
        checked += 1
    assert checked >= 8 and differs >= 1
