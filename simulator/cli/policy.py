"""Policy what-if commands: ``painpath compare``, ``sweep``, ``tornado`` and ``report`` (thin; logic in
:mod:`simulator.analysis.compare`, :mod:`simulator.analysis.sweep`, :mod:`simulator.output.folders` and :mod:`simulator.output.report`)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..inputs.errors import InputError
from ..output.results import preflight_out
from . import (
    NOT_FOR_CLINICAL_USE,
    LazyProgress,
    check_seed,
    command_line,
    console,
    esc,
    friendly,
    main,
    positive,
)

MAX_SCENARIOS = 12
"""Most scenarios in one comparison."""
MAX_SWEEP_VALUES = 50
"""Most values in one sweep."""

_common = [
    click.option("--patients", type=int, default=None, help="Patients per replication (default: the first scenario's)."),
    click.option("--replications", type=int, default=4, show_default=True, help="Replications (at least 2)."),
    click.option("--seed", type=int, default=None, help="Root seed, the same for every scenario (default: the first's)."),
    click.option("--workers", type=int, default=1, show_default=True, help="Parallel processes for replications."),
    click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
                 help="Output folder (default results/<kind>-<timestamp>/); must not exist."),
    click.option("--force", is_flag=True, help="Replace the --out folder if it exists (only a painpath output folder)."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def common(fn):  # type: ignore[no-untyped-def]
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


def _check(patients: int | None, replications: int, seed: int | None, workers: int) -> None:
    positive("patients", patients)
    positive("replications", replications, 2)
    positive("workers", workers)
    check_seed(seed)


def short_label(metric: str) -> str:
    """A readable row label with its unit for a dotted metric (from the metric registry)."""
    from ..analysis.metrics import label_with_unit

    return label_with_unit(metric)


def _ci(mean: float | None, lo: float | None, hi: float | None, metric: str = "", diff: bool = False) -> str:
    from ..analysis.metrics import fmt_ci

    return fmt_ci(metric, mean, lo, hi, diff=diff)


def beyond_horizon(notes: list[str]) -> bool:
    return bool(notes) and all("beyond the" in n for n in notes)


@main.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@common
@friendly
def compare(scenarios: tuple[str, ...], patients: int | None, replications: int, seed: int | None, workers: int,
            out: str | None, force: bool, quiet: bool) -> None:
    """Compare SCENARIOS (the first is the baseline) with common random numbers: means with 95% CIs and
    paired differences; writes comparison.json, comparison.csv and report.html."""
    from ..analysis.compare import compare as run_compare
    from ..analysis.compare import comparison_dict
    from ..analysis.metrics import KEY_METRICS
    from ..output.folders import default_compare_dir, write_comparison
    from ..scenario import load_scenario

    _check(patients, replications, seed, workers)
    if len(scenarios) > MAX_SCENARIOS:
        raise InputError(f"{len(scenarios)} scenarios given, more than the {MAX_SCENARIOS} one comparison shows",
                         field="SCENARIOS", fix=f"compare at most {MAX_SCENARIOS} scenarios at a time")
    scs = [load_scenario(s) for s in scenarios]
    dest = Path(out) if out else default_compare_dir()
    preflight_out(dest, force=force, unique=out is None)
    bar = LazyProgress("comparing", enabled=not quiet)
    try:
        c = run_compare(scs, patients=patients, replications=replications, seed=seed, workers=workers,
                        progress=bar, command=command_line())
    finally:
        bar.close()
    folder = write_comparison(c, dest, overwrite=force, unique=out is None)
    d = comparison_dict(c)
    names = c.names
    t = Table(title=f"{' vs '.join(esc(n) for n in names)}: {d['patients']} patients x {d['replications']} replications, seed "
              f"{d['seed']} (estimate [95% CI]; shares in %, their differences in percentage points)",
              show_header=True, header_style="bold")
    t.add_column("metric", no_wrap=True)
    for n in names:
        t.add_column(esc(n), justify="right")
    for n in names[1:]:
        t.add_column(f"{esc(n)} - {esc(names[0])} (paired CI)", justify="right")
    notes: dict[str, str] = {}
    hidden: list[str] = []
    for m in KEY_METRICS:
        got = [d["metrics"][n].get(m) for n in names]
        why = [v["note"] for v in got if v and v.get("note")]
        if beyond_horizon(why) and all(v is None or v["mean"] is None for v in got):
            hidden.append(short_label(m))
            continue
        cells = []
        for v in got:
            cells.append(_ci(v["mean"], *v["ci95"], metric=m) if v else "-")
        for n in names[1:]:
            v = d["differences_vs_baseline"][n].get(m)
            cells.append(_ci(v["diff"], *v["paired_ci95"], metric=m, diff=True) if v else "-")
            if v and v.get("note"):
                why.append(f"{n} - {names[0]}: {v['note']}")
        mark = ""
        if why:
            notes[m] = "; ".join(dict.fromkeys(why))
            mark = f" [{len(notes)}]"
        t.add_row(short_label(m) + mark, *cells)
    console.print(t)
    for i, (m, note) in enumerate(notes.items(), 1):
        console.print(f"[{i}] {short_label(m)}: {note}", markup=False, highlight=False)
    if hidden:
        console.print(f"Not shown, beyond the {int(c.results[0].scenario.horizon_days)}-day horizon: "
                      + "; ".join(hidden), markup=False, highlight=False)
    if d["ci_note"]:
        console.print(f"Note: {d['ci_note']}", markup=False, highlight=False)
    console.print(f"[dim]{NOT_FOR_CLINICAL_USE}[/dim]")
    console.print(f"Comparison folder: {esc(folder)}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=str))
@click.option("--param", required=True, help="Dotted path: policy.visit_interval_days, specialist.slots_per_week_per_1000, "
              "clinical.drugs.duloxetine.responder_prob, ...")
@click.option("--values", required=True, help="Comma-separated values, e.g. 7,14,28.")
@click.option("--metric", default=None, help="Metric to plot (default time_to_relief.rmst_days; for "
              "specialist.* parameters the clinic's median wait).")
@common
@friendly
def sweep(scenario: str, param: str, values: str, metric: str | None, patients: int | None, replications: int,
          seed: int | None, workers: int, out: str | None, force: bool, quiet: bool) -> None:
    """Run SCENARIO at several values of one policy or clinical parameter (common random numbers)."""
    from ..analysis.sweep import default_metric, parse_value
    from ..analysis.sweep import sweep as run_sweep
    from ..output.folders import default_dir, write_sweep
    from ..scenario import load_scenario

    _check(patients, replications, seed, workers)
    sc = load_scenario(scenario)
    vals = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not 1 <= len(vals) <= MAX_SWEEP_VALUES:
        raise InputError(f"{len(vals)} values given; a sweep takes 1 to {MAX_SWEEP_VALUES}", field="--values",
                         fix="give comma-separated values, e.g. 7,14,28")
    dest = Path(out) if out else default_dir("sweep", sc)
    preflight_out(dest, force=force, unique=out is None)
    bar = LazyProgress(f"sweeping {esc(param)}", enabled=not quiet)
    try:
        data, runs = run_sweep(sc, param, vals, metric=metric or default_metric(param, sc), patients=patients,
                               replications=replications, seed=seed, workers=workers, progress=bar,
                               command=command_line())
    finally:
        bar.close()
    folder = write_sweep(data, runs, dest, overwrite=force, unique=out is None)
    t = Table(title=f"{esc(sc.name)}: sweep of {esc(param)} ({esc(data['semantics'])})", header_style="bold")
    for h in ("value", "metric", "estimate [95% CI]", "vs first value (paired 95% CI)"):
        t.add_column(h)
    for r in data["rows"]:
        note = f" ({r['note']})" if r.get("note") else ""
        dnote = f" ({r['diff_note']})" if r.get("diff_note") else ""
        t.add_row(esc(r["value"]), esc(short_label(r["metric"])), _ci(r["mean"], r["ci95_lo"], r["ci95_hi"], r["metric"]) + esc(note),
                  _ci(r["diff_vs_first"], r["paired_lo"], r["paired_hi"], r["metric"], diff=True) + esc(dnote))
    console.print(t)
    if data.get("ci_note"):
        console.print(f"Note: {data['ci_note']}", markup=False, highlight=False)
    console.print(f"[dim]{NOT_FOR_CLINICAL_USE}[/dim]")
    console.print(f"Sweep folder: {esc(folder)}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=str))
@click.option("--params", "params_file", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="YAML list of {path, low, high, label}.")
@click.option("--metric", default=None, help="Metric (default time_to_relief.rmst_days).")
@common
@friendly
def tornado(scenario: str, params_file: str, metric: str | None, patients: int | None, replications: int,
            seed: int | None, workers: int, out: str | None, force: bool, quiet: bool) -> None:
    """One-way sensitivity of SCENARIO over the parameters in PARAMS (low and high values): table and tornado plot."""
    from ..analysis.sweep import DEFAULT_METRIC, load_tornado_params
    from ..analysis.sweep import tornado as run_tornado
    from ..output.folders import default_dir, write_tornado
    from ..scenario import load_scenario

    _check(patients, replications, seed, workers)
    sc = load_scenario(scenario)
    params = load_tornado_params(params_file)
    dest = Path(out) if out else default_dir("tornado", sc)
    preflight_out(dest, force=force, unique=out is None)
    bar = LazyProgress("one-way sensitivity", enabled=not quiet)
    try:
        data, base = run_tornado(sc, params, metric=metric or DEFAULT_METRIC, patients=patients, replications=replications,
                           seed=seed, workers=workers, progress=bar, command=command_line())
    finally:
        bar.close()
    folder = write_tornado(data, base, dest, overwrite=force, unique=out is None)
    m = data["metric"]
    t = Table(title=f"{esc(sc.name)}: one-way sensitivity of {esc(short_label(m))} (base {_ci(data['base'], None, None, m)})",
              header_style="bold")
    for h in ("parameter", "low", "high", "at low", "at high", "swing"):
        t.add_column(h)
    for r in data["rows"]:
        t.add_row(esc(r["label"]), esc(r["low"]), esc(r["high"]), _ci(r["at_low"], None, None, m),
                  _ci(r["at_high"], None, None, m), _ci(r["swing"], None, None, m))
    console.print(t)
    console.print(f"[dim]{NOT_FOR_CLINICAL_USE}[/dim]")
    console.print(f"Tornado folder: {esc(folder)}")


@main.command()
@click.argument("folder", type=click.Path(path_type=str))
@friendly
def report(folder: str) -> None:
    """(Re)render report.html for a run, comparison, sweep or tornado FOLDER."""
    from ..output.report import render_folder

    path = render_folder(folder)
    console.print(f"Report: {esc(path)}")
