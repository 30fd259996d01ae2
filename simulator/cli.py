"""The ``painpath`` command: a thin layer over the library (``simulator``).

Every command catches :class:`~simulator.errors.InputError` and prints it as one paragraph on stderr
with exit code 2 (never a traceback). Commands of other areas live in their own ``cli_*`` modules and
are registered at the bottom of this file.
"""

from __future__ import annotations

import functools
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import InputError

# Wide tables stay readable when output is piped or captured (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

NOT_FOR_CLINICAL_USE = ("painpath is for policy analysis and teaching. It is not a clinical decision tool "
                        "and must not be used to treat patients.")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: InputError -> one paragraph on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            err_console.print(exc.paragraph(), markup=False, highlight=False, soft_wrap=True)
            sys.exit(2)

    return wrapper


def command_line() -> str:
    return "painpath " + " ".join(shlex.quote(a) for a in sys.argv[1:])


class LazyProgress:
    """A rich progress bar that appears only once a run has lasted more than a second."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and console.is_terminal
        self.t0 = time.monotonic()
        self.progress: Progress | None = None
        self.task: Any = None

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            if time.monotonic() - self.t0 < 1.0:
                return
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                     TimeElapsedColumn(), console=console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=1.0)
        self.progress.update(self.task, completed=fraction)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise InputError(f"{name} must be at least {minimum} (got {value})", field=f"--{name}",
                         fix=f"use a whole number >= {minimum}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="painpath")
def main() -> None:
    """painpath: simulate the neuropathic-pain treatment pathway for policy analysis and teaching.

    Not for clinical use: it does not treat patients.
    """


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """The run's headline metrics with labels, units and 95% CIs (:func:`simulator.metrics.summary_rows`)."""
    from .metrics import summary_rows

    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value [95% CI]", justify="right")
    t.add_column("note")
    for _key, lab, text, note in summary_rows(summary, detail=False):
        t.add_row(lab, text, note)
    return t


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=str))
@click.option("--patients", type=int, default=None, help="Patients per replication (overrides the scenario).")
@click.option("--seed", type=int, default=None, help="Root random seed (overrides the scenario).")
@click.option("--replications", type=int, default=None, help="Independent replications (overrides the scenario).")
@click.option("--workers", type=int, default=1, show_default=True, help="Parallel processes for replications.")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Run folder to write (default results/<scenario>-<timestamp>/).")
@click.option("--no-report", is_flag=True, help="Do not render report.html into the run folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly
def run(scenario: str, patients: int | None, seed: int | None, replications: int | None, workers: int,
        out: str | None, no_report: bool, quiet: bool) -> None:
    """Simulate SCENARIO and write a run folder (summary.json, patients/events.parquet, manifest.json)."""
    from .results import write_run
    from .runner import default_run_dir, simulate
    from .scenario import load_scenario

    positive("patients", patients)
    positive("replications", replications)
    positive("workers", workers)
    if seed is not None and seed < 0:
        raise InputError(f"seed must be >= 0 (got {seed})", field="--seed", fix="use a non-negative whole number")
    sc = load_scenario(scenario)
    bar = LazyProgress(f"simulating {sc.name}", enabled=not quiet)
    try:
        result = simulate(sc, patients=patients, seed=seed, replications=replications, workers=workers,
                          progress=bar, command=command_line())
    finally:
        bar.close()
    dest = Path(out) if out else default_run_dir(result.scenario)
    extra = None if no_report else _report_writer(result)
    folder = write_run(result, dest, extra=extra)
    who = (f"open population, {result.summary['n_patients']} patients entering per replication on average"
           if result.scenario.population is not None else f"{result.scenario.patients} patients")
    console.print(summary_table(result.summary, f"{result.scenario.name}: {who} x "
                                f"{result.scenario.replications} replication(s), seed {result.scenario.seed}"))
    console.print(f"[dim]{NOT_FOR_CLINICAL_USE}[/dim]")
    console.print(f"Run folder: {folder}")


def _report_writer(result: Any) -> Callable[[Path], None] | None:
    """The HTML report writer, when the report module is available."""
    try:
        from .report import write_run_report
    except ImportError:
        return None
    return lambda tmp: write_run_report(result, tmp / "report.html")


@main.command()
@click.argument("cohort", type=click.Path(dir_okay=False, path_type=str))
@click.option("--patients", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--replication", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the table to a .csv or .parquet file instead of printing it.")
@friendly
def cohort(cohort: str, patients: int, seed: int, replication: int, out: str | None) -> None:
    """Preview or export the synthetic patients a COHORT file generates."""
    from .cohort import generate_cohort, load_cohort_spec

    positive("patients", patients)
    spec = load_cohort_spec(cohort)
    df = generate_cohort(spec, patients, seed, replication=replication).to_frame()
    if out:
        path = Path(out)
        if path.suffix == ".parquet":
            df.to_parquet(path, index=False)
        elif path.suffix == ".csv":
            df.to_csv(path, index=False)
        else:
            raise InputError(f"unknown output format '{path.suffix or '(none)'}'", field="--out",
                             fix="end the file name in .csv or .parquet")
        console.print(f"Wrote {len(df)} patients to {path}")
        return
    t = Table(title=f"{spec.name}: {patients} patients, seed {seed}")
    show = df.head(50)
    for col in show.columns:
        t.add_column(col, overflow="fold")
    for row in show.itertuples(index=False):
        t.add_row(*[f"{v:.1f}" if isinstance(v, float) else str(v) for v in row])
    console.print(t)
    if len(df) > 50:
        console.print(f"... {len(df) - 50} more rows (use --out to export all)")


# ---- commands of other areas (each module adds its own commands to `main`) ---------------------
def _register() -> None:
    import importlib

    for name in ("cli_trial", "cli_policy", "cli_teach", "cli_regress"):
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise


_register()
