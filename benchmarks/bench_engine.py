"""Engine benchmark (run by hand, not in the test suite).

1. 100k patients of the mixed primary-care cohort over 2 years under the guideline policy, one core:
   patients/s, simulated events/s, peak memory of the engine alone (built as the runner builds it).
2. End to end: the same run through ``runner.simulate`` (engine, event table, outcomes, summary), in a fresh
   process so that its time and peak memory are its own (a user's ``painpath run`` without the report).
3. 8 replications of 10k patients on 1 worker and on 2 workers: speed-up, identical results.

Targets: issue #2: 100k patients in at most 10 s and under 1 GB; >= 1.8x speed-up on 2 workers. Issue #9: the
engine's events/s at least v0.1's on the same machine in the same run (run v0.1's benchmark just before or after).
The engine runs as installed: its hot modules compiled (setup.py; ``"engine_build": "compiled"``) or, with
PAINPATH_PURE_PYTHON=1 or no compiled build, from their Python sources (``"python"``), or partly (sources edited
since the build run as Python: ``"partly compiled (from source: ...)"``); the output says which.
Usage: .venv/bin/python benchmarks/bench_engine.py [--patients 100000] [--skip-parallel] [--part engine|e2e]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.analysis.runner import replication_setup, simulate  # noqa: E402
from simulator.engine.simulation import EngineConfig, Simulation  # noqa: E402
from simulator.inputs.compiled import build_in_use  # noqa: E402
from simulator.model.overrides import model_tables  # noqa: E402
from simulator.model.policy_context import PolicyContext  # noqa: E402
from simulator.population.cohort import generate_cohort  # noqa: E402
from simulator.scenario import load_scenario  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def engine_only(patients: int) -> dict:
    """One replication through the engine, set up exactly as ``runner._replication`` does."""
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml").with_overrides(patients=patients, seed=1)
    tables = model_tables(sc.clinical_overrides)
    ctx = PolicyContext.build(sc.policy, tables)
    t0 = time.perf_counter()
    n, entry, clinic = replication_setup(sc, 0, tables.specialist["consult_days"])
    cohort = generate_cohort(sc.cohort_spec, n, sc.seed, 0)
    config = EngineConfig(float(sc.horizon_days), clinic.consults_per_week, sc.seed, clinic=clinic, entry_days=entry)
    sim = Simulation(ctx, cohort, config, 0)
    t1 = time.perf_counter()
    ev = sim.run()
    engine_s = time.perf_counter() - t0
    return {
        "engine_build": build_in_use(),
        "patients": patients,
        "setup_s": round(t1 - t0, 2),
        "engine_s": round(engine_s, 2),
        "patients_per_s": round(patients / engine_s),
        "events": int(ev.shape[0]),
        "events_per_s": round(ev.shape[0] / engine_s),
        "peak_mb_engine": round(peak_mb()),
    }


def end_to_end(patients: int) -> dict:
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml").with_overrides(patients=patients, seed=1)
    import lifelines  # noqa: F401  (imported by the outcomes; its import time is not the run's)
    gc.collect()
    t = time.perf_counter()
    simulate(sc)
    return {"end_to_end_s_with_outcomes": round(time.perf_counter() - t, 2), "peak_mb_end_to_end": round(peak_mb())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--skip-parallel", action="store_true")
    ap.add_argument("--part", choices=("engine", "e2e"), help="run one part only, in this process")
    args = ap.parse_args()
    if args.part:
        print(json.dumps(engine_only(args.patients) if args.part == "engine" else end_to_end(args.patients)))
        return
    out: dict = {}
    for part in ("engine", "e2e"):  # each in its own process: a peak is that part's own
        res = subprocess.run([sys.executable, __file__, "--patients", str(args.patients), "--part", part],
                             check=True, capture_output=True, text=True)
        out.update(json.loads(res.stdout.strip().splitlines()[-1]))
    print(json.dumps(out, indent=2))
    if args.skip_parallel:
        return
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml").with_overrides(seed=1)
    par = sc.with_overrides(patients=10_000, replications=8)
    t = time.perf_counter()
    r1 = simulate(par, workers=1)
    w1 = time.perf_counter() - t
    t = time.perf_counter()
    r2 = simulate(par, workers=2)
    w2 = time.perf_counter() - t
    same = r1.summary == r2.summary and r1.events.equals(r2.events)
    print(json.dumps({"replications": 8, "patients": 10_000, "workers1_s": round(w1, 2), "workers2_s": round(w2, 2),
                      "speedup": round(w1 / w2, 2), "identical": same}, indent=2))


if __name__ == "__main__":
    main()
