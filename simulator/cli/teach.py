"""Teaching commands: ``painpath diagram``, ``painpath trace``, ``painpath tutor`` (thin; logic in the library)."""

from __future__ import annotations

from pathlib import Path

import click

from ..inputs.errors import InputError
from . import OUT_FILE, console, esc, friendly, main


def _write(out: str, data: bytes, option: str = "--out") -> None:
    from ..output.results import write_file_atomic

    write_file_atomic(out, lambda tmp: tmp.write_bytes(data), option=option)


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--format", "fmt", type=click.Choice(["mermaid", "svg", "png"]), default="mermaid", show_default=True)
@click.option("--out", type=OUT_FILE, default=None,
              help="File to write (default: print Mermaid text; svg/png need --out).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="A run folder: label each edge with how many patients took it.")
@friendly
def diagram(scenario: str | None, fmt: str, out: str | None, run_dir: str | None) -> None:
    """Developer view: the state machine the engine runs (Mermaid, or SVG/PNG via Graphviz); see also 'flowchart'."""
    from ..scenario import load_scenario
    from ..teaching.diagram import diagram as draw

    sc = load_scenario(scenario) if scenario else None
    if run_dir is not None and sc is not None:
        from ..output.results import read_run
        from ..teaching.flowchart import check_run_matches

        check_run_matches(sc, read_run(run_dir), run_dir)
    if fmt != "mermaid" and out is None:
        raise InputError(f"--format {fmt} writes an image file", field="--out", fix=f"add --out pathway.{fmt}")
    data = draw(fmt, scenario=sc, run_dir=run_dir)
    if out is None:
        click.echo(data.decode(), nl=False)
    else:
        _write(out, data)
        console.print(f"Wrote {esc(out)}")


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--out", type=OUT_FILE, required=True,
              help="File to write: .svg, .html (nothing to install) or .png (needs Chromium).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="A run folder of the SAME scenario: patients per step and per arrow.")
@friendly
def flowchart(scenario: str | None, out: str, run_dir: str | None) -> None:
    """Draw the clinical flowchart (trainee view): decision criteria, drugs and doses, safety checks, etiologies."""
    from ..model.policy import Policy
    from ..scenario import load_scenario
    from ..teaching.flowchart import (
        check_run_matches,
        counts_from_events,
        flowchart_html,
        flowchart_svg,
        render_png,
    )

    sc = load_scenario(scenario) if scenario else None
    if run_dir is not None and sc is None:
        raise InputError("--run needs the scenario the run was made from", field="SCENARIO",
                         fix="give the scenario file before --run")
    suffix = Path(out).suffix.lower()
    if suffix not in (".svg", ".html", ".png"):
        raise InputError(f"unknown file type '{suffix or out}'", field="--out", fix="end the file name in .svg, .html or .png")
    counts = None
    if run_dir is not None:
        from ..output.results import read_run

        run = read_run(run_dir)
        check_run_matches(sc, run, run_dir)
        counts = counts_from_events(run["events"], sc.name)
    svg = flowchart_svg(sc.policy if sc else Policy(), counts=counts)
    if suffix == ".png":
        if Path(out).parent and not Path(out).parent.exists():
            raise InputError(f"the folder of '{out}' does not exist", field="--out", fix="create the folder first")
        render_png(svg, out)
    else:
        _write(out, (svg if suffix == ".svg" else flowchart_html(svg, "painpath flowchart")).encode())
    console.print(f"Wrote {out}")


def _setup(scenario: str | None, case: str | None, patient: int | None, seed: int | None, replication: int,
           patients: int | None = None, replications: int | None = None):
    from ..scenario import load_scenario
    from ..teaching.cases import load_case
    from ..teaching.narrate import setup_from_case, setup_from_scenario

    if case is not None:
        if patients is not None or replications is not None:
            raise InputError("a teaching case is one patient, not a run", field="--patients" if patients is not None
                             else "--replications", fix="remove it, or trace a scenario's patient instead of --case")
        return setup_from_case(load_case(case))
    if scenario is None:
        raise InputError("no patient given", field="SCENARIO", fix="give a scenario and --patient K, or --case NAME")
    if patient is None:
        raise InputError("which patient?", field="--patient", fix="add --patient K (0 is the first patient)")
    return setup_from_scenario(load_scenario(scenario), patient, seed, replication, patients, replications)


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--patient", type=int, default=None,
              help="Index of the patient in the run's cohort (0 to the run's patients per replication - 1).")
