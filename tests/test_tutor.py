"""Scripted tutor sessions: conformant answers score full marks; unsafe or wrong choices are explained."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from simulator.cases import all_cases, load_case
from simulator.cli import main
from simulator.narrate import setup_from_case
from simulator.tutor import Tutor, guideline_answers


def _tutor(name: str) -> Tutor:
    return Tutor(setup_from_case(load_case(name)))


def _option(t: Tutor, point: int, label: str) -> int:
    labels = [o.label for o in t.points[point].options]
    return labels.index(label) + 1


def test_guideline_answers_score_full_marks_on_every_case() -> None:
    """Protects: a fully guideline-conformant session scores full marks (and lists no mistakes)."""
    for case in all_cases():
        t = Tutor(setup_from_case(case))
        answers = guideline_answers(t)
        assert all(a >= 1 for a in answers), f"{case.name}: a guideline decision is not among the options"
        out = CliRunner().invoke(main, ["tutor", "--case", case.name, "--answers", ",".join(map(str, answers))])
        assert out.exit_code == 0, out.output
        assert f"Score: {len(answers)}/{len(answers)}" in out.output
        assert "No mistakes" in out.output


def test_arrhythmia_case_pregabalin_is_the_guideline_start() -> None:
    """Protects: the guideline's first step for the arrhythmia case is pregabalin, duloxetine is also conformant."""
    t = _tutor("arrhythmia-no-tca")
    first = t.points[0]
    assert first.options[first.guideline].label == "Start pregabalin"
    assert _option(t, 0, "Start duloxetine") - 1 in first.conformant
    assert _option(t, 0, "Start nortriptyline") - 1 not in first.conformant


def test_tca_for_arrhythmia_is_refused_with_the_rule() -> None:
    """Protects: giving a TCA to the arrhythmia case names P5.tca_cardiac_contraindicated and is not simulated."""
    t = _tutor("arrhythmia-no-tca")
    answers = guideline_answers(t)
    answers[0] = _option(t, 0, "Start nortriptyline")
    out = CliRunner().invoke(main, ["tutor", "--case", "arrhythmia-no-tca", "--answers", ",".join(map(str, answers))])
    assert out.exit_code == 0, out.output
    assert "NOT THE GUIDELINE" in out.output
    assert "P5.tca_cardiac_contraindicated" in out.output
    assert "contraindicated after a recent myocardial infarction, or with an arrhythmia" in out.output
    assert "Not simulated" in out.output
    assert f"Score: {len(answers) - 1}/{len(answers)}" in out.output
    assert "you chose 'Start nortriptyline'" in out.output


def test_strong_opioid_too_early_is_refused_by_the_p8_gate() -> None:
    """Protects: a strong opioid at the first evaluation is refused with P8.prerequisites."""
    t = _tutor("strong-opioid-gate")
    k = _option(t, 1, "Start a strong opioid (morphine)")
    a = t.judge(t.points[1], k - 1)
    assert not a.ok and t.points[1].options[k - 1].refused == "P8.prerequisites"
    assert list(a.consequence) == ["guideline"]


def test_wrong_but_allowed_choice_is_simulated_with_the_same_luck() -> None:
    """Protects: the trainee's branch forces the choice at that step and follows the guideline after it."""
    t = _tutor("arrhythmia-no-tca")
    k = _option(t, 0, "Start venlafaxine")
    a = t.judge(t.points[0], k - 1)
    assert not a.ok
    mine, guide = a.consequence["your choice"], a.consequence["guideline"]
    assert mine["drugs started from here"].startswith("venlafaxine (day 0)")
    assert guide["drugs started from here"].startswith("pregabalin (day 0)")
    # Same luck: the guideline branch equals the recorded guideline journey.
    assert guide == t.consequence(t.branch(t.points[0], t.points[0].proposed), 0.0)


def test_scripted_answers_running_out_is_an_input_error() -> None:
    """Protects: too few --answers gives one paragraph and exit code 2, no traceback."""
    out = CliRunner().invoke(main, ["tutor", "--case", "cipn-platinum", "--answers", "3"])
    assert out.exit_code == 2
    assert "answers ran out" in out.output and "Traceback" not in out.output


def test_tutor_from_a_cohort_and_from_stdin() -> None:
    """Protects: --cohort mode runs, and plain stdin answers work (interactive path)."""
    cohort = str(Path(__file__).resolve().parents[1] / "cohorts" / "mixed-primary-care.yaml")
    t_args = ["tutor", "--cohort", cohort, "--seed", "1", "--patient", "3"]
    out = CliRunner().invoke(main, t_args, input="1\n" * 20)
    assert out.exit_code == 0, out.output
    assert "Score:" in out.output and "What do you start?" in out.output
