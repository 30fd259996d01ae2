"""Each failure kind of the hardening review (issue 14) reproduced, asserting the fixed behaviour.

Bad input: exit 2, one paragraph naming the file (or the command line) and the field, a fix, no
traceback, no folder left. Good but odd input (markup in names, names that look like paths): works and
stays where it belongs.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
COHORT = ROOT / "cohorts" / "mixed-primary-care.yaml"
GUIDE = ROOT / "scenarios" / "guideline.yaml"


def _cli(args: list[str], cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def _refused(res, *needles: str) -> str:
    """Exit 2, no traceback, one 'Error ... Fix: ...' paragraph containing every needle."""
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    assert text.startswith("Error") and text.count("Fix:") == 1 and "fix: fix" not in text.lower(), res.output
    assert "\n\n" not in res.output.strip(), res.output  # one paragraph
    for n in needles:
        assert n in text, (n, res.output)
    return text


def _scenario(tmp: Path, body: dict, name: str = "s.yaml") -> Path:
    p = tmp / name
    # a short horizon keeps the runs of these input tests quick; none of them is about the horizon
    p.write_text(yaml.safe_dump({"cohort": str(COHORT), "patients": 30, "horizon_days": 180, **body}, sort_keys=False))
    return p


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if a simulation starts (for checks that must happen before simulating)."""
    import simulator.analysis.runner as runner

    def boom(*a, **k):
        raise AssertionError("simulated before refusing")

    monkeypatch.setattr(runner, "simulate", boom)
    monkeypatch.setattr(runner, "simulate_many", boom)


# ---- tracebacks --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["[/] [bold]x[/bold] [link=x]y a$b$ \\[x"])
def test_rich_markup_in_a_name_is_printed_as_text(tmp_path: Path, name: str) -> None:
    """A scenario name with rich markup neither crashes nor is interpreted: it is printed as written."""
    sc = _scenario(tmp_path, {"name": name})
    res = _cli(["run", sc, "--out", tmp_path / "out", "--quiet"])
    assert res.exit_code == 0, res.output
    assert name in res.output and (tmp_path / "out" / "report.html").exists()


