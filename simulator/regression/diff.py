"""Comparing two versions of the pathway or policy on the same patients (``painpath diff``).

Both versions are run on the same cohort with the same seed, so every patient meets the same luck in
both (common random numbers). The report has three parts:

(a) what changed: scenario-level settings, every policy field (dotted paths of ``model_dump``), and the
    pathway / model hashes;
(b) every flat summary metric, old, new and the difference, with a paired 95% CI over replications
    (:func:`simulator.analysis.stats.metric_difference` on per-replication metrics, as in ``compare``);
(c) per-patient divergence: how many (replication, patient) trajectories differ, the step at which each
    first diverged (index of the first differing decision row, labelled by the old state and event
    there), and example patients with both trajectories side by side.

``--fail-if`` bounds (:func:`parse_fail_if`) turn the report into a regression gate.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..analysis.metrics import ZERO_IF_MISSING, kind, label, unit
from ..analysis.stats import metric_difference, replications_note
from ..inputs.errors import InputError
from .snapshot import (
    Key,
    Trajectories,
    describe,
    per_replication_metrics,
    pooled_metrics,
    snapshot_trajectories,
    trajectories,
)

ZERO_DEFAULT_PREFIXES = ZERO_IF_MISSING
"""Metrics that only appear when non-zero (a missing key means 0)."""
N_EXAMPLES = 3


@dataclass
class Side:
    """One version: what it was, its metrics and its trajectories."""

    label: str
    info: dict[str, Any]
    metrics: dict[str, float | None]
    per_replication: list[dict[str, float | None]]
    trajectories: Trajectories
    reasons: dict[str, str] = field(default_factory=dict)  # metric -> why it is null (summary's not_estimable)


def side_from_run(result: Any, name: str = "") -> Side:
    return Side(name or result.scenario.name, describe(result), pooled_metrics(result.summary),
                per_replication_metrics(result), trajectories(result.events),
                dict(result.summary.get("not_estimable", {})))


def side_from_snapshot(data: dict[str, Any], name: str = "") -> Side:
    info = {k: data[k] for k in ("scenario", "settings", "policy", "hashes") if k in data}
    return Side(name or f"snapshot:{data.get('scenario', '')}", info, dict(data["metrics"]),
                [dict(p) for p in data["per_replication"]], snapshot_trajectories(data),
                dict((data.get("summary") or {}).get("not_estimable", {})))


# ------------------------------------------------------------------------------------------------
# (a) what changed
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    section: str  # scenario | policy | pathway
    field: str
    old: Any
    new: Any


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def definition_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    changes: list[Change] = []
    for section, key in (("scenario", "settings"), ("policy", "policy")):
        a, b = flatten(old.get(key, {})), flatten(new.get(key, {}))
        for f in sorted(set(a) | set(b)):
            if a.get(f) != b.get(f):
                if section == "scenario" and f == "name":
                    continue
                changes.append(Change(section, f, a.get(f), b.get(f)))
    ha, hb = old.get("hashes", {}), new.get("hashes", {})
    for h, section in (("pathway", "pathway"), ("model", "pathway"), ("cohort", "scenario")):
        if ha.get(h) != hb.get(h):
            changes.append(Change(section, f"{h}_hash", ha.get(h), hb.get(h)))
    return changes


# ------------------------------------------------------------------------------------------------
# (b) metrics
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricDiff:
    metric: str
    old: float | None
    new: float | None
    diff: float | None
    ci_lo: float | None
    ci_hi: float | None
    label: str = ""
    unit: str = ""
    note: str = ""  # why a value or the CI is missing (beyond the horizon, not reached in k replications)


def _get(metrics: dict[str, float], key: str) -> float | None:
    v = metrics.get(key)
    if v is None:
        return 0.0 if key.startswith(ZERO_DEFAULT_PREFIXES) else None
    return float(v)


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def metric_diffs(old: Side, new: Side) -> list[MetricDiff]:
    if len(old.per_replication) != len(new.per_replication):
        raise InputError(f"the two versions have {len(old.per_replication)} and {len(new.per_replication)} "
                         "replications; a paired comparison needs the same number",
                         field="--replications", fix="run both with the same --replications")
    keys = list(dict.fromkeys([*old.metrics, *new.metrics]))
    out = []
    for k in keys:
        a, b = _get(old.metrics, k), _get(new.metrics, k)
        pa = [_get(r, k) for r in old.per_replication]
        pb = [_get(r, k) for r in new.per_replication]
        pa_f = [math.nan if v is None else v for v in pa]
        pb_f = [math.nan if v is None else v for v in pb]
        d = None if a is None or b is None else round(b - a, 6)
        _, lo, hi = metric_difference(kind(k), pb_f, pa_f, b, a)[:3] if len(pa_f) > 1 else (math.nan, math.nan, math.nan)
        missing = sum(1 for x, y in zip(pa_f, pb_f, strict=True) if not (math.isfinite(x) and math.isfinite(y)))
        why = new.reasons.get(k) or old.reasons.get(k) or ""
        note = why
        if missing and d is not None:
            note = (f"not estimable in {missing} of {len(pa_f)} replications; difference of the pooled "
                    "estimates, no CI")
        elif missing and not why:
            note = f"not estimable in {missing} of {len(pa_f)} replications"
        out.append(MetricDiff(k, a, b, d, _nan_to_none(lo), _nan_to_none(hi), label(k), unit(k), note))
    return out


# ------------------------------------------------------------------------------------------------
# (c) divergence
# ------------------------------------------------------------------------------------------------


def first_divergence(a: tuple[str, ...], b: tuple[str, ...]) -> int | None:
    """Index of the first differing decision row, or None if the trajectories are identical."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def step_label(tokens: tuple[str, ...], i: int) -> str:
    """'state event' of the old trajectory at step i (or 'end of trajectory')."""
    if i >= len(tokens):
        return "end of trajectory"
    parts = tokens[i].split(" ")
    return f"{parts[2]} {parts[1]}" if len(parts) > 2 else tokens[i]


