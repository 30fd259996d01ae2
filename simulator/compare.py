"""Comparing scenarios with common random numbers (CRN).

Every scenario is simulated with the same number of patients, the same seed and the same number of
replications, so replication *r* of every scenario has the same synthetic patients and the same random
numbers (see ``simulator/runner.py``). For each scenario every flat summary metric is reported as the
mean across replications with a t-based 95% CI; each scenario after the first is compared with the
first through the per-replication differences (paired 95% CI) and, alongside, the CI that treats the
two sets of replications as independent (unpaired, Welch), to show what common random numbers buy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputError
from .outcomes import flat_metrics
from .results import atomic_folder, write_json
from .runner import RunResult, simulate_many
from .scenario import Scenario
from .stats import mean_ci, paired_diff_ci, unpaired_diff_ci

KEY_METRICS: tuple[str, ...] = (
    "time_to_relief.median_days",
    "time_to_relief.relieved_by_day.84",
    "time_to_relief.relieved_by_day.182",
    "time_to_relief.relieved_by_day.365",
    "maintenance.relieved_on_day.365",
    "maintenance.sustained_relief",
    "maintenance.relapses_per_patient",
    "maintenance.persistence.on_index_drug_at_month.3",
    "maintenance.persistence.on_index_drug_at_month.12",
    "pain.mean_nrs_by_day.182",
    "adverse_events.per_patient_year",
    "adverse_events.serious_per_100_patients",
    "adverse_events.discontinuations_per_100_patients",
    "pathway.reached.add_on",
    "pathway.reached.tramadol",
    "pathway.reached.strong_opioid",
    "specialist.referred",
    "specialist.wait_days_median",
)
# Metric families where a missing key means zero (no event of that type, nobody in that state).
ZERO_IF_MISSING = ("adverse_events.by_type.", "pathway.final_state.")


@dataclass
class Comparison:
    """Scenarios run with common random numbers, their metrics and their differences from the first."""

    results: list[RunResult]
    metrics: pd.DataFrame  # scenario, metric, mean, lo, hi
    diffs: pd.DataFrame  # scenario, baseline, metric, diff, paired_lo, paired_hi, unpaired_lo, unpaired_hi
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [r.scenario.name for r in self.results]


def replication_metrics(result: RunResult) -> pd.DataFrame:
    """One row per replication, one column per flat metric (families of counts filled with 0)."""
    per = result.summary.get("per_replication") or [flat_metrics(
        {k: result.summary[k] for k in ("time_to_relief", "pain", "adverse_events", "pathway", "specialist")})]
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


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def analyse(results: Sequence[RunResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics, diffs) tables from finished runs; the first run is the baseline."""
    frames = _align([replication_metrics(r) for r in results])
    rows, drows = [], []
    base_name = results[0].scenario.name
    for res, f in zip(results, frames, strict=True):
        for m in f.columns:
            mean, lo, hi = mean_ci(list(f[m]))
            rows.append({"scenario": res.scenario.name, "metric": m, "mean": mean, "lo": lo, "hi": hi})
    base = frames[0]
    for res, f in zip(results[1:], frames[1:], strict=True):
        for m in f.columns:
            d, plo, phi = paired_diff_ci(list(f[m]), list(base[m]))
            a = [v for v in f[m] if math.isfinite(v)]
            b = [v for v in base[m] if math.isfinite(v)]
            _, ulo, uhi = unpaired_diff_ci(a, b) if a and b else (math.nan, math.nan, math.nan)
            drows.append({"scenario": res.scenario.name, "baseline": base_name, "metric": m, "diff": d,
                          "paired_lo": plo, "paired_hi": phi, "unpaired_lo": ulo, "unpaired_hi": uhi})
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
    patients = patients if patients is not None else first.patients
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
        per[name] = {r.metric: {"mean": _clean(r.mean), "ci95": [_clean(r.lo), _clean(r.hi)]}
                     for r in sub.itertuples(index=False)}
    diffs: dict[str, Any] = {}
    for name in c.names[1:]:
        sub = c.diffs[c.diffs["scenario"] == name]
        diffs[name] = {r.metric: {"diff": _clean(r.diff), "paired_ci95": [_clean(r.paired_lo), _clean(r.paired_hi)],
                                  "unpaired_ci95": [_clean(r.unpaired_lo), _clean(r.unpaired_hi)]}
                       for r in sub.itertuples(index=False)}
    return {
        "schema_version": 1,
        "kind": "comparison",
        **c.settings,
        "scenario_info": {r.scenario.name: {"description": r.scenario.description, "rationale": r.scenario.rationale,
                                            "file": r.scenario.source_path, "scenario_hash": r.manifest.get("scenario_hash"),
                                            "policy_hash": r.manifest.get("policy_hash")} for r in c.results},
        "metrics": per,
        "differences_vs_baseline": diffs,
        "ci_method": "mean across replications, t-based 95% CI; differences: paired over replications sharing "
                     "common random numbers, and unpaired (Welch) for contrast",
        "not_for_clinical_use": "painpath is for policy analysis and teaching; it is not for treating patients.",
    }


def comparison_frame(c: Comparison) -> pd.DataFrame:
    """The long table written as ``comparison.csv``: one row per scenario and metric."""
    df = c.metrics.merge(c.diffs.drop(columns=["baseline"]), on=["scenario", "metric"], how="left")
    df.insert(0, "baseline", c.names[0])
    return df


def _write_run_files(res: RunResult, folder: Path) -> None:
    folder.mkdir(parents=True)
    write_json(folder / "summary.json", res.summary)
    write_json(folder / "manifest.json", res.manifest)
    res.patients.to_parquet(folder / "patients.parquet", index=False)
    res.events.to_parquet(folder / "events.parquet", index=False)


def write_comparison(c: Comparison, dest: str | Path, report: bool = True) -> Path:
    """Write ``comparison.json``, ``comparison.csv``, each scenario's run under ``runs/`` and ``report.html``."""

    def fill(tmp: Path) -> None:
        write_json(tmp / "comparison.json", comparison_dict(c))
        comparison_frame(c).to_csv(tmp / "comparison.csv", index=False)
        for i, res in enumerate(c.results):
            _write_run_files(res, tmp / "runs" / f"{i:02d}-{res.scenario.name}")
        if report:
            from .report import write_comparison_report

            write_comparison_report(tmp, tmp / "report.html")

    return atomic_folder(dest, fill)


def default_compare_dir(root: str | Path = "results") -> Path:
    return Path(root) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"


def ci_widths(c: Comparison, metric: str, scenario: str | None = None) -> tuple[float, float]:
    """(paired width, unpaired width) of the difference in ``metric`` for ``scenario`` (default: the second)."""
    name = scenario or c.names[1]
    row = c.diffs[(c.diffs["scenario"] == name) & (c.diffs["metric"] == metric)]
    if row.empty:
        raise KeyError(f"no difference for {metric} in {name}")
    r = row.iloc[0]
    return float(r.paired_hi - r.paired_lo), float(r.unpaired_hi - r.unpaired_lo)