def test_rich_markup_in_out_is_printed_as_text(tmp_path: Path) -> None:
    """--out 'out[/]' works and the folder is printed as given."""
    res = _cli(["run", GUIDE, "--patients", 30, "--out", "out[/]x", "--quiet", "--no-report"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert "out[/]x" in res.output and (tmp_path / "out[" / "]x" / "summary.json").exists()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("command", ["run", "check", "lint", "trace", "diff", "compare", "cohort"])
def test_deeply_nested_yaml_is_refused_by_every_command(tmp_path: Path, command: str) -> None:
    """500 nested lists: exit 2 naming the file (no RecursionError) in all seven commands."""
    bad = tmp_path / "deep.yaml"
    bad.write_text(f"name: x\ncohort: {COHORT}\npolicy:\n  order: {_nested(500)}\n")
    args = {"run": ["run", bad], "check": ["check", bad], "lint": ["lint", bad], "trace": ["trace", bad, "--patient", 0],
            "diff": ["diff", GUIDE, bad], "compare": ["compare", GUIDE, bad], "cohort": ["cohort", bad]}[command]
    _refused(_cli(args, cwd=tmp_path), str(bad), "nested more than")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.yaml"]


def test_long_cohort_file_name_is_refused(tmp_path: Path) -> None:
    """A 300-character cohort file name: exit 2 naming the scenario file and the field (no OSError)."""
    sc = _scenario(tmp_path, {"name": "x", "cohort": "c" * 300 + ".yaml"})
    _refused(_cli(["run", sc]), str(sc), "field 'cohort'", "bytes long")


def test_out_below_a_file_is_refused_before_simulating(tmp_path: Path, no_simulation) -> None:
    """--out below an existing file: exit 2 before any simulation."""
    (tmp_path / "afile").write_text("x")
    _refused(_cli(["run", GUIDE, "--out", tmp_path / "afile" / "sub"]), "option '--out'", "is a file")
    _refused(_cli(["compare", GUIDE, GUIDE, "--out", tmp_path / "afile" / "c"]), "option '--out'", "is a file")


def test_out_in_an_unwritable_place_is_refused_before_simulating(tmp_path: Path, no_simulation) -> None:
    """--out where nothing can be written: exit 2 before any simulation (a real write test, so it holds for root)."""
    if os.geteuid() == 0:
        place = Path("/proc/painpath-test/run")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        place = locked / "run"
    _refused(_cli(["run", GUIDE, "--out", place]), "option '--out'", "cannot write")


def test_existing_out_is_refused_before_simulating_unless_force(tmp_path: Path, monkeypatch) -> None:
    """--out EXISTING: refused before simulating; with --force a painpath folder is replaced, others never."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    import simulator.analysis.runner as runner

    real = runner.simulate
    calls = []
    monkeypatch.setattr(runner, "simulate", lambda *a, **k: calls.append(1) or real(*a, **k))
    _refused(_cli(["run", GUIDE, "--out", out, "--patients", 30]), "already exists", "--force")
    _refused(_cli(["run", GUIDE, "--out", out, "--patients", 30, "--force"]), "not a painpath output folder")
    assert calls == [] and (out / "keep.txt").read_text() == "user data"
    fresh = tmp_path / "fresh"
    assert _cli(["run", GUIDE, "--out", fresh, "--patients", 30, "--quiet", "--no-report"]).exit_code == 0
    first = json.loads((fresh / "manifest.json").read_text())["seed"]
    res = _cli(["run", GUIDE, "--out", fresh, "--patients", 30, "--seed", 9, "--quiet", "--no-report", "--force"])
    assert res.exit_code == 0, res.output
    assert first == 1 and json.loads((fresh / "manifest.json").read_text())["seed"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "run"]


@pytest.mark.parametrize("kind", ["comparison", "sweep", "tornado"])
def test_report_on_a_malformed_results_file_is_refused(tmp_path: Path, kind: str) -> None:
    """`painpath report` on a folder whose comparison.json / sweep.json is malformed or incomplete: exit 2."""
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / f"{kind}.json").write_text("{not json")
    _refused(_cli(["report", folder]), f"{kind}.json", "not valid JSON")
    (folder / f"{kind}.json").write_text('{"kind": "sweep", "scenarios": 3}')
    _refused(_cli(["report", folder]), f"{kind}.json", "expected content")


# ---- hang and memory -----------------------------------------------------------------------------

def test_cohort_naming_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    """cohort: a FIFO -> exit 2 at once (reading it would block forever)."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    sc = _scenario(tmp_path, {"name": "x", "cohort": str(fifo)})
    t0 = time.monotonic()
    _refused(_cli(["run", sc]), "FIFO")
    _refused(_cli(["cohort", fifo]), "FIFO")
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("patients", [10**7, 10**9])
def test_huge_cohorts_are_refused_with_the_way_to_run_large_cohorts(tmp_path: Path, patients: int) -> None:
    """patients: 10**7 or 10**9 -> exit 2 naming the field; on the command line, the README way is named."""
    sc = _scenario(tmp_path, {"name": "x", "patients": patients})
    _refused(_cli(["run", sc]), "field 'patients'", "200000", "Large cohorts")
    _refused(_cli(["run", GUIDE, "--patients", patients]), "option '--patients'", "Large cohorts")
    sc2 = _scenario(tmp_path, {"name": "x", "patients": 100_000, "replications": 50}, "s2.yaml")
    _refused(_cli(["run", sc2]), "replications", "1,000,000")


def test_huge_name_is_refused(tmp_path: Path) -> None:
    """A 100,000-character name: exit 2 naming the field (it would become a 3.8 GB figure)."""
    sc = _scenario(tmp_path, {"name": "n" * 100_000})
    _refused(_cli(["run", sc]), "field 'name'", "at most 120")


def test_trial_weeks_are_bounded() -> None:
    """trial --weeks 1e9 (minutes of work) and --weeks nan: exit 2 naming the option."""
    for weeks in ("1e9", "nan", "inf"):
        _refused(_cli(["trial", "--cohort", "trials/dpn", "--arm", "placebo", "--weeks", weeks]), "option '--weeks'")


# ---- numbers that defeat safety caps, silent acceptance -----------------------------------------

BAD_SCENARIOS = {
    "nan_target_dose": ({"policy": {"target_doses": {"pregabalin": float("nan")}}},
                        ["policy.target_doses.pregabalin", "finite"]),
    "duplicate_key": (None, ["'patients' appears twice", "line"]),
    "empty_order": ({"policy": {"order": []}}, ["policy.order", "empty"]),
    "repeated_order": ({"policy": {"order": ["pregabalin", "pregabalin"]}}, ["policy.order", "twice"]),
    "protocol_with_first_line": ({"policy": {"first_line": "duloxetine_first", "protocol": {"steps": [
        {"drug": "gabapentin", "weeks": 6}]}}}, ["field 'policy'", "first_line does nothing"]),
    "topicals_never_with_drug": ({"policy": {"topicals": "never", "topical_drug": "capsaicin_8pct"}},
                                 ["topical_drug does nothing"]),
    "gate_settings_without_opioids": ({"policy": {"strong_opioid": {"allowed": False, "require_failed_classes": 1}}},
                                      ["strong_opioid.require_failed_classes does nothing"]),
    "boolean_override": ({"clinical_overrides": {"combination_factor": True}},
                         ["clinical_overrides", "boolean"]),
    "boolean_number": ({"policy": {"visit_interval_days": True}}, ["policy.visit_interval_days", "boolean"]),
    "protocol_adds_drug_to_itself": ({"policy": {"protocol": {"steps": [
        {"drug": "gabapentin", "weeks": 6, "next_if_nrs_above": 3, "action": "add"},
        {"drug": "gabapentin", "weeks": 4}]}}}, ["policy.protocol", "added to itself"]),
    "empty_cohort": ({"cohort": ""}, ["field 'cohort'", "blank"]),
    "override_message": ({"clinical_overrides": {"nonspecific.nope": 1.0}}, ["clinical_overrides", "nope"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_silently_accepted_scenarios_are_now_refused(tmp_path: Path, case: str) -> None:
    """Each scenario v0.1 accepted silently (or with a poor message): exit 2 naming file and field, no folder."""
    body, needles = BAD_SCENARIOS[case]
    if body is None:
        sc = tmp_path / "s.yaml"
        sc.write_text(f"name: x\ncohort: {COHORT}\npatients: 30\npatients: 40\n")
    else:
        sc = _scenario(tmp_path, {"name": "x", **body})
    text = _refused(_cli(["run", sc, "--out", tmp_path / "out"]), str(sc), *needles)
    assert "fix: fix" not in text.lower()
    assert not (tmp_path / "out").exists()


IMPOSSIBLE_COHORTS = {
    "infinite_crcl": (("renal", "crcl_at_ref_age"), 1e308, "renal.crcl_at_ref_age"),
    "two_year_olds": (("age", "min"), 2, "age.min"),
    "toddler_mean": (("age", "mean"), 2, "age.mean"),
    "no_pain": (("baseline_nrs", "min"), 0, "baseline_nrs.min"),
    "wild_slope": (("comorbidities", "depression", "slope_per_decade"), 1e6, "slope_per_decade"),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE_COHORTS))
def test_cohorts_that_make_impossible_patients_are_refused(tmp_path: Path, case: str) -> None:
    """Infinite creatinine clearance, 2-year-olds, NRS 0 where pain is required: exit 2 naming the field."""
    path, value, field = IMPOSSIBLE_COHORTS[case]
    doc = yaml.safe_load(COHORT.read_text())
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc))
    _refused(_cli(["cohort", f]), str(f), field)


def test_usage_errors_are_one_paragraph_with_a_fix() -> None:
    """Click usage errors (--seed abc, unknown option, missing argument) in the same one-paragraph form."""
    _refused(_cli(["run", GUIDE, "--seed", "abc"]), "in the command line", "option '--seed'", "whole number")
    _refused(_cli(["run", GUIDE, "--sed", "1"]), "--sed", "painpath run --help")
    _refused(_cli(["run"]), "argument 'SCENARIO'", "required")
    _refused(_cli(["parameters", "--format", "x"]), "option '--format'", "md")
    _refused(_cli(["nonsense"]), "nonsense")


# ---- paths and HTML ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["/tmp/painpath-absolute-escape/../../escaped"])
def test_scenario_names_are_labels_never_paths(tmp_path: Path, name: str) -> None:
    """A name with ../ or an absolute path decides nothing about where run, compare and sweep write."""
    work = tmp_path / "work"
    work.mkdir()
    sc = _scenario(work, {"name": name, "patients": 30})
    other = _scenario(work, {"name": name + "-2", "patients": 30}, "o.yaml")
    for args in (["run", sc, "--quiet", "--no-report"],
                 ["compare", sc, other, "--replications", 2, "--quiet"],
                 ["sweep", sc, "--param", "policy.visit_interval_days", "--values", "14,28", "--replications", 2,
                  "--quiet"]):
        res = _cli(args, cwd=work)
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert sorted(p.name for p in work.iterdir()) == ["o.yaml", "results", "s.yaml"]
    made = sorted((work / "results").iterdir())
    assert len(made) == 3 and all(".." not in p.name and "/" not in p.name for p in made)
    runs = [q for p in made for q in (p / "runs").glob("*")] if made else []
    assert all(q.parent.parent.parent == work / "results" for q in runs)
    assert not Path("/tmp/painpath-absolute-escape").exists()


def test_sweep_and_tornado_reports_escape_labels(tmp_path: Path) -> None:
    """<script> in a scenario name, a tornado label and a sweep value appears escaped, never raw."""
    sc = _scenario(tmp_path, {"name": "<script>alert(1)</script>", "patients": 30})
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump([{"path": "policy.visit_interval_days", "low": 7, "high": 28,
                                       "label": "<script>alert(2)</script>"}]))
    assert _cli(["sweep", sc, "--param", "policy.name", "--values", "<script>alert(3)</script>,b",
                 "--replications", 2, "--out", tmp_path / "sw", "--quiet"]).exit_code == 0
    assert _cli(["tornado", sc, "--params", params, "--replications", 2, "--out", tmp_path / "to",
                 "--quiet"]).exit_code == 0
    for page, marks in ((tmp_path / "sw" / "report.html", ("1", "3")), (tmp_path / "to" / "report.html", ("1", "2"))):
        text = page.read_text()
        assert "<script" not in text
        for m in marks:
            assert f"&lt;script&gt;alert({m})&lt;/script&gt;" in text


def test_run_folders_have_the_usual_permissions(tmp_path: Path) -> None:
    """Run folders follow the umask (not mode 0700 as tempfile.mkdtemp makes them)."""
    old = os.umask(0o022)
    try:
        assert _cli(["run", GUIDE, "--patients", 30, "--out", tmp_path / "r", "--quiet", "--no-report"]).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o755


def test_packaged_names_resolve(tmp_path: Path) -> None:
    """`cohort: mixed-primary-care` and `painpath run guideline` name the packaged files (from any folder)."""
    sc = tmp_path / "s.yaml"
    sc.write_text("name: packaged\ncohort: mixed-primary-care\npatients: 30\n")
    assert _cli(["run", sc, "--out", tmp_path / "a", "--quiet", "--no-report"], cwd=tmp_path).exit_code == 0
    res = _cli(["run", "guideline", "--patients", 30, "--out", tmp_path / "b", "--quiet", "--no-report"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["scenario"] == "guideline"
    bad = tmp_path / "t.yaml"
    bad.write_text("name: x\ncohort: no-such-cohort\n")
    _refused(_cli(["run", bad]), "no-such-cohort", "mixed-primary-care")


# ---- properties of the two helpers every name goes through -----------------------------------


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_folder_names_are_single_safe_components(label: str) -> None:
    """Whatever the label, its folder name is one path component of safe characters, never '.' or '..'."""
    from simulator.output.results import folder_name

    name = folder_name(label)
    assert 1 <= len(name) <= 60
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    assert ".." not in name and name not in (".", "..") and not name.startswith(("-", "."))


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=80).filter(
    lambda s: not s.endswith("\\")))
def test_rich_prints_escaped_names_as_written(label: str) -> None:
    """Whatever the name, rich prints esc(name) as the name itself: brackets and backslashes are not markup."""
    from rich.console import Console

    from simulator.cli import esc

    console = Console(width=10_000, emoji=False, highlight=False, color_system=None)
    with console.capture() as cap:
        console.print(esc(label), end="", soft_wrap=True)
    assert cap.get() == label


def test_default_names_are_made_unique_not_refused(tmp_path: Path, monkeypatch) -> None:
    """A default run folder name already taken (a run in the same second) gets a suffix; nothing is refused
    or replaced."""
    import simulator.output.results as results

    monkeypatch.setattr(results.time, "strftime", lambda fmt: "20260101-000000")
    taken = tmp_path / "results" / "guideline-20260101-000000"
    taken.mkdir(parents=True)
    (taken / "manifest.json").write_text("{}")
    res = _cli(["run", GUIDE, "--patients", 30, "--quiet", "--no-report"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    made = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert made == ["guideline-20260101-000000", "guideline-20260101-000000-2"], made
    assert (taken / "manifest.json").read_text() == "{}"


# ---- every output file is checked before any work (review of issue 14, 2nd pass) -----------------

def _file_options():
    """(command, option) for every option naming a file painpath writes."""
    import click


    found = []
    for name, cmd in sorted(main.commands.items()):
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.is_flag:
                continue
            folder = isinstance(p.type, click.Path) and not p.type.file_okay
            if set(p.opts) & {"--out", "--json", "--html", "--patients-out"} and not folder:
                found.append((name, p))
    return found


def test_every_output_file_option_is_preflighted() -> None:
    """Protects the class: a file option written after the work (trial --json, calibrate --out, parameters
    --out...) used to crash with a traceback when it named a folder or a path below a file."""
    from simulator.cli import OutputFile

    opts = _file_options()
    assert len(opts) >= 10, opts
    bad = [(c, p.opts[0]) for c, p in opts if not isinstance(p.type, OutputFile)]
    assert not bad, bad


FILE_OUT_CASES = [
    (["parameters"], "--out"),
    (["trial", "--cohort", "trials/dpn", "--arm", "placebo", "--weeks", "4", "--patients", "20"], "--json"),
    (["trial", "--cohort", "trials/dpn", "--arm", "placebo", "--weeks", "4", "--patients", "20"], "--patients-out"),
    (["calibrate", "--patients", "20"], "--out"),
    (["calibrate", "--patients", "20"], "--report"),
    (["trace", str(GUIDE), "--patient", "1"], "--html"),
    (["snapshot", str(GUIDE), "--patients", "20"], "--out"),
    (["check", str(GUIDE), "--patients", "20"], "--json"),
]


@pytest.mark.parametrize(("args", "option"), FILE_OUT_CASES, ids=lambda x: x if isinstance(x, str) else x[0])
def test_output_file_below_a_file_or_a_folder_is_refused_before_any_work(tmp_path: Path, args, option,
                                                                          no_simulation, monkeypatch) -> None:
    import simulator.cli.trial as cli_trial

    def boom(*a, **k):
        raise AssertionError("worked before refusing")

    monkeypatch.setattr(cli_trial, "run_battery", boom)
    monkeypatch.setattr(cli_trial, "run_trial", boom)
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    _refused(_cli([*args, option, tmp_path / "f" / "x.json"]), f"option '{option}'", "is a file", "Fix:")
    if option != "--report":
        _refused(_cli([*args, option, tmp_path / "d"]), f"option '{option}'", "is a folder")


def test_output_file_parents_are_created(tmp_path: Path) -> None:
    """A missing parent folder of an output file is made (as snapshot and calibrate always did)."""
    out = tmp_path / "new" / "deeper" / "parameters.md"
    res = _cli(["parameters", "--out", out])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("#")


def test_a_misspelt_scenario_name_lists_the_packaged_scenarios(no_simulation) -> None:
    """`painpath run guidline` said only "the file does not exist"; it now names the packaged scenarios."""
    _refused(_cli(["run", "guidline"]), "guidline", "packaged scenario", "guideline, ")


def test_a_refused_sweep_or_tornado_value_names_where_it_came_from(tmp_path: Path, no_simulation) -> None:
    """`sweep --values nan,2` blamed the scenario file ("Error in guideline.yaml, field ..."), which is fine;
    the value came from the command line (or the tornado's params file), and the error now says so."""
    text = _refused(_cli(["sweep", GUIDE, "--param", "specialist.slots_per_week_per_1000", "--values", "nan,2"]),
                    "option '--values'", "specialist.slots_per_week_per_1000", "finite")
    assert "guideline.yaml" not in text
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump([{"path": "specialist.slots_per_week_per_1000", "low": -1, "high": 3,
                                       "label": "x"}]))
    text = _refused(_cli(["tornado", GUIDE, "--params", params]), "option '--params'", ">= 0")
    assert "guideline.yaml" not in text


def test_union_members_tried_by_the_validator_are_not_named_as_fields(tmp_path: Path) -> None:
    """A NaN in a tornado bound (a number or a text) was reported at field '[0].low.float'."""
    params = tmp_path / "p.yaml"
    params.write_text("- path: specialist.slots_per_week_per_1000\n  low: .nan\n  high: 3\n  label: x\n")
    text = _refused(_cli(["tornado", GUIDE, "--params", params]), "field '[0].low'", "finite")
    assert ".float" not in text


@pytest.mark.parametrize(("extra", "option"), [(["--placebo-scale", "nan"], "--placebo-scale"),
                                               (["--arm", "aspirin"], "--arm")])
def test_trial_option_errors_name_the_command_line_option(extra: list[str], option: str, monkeypatch) -> None:
    """`trial --placebo-scale nan` said "Error field 'placebo_scale'": neither the command line nor the option."""
    base = ["trial", "--cohort", "trials/dpn", "--arm", "placebo", "--weeks", "4", "--patients", "20"]
    _refused(_cli([*base, *extra]), "in the command line", f"option '{option}'")
