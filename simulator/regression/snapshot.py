"""Per-patient trajectories and golden snapshots (``painpath snapshot``).

A *trajectory* is a patient's sequence of decision rows (transitions, drug starts and stops,
evaluations, safety checks, referral, consult, drop-out), each written as one readable token such as
``42.000 evaluation first_line pregabalin partial [P3.adequate_trial]``. Two runs on the same cohort and
seed (common random numbers) give the same token sequence for a patient whose care did not change.

A snapshot is a JSON file with the run's per-replication flat metrics, its summary, every trajectory
(tokens and a fingerprint), the pathway/model/policy/cohort hashes, the policy and the scenario-level
settings, and the seed, patients and replications needed to rerun a new version on the same patients.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.summary import flat_metrics
from ..inputs.errors import InputError
from ..model.pathway import definition_fingerprint

SNAPSHOT_SCHEMA = 1
TRAJECTORY_EVENTS: tuple[str, ...] = ("transition", "drug_start", "drug_stop", "evaluation", "safety_check",
                                      "referral_queued", "consult", "dropout")
SCENARIO_FIELDS: tuple[str, ...] = ("name", "cohort", "patients", "replications", "seed", "horizon_days",
                                    "specialist")

Key = tuple[int, int]
Trajectories = dict[Key, tuple[str, ...]]


def _s(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def trajectories(events: pd.DataFrame) -> Trajectories:
    """Decision-row tokens per (replication, patient)."""
    ev = events[events["event"].isin(TRAJECTORY_EVENTS)]
    cols = {}
    for c in ("event", "state", "drug", "trigger", "outcome", "check", "consult_outcome", "rule"):
        s = ev[c].astype(object)
        cols[c] = s.where(s.notna(), None).tolist()
    dose = ev["dose"].tolist()
    day = ev["day"].astype(float).tolist()
    reps = ev["replication"].astype(int).tolist()
    pats = ev["patient"].astype(int).tolist()
    out: dict[Key, list[str]] = {}
    for k in range(len(reps)):
        detail = cols["trigger"][k] or cols["outcome"][k] or cols["check"][k] or cols["consult_outcome"][k]
        parts = [f"{day[k]:.3f}", cols["event"][k], cols["state"][k], _s(cols["drug"][k])]
        if cols["event"][k] == "drug_start" and dose[k] == dose[k]:
            parts.append(f"{dose[k]:g}")
        parts.append(_s(detail))
        parts.append(f"[{_s(cols['rule'][k])}]")
        out.setdefault((reps[k], pats[k]), []).append(" ".join(parts))
    return {k: tuple(v) for k, v in out.items()}


def fingerprint(tokens: tuple[str, ...] | list[str]) -> str:
    return hashlib.sha256("\n".join(tokens).encode()).hexdigest()[:16]


def pathway_hash() -> str:
    return hashlib.sha256(definition_fingerprint().encode()).hexdigest()[:16]


def per_replication_metrics(result: Any) -> list[dict[str, float]]:
    """Flat metrics of each replication (from the summary when it has them)."""
    per = result.summary.get("per_replication")
    if per:
        return [dict(p) for p in per]
    return [flat_metrics({k: v for k, v in result.summary.items() if k != "per_replication"})]


def pooled_metrics(summary: dict[str, Any]) -> dict[str, float]:
    return flat_metrics({k: v for k, v in summary.items()
                         if k not in ("per_replication", "n_patients", "replications", "seed", "horizon_days",
                                      "schema_version")})


def describe(result: Any) -> dict[str, Any]:
    """What a run was: hashes, scenario-level settings and the policy."""
    from ..analysis.runner import model_hash

    sc = result.scenario
    scen = sc.model_dump(mode="json", exclude={"source_path", "cohort_spec", "policy", "description", "rationale"})
    return {
        "scenario": sc.name,
        "scenario_file": sc.source_path,
        "settings": {k: scen.get(k) for k in SCENARIO_FIELDS},
        "policy": sc.policy.model_dump(mode="json"),
        "hashes": {"pathway": pathway_hash(), "model": model_hash(), "policy": sc.policy_hash(),
                   "cohort": sc.cohort_hash(), "scenario": sc.hash()},
    }


def make_snapshot(result: Any) -> dict[str, Any]:
    """The snapshot of a finished run (JSON-ready)."""
    sc = result.scenario
    traj = trajectories(result.events)
    return {
        "snapshot_schema": SNAPSHOT_SCHEMA,
        **describe(result),
        "seed": sc.seed,
        "patients": sc.patients,
        "replications": sc.replications,
        "horizon_days": sc.horizon_days,
        "metrics": pooled_metrics(result.summary),
        "per_replication": per_replication_metrics(result),
        "summary": result.summary,
        "trajectories": [{"replication": r, "patient": p, "fingerprint": fingerprint(t), "steps": list(t)}
                         for (r, p), t in sorted(traj.items())],
    }


def write_snapshot(result: Any, path: str | Path) -> Path:
    """Write the snapshot atomically (a temporary file renamed into place)."""
    import os
    import tempfile

    path = Path(path)
    if path.suffix != ".json":
        raise InputError(f"the snapshot file '{path}' must end in .json", field="--out", fix="name it e.g. golden.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = make_snapshot(result)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, allow_nan=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a snapshot is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_snapshot(path: str | Path) -> dict[str, Any]:
    """Read and sanity-check a snapshot written by :func:`write_snapshot`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"the snapshot file '{path}' does not exist", file=str(path),
                         fix="write one with 'painpath snapshot SCENARIO --out FILE.json'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"'{path}' is not valid JSON ({exc})", file=str(path),
                         fix="give a file written by 'painpath snapshot'") from None
    need = ("snapshot_schema", "seed", "patients", "replications", "metrics", "per_replication", "trajectories",
            "policy", "hashes", "settings")
    missing = [k for k in need if not isinstance(data, dict) or k not in data]
    if missing:
        raise InputError(f"'{path}' is not a painpath snapshot (missing {', '.join(missing)})", file=str(path),
                         fix="give a file written by 'painpath snapshot'")
    if data["snapshot_schema"] != SNAPSHOT_SCHEMA:
        raise InputError(f"snapshot schema {data['snapshot_schema']} is not supported (this painpath reads "
                         f"{SNAPSHOT_SCHEMA})", file=str(path), field="snapshot_schema",
                         fix="write the snapshot again with this version of painpath")
    return data


def snapshot_trajectories(data: dict[str, Any]) -> Trajectories:
    return {(int(t["replication"]), int(t["patient"])): tuple(t["steps"]) for t in data["trajectories"]}
