"""CLI of virtual trials, the calibration battery and the parameter audit (logic in trial.py,
calibrate.py, parameters.py)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click
from rich.table import Table

from ..analysis.calibrate import FULL_PATIENTS, run_battery, write_report
from ..analysis.trial import TrialDesignFile, TrialSpec, load_design, protocol_design, run_trial
from ..inputs.errors import InputError
from ..model.parameters import all_parameters, missing, render
from . import OUT_FILE, console, friendly
from . import main as _main


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


_OPTION_OF = {"design": "--design-type", "placebo_scale": "--placebo-scale"}
"""TrialSpec fields whose command-line option is not simply --FIELD."""


def _write(path: str, text: str, option: str = "--out") -> None:
    from ..output.results import write_file_atomic

    write_file_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), option=option)


def _ci(r: dict | None, none: str = "-") -> str:
    if not r:
        return none
    if not r.get("nnt"):
        return "no difference"
    lo, hi = r["ci_low"], r["ci_high"]
    return f"{r['nnt']:.1f} ({lo:.1f}-{'inf' if hi is None else f'{hi:.1f}'})"


@_main.command()
@click.option("--design", "design_file", default=None,
              help="Trial-design YAML (arms with steps, criteria, lead-in, endpoints); see README 'Virtual trials'.")
@click.option("--scenario", "scenario_file", default=None,
              help="Run a scenario's protocol policy (policy.protocol) as a trial: the protocol's rules govern.")
@click.option("--cohort", "cohort", default=None, help="Trial population (cohort YAML), e.g. cohorts/trials/dpn.yaml.")
@click.option("--arm", "arms", multiple=True, help="DRUG[:DOSE][+DRUG[:DOSE]] or placebo; repeat.")
@click.option("--weeks", type=float, default=None, help="Trial (or period) length in weeks.")
@click.option("--patients", type=int, default=None, help="Patients randomised [default: 2000 or the design's].")
@click.option("--seed", type=int, default=None, help="Seed [default: 1 or the design's].")
@click.option("--design-type", "design", type=click.Choice(["parallel", "crossover"]), default="parallel",
              show_default=True, help="With --arm: parallel or crossover.")
@click.option("--placebo-scale", type=float, default=1.0, show_default=True,
              help="With --arm: trial-population modifier of the nonspecific (placebo) responder share.")
@click.option("--blinding", type=click.Choice(["double_blind", "open_label"]), default="double_blind",
              show_default=True, help="With --arm: open_label raises the nonspecific response (expectation).")
@click.option("--json", "json_out", type=OUT_FILE, default=None, help="Also write the results as JSON to this file.")
@click.option("--patients-out", type=OUT_FILE, default=None, help="Write one row per patient (and period) to this Parquet file.")
@friendly
def trial(design_file: str | None, scenario_file: str | None, cohort: str | None, arms: tuple[str, ...], weeks: float | None,
          patients: int | None, seed: int | None, design: str, placebo_scale: float, blinding: str,
          json_out: str | None, patients_out: str | None) -> None:
    """Run a virtual trial: fixed arms (--arm) or a protocol from a trial-design file (--design)."""
    if scenario_file:
        if design_file or arms or cohort or weeks is not None:
            raise InputError("--scenario cannot be combined with --design, --cohort, --arm or --weeks",
                             field="--scenario", fix="use one way to describe the trial")
        spec = protocol_design(scenario_file)
        changes = {k: v for k, v in (("patients", patients), ("seed", seed)) if v is not None}
        if changes:
            spec = TrialDesignFile.model_validate({**spec.model_dump(), **changes})
    elif design_file:
        if arms or cohort or weeks is not None:
            raise InputError("--design cannot be combined with --cohort, --arm or --weeks", field="--design",
                             fix="put the cohort, arms and weeks in the design file, or drop --design")
        spec = load_design(design_file)
        changes = {k: v for k, v in (("patients", patients), ("seed", seed)) if v is not None}
        if changes:
            spec = spec.model_copy(update=changes)
            spec = TrialDesignFile.model_validate(spec.model_dump())
    else:
        if not cohort or not arms or weeks is None:
            raise InputError("a trial needs --cohort, at least one --arm and --weeks (or a --design file)",
                             field="--arm", fix="e.g. --cohort cohorts/trials/dpn.yaml --arm pregabalin:300 --arm placebo --weeks 12")
        spec = TrialSpec(cohort, arms, weeks, 2000 if patients is None else patients, 1 if seed is None else seed,
                         design, placebo_scale, blinding=blinding)  # type: ignore[arg-type]
    try:
        res = run_trial(spec, keep_patients=bool(patients_out), file=design_file)
    except InputError as exc:
        if exc.file is None and not design_file and not scenario_file and exc.field and not exc.field.startswith("-"):
            # a trial given by options: the field is one of them (--arm, --placebo-scale, --weeks...)
            opt = "--arm" if exc.field.startswith("arm") else _OPTION_OF.get(exc.field, "--" + exc.field.replace("_", "-"))
            raise InputError(exc.message, field=opt, fix=exc.fix) from None
        raise
    p = res.spec
    t = Table(title=f"Virtual {p.design} trial '{p.name}', {p.days} days per period, {p.patients} patients "
                    f"(seed {p.seed}); {res.analysis}")
    for col in ("arm / branch", "n", ">=30%", ">=50%", "NNT50 (95% CI)", "change (since entry)", "withdrawn AE / dropout",
                "AE intolerance, NNH", "any AE (mod-sev)", "days to 1-pt / 30%", "escalated, capped, excluded"):
        t.add_column(col)
    for a in res.arms:
        since = "" if a.mean_change_since_entry is None else f" ({a.mean_change_since_entry:+.2f})"
        d1 = "-" if a.onset_median_days is None else f"{a.onset_median_days:g}"
        d3 = "-" if a.onset_30_median_days is None else f"{a.onset_30_median_days:g}"
        t.add_row(a.label, str(a.n), _pct(a.responders30), _pct(a.responders50), _ci(a.nnt50),
                  f"{a.mean_change:+.2f}{since}", f"{_pct(a.withdrawn)} / {_pct(a.dropped_out)}",
                  f"{_pct(a.ae_withdrawal)}, {_ci(a.nnh_ae_withdrawal)}",
                  f"{_pct(a.any_ae)} ({_pct(a.any_ae_moderate_severe)})", f"{d1} / {d3}",
                  f"{_pct(a.escalated)}, {_pct(a.dose_capped)}, {sum(a.excluded.values())}")
    console.print(t)
    types = sorted({k for a in res.arms for k, v in a.ae_incidence.items() if v > 0},
                   key=lambda k: -max(a.ae_incidence.get(k, 0.0) for a in res.arms))
    if types:
        ae = Table(title="Adverse events: any grade (moderate to severe)")
        ae.add_column("adverse event")
        for a in res.arms:
            ae.add_column(a.label)
        for k in types:
            ae.add_row(k, *[f"{_pct(a.ae_incidence.get(k, 0.0))} ({_pct(a.ae_moderate_severe.get(k, 0.0))})" for a in res.arms])
        t = ae
    console.print(t)
    excluded = {k: v for a in res.arms for k, v in a.excluded.items()}
    if excluded:
        console.print("Logged exclusions (a step the guideline's gates did not allow): "
                      + ", ".join(f"{k} x{v}" for k, v in excluded.items()))
    if res.screened > p.patients:
        console.print(f"Screened {res.screened} to enrol {p.patients} (inclusion criteria).")
    if res.lead_in_excluded:
        console.print(f"Lead-in: {res.lead_in_excluded} of {p.patients} were not inadequate responders and were not randomised.")
    if json_out:
        _write(json_out, json.dumps(res.as_dict(), indent=2), option="--json")
        console.print(f"JSON written to {json_out}")
    if patients_out:
        from ..output.results import write_file_atomic

        write_file_atomic(patients_out, lambda tmp: res.patients.to_parquet(tmp, index=False), option="--patients-out")
        console.print(f"{len(res.patients)} patient rows written to {patients_out}")


@_main.command()
@click.option("--patients", type=int, default=FULL_PATIENTS, show_default=True, help="Patients per trial.")
@click.option("--seed", type=int, default=2015, show_default=True)
@click.option("--out", type=OUT_FILE, default=None, help="Write the checks as JSON to this file.")
@click.option("--report", "report_dir", default=None,
              help="Write the calibration report (calibration.md, one plot per target family) to this folder.")
@click.option("--readme", default=None, help="With --report: regenerate the calibration table of this README.")
@click.option("--usual-care/--no-usual-care", "usual_care", default=True, show_default=True,
              help="Also run each usual-care scenario against the targets of its setting (US claims, UK primary "
                   "care; at the battery's usual-care sizes and seeds, not --patients/--seed).")
@friendly
def calibrate(patients: int, seed: int, out: str | None, report_dir: str | None, readme: str | None,
              usual_care: bool) -> None:
    """Run the calibration battery (and each usual-care setting's targets); exit 1 if any target fails (a usual-care target
    declared not reproduced fails only when it passes: the declaration is stale)."""
    if readme and not report_dir:
        raise InputError("--readme needs --report", field="--readme", fix="add --report DIR")
    if readme and not Path(readme).is_file():
        raise InputError("the README does not exist", file=readme, fix="name the README.md to update")
    if report_dir:  # before the battery runs: a folder (made if missing) that can be written
        from ..output.results import preflight_out

        preflight_out(Path(report_dir) / "calibration.md", kind="file", option="--report")
    checks = run_battery(patients, seed)
    t = Table(title=f"Calibration battery ({patients} patients per trial, seed {seed})")
    for col in ("target", "arm", "metric", "published", "simulated (95% CI)", "tolerance", "pass"):
        t.add_column(col)
    for c in checks:
        tg = c.target
        sim = "-" if c.simulated is None else f"{c.simulated:.3g}"
        if c.ci is not None and c.simulated is not None:
            sim += f" ({c.ci[0]:.3g} to {c.ci[1]:.3g})"
        t.add_row(tg.id, tg.arm, tg.metric, f"{tg.target:g}", sim, c.rule,
                  "[green]pass[/green]" if c.passed else "[red]FAIL[/red]")
    console.print(t)
    n_fail = sum(not c.passed for c in checks)
    console.print(f"{len(checks) - n_fail} of {len(checks)} targets pass.")
    usual: dict = {}
    if usual_care:
        from ..analysis.calibrate import load_battery
        from ..analysis.realworld import run_usual_care

        for name, section in load_battery().usual_care.items():
            uc = run_usual_care(name)
            usual[name] = (section, uc)
            u = Table(title=f"Usual care, {section.title} ({section.scenario}, {section.patients} patients, "
                      f"seed {section.seed})")
            for col in ("target", "metric", "published", "simulated", "rule", "pass"):
                u.add_column(col)
            style = {"pass": "[green]pass[/green]", "not reproduced": "[yellow]not reproduced[/yellow]"}
            for c in uc:
                sim = "-" if c.simulated is None else f"{c.simulated:.3g}"
                if c.target.also_metric is not None and c.also is not None:
                    sim += f" ({c.target.also_metric}: {c.also:.3g})"
                u.add_row(c.target.id, c.target.metric, f"{c.target.target:g}", sim, c.rule,
                          style.get(c.status, f"[red]{c.status}[/red]"))
            console.print(u)
            declared = [c for c in uc if c.status == "not reproduced"]
            console.print(f"Usual care, {section.title}: {sum(c.passed for c in uc)} of {len(uc)} targets pass"
                          + (f", {len(declared)} declared not reproduced." if declared else "."))
            for c in declared:
                console.print(f"Not reproduced, {c.target.id}: {c.target.not_reproduced}")
            n_fail += sum(c.is_failure for c in uc)
    if out:
        _write(out, json.dumps({"patients": patients, "seed": seed, "checks": [c.as_dict() for c in checks],
                                "usual_care": {k: [c.as_dict() for c in v[1]] for k, v in usual.items()} or None}, indent=2))
    if report_dir:
        files = write_report(checks, patients, seed, Path(report_dir), Path(readme) if readme else None, usual)
        console.print(f"Calibration report: {len(files)} files written ({report_dir}/calibration.md)")
    if n_fail:
        sys.exit(1)


@_main.command()
@click.option("--format", "fmt", type=click.Choice(["md", "csv"]), default="md", show_default=True)
@click.option("--out", type=OUT_FILE, default=None, help="Write the table to this file (e.g. docs/parameters.md).")
@friendly
def parameters(fmt: str, out: str | None) -> None:
    """List every parameter of clinical.yaml and drugs.yaml; exit 1 if any lacks a source or tag."""
    params = all_parameters()
    text = render(params, fmt)
    if out:
        _write(out, text)
        console.print(f"{len(params)} parameters written to {out}")
    else:
        click.echo(text, nl=False)
    bad = missing(params)
    if bad:
        click.echo(f"{len(bad)} parameter(s) lack a source or tag: " + ", ".join(p.name for p in bad), err=True)
        sys.exit(1)
