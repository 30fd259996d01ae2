"""The calibration battery: one virtual trial per published target (``painpath calibrate``).

Targets and trial designs live in ``data/calibration_targets.yaml``; each target names a trial, an arm,
a metric, the published value and either an absolute tolerance or a range (a published 95% CI). Trials
that several targets share run once. Full size is :data:`FULL_PATIENTS` patients per trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..inputs.errors import InputError
from ..inputs.packaged import data_root
from ..inputs.schema import Strict, load_model
from ..model.clinical_tables import ModelTables, compile_model
from .trial import (
    PLACEBO,
    ArmResult,
    TrialDesignFile,
    TrialResult,
    TrialSpec,
    load_design,
    parse_arm,
    run_trial,
)

FULL_PATIENTS = 20000


class TrialDesign(Strict):
    """One trial design. ``placebo_scale``, ``titrate`` and ``nrs_resolution`` are properties of the trial
    (population, era, dosing scheme, pain measurement; see :mod:`simulator.analysis.trial`), never read by the
    pathway simulation; a design that sets one says why in ``design_source``."""

    cohort: str | None = None
    arms: list[str] | None = None
    weeks: float | None = Field(default=None, gt=0)
    design_file: str | None = None
    guideline_gates: bool = True
    design: Literal["parallel", "crossover"] = "parallel"
    placebo_scale: float = Field(default=1.0, ge=0)
    titrate: bool = True
    nrs_resolution: float = Field(default=0.1, gt=0)
    design_source: str = ""

    @model_validator(mode="after")
    def _sourced(self) -> TrialDesign:
        if self.design_file is None and (self.cohort is None or not self.arms or self.weeks is None):
            raise ValueError("a trial needs cohort, arms and weeks, or a design_file")
        if self.design_file is not None and not self.design_source:
            raise ValueError("a trial given by a design_file needs a design_source")
        if (self.placebo_scale != 1.0 or not self.titrate or self.nrs_resolution != 0.1) and not self.design_source:
            raise ValueError("a trial design that sets placebo_scale, titrate or nrs_resolution needs a design_source")
        return self


class Target(Strict):
    id: str
    trial: str
    arm: str
    metric: str
    target: float
    tolerance: float | None = Field(default=None, ge=0)
    range: tuple[float, float] | None = None
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_rule(self) -> Target:
        if (self.tolerance is None) == (self.range is None):
            raise ValueError(f"target '{self.id}' needs exactly one of tolerance or range")
        return self


class UsualCareTarget(Strict):
    """A target on the usual-care scenario's event log (``simulator.analysis.realworld.usual_care_metrics``)."""

    id: str
    metric: str
    target: float
    tolerance: float | None = Field(default=None, ge=0)
    range: tuple[float, float] | None = None
    source: str = Field(min_length=1)
    tolerance_why: str = Field(min_length=1)
    also_metric: str | None = Field(None, description="the same figure under another definition, reported beside "
                                    "the verdict (never judged)")
    not_reproduced: str | None = Field(None, description="declared: the model does not reproduce this target, and "
                                       "why; a failure then shows as 'not reproduced', a pass as a stale declaration")

    @model_validator(mode="after")
    def _one_rule(self) -> UsualCareTarget:
        if (self.tolerance is None) == (self.range is None):
            raise ValueError(f"target '{self.id}' needs exactly one of tolerance or range")
        return self


class UsualCareSection(Strict):
    """Usual care as observed in one setting (issue 10): a scenario, the population its figures were measured in,
    and their targets (``simulator.analysis.realworld``)."""

    title: str = Field(min_length=1, description="the setting and its source, for tables")
    scenario: str
    cohort: str | None = Field(None, description="the population the targets were measured in (replaces the "
                               "scenario's cohort), relative to the checkout")
    patients: int = Field(5000, ge=1)
    seed: int = 2016
    targets: list[UsualCareTarget]


class Battery(Strict):
    trials: dict[str, TrialDesign]
    targets: list[Target]
    usual_care: dict[str, UsualCareSection] = Field(
        default_factory=dict, description="usual-care settings by name, each judged on its own scenario")

    @model_validator(mode="after")
    def _refs(self) -> Battery:
        for t in self.targets:
            if t.trial not in self.trials:
                raise ValueError(f"target '{t.id}' names unknown trial '{t.trial}'")
        ids = [t.id for t in self.targets] + [t.id for s in self.usual_care.values() for t in s.targets]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"target id '{twice[0]}' is used twice; give every target its own id")
        return self


