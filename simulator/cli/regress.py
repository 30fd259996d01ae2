"""Regression-testing commands: ``painpath check``, ``lint``, ``diff`` and ``snapshot`` (thin; logic in
:mod:`simulator.regression.invariants`, :mod:`simulator.regression.lint`, :mod:`simulator.regression.diff`, :mod:`simulator.regression.snapshot`)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..inputs.errors import InputError
from ..output.results import preflight_out
from . import OUT_FILE, check_seed, console, esc, friendly, main, positive

SHOW_VIOLATIONS = 20


def _run_options(seed: int | None, patients: int | None, replications: int | None, workers: int = 1) -> None:
    positive("patients", patients)
    positive("replications", replications)
    positive("workers", workers)
    check_seed(seed)


def _write_json(path: str, data: Any, option: str = "--json") -> None:
    from ..output.results import write_file_atomic, write_json

    write_file_atomic(path, lambda tmp: write_json(tmp, data), option=option)


# ---- check --------------------------------------------------------------------------------------


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=str))
@click.option("--patients", type=int, default=None, help="Patients per replication (overrides the scenario).")
@click.option("--seed", type=int, default=None, help="Root random seed (overrides the scenario).")
@click.option("--replications", type=int, default=None, help="Replications (overrides the scenario).")
@click.option("--workers", type=int, default=1, show_default=True, help="Parallel processes for replications.")
@click.option("--json", "json_out", type=OUT_FILE, default=None,
              help="Also write the full report (every violation) as JSON to this file.")
@friendly
def check(scenario: str, patients: int | None, seed: int | None, replications: int | None, workers: int,
          json_out: str | None) -> None:
    """Simulate SCENARIO and check every trajectory against the guideline invariants (exit 1 on a violation)."""
    from ..analysis.runner import simulate
    from ..regression.invariants import check_run
    from ..scenario import load_scenario

    _run_options(seed, patients, replications, workers)
    if json_out:
        preflight_out(json_out, kind="file", option="--json")
    sc = load_scenario(scenario)
    result = simulate(sc, patients=patients, seed=seed, replications=replications, workers=workers)
    report = check_run(result)
    r = result.scenario
    t = Table(title=f"{esc(r.name)}: {r.patients} patients x {r.replications} replication(s), seed {r.seed}",
              header_style="bold")
    t.add_column("invariant", no_wrap=True)
    t.add_column("rule", no_wrap=True)
    for col in ("checked", "applicable", "violations"):
        t.add_column(col, justify="right")
    t.add_column("status", overflow="fold")
    for res in report.results:
        status = {"ok": "[green]ok[/]", "FAIL": "[red]FAIL[/]"}.get(res.status, "[yellow]declared[/]")
        n = len(res.violations) if res.violations else len(res.declared)
        t.add_row(res.invariant.name, res.invariant.rule, str(res.checked), str(res.applicable), str(n), status)
    console.print(t)
    shown = [v for res in report.results for v in (res.violations + res.declared)]
    if shown:
        console.print(f"[bold]violations[/] (first {min(len(shown), SHOW_VIOLATIONS)} of {len(shown)}; --json for all):")
        for v in shown[:SHOW_VIOLATIONS]:
            tag = "[yellow]declared departure[/]" if v.declared else "[red]violation[/]"
            text = escape(f"{v.invariant}: replication {v.replication} patient {v.patient} day {v.day:g} "
                          f"{v.event} {v.drug or ''} [{v.rule or '-'}] - {v.detail}")
            console.print(f"  {tag} {text}", highlight=False)
    if json_out:
        _write_json(json_out, report.to_dict())
    if report.ok:
        extra = f" ({report.n_declared} under declared departures)" if report.n_declared else ""
        console.print(f"[green]No violations[/] in {report.trajectories} trajectories{extra}.")
        return
    console.print(f"[red]{report.n_violations} violation(s)[/] in {report.trajectories} trajectories.")
    sys.exit(1)


# ---- lint ---------------------------------------------------------------------------------------
@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@friendly
def lint(scenario: str | None, as_json: bool) -> None:
    """Static checks of the pathway (and of SCENARIO's policy) before simulating (exit 1 on an error)."""
    from ..regression.lint import has_errors
    from ..regression.lint import lint as run_lint
    from ..scenario import load_scenario

    sc = load_scenario(scenario) if scenario else None
    findings = run_lint(sc)
    if as_json:
        click.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        t = Table(title="painpath lint" + (f": {esc(sc.name)}" if sc else ": pathway"), header_style="bold")
        for col in ("severity", "check", "subject", "finding"):
            t.add_column(col, overflow="fold")
        colour = {"error": "red", "warning": "yellow", "info": "dim"}
        for f in findings:
            t.add_row(f"[{colour[f.severity]}]{f.severity}[/]", esc(f.check), esc(f.subject), esc(f.message))
        console.print(t)
        n_err = sum(f.severity == "error" for f in findings)
        console.print(f"{n_err} error(s), {sum(f.severity == 'warning' for f in findings)} warning(s).")
    if has_errors(findings):
        sys.exit(1)


# ---- snapshot -----------------------------------------------------------------------------------
@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=str))
@click.option("--out", required=True, type=OUT_FILE, help="Snapshot JSON file.")
@click.option("--patients", type=int, default=None)
@click.option("--replications", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--workers", type=int, default=1, show_default=True)
@friendly
def snapshot(scenario: str, out: str, patients: int | None, replications: int | None, seed: int | None,
             workers: int) -> None:
    """Run SCENARIO and store a golden snapshot (metrics, trajectories, hashes, seed) in --out."""
    from ..analysis.runner import simulate
    from ..regression.snapshot import trajectories, write_snapshot
    from ..scenario import load_scenario

    _run_options(seed, patients, replications, workers)
    if not out.endswith(".json"):
        raise InputError(f"the snapshot file '{out}' must end in .json", field="--out", fix="name it e.g. golden.json")
    preflight_out(out, kind="file")
    sc = load_scenario(scenario)
    result = simulate(sc, patients=patients, seed=seed, replications=replications, workers=workers)
    path = write_snapshot(result, out)
    r = result.scenario
    console.print(f"Snapshot of {esc(r.name)}: {r.patients} patients x {r.replications} replication(s), seed {r.seed}, "
                  f"{len(trajectories(result.events))} trajectories -> {esc(path)}")


# ---- diff ---------------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


@main.command()
@click.argument("scenarios", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option("--against", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Compare NEW with a snapshot file instead of an OLD scenario.")
@click.option("--patients", type=int, default=None)
@click.option("--replications", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--fail-if", "fail_if", multiple=True,
              help="Bound such as 'time_to_relief.median_days > +7' (signed = change new-old; plain = new value). "
                   "Exit 1 when crossed. Repeatable.")
@click.option("--json", "json_out", type=OUT_FILE, default=None,
              help="Also write the whole report as JSON to this file.")
@click.option("--all-metrics", is_flag=True, help="List unchanged metrics too.")
@friendly
def diff(scenarios: tuple[str, ...], against: str | None, patients: int | None, replications: int | None,
         seed: int | None, workers: int, fail_if: tuple[str, ...], json_out: str | None, all_metrics: bool) -> None:
    """Compare OLD.yaml and NEW.yaml (or --against SNAPSHOT.json NEW.yaml) on the same patients."""
    from ..regression.diff import diff_against_snapshot, diff_scenarios, parse_fail_if
    from ..regression.snapshot import read_snapshot
    from ..scenario import load_scenario

    _run_options(seed, patients, replications, workers)
    for e in fail_if:
        parse_fail_if(e)
    if json_out:
        preflight_out(json_out, kind="file", option="--json")
    if against:
        if len(scenarios) != 1:
            raise InputError(f"with --against give exactly one scenario (got {len(scenarios)})", field="SCENARIOS",
                             fix="painpath diff --against golden.json NEW.yaml")
        if patients or replications or seed is not None:
            raise InputError("--patients, --replications and --seed come from the snapshot with --against",
                             field="--against", fix="drop them, or write a new snapshot")
        snap = read_snapshot(against)
        report = diff_against_snapshot(snap, load_scenario(scenarios[0]), workers=workers, fail_if=list(fail_if))
    else:
        if len(scenarios) != 2:
            raise InputError(f"give two scenarios, OLD and NEW (got {len(scenarios)})", field="SCENARIOS",
                             fix="painpath diff OLD.yaml NEW.yaml, or painpath diff --against SNAPSHOT.json NEW.yaml")
        old, new = (load_scenario(s) for s in scenarios)
        report = diff_scenarios(old, new, patients=patients, replications=replications, seed=seed,
                                workers=workers, fail_if=list(fail_if))
    _print_diff(report, all_metrics)
    if json_out:
        _write_json(json_out, report.to_dict())
    if report.failed:
        crossed = [b["expr"] for b in report.bounds if b["crossed"]]
        console.print(f"[red]Bound crossed:[/] {esc('; '.join(crossed))}")
        sys.exit(1)


def _print_diff(report: Any, all_metrics: bool) -> None:
    console.print(f"[bold]{esc(report.old)}[/] -> [bold]{esc(report.new)}[/]: {report.patients} patients x "
                  f"{report.replications} replication(s), seed {report.seed} (common random numbers)")
    for n in report.notes:
        console.print(f"[yellow]note:[/] {esc(n)}")
    ct = Table(title="(a) what changed", header_style="bold")
    for col in ("section", "field", "old", "new"):
        ct.add_column(col, overflow="fold")
    for c in report.changes:
        ct.add_row(esc(c.section), esc(c.field), esc(json.dumps(c.old)), esc(json.dumps(c.new)))
    if not report.changes:
        ct.add_row("-", "nothing", "", "")
    console.print(ct)
    from ..analysis.metrics import fmt, fmt_ci, label_with_unit

    mt = Table(title="(b) metrics: new - old, paired 95% CI over replications (shares in %, differences in "
               "percentage points)", header_style="bold")
    mt.add_column("metric", overflow="fold")
    for col in ("old", "new", "difference [95% CI]"):
        mt.add_column(col, justify="right")
    mt.add_column("key (for --fail-if) / note", overflow="fold")
    hidden = 0
    for m in report.metrics:
        if not all_metrics and m.diff == 0 and m.old is not None:
            hidden += 1
            continue
        mt.add_row(esc(label_with_unit(m.metric)), fmt(m.metric, m.old), fmt(m.metric, m.new),
                   fmt_ci(m.metric, m.diff, m.ci_lo, m.ci_hi, diff=True),
                   esc(m.metric + (f" ({m.note})" if m.note else "")))
    console.print(mt)
    if hidden:
        console.print(f"[dim]{hidden} unchanged metric(s) not shown (--all-metrics lists them)[/]")
    d = report.divergence
    share = 100.0 * d.diverged / d.trajectories if d.trajectories else 0.0
    console.print(f"(c) divergence: {d.diverged} of {d.trajectories} trajectories differ ({share:.1f}%)")
    if d.by_step:
        st = Table(title="first divergence by step", header_style="bold")
        for col, j in (("step", "right"), ("at (old state, event)", "left"), ("patients", "right")):
            st.add_column(col, justify=j)  # type: ignore[arg-type]
        for s, lab, c in d.by_step[:25]:
            st.add_row(str(s), esc(lab), str(c))
        if len(d.by_step) > 25:
            st.add_row("...", f"{len(d.by_step) - 25} more rows (see --json)", "")
        console.print(st)
    for ex in d.examples:
        et = Table(title=f"replication {ex['replication']}, patient {ex['patient']}: first differs at step {ex['step']}",
                   header_style="bold")
        et.add_column("#", justify="right")
        et.add_column("old", overflow="fold")
        et.add_column("new", overflow="fold")
        old, new = ex["old"], ex["new"]
        for i in range(max(len(old), len(new))):
            a = old[i] if i < len(old) else ""
            b = new[i] if i < len(new) else ""
            mark = "" if a == b else "[bold yellow]"
            et.add_row(f"{mark}{i}", escape(a), f"{mark}{escape(b)}" if mark else escape(b))
        console.print(et)
    for b in report.bounds:
        state = "[red]crossed[/]" if b["crossed"] else "[green]holds[/]"
        console.print(f"bound {esc(b['expr'])}: {esc(b['compared'])} = {_fmt(b['value'])} -> {state}")
