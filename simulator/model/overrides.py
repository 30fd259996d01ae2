"""Clinical-parameter overrides for sensitivity analysis: ``clinical_overrides`` of a scenario.

A scenario may carry ``clinical_overrides: {dotted.path: number}``, where the path points into
``simulator/data/clinical.yaml``. The meaning of the number depends on what the path names:

* a **scalar parameter** (``combination_factor``, ``specialist.intervention_prob``, ...): the number
  **replaces** its value;
* a **dose curve** (``drugs.duloxetine.responder_prob``, ``drugs.pregabalin.adverse_events.dizziness.incidence``):
  the number is a **scale factor** that multiplies the value at every dose point;
* a **per-etiology parameter** (``nonspecific.placebo_r50``, ``drugs.pregabalin.etiology_modifier``):
  the number is a **scale factor** that multiplies every etiology's value and the default;
* one etiology of a per-etiology parameter (``nonspecific.placebo_r50.value.diabetic_neuropathy``)
  or the default (``....default``): the number **replaces** that one value.

The path must exist, and the resulting model is validated like the packaged one; in addition every
parameter whose unit is a probability or a fraction must stay within [0, 1]. Problems are
:class:`~simulator.inputs.errors.InputError` naming the path and the fix.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from ..inputs.errors import InputError
from .clinical import ClinicalModel, load_clinical
from .clinical_tables import ModelTables, compile_model

SEMANTICS = {"scalar": "replaces the value", "dose_curve": "multiplies every dose point",
             "per_etiology": "multiplies every etiology's value and the default", "leaf": "replaces the value"}


def _is_param(node: Any) -> bool:
    return isinstance(node, dict) and "value" in node and "source" in node


def _kind(node: Any) -> str:
    if not _is_param(node):
        return "leaf" if isinstance(node, int | float) and not isinstance(node, bool) else "group"
    v = node["value"]
    if isinstance(v, list):
        return "dose_curve"
    if isinstance(v, dict):
        return "per_etiology"
    return "scalar"


def describe(path: str, base: ClinicalModel | None = None) -> tuple[str, str]:
    """(kind, semantics) of an override path: what the number given for it will do."""
    data = (base or load_clinical()).model_dump(mode="python")
    node = _resolve(data, path)[0]
    kind = _kind(node)
    return kind, SEMANTICS.get(kind, "")


def _resolve(data: dict[str, Any], path: str) -> tuple[Any, Any, str]:
    """(node, parent, key) for a dotted path, or InputError naming the first missing part."""
    parent: Any = None
    key = ""
    node: Any = data
    done: list[str] = []
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            options = ", ".join(sorted(node)) if isinstance(node, dict) else "(none: this is a number)"
            where = ".".join(done) or "the top level"
            raise InputError(f"the clinical parameter path '{path}' does not exist: '{part}' is not under {where}",
                             field=f"clinical_overrides.{path}", fix=f"use one of: {options}")
        parent, key, node = node, part, node[part]
        done.append(part)
    return node, parent, key


def _apply_one(data: dict[str, Any], path: str, value: float) -> None:
    node, parent, key = _resolve(data, path)
    kind = _kind(node)
    if kind == "group":
        raise InputError(f"'{path}' names a group of parameters, not one parameter",
                         field=f"clinical_overrides.{path}",
                         fix=f"name one of its parameters: {', '.join(sorted(node)) if isinstance(node, dict) else ''}")
    if kind == "leaf":
        parent[key] = float(value)
    elif kind == "scalar":
        node["value"] = float(value)
    elif kind == "dose_curve":
        node["value"] = [(d, v * value) for d, v in node["value"]]
    else:  # per_etiology
        node["value"] = {e: v * value for e, v in node["value"].items()}
        node["default"] = node["default"] * value


def _check_units(data: Any, path: str = "") -> None:
    """Every parameter whose unit is a probability or a fraction stays within [0, 1]."""
    if _is_param(data):
        unit = str(data.get("unit", ""))
        if unit.startswith("probability") or unit == "fraction":
            v = data["value"]
            values = ([p for _, p in v] if isinstance(v, list) else
                      [*v.values(), data.get("default", 0.0)] if isinstance(v, dict) else [v])
            bad = [x for x in values if not 0.0 <= float(x) <= 1.0]
            if bad:
                raise InputError(f"the override makes '{path}' ({unit}) {bad[0]:g}, outside [0, 1]",
                                 field=f"clinical_overrides.{path}",
                                 fix="use a smaller scale factor or value so every probability stays within [0, 1]")
        return
    if isinstance(data, dict):
        for k, v in data.items():
            _check_units(v, f"{path}.{k}".strip("."))


def apply_overrides(overrides: Mapping[str, float], base: ClinicalModel | None = None) -> ClinicalModel:
    """The clinical model with ``overrides`` applied and validated (see the module docstring)."""
    base = base or load_clinical()
    if not overrides:
        return base
    data = copy.deepcopy(base.model_dump(mode="python"))
    for path, value in overrides.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise InputError(f"the override for '{path}' must be a finite number (got {value!r})",
                             field=f"clinical_overrides.{path}", fix="give a finite number")
        _apply_one(data, path, float(value))
    _check_units(data)
    try:
        return ClinicalModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err.get("msg", "invalid value").removeprefix("Value error, ").split("; ")[0]
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "value")
        raise InputError(f"the overrides make the clinical parameter '{loc}' invalid: {msg}",
                         field=f"clinical_overrides.{loc}" if loc else "clinical_overrides",
                         fix="choose override values that keep every parameter in its range") from None


@lru_cache(maxsize=16)
def _compiled(key: str) -> ModelTables:
    return compile_model(apply_overrides(json.loads(key)))


def model_tables(overrides: Mapping[str, float]) -> ModelTables:
    """Compiled engine tables for the packaged model with ``overrides`` applied (cached)."""
    if not overrides:
        return compile_model()
    return _compiled(json.dumps(dict(overrides), sort_keys=True))


def validate_overrides(overrides: Mapping[str, float]) -> dict[str, float]:
    """Check paths and the resulting model; raise ValueError (for pydantic) with the InputError's text."""
    try:
        apply_overrides(overrides)
    except InputError as exc:
        text = exc.message + (f"; {exc.fix}" if exc.fix else "")
        raise ValueError(text) from None
    return dict(overrides)
