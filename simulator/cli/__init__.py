"""The ``painpath`` command: a thin layer over the library (``simulator``).

Every command catches :class:`~simulator.inputs.errors.InputError` and prints it as one paragraph on stderr
with exit code 2 (never a traceback). Commands of other areas live in their own ``cli_*`` modules and
are registered at the bottom of this file.
"""

from __future__ import annotations

import functools
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..inputs.errors import InputError

# Wide tables stay readable when output is piped or captured (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160, emoji=False)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160, emoji=False)

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


_NON_TAG = re.compile(r"(\\+)(\[(?![a-z#/@][^[]*?]))")


def esc(value: Any) -> str:
    """A user-given text (a name, a label, a path) made safe to print with rich: its brackets are not markup.

    rich.markup.escape protects tag-like brackets; a backslash before any other '[' would still be eaten
    by the renderer, so one more is added there."""
    return _NON_TAG.sub(lambda m: m.group(1) + "\\" + m.group(2), escape(str(value)))


def _usage_fix(exc: click.ClickException) -> str:
    """The fix for a click usage error, from the parameter's type."""
    ctx = getattr(exc, "ctx", None)
    helper = f"see '{ctx.command_path} --help'" if ctx is not None else "see 'painpath --help'"
    param = getattr(exc, "param", None)
    kind = getattr(param, "type", None)
    if getattr(exc, "fix", None):  # an OutputFile preflight: its own fix
        return str(exc.fix)
    if isinstance(exc, click.NoSuchOption):
        near = f"use one of {', '.join(exc.possibilities)}" if exc.possibilities else "remove or correct it"
        return f"{near} ({helper})"
    if isinstance(exc, click.MissingParameter):
        return f"add it ({helper})"
    if isinstance(kind, click.Choice):
        return f"use one of: {', '.join(map(str, kind.choices))} ({helper})"
    if isinstance(kind, click.types.IntParamType):
        return f"give a whole number such as 1 ({helper})"
    if isinstance(kind, click.types.FloatParamType):
        return f"give a number such as 12 ({helper})"
    return f"correct the command line ({helper})"


def usage_paragraph(exc: click.ClickException) -> str:
    """A click usage error (bad option value, unknown option, missing argument) as one InputError paragraph."""
    param = getattr(exc, "param", None)
    field = None
    if param is not None:
        field = (param.opts[0] if getattr(param, "opts", None) else param.name) or None
        if isinstance(param, click.Argument):
            field = (param.name or "").upper()
    elif isinstance(exc, click.NoSuchOption):
        field = exc.option_name
    message = exc.message if isinstance(exc, click.BadParameter | click.NoSuchOption) else exc.format_message()
    if isinstance(exc, click.MissingParameter):
        message = f"this {'argument' if isinstance(param, click.Argument) else 'option'} is required"
    elif isinstance(exc, click.NoSuchOption):
        message = f"there is no option {exc.option_name}"
    message = " ".join(str(message).split())
    return InputError(message, file="the command line", field=field, fix=_usage_fix(exc)).paragraph()


class OutputFile(click.ParamType):
    """A command-line option naming a file painpath will write (``--json``, ``--html``, ``--out FILE``...).

    Checked when the command line is read, so before any simulation (:func:`simulator.output.results.preflight_out`,
    kind "file"): not a folder, no file among its parent folders, a place that can be written. The file
    itself is then written with :func:`simulator.output.results.write_file_atomic`, which creates missing parent
    folders."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from ..output.results import preflight_out

        option = (param.opts[0] if param is not None and param.opts else "--out")
        try:
            preflight_out(str(value), kind="file", option=option)
        except InputError as exc:
            err = click.BadParameter(exc.message, ctx=ctx, param=param)
            err.fix = exc.fix  # type: ignore[attr-defined]
            raise err from None
        return str(value)


OUT_FILE = OutputFile()


class PainpathGroup(click.Group):
    """The command group: usage errors in the same one-paragraph form as input errors (exit 2); SIGTERM is
    handled like Ctrl-C so temporary files are removed (:mod:`simulator.analysis.interrupts`)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from ..analysis.interrupts import install_signal_handlers

        install_signal_handlers()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            err_console.print(usage_paragraph(exc) if isinstance(exc, click.UsageError) else
                              InputError(" ".join(exc.format_message().split()), fix="see 'painpath --help'").paragraph(),
                              markup=False, highlight=False, soft_wrap=True)
            sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
        except click.exceptions.Abort:
            err_console.print("Interrupted: nothing was written (temporary files removed).", markup=False)
            sys.exit(130)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


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


def positive(name: str, value: int | float | None, minimum: int = 1, maximum: int | float | None = None) -> None:
    """Check a numeric command-line option: at least ``minimum`` and at most ``maximum`` (InputError naming it)."""
    from ..scenario import MAX_PATIENTS

    if value is None:
        return
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum} (got {value})", field=f"--{name}",
                         fix=f"use a whole number >= {minimum}")
    limit = {"patients": MAX_PATIENTS, "replications": 1000, "workers": 64}.get(name) if maximum is None else maximum
    if limit is not None and value > limit:
        more = " (for larger samples see README, Large cohorts)" if name == "patients" else ""
        raise InputError(f"{name} must be at most {limit:,} (got {value:,}){more}", field=f"--{name}",
                         fix=f"use at most {limit:,}")