@click.option("--seed", type=int, default=None, help="Seed (default: the scenario's).")
@click.option("--replication", type=int, default=0, show_default=True)
@click.option("--patients", type=int, default=None,
              help="Patients per replication of the run the patient belongs to (overrides the scenario, as in run).")
@click.option("--replications", type=int, default=None,
              help="Replications of the run the patient belongs to (overrides the scenario, as in run).")
@click.option("--case", "case", default=None, help="A teaching case (packaged name or YAML file) instead of a scenario.")
@click.option("--html", "html_out", type=OUT_FILE, default=None,
              help="Also write a self-contained HTML page: timeline beside the highlighted diagram.")
@click.option("--find-seeds", is_flag=True,
              help="With --case: list simulation seeds under which the case shows every rule it teaches.")
@friendly
def trace(scenario: str | None, patient: int | None, seed: int | None, replication: int, patients: int | None,
          replications: int | None, case: str | None, html_out: str | None, find_seeds: bool) -> None:
    """Tell one simulated patient's journey, with the rule and seed source of every decision."""
    from ..teaching.journey import journey_html, print_journey
    from ..teaching.narrate import teaching_seeds
    from ..teaching.narrate import trace as run_trace

    if find_seeds:
        if not case:
            raise InputError("--find-seeds needs a teaching case", field="--find-seeds", fix="add --case NAME")
        from ..teaching.cases import load_case

        found = teaching_seeds(load_case(case))
        console.print(f"seeds that teach every rule of '{esc(case)}': {found or 'none in 0-199'}")
        return

    if seed is not None and seed < 0:
        raise InputError(f"seed must be >= 0 (got {seed})", field="--seed", fix="use a non-negative whole number")
    j = run_trace(_setup(scenario, case, patient, seed, replication, patients, replications))
    print_journey(j, console)
    if html_out:
        _write(html_out, journey_html(j).encode(), option="--html")
        console.print(f"Wrote {esc(html_out)}")


@main.command()
@click.option("--case", "case", default=None, help="A teaching case: packaged name (see --list) or a YAML file.")
@click.option("--cohort", "cohort", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Draw the patient from a cohort file instead (with --seed and --patient).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--patient", type=int, default=0, show_default=True)
@click.option("--answers", default=None, help="Scripted answers, e.g. 1,3,2 (no keyboard needed).")
@click.option("--list", "list_cases", is_flag=True, help="List the packaged teaching cases.")
@friendly
def tutor(case: str | None, cohort: str | None, seed: int, patient: int, answers: str | None, list_cases: bool) -> None:
    """An interactive case: choose each step, see whether it follows the guideline and what it leads to."""
    from ..teaching.cases import case_names, load_case
    from ..teaching.narrate import setup_from_case, setup_from_cohort
    from ..teaching.tutor.terminal import Tutor, parse_answers

    if list_cases:
        for name in case_names():
            click.echo(f"{name}: {load_case(name).title}")
        return
    if (case is None) == (cohort is None):
        raise InputError("give either --case or --cohort", field="--case",
                         fix=f"e.g. --case arrhythmia-no-tca (cases: {', '.join(case_names())})")
    if seed < 0:
        raise InputError(f"seed must be >= 0 (got {seed})", field="--seed", fix="use a non-negative whole number")
    if cohort is not None:
        from ..inputs.packaged import resolve_cohort

        cohort = str(resolve_cohort(cohort, field="--cohort"))
    setup = setup_from_case(load_case(case)) if case else setup_from_cohort(str(cohort), patient, seed)
    Tutor(setup).run(answers=parse_answers(answers), echo=click.echo, ask=input)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--cohorts", "cohorts_dir", type=click.Path(file_okay=False, path_type=str), default="cohorts",
              show_default=True, help="Folder of cohort files the educator can pick a patient from.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser page.")
@friendly
def teach(port: int, cohorts_dir: str, no_browser: bool) -> None:
    """The tutor and traces in the browser: a local web app on 127.0.0.1 (offline; Ctrl+C stops it)."""
    from ..teaching.webapp import serve

    serve("127.0.0.1", port, cohorts_dir, open_browser=not no_browser)
