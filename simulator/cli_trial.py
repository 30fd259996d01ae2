"""CLI of virtual trials, the calibration battery and the parameter audit (logic in trial.py,
calibrate.py, parameters.py)."""

from __future__ import annotations

import json
import math
import sys

import click
from rich.table import Table

from .calibrate import FULL_PATIENTS, run_battery
from .cli import check_seed, console, esc, friendly, positive
from .cli import main as _main
from .errors import InputError
from .parameters import all_parameters, missing, render
from .results import preflight_out
from .trial import TrialSpec, run_trial


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _write(path: str, text: str, option: str = "--out") -> None:
    from .results import write_file_atomic

    write_file_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), option=option)


MAX_TRIAL_WEEKS = 520
"""Longest virtual trial (weeks): ten years, beyond any published neuropathic-pain trial."""
MAX_TRIAL_PATIENTS = 200_000
"""Most patients randomised in one virtual trial (every arm's daily pain is held in memory)."""


@_main.command()
@click.option("--cohort", "cohort", required=True, help="Trial population (cohort YAML), e.g. cohorts/trials/dpn.yaml.")
@click.option("--arm", "arms", multiple=True, required=True, help="DRUG[:DOSE][+DRUG[:DOSE]] or placebo; repeat.")
@click.option("--weeks", type=float, required=True, help="Trial (or period) length in weeks.")
@click.option("--patients", type=int, default=2000, show_default=True, help="Patients randomised.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--design", type=click.Choice(["parallel", "crossover"]), default="parallel", show_default=True)
@click.option("--json", "json_out", default=None, help="Also write the results as JSON to this file.")
@friendly
def trial(cohort: str, arms: tuple[str, ...], weeks: float, patients: int, seed: int, design: str,
          json_out: str | None) -> None:
    """Run a virtual randomised trial with fixed arms (no pathway decisions)."""
    if not math.isfinite(weeks) or not 0 < weeks <= MAX_TRIAL_WEEKS:
        raise InputError(f"weeks must be positive and at most {MAX_TRIAL_WEEKS} (got {weeks:g})", field="--weeks",
                         fix="use e.g. --weeks 12")
    positive("patients", patients, 1, MAX_TRIAL_PATIENTS)
    positive("arm", len(arms), 1, 12)
    check_seed(seed)
    if json_out:
        preflight_out(json_out, kind="file", option="--json")
    res = run_trial(TrialSpec(cohort, arms, weeks, patients, seed, design))  # type: ignore[arg-type]
    t = Table(title=f"Virtual {design} trial, {weeks:g} weeks, {patients} patients (seed {seed}; BOCF)")
    for col in ("arm", "n", ">=30%", ">=50%", "NNT50 (95% CI)", "mean change", "AE withdrawal",
                "median days to 1-pt", "adverse events"):
        t.add_column(col)
    for a in res.arms:
        n50 = a.nnt50
        if n50 and n50.get("nnt"):
            lo, hi = n50["ci_low"], n50["ci_high"]
            nnt_txt = f"{n50['nnt']:.1f} ({lo:.1f}-{'inf' if hi is None else f'{hi:.1f}'})"
        else:
            nnt_txt = "-" if not n50 else "no benefit"
        aes = ", ".join(f"{esc(k)} {_pct(v)}" for k, v in sorted(a.ae_incidence.items(), key=lambda kv: -kv[1]) if v > 0)
        t.add_row(esc(a.label), str(a.n), _pct(a.responders30), _pct(a.responders50), nnt_txt, f"{a.mean_change:+.2f}",
                  _pct(a.ae_withdrawal), "-" if a.onset_median_days is None else f"{a.onset_median_days:g}", aes or "-")
    console.print(t)
    if json_out:
        _write(json_out, json.dumps(res.as_dict(), indent=2), option="--json")
        console.print(f"JSON written to {esc(json_out)}")


@_main.command()
@click.option("--patients", type=int, default=FULL_PATIENTS, show_default=True, help="Patients per trial.")
@click.option("--seed", type=int, default=2015, show_default=True)
@click.option("--out", default=None, help="Write the checks as JSON to this file.")
@friendly
def calibrate(patients: int, seed: int, out: str | None) -> None:
    """Run the calibration battery; exit 1 if any target fails."""
    positive("patients", patients, 1, MAX_TRIAL_PATIENTS)
    check_seed(seed)
    if out:
        preflight_out(out, kind="file")
    checks = run_battery(patients, seed)
    t = Table(title=f"Calibration battery ({patients} patients per trial, seed {seed})")
    for col in ("target", "arm", "metric", "published", "simulated", "tolerance", "pass"):
        t.add_column(col)
    for c in checks:
        tg = c.target
        sim = "-" if c.simulated is None else f"{c.simulated:.3g}"
        t.add_row(tg.id, tg.arm, tg.metric, f"{tg.target:g}", sim, c.rule,
                  "[green]pass[/green]" if c.passed else "[red]FAIL[/red]")
    console.print(t)
    n_fail = sum(not c.passed for c in checks)
    console.print(f"{len(checks) - n_fail} of {len(checks)} targets pass.")
    if out:
        _write(out, json.dumps({"patients": patients, "seed": seed, "checks": [c.as_dict() for c in checks]}, indent=2))
    if n_fail:
        sys.exit(1)


@_main.command()
@click.option("--format", "fmt", type=click.Choice(["md", "csv"]), default="md", show_default=True)
@click.option("--out", default=None, help="Write the table to this file (e.g. docs/parameters.md).")
@friendly
def parameters(fmt: str, out: str | None) -> None:
    """List every parameter of clinical.yaml and drugs.yaml; exit 1 if any lacks a source or tag."""
    if out:
        preflight_out(out, kind="file")
    params = all_parameters()
    text = render(params, fmt)
    if out:
        _write(out, text)
        console.print(f"{len(params)} parameters written to {esc(out)}")
    else:
        click.echo(text, nl=False)
    bad = missing(params)
    if bad:
        click.echo(f"{len(bad)} parameter(s) lack a source or tag: " + ", ".join(p.name for p in bad), err=True)
        sys.exit(1)