@dataclass
class Divergence:
    trajectories: int
    diverged: int
    by_step: list[tuple[int, str, int]]  # (step, label, count)
    examples: list[dict[str, Any]] = field(default_factory=list)


def divergence(old: Trajectories, new: Trajectories, n_examples: int = N_EXAMPLES) -> Divergence:
    keys = sorted(set(old) | set(new))
    counts: Counter[tuple[int, str]] = Counter()
    examples: list[dict[str, Any]] = []
    diverged = 0
    for key in keys:
        a, b = old.get(key, ()), new.get(key, ())
        i = first_divergence(a, b)
        if i is None:
            continue
        diverged += 1
        label = step_label(a, i)
        counts[(i, label)] += 1
        if len(examples) < n_examples:
            examples.append(_example(key, a, b, i, label))
    by_step = sorted(((s, lab, c) for (s, lab), c in counts.items()), key=lambda x: (x[0], -x[2], x[1]))
    return Divergence(len(keys), diverged, by_step, examples)


def _example(key: Key, a: tuple[str, ...], b: tuple[str, ...], i: int, label: str) -> dict[str, Any]:
    return {"replication": key[0], "patient": key[1], "step": i, "at": label, "old": list(a), "new": list(b)}


# ------------------------------------------------------------------------------------------------
# --fail-if
# ------------------------------------------------------------------------------------------------

_FAIL_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|>|<)\s*([+-])?\s*(\d+(?:\.\d*)?|\.\d+)\s*$")
_OPS = {">": lambda x, y: x > y, "<": lambda x, y: x < y, ">=": lambda x, y: x >= y, "<=": lambda x, y: x <= y}


@dataclass(frozen=True)
class FailIf:
    """``metric op value``: a signed value bounds the change new-old, a plain value bounds the new value."""

    expr: str
    metric: str
    op: str
    value: float
    change: bool

    def evaluate(self, m: MetricDiff) -> tuple[float | None, bool]:
        """(the compared quantity, crossed?). A quantity that is not available (e.g. a median not
        reached) counts as crossed: the bound cannot be shown to hold."""
        x = m.diff if self.change else m.new
        if x is None:
            return None, True
        return x, bool(_OPS[self.op](x, self.value))


def parse_fail_if(expr: str, known: list[str] | None = None) -> FailIf:
    m = _FAIL_RE.match(expr)
    if not m:
        raise InputError(f"cannot read the bound '{expr}'", field="--fail-if",
                         fix="write METRIC OP VALUE, e.g. 'time_to_relief.median_days > +7' (signed value = change "
                             "new-old) or 'adverse_events.per_patient_year > 1.2' (plain value = new value); OP is "
                             "one of > < >= <=")
    metric, op, sign, num = m.groups()
    value = float(num) * (-1.0 if sign == "-" else 1.0)
    if known is not None and metric not in known:
        import difflib

        close = difflib.get_close_matches(metric, known, n=3)
        raise InputError(f"unknown metric '{metric}' in --fail-if '{expr}'", field="--fail-if",
                         fix=("did you mean " + " or ".join(close)) if close else
                         "use a dotted summary metric such as time_to_relief.median_days")
    return FailIf(expr.strip(), metric, op, value, sign is not None)


