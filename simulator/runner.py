"""Running a scenario: replications (in parallel processes if asked), outcomes and summary.

Each replication is an independent unit keyed by (seed, replication): its cohort and every random
stream derive from that key alone, so results are identical whatever the number of workers, and two
scenarios run with the same seed share patients and luck (common random numbers).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .clinical import ETIOLOGY_NAMES, compile_model
from .cohort import generate_cohort
from .engine import EngineConfig, Simulation
from .outcomes import events_frame, flat_metrics, patient_outcomes, summarize
from .overrides import model_tables
from .pathway import definition_fingerprint
from .policy import PolicyContext
from .population import entry_cohort_summary, relative_outcomes, replication_setup
from .queue_stats import clinic_summary
from .scenario import Scenario

Progress = Callable[[float], None]
"""Called with the fraction of the run done, 0..1."""


@dataclass
class RunResult:
    """A finished run: the scenario as run, its tables and its summary."""

    scenario: Scenario
    events: pd.DataFrame
    patients: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)


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
        with ProcessPoolExecutor(max_workers=min(workers, reps)) as pool:
            for r, arr in enumerate(pool.map(_replication_worker, jobs)):
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
        outcomes = patient_outcomes(events, scenario.patients, reps, horizon)
        events_rel = events
        base, per, per_label, warmup = float(scenario.patients), 1000.0, "1000_patients", 0.0
    else:  # open population: times from each patient's entry; the clinic serves the population
        outcomes, events_rel = relative_outcomes(events, [s[1] for s in setups], horizon)
        pop = scenario.population
        base, per, per_label, warmup = pop.size, 100000.0, "100k_population", pop.warmup_days
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
        "schema_version": 1,
        "scenario": scenario.name,
        "n_patients": scenario.patients,
        "replications": reps,
        "seed": scenario.seed,
        "horizon_days": scenario.horizon_days,
        **summarize(events_rel, outcomes),
    }

    def clinic_block(ev: pd.DataFrame, reps_in: list[int]) -> dict[str, Any]:
        n = sum(setups[r][0] for r in reps_in)
        return clinic_summary(ev, horizon=horizon, clinic=clinic, patients=n, replications=len(reps_in),
                              warmup=warmup, per=per, per_label=per_label, base=base,
                              period_days=365.25 if warmup > 0 else 91.0)

    summary["specialist"] = clinic_block(events, list(range(reps)))
    if scenario.population is not None:
        summary["n_patients"] = round(sum(s[0] for s in setups) / reps)
        summary["n_patients_by_replication"] = [s[0] for s in setups]
        summary["population"] = entry_cohort_summary(events_rel, outcomes, warmup)
    if reps > 1:
        per_rep = []
        for r in range(reps):
            ev_r = events[events["replication"] == r]
            out_r = outcomes[outcomes["replication"] == r]
            flat = flat_metrics({**summarize(events_rel[events_rel["replication"] == r], out_r),
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
        "patients": scenario.patients,
        "replications": reps,
        "horizon_days": scenario.horizon_days,
        "command": command,
        "python": platform.python_version(),
        "platform": sys.platform,
        "libraries": {n: _version(n) for n in ("numpy", "simpy", "transitions", "pydantic", "pandas", "lifelines")},
        "scenario_resolved": json.loads(scenario.model_dump_json(exclude={"source_path", "cohort_spec"})),
        "not_for_clinical_use": "painpath is for policy analysis and teaching; it is not for treating patients.",
    }
    return RunResult(scenario=scenario, events=events, patients=patients, summary=summary, manifest=manifest)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def default_run_dir(scenario: Scenario, root: str | Path = "results") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{scenario.name}-{stamp}"
