"""Engine benchmark (run by hand, not in the test suite).

1. 100k patients of the mixed primary-care cohort over 2 years under the guideline policy, one core:
   patients/s, simulated events/s, peak memory (engine only, and with outcomes + summary).
2. 8 replications of 10k patients on 1 worker and on 2 workers: speed-up, identical results.

Targets (issue #2): 100k patients in at most 10 s and under 1 GB; >= 1.8x speed-up on 2 workers.
Usage: .venv/bin/python benchmarks/bench_engine.py [--patients 100000] [--skip-parallel]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.clinical import compile_model  # noqa: E402
from simulator.cohort import generate_cohort  # noqa: E402
from simulator.engine import EngineConfig, Simulation  # noqa: E402
from simulator.policy import PolicyContext  # noqa: E402
from simulator.runner import replication_setup, simulate  # noqa: E402
from simulator.scenario import load_scenario  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--skip-parallel", action="store_true")
    args = ap.parse_args()
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml").with_overrides(patients=args.patients, seed=1)
    tables = compile_model()
    ctx = PolicyContext.build(sc.policy, tables)
    t0 = time.perf_counter()
    n, entry, clinic = replication_setup(sc, 0, tables.specialist["consult_days"])
    cohort = generate_cohort(sc.cohort_spec, n, sc.seed, 0)
    config = EngineConfig(float(sc.horizon_days), clinic.consults_per_week, sc.seed, clinic=clinic, entry_days=entry)
    sim = Simulation(ctx, cohort, config, 0)
    t1 = time.perf_counter()
    ev = sim.run()
    t2 = time.perf_counter()
    engine_s = t2 - t0
    out = {
        "patients": sc.patients,
        "setup_s": round(t1 - t0, 2),
        "engine_s": round(engine_s, 2),
        "patients_per_s": round(sc.patients / engine_s),
        "events": int(ev.shape[0]),
        "events_per_s": round(ev.shape[0] / engine_s),
        "peak_mb_engine": round(peak_mb()),
    }
    t3 = time.perf_counter()
    simulate(sc)
    out["end_to_end_s_with_outcomes"] = round(time.perf_counter() - t3, 2)
    out["peak_mb_total"] = round(peak_mb())
    print(json.dumps(out, indent=2))
    if args.skip_parallel:
        return
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