def targets_path() -> Path:
    return Path(str(resources.files("simulator") / "data" / "calibration_targets.yaml"))


def load_battery(path: str | Path | None = None) -> Battery:
    return load_model(path or targets_path(), Battery)


FAMILIES = ("NNT", "responders", "adverse events", "placebo adverse events", "onset", "mean pain", "COMBO-DN")


def family(t: Target) -> str:
    """The family a target belongs to (one plot per family in the calibration report)."""
    if t.trial == "combo_dn":
        return "COMBO-DN"
    if t.metric.startswith("nnt"):
        return "NNT"
    if t.metric.startswith("ae") and t.arm == PLACEBO:
        return "placebo adverse events"
    if t.metric.startswith("ae"):
        return "adverse events"
    if "days" in t.metric:
        return "onset"
    if "mean" in t.metric:
        return "mean pain"
    return "responders"


@dataclass
class Check:
    target: Target
    simulated: float | None
    passed: bool
    ci: tuple[float, float] | None = None  # Monte-Carlo 95% CI of the simulated value

    @property
    def rule(self) -> str:
        t = self.target
        if t.range is not None:
            return f"[{t.range[0]:g}, {t.range[1]:g}]"
        return f"±{t.tolerance:g}"

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {"id": t.id, "trial": t.trial, "arm": t.arm, "metric": t.metric, "target": t.target,
                "tolerance": t.tolerance, "range": list(t.range) if t.range else None,
                "simulated": self.simulated, "ci": list(self.ci) if self.ci else None, "family": family(t),
                "pass": self.passed, "source": t.source}


def metric_value(result: TrialResult, arm: str, metric: str) -> float | None:
    """A metric of one arm (``diff:<metric>`` is arm minus placebo, ``minus(ARM):<metric>`` arm minus ARM)."""
    if metric.startswith("minus("):
        other, _, rest = metric[6:].partition("):")
        a = metric_value(result, arm, rest)
        b = metric_value(result, other, rest)
        return None if a is None or b is None else a - b
    if metric.startswith("mean_nrs_change_day_"):
        day = int(metric.rsplit("_", 1)[1])
        return result.arm(arm).eval_mean_change.get(day)
    if metric.startswith("diff:"):
        a = metric_value(result, arm, metric[5:])
        b = metric_value(result, PLACEBO, metric[5:])
        return None if a is None or b is None else a - b
    r: ArmResult = result.arm(arm)
    if metric.startswith("ae:"):
        return r.ae_incidence.get(metric[3:], 0.0)
    if metric == "nnt_50":
        return r.nnt50.get("nnt") if r.nnt50 else None
    if metric == "nnt_30":
        return r.nnt30.get("nnt") if r.nnt30 else None
    simple = {"responders_30": r.responders30, "responders_50": r.responders50, "any_reduction": r.any_reduction,
              "mean_nrs_change": r.mean_change, "mean_pain_end": r.mean_pain_end,
              "ae_withdrawal": r.ae_withdrawal, "median_days_to_sustained_1pt": r.onset_median_days,
              "mean_nrs_change_since_entry": r.mean_change_since_entry, "withdrawn": r.withdrawn}
    if metric not in simple:
        raise InputError(f"unknown metric '{metric}'", field="metric",
                         fix=f"use one of: {', '.join(simple)}, ae:<type>, nnt_50, nnt_30, diff:<metric>, "
                             "mean_nrs_change_day_<day>, minus(<arm>):<metric>")
    v = simple[metric]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def metric_se(result: TrialResult, arm: str, metric: str) -> float | None:
    """Monte-Carlo standard error of a metric (binomial for proportions, SD/sqrt(n) for means; None when not
    available, e.g. NNTs, whose CI comes from the trial's own risk-difference CI)."""
    if metric.startswith("minus(") or metric.startswith("diff:"):
        if metric.startswith("diff:"):
            other, rest = PLACEBO, metric[5:]
        else:
            other, _, rest = metric[6:].partition("):")
        a, b = metric_se(result, arm, rest), metric_se(result, other, rest)
        return None if a is None or b is None else math.hypot(a, b)
    r = result.arm(arm)
    n = max(r.n, 1)
    if metric in r.sd:
        sd = r.sd[metric]
        return None if math.isnan(sd) else sd / math.sqrt(n)
    v = metric_value(result, arm, metric)
    if v is None or metric.startswith("nnt") or "days" in metric or not 0.0 <= v <= 1.0:
        return None
    return math.sqrt(v * (1 - v) / n)