def check_seed(seed: int | None) -> None:
    """A seed is a whole number in [0, 2**63 - 1]."""
    if seed is not None and not 0 <= seed <= 2**63 - 1:
        raise InputError(f"seed must be from 0 to 2**63 - 1 (got {seed})", field="--seed",
                         fix="use a non-negative whole number")


@click.group(name="painpath", cls=PainpathGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="painpath")
def main() -> None:
    """painpath: simulate the neuropathic-pain treatment pathway for policy analysis and teaching.

    Not for clinical use: it does not treat patients.
    """


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """The run's headline metrics with labels, units and 95% CIs (:func:`simulator.analysis.metrics.summary_rows`)."""
    from ..analysis.metrics import summary_rows

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
              help="Run folder to write (default results/<scenario>-<timestamp>/); must not exist.")
@click.option("--force", is_flag=True, help="Replace the --out folder if it exists (only a painpath output folder).")
@click.option("--no-report", is_flag=True, help="Do not render report.html into the run folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly
def run(scenario: str, patients: int | None, seed: int | None, replications: int | None, workers: int,
        out: str | None, force: bool, no_report: bool, quiet: bool) -> None:
    """Simulate SCENARIO (a file, or a packaged scenario name such as guideline) and write a run folder
    (summary.json, patients/events.parquet, manifest.json)."""
    from ..analysis.runner import simulate
    from ..output.results import default_dest, preflight_out, write_run
    from ..scenario import load_scenario

    positive("patients", patients)
    positive("replications", replications)
    positive("workers", workers)
    check_seed(seed)
    sc = load_scenario(scenario)
    sc.with_overrides(patients=patients, seed=seed, replications=replications)  # size limits, before simulating
    dest = Path(out) if out else default_dest(sc.name)
    preflight_out(dest, force=force, unique=out is None)
    bar = LazyProgress(f"simulating {esc(sc.name)}", enabled=not quiet)
    try:
        result = simulate(sc, patients=patients, seed=seed, replications=replications, workers=workers,
                          progress=bar, command=command_line())
    finally:
        bar.close()
    extra = None if no_report else _report_writer(result)
    folder = write_run(result, dest, extra=extra, overwrite=force, unique=out is None)
    who = (f"open population, {result.summary['n_patients']} patients entering per replication on average"
           if result.scenario.population is not None else f"{result.scenario.patients} patients")
    console.print(summary_table(result.summary, f"{esc(result.scenario.name)}: {who} x "
                                f"{result.scenario.replications} replication(s), seed {result.scenario.seed}"))
    from ..analysis.stats import replications_note

    if note := replications_note(int(result.summary.get("replications", 1))):
        console.print(f"Note: {note}", markup=False, highlight=False)
    console.print(f"[dim]{NOT_FOR_CLINICAL_USE}[/dim]")
    console.print(f"Run folder: {esc(folder)}")


def _report_writer(result: Any) -> Callable[[Path], None] | None:
    """The HTML report writer, when the report module is available."""
    try:
        from ..output.report import write_run_report
    except ImportError:
        return None
    return lambda tmp: write_run_report(result, tmp / "report.html")


@main.command()
@click.argument("cohort", type=click.Path(dir_okay=False, path_type=str))
@click.option("--patients", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--replication", type=int, default=0, show_default=True)
@click.option("--out", type=OUT_FILE, default=None,
              help="Write the table to a .csv or .parquet file instead of printing it.")
@friendly
def cohort(cohort: str, patients: int, seed: int, replication: int, out: str | None) -> None:
    """Preview or export the synthetic patients a COHORT file (or packaged cohort name) generates."""
    from ..inputs.packaged import resolve_cohort
    from ..output.results import preflight_out, write_file_atomic
    from ..population.cohort import generate_cohort
    from ..population.cohort_spec import load_cohort_spec

    positive("patients", patients)
    check_seed(seed)
    positive("replication", replication, 0, 999)
    if out:
        preflight_out(out, kind="file")
        if Path(out).suffix not in (".csv", ".parquet"):
            raise InputError(f"unknown output format '{Path(out).suffix or '(none)'}'", field="--out",
                             fix="end the file name in .csv or .parquet")
    spec = load_cohort_spec(resolve_cohort(cohort, field="COHORT"))
    df = generate_cohort(spec, patients, seed, replication=replication).to_frame()
    if out:
        path = Path(out)
        if path.suffix == ".parquet":
            write_file_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))
        else:
            write_file_atomic(path, lambda tmp: df.to_csv(tmp, index=False))
        console.print(f"Wrote {len(df)} patients to {esc(path)}")
        return
    t = Table(title=f"{esc(spec.name)}: {patients} patients, seed {seed}")
    show = df.head(50)
    for col in show.columns:
        t.add_column(col, overflow="fold")
    for row in show.itertuples(index=False):
        t.add_row(*[f"{v:.1f}" if isinstance(v, float) else esc(v) for v in row])
    console.print(t)
    if len(df) > 50:
        console.print(f"... {len(df) - 50} more rows (use --out to export all)")


# ---- commands of other areas (each module adds its own commands to `main`) ---------------------
def _register() -> None:
    import importlib

    for name in ("trial", "policy", "teach", "regress"):
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise


_register()
