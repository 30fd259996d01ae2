"""Comparing scenarios with common random numbers (CRN).

Every scenario is simulated with the same number of patients, the same seed and the same number of
replications, so replication *r* of every scenario has the same synthetic patients and the same random
numbers (see ``simulator/analysis/runner.py``). For each scenario every flat summary metric is reported as its
pooled estimate over all replications (the value of ``summary.json``) with a 95% CI from the spread across
replications that stays inside the metric's domain (:func:`simulator.analysis.stats.metric_level`: shares in
[0, 1], days, rates and counts above 0); each scenario after the first is compared with the first through the
per-replication differences (paired 95% CI) and, alongside, the CI that treats the two sets of replications as
independent (unpaired, Welch), to show what common random numbers buy.

A metric missing in some replications (a median not reached) is shown as the pooled estimate over all
replications with a note, never as the mean of the replications that have it; a metric missing in all
(a day beyond the horizon) has no value, and the summary's reason as its note.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..inputs.errors import InputError
from ..scenario import Scenario
from .metrics import ZERO_IF_MISSING, kind, label, unit
from .runner import RunResult, simulate_many
from .stats import KM_CI, METHODS, metric_difference, metric_level, n_missing, replications_note, summary_ci
from .summary import flat_metrics


@dataclass
class Comparison:
    """Scenarios run with common random numbers, their metrics and their differences from the first."""

    results: list[RunResult]
    metrics: pd.DataFrame  # scenario, metric, mean, lo, hi, note
    diffs: pd.DataFrame  # scenario, baseline, metric, diff, paired_lo, paired_hi, unpaired_lo, unpaired_hi, note
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [r.scenario.name for r in self.results]


def replication_metrics(result: RunResult) -> pd.DataFrame:
    """One row per replication, one column per flat metric (families of counts filled with 0; a metric not
    estimable in a replication is NaN)."""
    per = result.summary.get("per_replication") or [flat_metrics(result.summary)]
    df = pd.DataFrame(per, dtype=float)
    for col in df.columns:
        if col.startswith(ZERO_IF_MISSING):
            df[col] = df[col].fillna(0.0)
    return df


def _align(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    cols: list[str] = []
    for f in frames:
        cols.extend(c for c in f.columns if c not in cols)
    out = []
    for f in frames:
        g = f.reindex(columns=cols)
        for c in cols:
            if c.startswith(ZERO_IF_MISSING):
                g[c] = g[c].fillna(0.0)
        out.append(g)
    return out


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def pooled(result: RunResult, metric: str) -> tuple[float, float, float]:
    """(estimate, lo, hi) of ``metric`` over all replications pooled (the summary's own estimate, e.g. the
    Kaplan-Meier median of all patients), with its CI where the summary gives one; NaN when missing."""
    flat = flat_metrics(result.summary)
    v = flat.get(metric)
    if v is None:
        v = 0.0 if metric.startswith(ZERO_IF_MISSING) and metric not in flat else math.nan
    lo, hi = summary_ci(result.summary, metric)
    return float(v), lo, hi


def reason(result: RunResult, metric: str) -> str:
    """Why ``metric`` is missing in ``result`` (from the summary's ``not_estimable``), or ''."""
    return str(result.summary.get("not_estimable", {}).get(metric, ""))


def _missing_note(res: RunResult, metric: str, k: int, n: int, pooled_value: float) -> str:
    why = reason(res, metric)
    if math.isfinite(pooled_value):
        what = "not reached" if metric.endswith("median_days") else "not estimable"
        ci = ", with its Kaplan-Meier 95% CI" if metric in KM_CI else ""
        return f"{what} in {k} of {n} replications; pooled estimate over all replications shown{ci}"
    if why:
        return why if k == n else f"{why} (and in {k} of {n} replications)"
    return f"not estimable in {k} of {n} replications"


def analyse(results: Sequence[RunResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics, diffs) tables from finished runs; the first run is the baseline.

    A metric missing in some replications (a median not reached) is never averaged over the others: the
    pooled estimate over all replications is shown instead, with a note saying why; a metric missing
    everywhere (a day beyond the horizon) has no value and the reason as its note."""
    frames = _align([replication_metrics(r) for r in results])
    rows, drows = [], []
    base_name = results[0].scenario.name
    for res, f in zip(results, frames, strict=True):
        for m in f.columns:
            vals = list(f[m])
            k = n_missing(vals)
            pv, plo, phi = pooled(res, m)
            est = metric_level(kind(m), vals, pv, (plo, phi))
            note = "" if k == 0 else _missing_note(res, m, k, len(vals), est.value)
            rows.append({"scenario": res.scenario.name, "metric": m, "mean": est.value, "lo": est.lo, "hi": est.hi,
                         "note": note})
    base_res, base = results[0], frames[0]
    for res, f in zip(results[1:], frames[1:], strict=True):
        for m in f.columns:
            new, old = list(f[m]), list(base[m])
            k = sum(1 for a, b in zip(new, old, strict=True) if not (math.isfinite(a) and math.isfinite(b)))
            note = ""
            if k == 0:
                d, plo, phi, ulo, uhi = metric_difference(kind(m), new, old, pooled(res, m)[0], pooled(base_res, m)[0])
            else:
                d = pooled(res, m)[0] - pooled(base_res, m)[0]
                plo = phi = ulo = uhi = math.nan
                why = reason(res, m) or reason(base_res, m)
                if math.isfinite(d):
                    note = (f"not estimable in {k} of {len(new)} replications; difference of the pooled estimates, "
                            "no CI")
                else:
                    note = why or f"not estimable in {k} of {len(new)} replications"
            drows.append({"scenario": res.scenario.name, "baseline": base_name, "metric": m, "diff": d,
                          "paired_lo": plo, "paired_hi": phi, "unpaired_lo": ulo, "unpaired_hi": uhi, "note": note})
    return pd.DataFrame(rows), pd.DataFrame(drows)


def check_comparable(scenarios: Sequence[Scenario]) -> None:
    """Scenarios must share cohort and horizon, and have distinct names."""
    if len(scenarios) < 2:
        raise InputError("a comparison needs at least two scenarios", field="SCENARIOS",
                         fix="name two or more scenario files; the first is the baseline")
    first = scenarios[0]
    names = [s.name for s in scenarios]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"two scenarios have the same name '{sorted(dup)[0]}'", file=first.source_path or None,
                         field="name", fix="give every compared scenario its own name")
    for s in scenarios[1:]:
        if s.cohort_hash() != first.cohort_hash():
            raise InputError(f"scenario '{s.name}' uses a different cohort from '{first.name}'", file=s.source_path,
                             field="cohort", fix="compare scenarios on the same cohort file (common random numbers "
                             "need the same patients)")
        if (s.population is None) != (first.population is None):
            kinds = {True: "a closed cohort", False: "an open population"}
            raise InputError(f"scenario '{s.name}' is {kinds[s.population is None]}, '{first.name}' "
                             f"{kinds[first.population is None]}", file=s.source_path, field="population",
                             fix="compare closed cohorts with closed cohorts, open populations with open populations")
        if s.horizon_days != first.horizon_days:
            raise InputError(f"scenario '{s.name}' has horizon {s.horizon_days} days, '{first.name}' "
                             f"{first.horizon_days}", file=s.source_path, field="horizon_days",
                             fix="use the same horizon in every compared scenario")


def compare(scenarios: Sequence[Scenario], *, patients: int | None = None, replications: int = 4,
            seed: int | None = None, workers: int = 1, progress: Callable[[float], None] | None = None,
            command: str = "") -> Comparison:
    """Simulate every scenario with identical patients, seed and replications, and compare them."""
    check_comparable(scenarios)
    if replications < 2:
        raise InputError(f"a comparison needs at least 2 replications for confidence intervals (got {replications})",
                         field="--replications", fix="use --replications 2 or more (8 is a good start)")
    first = scenarios[0]
    if patients is None and first.population is None:  # an open population sets its own (no --patients)
        patients = first.patients
    seed = seed if seed is not None else first.seed
    results = simulate_many(list(scenarios), patients=patients, seed=seed, replications=replications,
                            workers=workers, progress=progress, command=command)
    metrics, diffs = analyse(results)
    settings = {"patients": patients, "replications": replications, "seed": seed, "command": command,
                "baseline": first.name, "scenarios": [s.name for s in scenarios],
                "scenario_files": [s.source_path for s in scenarios]}
    return Comparison(results=results, metrics=metrics, diffs=diffs, settings=settings)


def comparison_dict(c: Comparison) -> dict[str, Any]:
    """The content of ``comparison.json``."""
    per: dict[str, Any] = {}
    for name in c.names:
        sub = c.metrics[c.metrics["scenario"] == name]
        per[name] = {r.metric: {"label": label(r.metric), "unit": unit(r.metric), "mean": _clean(r.mean),
                                "ci95": [_clean(r.lo), _clean(r.hi)], **({"note": r.note} if r.note else {})}
                     for r in sub.itertuples(index=False)}
    diffs: dict[str, Any] = {}
    for name in c.names[1:]:
        sub = c.diffs[c.diffs["scenario"] == name]
        diffs[name] = {r.metric: {"diff": _clean(r.diff), "paired_ci95": [_clean(r.paired_lo), _clean(r.paired_hi)],
                                  "unpaired_ci95": [_clean(r.unpaired_lo), _clean(r.unpaired_hi)],
                                  **({"note": r.note} if r.note else {})}
                       for r in sub.itertuples(index=False)}
    return {
        "schema_version": 2,
        "kind": "comparison",
        **c.settings,
        "scenario_info": {r.scenario.name: {"description": r.scenario.description, "rationale": r.scenario.rationale,
                                            "file": r.scenario.source_path, "scenario_hash": r.manifest.get("scenario_hash"),
                                            "policy_hash": r.manifest.get("policy_hash")} for r in c.results},
        "metrics": per,
        "differences_vs_baseline": diffs,
        "ci_method": ("estimate: pooled over all replications; 95% CI from the spread across replications (t "
                      "quantile, replications - 1 degrees of freedom) inside the metric's domain: shares: "
                      f"{METHODS['share']}; NRS: {METHODS['nrs']}; days, rates, counts and means per patient: "
                      f"{METHODS['non-negative']}; differences: {METHODS['difference']}, paired over replications "
                      "sharing common random numbers, and unpaired (Welch) for contrast; docs/summary-schema.md"),
        "ci_note": replications_note(int(c.settings.get("replications", 0))),
        "not_for_clinical_use": "painpath is for policy analysis and teaching; it is not for treating patients.",
    }


def comparison_frame(c: Comparison) -> pd.DataFrame:
    """The long table written as ``comparison.csv``: one row per scenario and metric, with label and unit."""
    diffs = c.diffs.drop(columns=["baseline"]).rename(columns={"note": "diff_note"})
    df = c.metrics.merge(diffs, on=["scenario", "metric"], how="left")
    df.insert(0, "baseline", c.names[0])
    df.insert(3, "label", [label(m) for m in df["metric"]])
    df.insert(4, "unit", [unit(m) for m in df["metric"]])
    return df


def replication_frame(c: Comparison) -> pd.DataFrame:
    """Every scenario's per-replication metrics as one long table: scenario, replication, metric, value, unit."""
    return pd.concat([r.replication_table() for r in c.results], ignore_index=True)


def ci_widths(c: Comparison, metric: str, scenario: str | None = None) -> tuple[float, float]:
    """(paired width, unpaired width) of the difference in ``metric`` for ``scenario`` (default: the second)."""
    name = scenario or c.names[1]
    row = c.diffs[(c.diffs["scenario"] == name) & (c.diffs["metric"] == metric)]
    if row.empty:
        raise KeyError(f"no difference for {metric} in {name}")
    r = row.iloc[0]
    return float(r.paired_hi - r.paired_lo), float(r.unpaired_hi - r.unpaired_lo)