def metric_ci(result: TrialResult, arm: str, metric: str) -> tuple[float, float] | None:
    """95% CI of the simulated metric (NNT: the trial's CI; others: +/- 1.96 SE)."""
    if metric in ("nnt_50", "nnt_30"):
        r = result.arm(arm)
        d = r.nnt50 if metric == "nnt_50" else r.nnt30
        if d and d.get("ci_low") is not None:
            return (float(d["ci_low"]), float(d["ci_high"]) if d.get("ci_high") is not None else math.inf)
        return None
    v = metric_value(result, arm, metric)
    se = metric_se(result, arm, metric)
    if v is None or se is None:
        return None
    return (v - 1.959964 * se, v + 1.959964 * se)


def _passes(t: Target, v: float | None) -> bool:
    if v is None or not math.isfinite(v):
        return False
    if t.range is not None:
        return t.range[0] <= v <= t.range[1]
    assert t.tolerance is not None
    return abs(v - t.target) <= t.tolerance + 1e-12


def _canonical(arm: str, tables: ModelTables) -> str:
    return parse_arm(arm, tables).name


def _root(path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else data_root() / p)  # the checkout, or the installed package (packaged.py)


def run_design(d: TrialDesign, patients: int, seed: int, tables: ModelTables) -> TrialResult:
    """Run one battery trial at ``patients`` patients (per trial) and ``seed``."""
    if d.design_file is not None:
        f = load_design(_root(d.design_file))
        f = TrialDesignFile.model_validate({**f.model_dump(), "cohort": _root(f.cohort), "patients": patients,
                                            "seed": seed, "guideline_gates": d.guideline_gates})
        return run_trial(f, tables, file=d.design_file)
    assert d.cohort is not None and d.arms is not None and d.weeks is not None
    return run_trial(TrialSpec(_root(d.cohort), tuple(d.arms), d.weeks, patients, seed, d.design, d.placebo_scale,
                               d.titrate, d.nrs_resolution), tables)


def run_battery(patients: int = FULL_PATIENTS, seed: int = 2015, battery: Battery | None = None,
                tables: ModelTables | None = None, only: list[str] | None = None) -> list[Check]:
    """Run every trial of the battery once and check every target (``only``: these target ids)."""
    if patients < 1:
        raise InputError(f"patients must be at least 1 (got {patients})", field="--patients", fix="use e.g. 20000")
    battery = battery or load_battery()
    tables = tables or compile_model()
    targets = [t for t in battery.targets if only is None or t.id in only]
    results: dict[str, TrialResult] = {}
    checks: list[Check] = []
    for t in targets:
        if t.trial not in results:
            results[t.trial] = run_design(battery.trials[t.trial], patients, seed, tables)
        arm = t.arm if battery.trials[t.trial].design_file else _canonical(t.arm, tables)
        v = metric_value(results[t.trial], arm, t.metric)
        checks.append(Check(t, v, _passes(t, v), metric_ci(results[t.trial], arm, t.metric)))
    return checks


# --------------------------------------------------------------------------------------------------
# The calibration report (painpath calibrate --report DIR)
# --------------------------------------------------------------------------------------------------

README_START = "<!-- calibration-table:start (generated by painpath calibrate --report; do not edit) -->"
README_END = "<!-- calibration-table:end -->"


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-" if v is None else ("inf" if v > 0 else "-inf")
    return f"{v:.3g}"


def markdown_table(checks: list[Check], patients: int, seed: int) -> str:
    """The README table: one row per target, grouped by family."""
    n_pass = sum(c.passed for c in checks)
    lines = [f"{n_pass} of {len(checks)} targets pass at {patients:,} patients per trial (seed {seed}).", "",
             "| family | target | published | rule | simulated (95% CI) | pass |", "|---|---|---|---|---|---|"]
    for fam in FAMILIES:
        for c in checks:
            if family(c.target) != fam:
                continue
            ci = f" ({_fmt(c.ci[0])} to {_fmt(c.ci[1])})" if c.ci else ""
            lines.append(f"| {fam} | `{c.target.id}` | {c.target.target:g} | {c.rule} | {_fmt(c.simulated)}{ci} | "
                         f"{'pass' if c.passed else '**FAIL**'} |")
    return "\n".join(lines) + "\n"


