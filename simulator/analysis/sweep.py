"""Sensitivity analysis: a sweep over one parameter, and one-way (tornado) sensitivity over several.

A parameter is a dotted path into the scenario (``policy.visit_interval_days``,
``specialist.slots_per_week_per_1000``, ``policy.on_partial``) or, prefixed with ``clinical.``, into the
clinical model (``clinical.combination_factor``, ``clinical.drugs.duloxetine.responder_prob``), which is
applied through the scenario's ``clinical_overrides`` (see :mod:`simulator.model.overrides` for what the
number means: a scalar is replaced, a dose curve or per-etiology parameter is multiplied).

Every setting is simulated with the same patients, seed and replications (common random numbers), so
differences between settings are estimated from paired replications.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from ..inputs.errors import InputError
from ..inputs.schema import Strict, parse_model, read_yaml
from ..model.overrides import describe
from ..scenario import Scenario
from .compare import analyse, replication_metrics
from .metrics import kind, label, unit
from .runner import RunResult, simulate_many
from .stats import metric_difference, metric_level, replications_note
from .summary import flat_metrics

DEFAULT_METRIC = "time_to_relief.rmst_days"
SWEEP_METRICS = ("time_to_relief.rmst_days", "time_to_relief.relieved_by_day.84", "time_to_relief.relieved_by_day.182",
                 "time_to_relief.relieved_by_day.365", "adverse_events.per_patient_year",
                 "pathway.reached.strong_opioid", "specialist.wait_days_median", "specialist.wait_days_p90",
                 "specialist.utilisation", "specialist.mean_queue_length_per_1000_patients",
                 "specialist.steady_state.wait_days_median", "specialist.steady_state.wait_days_p90",
                 "specialist.steady_state.utilisation",
                 "specialist.steady_state.mean_queue_length_per_100k_population")


def default_metric(param: str, scenario: Scenario) -> str:
    """The metric a sweep plots when none is named: for a clinic capacity sweep, the (steady-state) median
    wait, so waits are shown against capacity; otherwise :data:`DEFAULT_METRIC`."""
    if not param.startswith("specialist."):
        return DEFAULT_METRIC
    return ("specialist.steady_state.wait_days_median" if scenario.population is not None
            else "specialist.wait_days_median")


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it ('42' -> 42, '0.5' -> 0.5, 'switch' -> 'switch')."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def semantics(path: str) -> str:
    """What a value given for ``path`` means (replace or scale)."""
    if path.startswith("clinical."):
        kind, meaning = describe(path[len("clinical."):])
        return f"{path} is a {kind.replace('_', ' ')} parameter: the value given {meaning}."
    return f"{path} is a scenario setting: the value given replaces it."


def with_param(scenario: Scenario, path: str, value: Any, option: str = "--values") -> Scenario:
    """A copy of ``scenario`` with the parameter at ``path`` set to ``value``, validated; a value the scenario
    refuses is an InputError naming ``option`` (where the value came from), not the scenario file."""
    data = scenario.model_dump(mode="json", exclude={"source_path", "cohort_spec"})
    where = scenario.source_path or "command line"
    if path.startswith("clinical."):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InputError(f"the value {value!r} for '{path}' is not a number", field="--values",
                             fix="give numbers for clinical parameters")
        data["clinical_overrides"] = {**data.get("clinical_overrides", {}), path[len("clinical."):]: float(value)}
    else:
        parts = path.split(".")
        node = data
        for i, p in enumerate(parts):
            if not isinstance(node, dict) or p not in node:
                known = ", ".join(sorted(node)) if isinstance(node, dict) else "(none)"
                raise InputError(f"the scenario has no parameter '{path}' ('{p}' is unknown)", field="--param",
                                 fix=f"use a dotted path into the scenario; at '{'.'.join(parts[:i]) or 'top'}' the "
                                 f"keys are: {known}; prefix clinical parameters with 'clinical.'")
            if i == len(parts) - 1:
                if isinstance(node[p], dict):
                    raise InputError(f"'{path}' is a group of settings, not one setting", field="--param",
                                     fix=f"name one of: {', '.join(sorted(node[p]))}")
                node[p] = value
            else:
                node = node[p]
    try:
        new = parse_model(data, Scenario, where)
    except InputError as exc:
        raise InputError(f"the value {value!r} for '{path}' is refused ({exc.message})", field=option,
                         fix=exc.fix) from None
    return new.model_copy(update={"source_path": scenario.source_path, "cohort_spec": scenario.cohort_spec})


def _check_common(patients: int | None, replications: int) -> None:
    if replications < 2:
        raise InputError(f"sensitivity analysis needs at least 2 replications for confidence intervals "
                         f"(got {replications})", field="--replications", fix="use --replications 2 or more")
    if patients is not None and patients < 1:
        raise InputError(f"patients must be at least 1 (got {patients})", field="--patients", fix="use a whole number >= 1")




def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def sweep(scenario: Scenario, param: str, values: Sequence[Any], *, metric: str = DEFAULT_METRIC,
          patients: int | None = None, replications: int = 4, seed: int | None = None, workers: int = 1,
          progress: Callable[[float], None] | None = None, command: str = "") -> tuple[dict[str, Any], list[RunResult]]:
    """Run ``scenario`` at each value of ``param``; return (sweep.json content, the runs)."""
    _check_common(patients, replications)
    if not values:
        raise InputError("no values to sweep", field="--values", fix="give comma-separated values, e.g. 7,14,28")
    variants = []
    for v in values:
        sc = with_param(scenario, param, v)
        variants.append(sc.model_copy(update={"name": f"{scenario.name}[{param}={v}]"}))
    runs = simulate_many(variants, patients=patients, replications=replications, seed=seed, workers=workers,
                         progress=progress, command=command)
    metrics_df, diffs_df = analyse(runs)
    shown = [metric, *[m for m in SWEEP_METRICS if m != metric]]
    rows = []
    for v, r in zip(values, runs, strict=True):
        sub = metrics_df[metrics_df["scenario"] == r.scenario.name].set_index("metric")
        for m in shown:
            if m not in sub.index:
                continue
            row: dict[str, Any] = {"value": v, "metric": m, "label": label(m), "unit": unit(m),
                                   "mean": _clean(sub.loc[m, "mean"]),
                                   "ci95_lo": _clean(sub.loc[m, "lo"]), "ci95_hi": _clean(sub.loc[m, "hi"])}
            d = diffs_df[(diffs_df["scenario"] == r.scenario.name) & (diffs_df["metric"] == m)]
            zero = 0.0 if row["mean"] is not None else None  # the first value against itself
            row["diff_vs_first"] = _clean(d["diff"].iloc[0]) if len(d) else zero
            row["paired_lo"] = _clean(d["paired_lo"].iloc[0]) if len(d) else zero
            row["paired_hi"] = _clean(d["paired_hi"].iloc[0]) if len(d) else zero
            row["note"] = sub.loc[m, "note"]
            row["diff_note"] = d["note"].iloc[0] if len(d) else ""
            rows.append(row)
    data = {"schema_version": 2, "kind": "sweep", "scenario": scenario.name, "description": scenario.description,
            "rationale": scenario.rationale, "param": param, "values": list(values), "metric": metric,
            "semantics": semantics(param), "patients": runs[0].scenario.patients, "replications": replications,
            "seed": runs[0].scenario.seed, "command": command, "ci_note": replications_note(replications),
            "params": [{"path": param, "values": list(values)}], "rows": rows,
            "base_manifest": runs[0].manifest,
            "not_for_clinical_use": "painpath is for policy analysis and teaching; it is not for treating patients."}
    return data, runs


class TornadoParam(Strict):
    path: str
    low: float | int | str | bool
    high: float | int | str | bool
    label: str = Field("", max_length=120)


MAX_TORNADO_PARAMS = 50
"""Most parameters in one tornado (each costs two simulations)."""


def load_tornado_params(path: str | Path) -> list[TornadoParam]:
    """Read a YAML list of {path, low, high, label}."""
    raw = read_yaml(path)
    if not isinstance(raw, list) or not raw:
        raise InputError("expected a non-empty YAML list of {path, low, high, label}", file=str(path),
                         fix="write one '- path: ...' entry per parameter, each with low and high")
    if len(raw) > MAX_TORNADO_PARAMS:
        raise InputError(f"{len(raw)} parameters listed, more than the {MAX_TORNADO_PARAMS} a tornado takes",
                         file=str(path), fix=f"list at most {MAX_TORNADO_PARAMS} parameters")
    return [parse_model(item, TornadoParam, str(path), prefix=f"[{i}]") for i, item in enumerate(raw)]


def tornado(scenario: Scenario, params: Sequence[TornadoParam], *, metric: str = DEFAULT_METRIC,
            patients: int | None = None, replications: int = 4, seed: int | None = None, workers: int = 1,
            progress: Callable[[float], None] | None = None, command: str = "") -> tuple[dict[str, Any], RunResult]:
    """One-way sensitivity: the base run and each parameter at its low and its high value.

    Returns (tornado.json content, the base run)."""
    _check_common(patients, replications)
    variants = [scenario]
    for p in params:  # validate everything before running anything
        variants.append(with_param(scenario, p.path, p.low, "--params").model_copy(update={"name": f"{p.path}=low"}))
        variants.append(with_param(scenario, p.path, p.high, "--params").model_copy(update={"name": f"{p.path}=high"}))
    runs = simulate_many(variants, patients=patients, replications=replications, seed=seed, workers=workers,
                         progress=progress, command=command)
    frames = [replication_metrics(r) for r in runs]
    base = frames[0]
    if metric not in base.columns:
        raise InputError(f"unknown metric '{metric}'", field="--metric",
                         fix=f"use a flat summary metric such as {DEFAULT_METRIC}")
    pooled = [flat_metrics(r.summary).get(metric) for r in runs]

    def level(i: int) -> float:
        return metric_level(kind(metric), list(frames[i][metric]), pooled[i]).value if metric in frames[i] else math.nan

    def diff(i: int) -> tuple[float, float, float]:
        if metric not in frames[i]:
            return (math.nan,) * 3
        return metric_difference(kind(metric), list(frames[i][metric]), list(base[metric]), pooled[i], pooled[0])[:3]

    bmean = level(0)
    rows = []
    for i, p in enumerate(params):
        lo_m, hi_m = level(1 + 2 * i), level(2 + 2 * i)
        dl, dh = diff(1 + 2 * i), diff(2 + 2 * i)
        rows.append({"label": p.label or p.path, "path": p.path, "low": p.low, "high": p.high,
                     "base": _clean(bmean), "at_low": _clean(lo_m), "at_high": _clean(hi_m),
                     "diff_low": _clean(dl[0]), "diff_low_ci95": [_clean(dl[1]), _clean(dl[2])],
                     "diff_high": _clean(dh[0]), "diff_high_ci95": [_clean(dh[1]), _clean(dh[2])],
                     "swing": _clean(abs((hi_m if math.isfinite(hi_m) else bmean) - (lo_m if math.isfinite(lo_m) else bmean)))})
    rows.sort(key=lambda r: -(r["swing"] or 0.0))
    data = {"schema_version": 1, "kind": "tornado", "scenario": scenario.name, "description": scenario.description,
            "rationale": scenario.rationale, "metric": metric, "base": _clean(bmean),
            "semantics": " ".join(semantics(p.path) for p in params),
            "patients": runs[0].scenario.patients, "replications": replications, "seed": runs[0].scenario.seed,
            "command": command, "ci_note": replications_note(replications),
            "params": [{"path": p.path, "values": [p.low, p.high]} for p in params],
            "rows": rows, "base_manifest": runs[0].manifest,
            "not_for_clinical_use": "painpath is for policy analysis and teaching; it is not for treating patients."}
    return data, runs[0]


