"""Running a scenario: replications (in parallel processes if asked), outcomes and summary.

Each replication is an independent unit keyed by (seed, replication): its cohort and every random
stream derive from that key alone, so results are identical whatever the number of workers, and two
scenarios run with the same seed share patients and luck (common random numbers).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..engine.simulation import EngineConfig, Simulation
from ..model.clinical import ETIOLOGY_NAMES
from ..model.clinical_tables import compile_model
from ..model.overrides import model_tables
from ..model.pathway import definition_fingerprint
from ..model.policy_context import PolicyContext
from ..population.cohort import generate_cohort
from ..scenario import Scenario
from .interrupts import worker_pool
from .open_population import entry_cohort_summary, relative_outcomes, replication_setup
from .outcomes import drug_days, events_frame, followup_days, patient_outcomes, resource_use
from .queue_stats import clinic_summary
from .summary import SCHEMA_VERSION, beyond_horizon, beyond_reason, flat_metrics, summarize

Progress = Callable[[float], None]
"""Called with the fraction of the run done, 0..1."""


@dataclass
class RunResult:
    """A finished run: the scenario as run, its tables and its summary.

    ``events``: the event log (one row per event); ``patients``: one row per (replication, patient) with
    attributes and outcomes; ``resources``: the long resource-use table (see
    :func:`simulator.analysis.outcomes.resource_use`); ``summary``: the ``summary.json`` dict
    (``docs/summary-schema.md``)."""

    scenario: Scenario
    events: pd.DataFrame
    patients: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    resources: pd.DataFrame = field(default_factory=pd.DataFrame)

    def replication_table(self) -> pd.DataFrame:
        """Per-replication metrics as a long table: scenario, replication, metric, value, unit.

        ``value`` is NaN where the metric is not estimable in that replication (a median not reached, a
        day beyond the horizon; the reason is in ``summary["not_estimable"]``)."""
        return replication_long_table(self.scenario.name, self.summary)

    def save(self, dest: str | Path, report: bool = True) -> Path:
        """Write the run folder ``dest`` (summary.json, manifest.json, patients/events/resource_use.parquet,
        replication_metrics.parquet and .csv, and report.html unless ``report`` is False); returns its path.

        The writing is done by the ``output`` layer (:func:`simulator.output.results.save_run`), registered
        with :func:`register_writers` when ``simulator`` is imported: analysis never imports output.
        Raises :class:`~simulator.inputs.errors.InputError` if ``dest`` exists."""
        return _writer("save")(self, dest, report)

    def report(self, path: str | Path) -> Path:
        """Render the self-contained HTML report of this run to ``path``; returns the path (written by
        :func:`simulator.output.report.write_run_report`, registered as for :meth:`save`)."""
        return _writer("report")(self, path)


_WRITERS: dict[str, Callable[..., Path]] = {}


def register_writers(save: Callable[[RunResult, str | Path, bool], Path],
                     report: Callable[[RunResult, str | Path], Path]) -> None:
    """Give :meth:`RunResult.save` and :meth:`RunResult.report` their writers (the ``output`` layer's).

    Called once by ``simulator/__init__.py``, which every import of the package runs first, so the documented
    ``simulator.simulate(...).save(...)`` works while this layer never imports the one above it."""
    _WRITERS["save"] = save
    _WRITERS["report"] = report


def _writer(name: str) -> Callable[..., Path]:
    try:
        return _WRITERS[name]
    except KeyError:  # pragma: no cover - simulator/__init__.py registers them on any import of the package
        raise RuntimeError("no run writers registered: import simulator (it registers simulator.output's)") from None


def replication_long_table(scenario: str, summary: dict[str, Any]) -> pd.DataFrame:
    """scenario, replication, metric, value, unit: one row per replication and flat metric."""
    from .metrics import unit

    per = summary.get("per_replication") or [flat_metrics(summary)]
    rows = [(scenario, r, m, math.nan if v is None else float(v), unit(m))
            for r, metrics in enumerate(per) for m, v in metrics.items()]
    return pd.DataFrame(rows, columns=["scenario", "replication", "metric", "value", "unit"])


def package_version() -> str:
    try:
        return metadata.version("painpath")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+source"


def model_hash() -> str:
    """Hash of the pathway definition and the packaged data (catalogue, clinical model, rules)."""
    h = hashlib.sha256(definition_fingerprint().encode())
    for name in ("drugs.yaml", "clinical.yaml", "rules.yaml"):
        h.update((resources.files("simulator") / "data" / name).read_bytes())
    return h.hexdigest()[:16]


def _replication(scenario: Scenario, rep: int, progress: Progress | None = None, steps: int = 40) -> np.ndarray:
    tables = model_tables(scenario.clinical_overrides)  # with the scenario's clinical_overrides, if any
    ctx = PolicyContext.build(scenario.policy, tables)
    n, entry, clinic = replication_setup(scenario, rep, tables.specialist["consult_days"])
    cohort = generate_cohort(scenario.cohort_spec, n, scenario.seed, replication=rep)
    config = EngineConfig(horizon_days=float(scenario.horizon_days), specialist_slots_per_week=clinic.consults_per_week,
                          seed=scenario.seed, clinic=clinic, entry_days=entry)
    sim = Simulation(ctx, cohort, config, rep)
    if progress is None:
        return sim.run()
    return sim.run(progress=progress, steps=steps)


def _replication_worker(args: tuple[Scenario, int]) -> np.ndarray:
    scenario, rep = args
    return _replication(scenario, rep)


def simulate(scenario: Scenario, *, patients: int | None = None, seed: int | None = None,
             replications: int | None = None, workers: int = 1, progress: Progress | None = None,
             command: str = "") -> RunResult:
    """Run ``scenario`` (with optional overrides) and return its events, patients and summary."""
    scenario = scenario.with_overrides(patients=patients, seed=seed, replications=replications)
    reps = scenario.replications
    raw: list[np.ndarray]
    if workers > 1 and reps > 1:
        jobs = [(scenario, r) for r in range(reps)]
        raw = []
        with worker_pool(min(workers, reps)) as pool:  # workers end with the block, and with this process
            for r, arr in enumerate(pool.imap(_replication_worker, jobs)):
                raw.append(arr)
                if progress:
                    progress((r + 1) / reps)
    else:
        raw = []
        for r in range(reps):
            sub = (lambda f, r=r: progress((r + f) / reps)) if progress else None
            raw.append(_replication(scenario, r, sub))
    return assemble(scenario, raw, command=command)


def simulate_many(scenarios: list[Scenario], *, patients: int | None = None, seed: int | None = None,
                  replications: int | None = None, workers: int = 1, progress: Progress | None = None,
                  command: str = "") -> list[RunResult]:
    """Run several scenarios with the same overrides (same patients and random numbers for each)."""
    out = []
    n = len(scenarios)
    for i, sc in enumerate(scenarios):
        sub = (lambda f, i=i: progress((i + f) / n)) if progress else None
        out.append(simulate(sc, patients=patients, seed=seed, replications=replications, workers=workers,
                            progress=sub, command=command))
    return out


def assemble(scenario: Scenario, raw: list[np.ndarray], command: str = "") -> RunResult:
    """Build tables, outcomes and the summary from the replications' raw event arrays."""
    tables = compile_model()
    events = events_frame(raw, tables)
    reps = len(raw)
    horizon = float(scenario.horizon_days)
    setups = [replication_setup(scenario, r, tables.specialist["consult_days"]) for r in range(reps)]
    clinic = setups[0][2]
    if scenario.population is None:  # closed cohort: everyone enters on day 0
        dd = drug_days(events, followup_days(events, scenario.patients, reps, horizon))  # once, for both tables
        outcomes = patient_outcomes(events, scenario.patients, reps, horizon, [d.name for d in tables.drugs], dd)
        resource_table = resource_use(events, outcomes, dd)
        events_rel = events
        base, per, per_label, warmup = float(scenario.patients), 1000.0, "1000_patients", 0.0
        followed = horizon
    else:  # open population: times from each patient's entry; the clinic serves the population
        outcomes, events_rel = relative_outcomes(events, [s[1] for s in setups], horizon)
        resource_table = resource_use(events_rel, outcomes)
        pop = scenario.population
        base, per, per_label, warmup = pop.size, 100000.0, "100k_population", pop.warmup_days
        followed = float(outcomes["followup_days"].max())  # the longest follow-up from entry
    cohorts = []
    for r in range(reps):
        c = generate_cohort(scenario.cohort_spec, setups[r][0], scenario.seed, replication=r).to_frame()
        c.insert(0, "replication", r)
        cohorts.append(c)
    cohort_df = pd.concat(cohorts, ignore_index=True)
    if "etiology" in cohort_df and not isinstance(cohort_df["etiology"].iloc[0], str):
        cohort_df["etiology"] = [ETIOLOGY_NAMES[int(e)] for e in cohort_df["etiology"]]
    patients = cohort_df.merge(outcomes, on=["replication", "patient"], how="left")
    summary = {
        "schema_version": SCHEMA_VERSION,
        "scenario": scenario.name,
        "n_patients": scenario.patients,
        "replications": reps,
        "seed": scenario.seed,
        "horizon_days": scenario.horizon_days,
        **summarize(events_rel, outcomes, followed),
    }

    def clinic_block(ev: pd.DataFrame, reps_in: list[int], reasons: dict[str, str] | None = None) -> dict[str, Any]:
        n = sum(setups[r][0] for r in reps_in)
        block = clinic_summary(ev, horizon=horizon, clinic=clinic, patients=n, replications=len(reps_in),
                               warmup=warmup, per=per, per_label=per_label, base=base,
                               period_days=365.25 if warmup > 0 else 91.0)
        return null_beyond_horizon(block, horizon, "specialist", reasons)

    reasons = summary["not_estimable"]
    summary["specialist"] = clinic_block(events, list(range(reps)), reasons)
    reasons.pop("specialist.wait_days_median", None)
    if summary["specialist"].get("wait_days_median") is None:
        reasons["specialist.wait_days_median"] = ("median wait not reached: fewer than half of the referred "
                                                  "were seen by the horizon (or nobody was referred)")
    if scenario.population is not None:
        summary["n_patients"] = round(sum(s[0] for s in setups) / reps)
        summary["n_patients_by_replication"] = [s[0] for s in setups]
        summary["population"] = entry_cohort_summary(events_rel, outcomes, warmup)
    if reps > 1:
        per_rep = []
        for r in range(reps):
            ev_r = events[events["replication"] == r]
            out_r = outcomes[outcomes["replication"] == r]
            flat = flat_metrics({**summarize(events_rel[events_rel["replication"] == r], out_r, followed),
                                 "specialist": clinic_block(ev_r, [r])})
            if scenario.population is not None:
                flat.update(flat_metrics({"population": entry_cohort_summary(
                    events_rel[events_rel["replication"] == r], out_r, warmup)}))
            per_rep.append(flat)
        summary["per_replication"] = per_rep
    manifest = {
        "painpath_version": package_version(),
        "scenario": scenario.name,
        "scenario_file": scenario.source_path,
        "scenario_hash": scenario.hash(),
        "policy_hash": scenario.policy_hash(),
        "cohort_hash": scenario.cohort_hash(),
        "model_hash": model_hash(),
        "seed": scenario.seed,
        "patients": scenario.patients if scenario.population is None else None,  # open: summary n_patients
        "replications": reps,
        "horizon_days": scenario.horizon_days,
        "command": command,
        "python": platform.python_version(),
        "platform": sys.platform,
        "libraries": {n: _version(n) for n in ("numpy", "simpy", "transitions", "pydantic", "pandas", "lifelines")},
        "scenario_resolved": json.loads(scenario.model_dump_json(exclude={"source_path", "cohort_spec"})),
        "not_for_clinical_use": "painpath is for policy analysis and teaching; it is not for treating patients.",
    }
    return RunResult(scenario=scenario, events=events, patients=patients, summary=summary, manifest=manifest,
                     resources=resource_table)


def null_beyond_horizon(block: dict[str, Any], horizon: float, prefix: str,
                        reasons: dict[str, str] | None = None) -> dict[str, Any]:
    """Set the clinic's waiting-time points (``seen_by_day``, ``left_by_day``, also in ``steady_state``) beyond
    the horizon to None, recording why in ``reasons``; a wait that long cannot be observed in the run."""
    for fam in ("seen_by_day", "left_by_day"):
        days = block.get(fam) or {}
        for d in list(days):
            if beyond_horizon(float(d), horizon):
                days[d] = None
                if reasons is not None:
                    reasons[f"{prefix}.{fam}.{d}"] = beyond_reason(d, horizon)
    if isinstance(block.get("steady_state"), dict):
        null_beyond_horizon(block["steady_state"], horizon, f"{prefix}.steady_state", reasons)
    return block


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"