# ------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------


@dataclass
class DiffReport:
    old: str
    new: str
    seed: int
    patients: int
    replications: int
    changes: list[Change]
    metrics: list[MetricDiff]
    divergence: Divergence
    bounds: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(b["crossed"] for b in self.bounds)

    def metric(self, name: str) -> MetricDiff:
        for m in self.metrics:
            if m.metric == name:
                return m
        raise KeyError(name)

    def apply_bounds(self, exprs: list[str]) -> None:
        known = [m.metric for m in self.metrics]
        parsed = [parse_fail_if(e, known) for e in exprs]
        self.bounds = []
        for f in parsed:
            x, crossed = f.evaluate(self.metric(f.metric))
            self.bounds.append({"expr": f.expr, "metric": f.metric, "compared": "change" if f.change else "new value",
                                "value": x, "crossed": crossed})

    def to_dict(self) -> dict[str, Any]:
        d = self.divergence
        return {
            "old": self.old, "new": self.new, "seed": self.seed, "patients": self.patients,
            "replications": self.replications,
            "changes": [asdict(c) for c in self.changes],
            "metrics": [asdict(m) for m in self.metrics],
            "divergence": {"trajectories": d.trajectories, "diverged": d.diverged,
                           "by_step": [{"step": s, "at": lab, "patients": c} for s, lab, c in d.by_step],
                           "examples": d.examples},
            "bounds": self.bounds, "failed": self.failed, "notes": self.notes,
        }


def compare_sides(old: Side, new: Side, *, seed: int, patients: int, replications: int,
                  fail_if: list[str] | None = None) -> DiffReport:
    notes = []
    if old.info.get("hashes", {}).get("cohort") != new.info.get("hashes", {}).get("cohort"):
        notes.append("the cohorts differ: patients with the same index are different people, so divergence "
                     "mixes cohort and policy effects")
    if len(old.per_replication) < 2:
        notes.append("one replication: no confidence intervals (use --replications 2 or more)")
    elif few := replications_note(len(old.per_replication)):
        notes.append(few)
    report = DiffReport(old.label, new.label, seed, patients, replications,
                        definition_changes(old.info, new.info), metric_diffs(old, new),
                        divergence(old.trajectories, new.trajectories), notes=notes)
    if fail_if:
        report.apply_bounds(list(fail_if))
    return report


def diff_scenarios(old: Any, new: Any, *, patients: int | None = None, replications: int | None = None,
                   seed: int | None = None, workers: int = 1, fail_if: list[str] | None = None) -> DiffReport:
    """Run two scenarios on the same patients and seed (the old one's unless overridden) and compare."""
    from ..analysis.runner import simulate

    if fail_if:  # bad expressions fail before any simulation
        for e in fail_if:
            parse_fail_if(e)
    patients = patients or old.patients
    replications = replications or old.replications
    seed = old.seed if seed is None else seed
    ra = simulate(old, patients=patients, seed=seed, replications=replications, workers=workers)
    rb = simulate(new, patients=patients, seed=seed, replications=replications, workers=workers)
    return compare_sides(side_from_run(ra, f"{old.name} ({old.source_path or 'old'})"),
                         side_from_run(rb, f"{new.name} ({new.source_path or 'new'})"),
                         seed=seed, patients=patients, replications=replications, fail_if=fail_if)


def diff_against_snapshot(snapshot: dict[str, Any], new: Any, *, workers: int = 1,
                          fail_if: list[str] | None = None) -> DiffReport:
    """Run ``new`` with the snapshot's seed, patients and replications and compare it with the snapshot."""
    from ..analysis.runner import simulate

    if fail_if:
        for e in fail_if:
            parse_fail_if(e)
    seed, patients, reps = int(snapshot["seed"]), int(snapshot["patients"]), int(snapshot["replications"])
    size = None if new.population is not None else patients  # an open population brings its own patients in
    rb = simulate(new, patients=size, seed=seed, replications=reps, workers=workers)
    return compare_sides(side_from_snapshot(snapshot), side_from_run(rb, f"{new.name} ({new.source_path or 'new'})"),
                         seed=seed, patients=patients, replications=reps, fail_if=fail_if)
