"""Usual-care calibration targets: each usual-care scenario checked against the figures of its own setting.

The ``usual_care`` block of ``data/calibration_targets.yaml`` names settings, each a scenario, the population
its figures were measured in, and targets on metrics of its simulated event log (:func:`usual_care_metrics`):
``us_claims`` (``scenarios/usual-care.yaml``; US MarketScan 2016-2023, AAN 2025 abstract 002219) and
``uk_primary_care`` (``scenarios/usual-care-uk.yaml``; Hall 2006, 2008), ``calibration.md`` section 6. The
figures and the reasoning behind each tolerance are in ``docs/usual-care.md``. Tolerances were set before fitting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..inputs.packaged import data_root
from ..model.clinical_tables import ModelTables
from .calibrate import UsualCareTarget, load_battery
from .persistence import KEY, discontinuation, drug_changes, drug_spells


def usual_care_metrics(events: pd.DataFrame, outcomes: pd.DataFrame, tables: ModelTables,
                       horizon: float) -> dict[str, float]:
    """Flat metrics of a run for the usual-care targets (fractions in [0, 1]; drug changes in counts).

    ``index_share.<drug>``, ``index_discontinued_1y.<drug>`` (index drug stopped within 365 days of its start,
    among patients with that index drug), ``monotherapy_start`` (one drug started on the index day),
    ``never_titrated_gabapentinoid_antidepressant`` (index gabapentinoid/SNRI/TCA never at its catalogue target
    dose), ``discontinued_all_index_1y``, ``discontinued_within_3m_share`` (of those), ``switched_after_
    discontinuation``, and the drug changes before a stable regimen of :func:`hall_change_metrics`."""
    spells = drug_spells(events, horizon)
    n = len(outcomes)
    out: dict[str, float] = {}
    first_day = spells.groupby(KEY)["start"].transform("min")
    on_index_day = spells[spells["start"] == first_day]
    out["monotherapy_start"] = float((on_index_day.groupby(KEY).size() == 1).mean())
    first = spells[spells["order"] == 0]
    drug = first["drug"].astype(str).to_numpy()
    for d, c in pd.Series(drug).value_counts().items():
        out[f"index_share.{d}"] = c / n
    rel = (first["stop"] - first["start"]).to_numpy()
    for d in sorted(set(drug)):
        out[f"index_discontinued_1y.{d}"] = float((rel[drug == d] <= 365).mean())
    target = {t.name: t.target_dose for t in tables.drugs}
    cls = {t.name: t.drug_class for t in tables.drugs}
    doses = events[events["event"].isin(["drug_start", "dose_change"])][KEY + ["drug", "dose"]]
    top = doses.groupby(KEY + ["drug"], observed=True)["dose"].max()
    keys = list(zip(first["replication"], first["patient"], drug, strict=True))
    never = [top.get(k, 0.0) < target[k[2]] - 1e-9 for k in keys if cls[k[2]] in ("gabapentinoid", "snri", "tca")]
    if never:
        out["never_titrated_gabapentinoid_antidepressant"] = float(np.mean(never))
    disc = discontinuation(spells, horizon)
    out["discontinued_all_index_1y"] = disc["discontinued_all_index_1y"]
    out["discontinued_within_3m_share"] = disc["of_which_within_3_months"]
    out["switched_after_discontinuation"] = disc["switched_within_12_months_of_discontinuation"]
    out.update(hall_change_metrics(drug_changes(spells, horizon)))
    return {k: v for k, v in out.items() if v is not None}


def hall_change_metrics(changes: dict[str, Any]) -> dict[str, float | None]:
    """Hall's drug changes before a stable regimen (calibration.md 6) under two definitions, from
    :func:`simulator.analysis.persistence.drug_changes`: ``drug_changes_after_index_mean`` / ``_median`` (changes after the
    first drug: a patient stable on his first drug made 0; the plain reading of "changes", on which Hall's
    targets are judged) and ``drug_changes_from_first_prescription_mean`` / ``_median`` (the first prescription
    counted as a change: a named assumption, reported beside the verdict; docs/usual-care.md)."""
    return {"drug_changes_after_index_mean": changes["drug_changes_after_index_mean"],
            "drug_changes_after_index_median": changes["drug_changes_after_index_median"],
            "drug_changes_from_first_prescription_mean": changes["drug_changes_before_stable_mean"],
            "drug_changes_from_first_prescription_median": changes["drug_changes_before_stable_median"]}


@dataclass
class UsualCareCheck:
    target: UsualCareTarget
    simulated: float | None
    passed: bool
    ci: tuple[float, float] | None = None  # not estimated (one run of the scenario)
    also: float | None = None  # the target's also_metric, reported beside the verdict

    @property
    def status(self) -> str:
        """``pass``, ``FAIL``, ``not reproduced`` (a failure the battery declares, with its reason) or
        ``stale declaration`` (declared not reproduced, yet it passes: remove the declaration)."""
        if self.target.not_reproduced is None:
            return "pass" if self.passed else "FAIL"
        return "stale declaration" if self.passed else "not reproduced"

    @property
    def is_failure(self) -> bool:
        """What makes ``painpath calibrate`` exit 1: an undeclared failure or a stale declaration."""
        return self.status in ("FAIL", "stale declaration")

    @property
    def rule(self) -> str:
        t = self.target
        return f"[{t.range[0]:g}, {t.range[1]:g}]" if t.range is not None else f"±{t.tolerance:g}"

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {"id": t.id, "metric": t.metric, "target": t.target, "tolerance": t.tolerance,
                "range": list(t.range) if t.range else None, "simulated": self.simulated, "pass": self.passed,
                "status": self.status, "also_metric": t.also_metric, "also": self.also,
                "not_reproduced": t.not_reproduced, "source": t.source, "tolerance_why": t.tolerance_why}


def run_usual_care(name: str, patients: int | None = None, seed: int | None = None) -> list[UsualCareCheck]:
    """Run one usual-care setting of the battery (``usual_care.<name>``: its scenario on its population, at its
    patients and seed unless given) and check each of its targets. Raises KeyError for an unknown setting."""
    from ..model.overrides import model_tables
    from ..population.cohort_spec import load_cohort_spec
    from ..scenario import load_scenario
    from .runner import simulate

    section = load_battery().usual_care[name]
    path = Path(section.scenario)
    scenario = load_scenario(str(path if path.is_absolute() else data_root() / path))
    if section.cohort:
        cohort = Path(section.cohort)
        cohort = cohort if cohort.is_absolute() else data_root() / cohort
        scenario = scenario.model_copy(update={"cohort": str(cohort), "cohort_spec": load_cohort_spec(cohort)})
    run = simulate(scenario, patients=patients or section.patients, seed=section.seed if seed is None else seed,
                   replications=1)
    tables = model_tables(scenario.clinical_overrides)
    metrics = usual_care_metrics(run.events, run.patients, tables, float(scenario.horizon_days))
    checks = []
    for t in section.targets:
        v = metrics.get(t.metric)
        ok = v is not None and math.isfinite(v) and (
            t.range[0] <= v <= t.range[1] if t.range is not None else abs(v - t.target) <= t.tolerance + 1e-12)
        also = metrics.get(t.also_metric) if t.also_metric else None
        checks.append(UsualCareCheck(t, None if v is None else round(float(v), 4), bool(ok),
                                     also=None if also is None else round(float(also), 4)))
    return checks