def usual_care_markdown(section: Any, checks: list[Any]) -> str:
    """One usual-care setting's table (a :class:`UsualCareSection` and its
    ``simulator.analysis.realworld.UsualCareCheck`` rows): one row per target."""
    n_pass = sum(c.passed for c in checks)
    declared = [c for c in checks if c.status == "not reproduced"]
    lines = [f"Usual care, {section.title}: {n_pass} of {len(checks)} targets pass"
             + (f", {len(declared)} declared not reproduced" if declared else "")
             + f" (`{section.scenario}`{' on `' + section.cohort + '`' if section.cohort else ''}, "
             f"{section.patients:,} patients, seed {section.seed}; docs/usual-care.md).", "",
             "| target | metric | published | rule | simulated | pass |", "|---|---|---|---|---|---|"]
    for c in checks:
        sim = _fmt(c.simulated)
        if c.target.also_metric is not None:
            sim += f" ({c.target.also_metric}: {_fmt(c.also)})"
        verdict = {"pass": "pass", "not reproduced": "not reproduced"}.get(c.status, "**FAIL**")
        lines.append(f"| `{c.target.id}` | {c.target.metric} | {c.target.target:g} | {c.rule} | {sim} | {verdict} |")
    for why in dict.fromkeys(c.target.not_reproduced for c in declared):
        ids = ", ".join(f"`{c.target.id}`" for c in declared if c.target.not_reproduced == why)
        lines.append(f"\nNot reproduced, {ids}: {why}.")
    return "\n".join(lines) + "\n"


def plot_family(checks: list[Check], fam: str, path: Path) -> None:
    """One figure per target family: the published value and its tolerance or CI (band), the simulated value
    with its Monte-Carlo 95% CI (point and bar); failing targets in red."""
    plot_rows([c for c in checks if family(c.target) == fam], fam, path)


def plot_rows(rows: list[Any], fam: str, path: Path) -> None:
    """The figure of :func:`plot_family` for any rows with ``target``, ``simulated``, ``passed``, ``ci``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(rows) + 1.4))
    for y, c in enumerate(rows):
        t = c.target
        lo, hi = t.range if t.range is not None else (t.target - (t.tolerance or 0), t.target + (t.tolerance or 0))
        ax.plot([lo, hi], [y, y], color="#9ecae1", linewidth=7, solid_capstyle="butt")
        ax.plot([t.target], [y], marker="|", color="#08519c", markersize=12)
        if c.simulated is not None:
            color = "#2ca02c" if c.passed else "#d62728"
            if c.ci is not None and all(math.isfinite(x) for x in c.ci):
                ax.plot(list(c.ci), [y, y], color=color, linewidth=1.5)
            ax.plot([c.simulated], [y], marker="o", color=color, markersize=5)
    ax.set_yticks(range(len(rows)), [c.target.id for c in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_title(f"{fam}: published (blue band = tolerance or CI) vs simulated (dot, 95% CI)", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version chunk: same inputs, same bytes
    plt.close(fig)


def write_report(checks: list[Check], patients: int, seed: int, out: Path, readme: Path | None = None,
                 usual: dict[str, tuple[UsualCareSection, list[Any]]] | None = None) -> list[Path]:
    """Write ``calibration.md`` (table + plots) and one PNG per family into ``out``; optionally regenerate
    the README table between :data:`README_START` and :data:`README_END`. ``usual``: per usual-care setting, its
    section and checks (``simulator.analysis.realworld.run_usual_care``), a table and a plot of its own. Returns
    the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    table = markdown_table(checks, patients, seed)
    for section, rows in (usual or {}).values():
        table += "\n" + usual_care_markdown(section, rows)
    md = ["# Calibration report", "", table, ""]
    for name, (section, rows) in (usual or {}).items():
        if rows:
            png = out / f"calibration-usual-care-{name.replace('_', '-')}.png"
            plot_rows(rows, f"usual care {name}", png)
            written.append(png)
            md += [f"## Usual care, {section.title}", "", f"![{name}]({png.name})", ""]
    for fam in FAMILIES:
        if not any(family(c.target) == fam for c in checks):
            continue
        png = out / f"calibration-{fam.lower().replace(' ', '-')}.png"
        plot_family(checks, fam, png)
        written.append(png)
        md += [f"## {fam}", "", f"![{fam}]({png.name})", ""]
    report = out / "calibration.md"
    report.write_text("\n".join(md), encoding="utf-8")
    written.append(report)
    if readme is not None:
        text = readme.read_text(encoding="utf-8")
        if README_START not in text or README_END not in text:
            raise InputError("the README has no calibration-table markers", file=str(readme),
                             fix=f"add the lines {README_START} and {README_END} where the table belongs")
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        readme.write_text(head + README_START + "\n" + table + README_END + tail, encoding="utf-8")
        written.append(readme)
    return written
