"""Bad input gets one clear paragraph naming the file, the field and the fix, exit code 2, no traceback,
and never a partial run folder (issue #2, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.inputs.errors import InputError
from simulator.output.results import atomic_folder

ROOT = Path(__file__).resolve().parents[1]
GOOD_COHORT = ROOT / "cohorts" / "mixed-primary-care.yaml"


def _scenario(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(body.replace("COHORT", str(GOOD_COHORT)))
    return p


def _run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


BASE = "name: bad\ncohort: COHORT\npatients: 20\n"

CASES = {
    "malformed_yaml": (BASE + "policy: [unclosed\n", ["not valid YAML", "line"]),
    "unknown_key": (BASE + "patiens: 10\n", ["patiens", "remove or rename"]),
    "unknown_policy_key": (BASE + "policy:\n  first_lne: guideline\n", ["policy.first_lne"]),
    "unknown_drug": (BASE + "policy:\n  order: [pregabalin, aspirin]\n", ["aspirin", "policy"]),
    "dose_above_max": (BASE + "policy:\n  target_doses: {pregabalin: 900}\n", ["900", "maximum", "600"]),
    "negative_duration": (BASE + "horizon_days: -30\n", ["horizon_days", ">= 1"]),
    "negative_trial": (BASE + "policy:\n  trial_days: {snri: -7}\n", ["policy.trial_days.snri"]),
    "probability_above_1": (BASE + "policy:\n  response: {relief_min_reduction: 1.5}\n",
                            ["relief_min_reduction", "<= 1"]),
    "zero_patients_in_file": ("name: bad\ncohort: COHORT\npatients: 0\n", ["patients", ">= 1"]),
    "unknown_cohort": ("name: bad\ncohort: no-such-cohort.yaml\n", ["no-such-cohort.yaml", "cohort"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_scenario_is_one_paragraph_exit_2(tmp_path: Path, case: str) -> None:
    """Each bad scenario input: exit 2, the file and field named, a fix offered, no traceback, no folder."""
    body, needles = CASES[case]
    path = _scenario(tmp_path, body)
    out = tmp_path / "run"
    res = _run(["run", str(path), "--out", str(out), "--quiet", "--no-report"])
    assert res.exit_code == 2, res.output
    msg = res.output
    assert "Traceback" not in msg
    assert str(path) in msg.replace("\n", "")
    assert "Fix:" in msg
    for n in needles:
        assert n in msg.replace("\n", " "), (n, msg)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_zero_patients_on_command_line(tmp_path: Path) -> None:
    """--patients 0 is refused with the option named."""
    res = _run(["run", str(ROOT / "scenarios" / "guideline.yaml"), "--patients", "0", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "--patients" in res.output and "at least 1" in res.output


def test_missing_scenario_file(tmp_path: Path) -> None:
    """A scenario path that does not exist is named with a fix."""
    res = _run(["run", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2
    assert "does not exist" in res.output and "Fix:" in res.output


def test_bad_cohort_probability(tmp_path: Path) -> None:
    """A probability above 1 in a cohort file names the cohort file and the field."""
    text = GOOD_COHORT.read_text().replace("male_share: 0.45", "male_share: 1.45")
    assert "1.45" in text
    bad = tmp_path / "cohort.yaml"
    bad.write_text(text)
    res = _run(["cohort", str(bad)])
    assert res.exit_code == 2
    assert str(bad) in res.output.replace("\n", "") and "male_share" in res.output


def test_interrupted_write_leaves_no_folder(tmp_path: Path) -> None:
    """A failure while a run folder is being written leaves neither the folder nor its temporary twin."""
    dest = tmp_path / "run"

    def fill(tmp: Path) -> None:
        (tmp / "summary.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_folder(dest, fill)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_folder_is_refused(tmp_path: Path) -> None:
    """An existing --out folder is not overwritten silently."""
    dest = tmp_path / "run"
    dest.mkdir()
    with pytest.raises(InputError, match="already exists"):
        atomic_folder(dest, lambda tmp: None)
