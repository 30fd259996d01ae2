"""Every numeric input is validated at the edge (issue 11 item 4): finite, in range, with units.

A walker lists every numeric field of the scenario (with its policy and specialist capacity), the cohort,
the clinical overrides and the packaged clinical data (clinical.yaml, drugs.yaml), from the pydantic models
and the shipped files; each field is fed NaN, an infinity and a negative value (for the few fields that may
be negative, a value far below their range). Scenario and cohort cases go through the CLI and must exit 2
with one paragraph naming the file and the field; packaged-data cases go through the same loader and must
raise the same InputError naming the field. The walker reads the models, not the validation code, so a new
numeric field without a bound makes this test fail.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from simulator.cli import main
from simulator.inputs.errors import InputError
from simulator.inputs.schema import parse_model, read_yaml
from simulator.model.catalog import Catalog
from simulator.model.clinical import ClinicalModel, load_clinical
from simulator.model.overrides import _kind
from simulator.population.cohort_spec import CohortSpec
from simulator.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
COHORT = ROOT / "cohorts" / "mixed-primary-care.yaml"
DATA = ROOT / "simulator" / "data"
SIGNED = {("comorbidities", "*", "slope_per_decade"), ("renal", "shift_by_etiology", "*")}
"""Fields that may be negative (a log-odds slope, a shift in mL/min): fed a value far below their range."""
DICT_KEYS = {"target_doses": "pregabalin", "start_doses": "pregabalin", "by_etiology": "diabetic_neuropathy",
             "shift_by_etiology": "diabetic_neuropathy", "odds_ratio_by_etiology": "diabetic_neuropathy"}
BAD = {"nan": float("nan"), "inf": float("inf"), "negative": -1.0}
KINDS = ["nan", "negative", pytest.param("inf", marks=pytest.mark.slow)]
"""NaN and infinity go through the same finite-number check, so the default suite feeds every field NaN and
a negative value (the range check); ``-m slow`` adds infinity on every field."""


def _strip(ann: Any) -> Any:
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        numbers = [a for a in args if _strip(a) in (int, float)]
        return models[0] if models else (float if numbers else args[0])
    return ann


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def numeric_paths(model: type[BaseModel], doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every numeric leaf of ``model``: fields present in ``doc`` and defaulted ones, dict values, list items."""
    out: list[tuple] = []
    doc = doc if isinstance(doc, dict) else {}
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        key = f.alias or name
        out.extend(_paths(f.annotation, doc.get(key), prefix + (key,)))
    return out


def _paths(ann: Any, value: Any, path: tuple) -> list[tuple]:
    raw = ann
    ann = _strip(ann)
    if ann in (int, float):
        return [path]
    if _is_model(ann):
        if typing.get_origin(_strip_annotated(raw)) in (typing.Union, types.UnionType) and isinstance(value, dict):
            options = [a for a in typing.get_args(_strip_annotated(raw)) if _is_model(a)]
            ann = next((a for a in options if set(value) <= set(a.model_fields) and
                        all(k in value for k, f in a.model_fields.items() if f.is_required())), ann)
        return numeric_paths(ann, value, path)
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is dict:
        keys = list(value) if isinstance(value, dict) and value else [DICT_KEYS.get(path[-1], "diabetic_neuropathy")]
        return [p for k in keys for p in _paths(args[1], (value or {}).get(k), path + (k,))]
    if origin is list and isinstance(value, list):
        item = args[0]
        if typing.get_origin(_strip(item)) is tuple:
            return [path + (i, j) for i in range(len(value)) for j in range(2)]
        return [p for i, v in enumerate(value) for p in _paths(item, v, path + (i,))]
    return []


def _strip_annotated(ann: Any) -> Any:
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _copy(node: Any) -> Any:
    """A deep copy that does not keep YAML aliases shared (so one mutation changes one field)."""
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_copy(v) for v in node]
    return node


def _set(doc: dict, path: tuple, value: Any) -> dict:
    doc = _copy(doc)
    node: Any = doc
    for k in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(k, {})
        else:
            node = node[k]
    node[path[-1]] = value
    return doc


def _present(doc: Any, path: tuple) -> bool:
    for k in path:
        if isinstance(doc, dict) and k in doc or isinstance(doc, list) and isinstance(k, int) and k < len(doc):
            doc = doc[k]
        else:
            return False
    return True


def _signed(path: tuple) -> bool:
    return any(len(p) == len(path) and all(a in ("*", b) for a, b in zip(p, path, strict=True)) for p in SIGNED)


def _bad(kind: str, path: tuple) -> float:
    return -1e6 if kind == "negative" and _signed(path) else BAD[kind]


def _shown(path: tuple) -> str:
    return ".".join(str(p) for p in path)


SCENARIO = {"name": "numbers", "cohort": str(COHORT), "patients": 20, "policy": {"name": "p"}}
PROTOCOL = {**SCENARIO, "policy": {"protocol": {"steps": [
    {"drug": "gabapentin", "dose": 1200, "weeks": 6, "next_if_nrs_above": 3, "action": "add"},
    {"drug": "nortriptyline", "dose": "target", "weeks": 10}]}}}
POPULATION = {**SCENARIO, "horizon_days": 400, "population": {
    "size": 20000, "incidence_per_100k": 200, "incidence_by_year": [200, 250], "prevalent": 5, "warmup_days": 100},
    "specialist": {"slots_per_week_per_100k": 0.6}}
SCENARIO_PATHS = sorted({p for p in numeric_paths(Scenario, SCENARIO) + numeric_paths(Scenario, PROTOCOL)
                         + numeric_paths(Scenario, POPULATION) if p[0] != "clinical_overrides"}, key=str)
COHORT_DOC = read_yaml(COHORT)
COHORT_PATHS = numeric_paths(CohortSpec, COHORT_DOC)


def _clinical_override_paths() -> list[str]:
    out = []

    def walk(node: Any, path: str) -> None:
        if _kind(node) != "group":
            out.append(path)
            return
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("unit", "source", "tag"):
                    walk(v, f"{path}.{k}".strip("."))

    walk(load_clinical().model_dump(mode="python"), "")
    return out


OVERRIDE_PATHS = _clinical_override_paths()


def _field_or_container(path: tuple, output: str) -> str:
    """The field's path, or (for an item of a mapping or list checked as a whole) its container's path."""
    text = " ".join(output.split())
    return _shown(path) if _shown(path) in text or len(path) < 2 else _shown(path[:-1])


def _cli(args: list[str]):
    return CliRunner().invoke(main, args)


def _assert_refused(res: Any, file: Path, field: str) -> None:
    text = " ".join(res.output.split())
    assert res.exit_code == 2, (field, res.output)
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    assert str(file) in res.output.replace("\n", ""), (field, res.output)
    assert field in text, (field, res.output)
    assert res.output.count("Error") == 1 and "Fix:" in text


def test_the_walker_finds_the_numeric_fields() -> None:
    """The walker is not vacuous: it reaches nested policy, protocol, by-etiology and dose-curve numbers."""
    shown = {_shown(p) for p in SCENARIO_PATHS}
    assert {"patients", "specialist.slots_per_week_per_1000", "policy.target_doses.pregabalin",
            "policy.protocol.steps.0.dose", "policy.strong_opioid.max_trial_days", "policy.response.relief_max_nrs",
            "policy.topical_preferred.crcl_below", "policy.trial_days.snri"} <= shown
    cohort = {_shown(p) for p in COHORT_PATHS}
    assert {"age.by_etiology.diabetic_neuropathy.mean", "renal.crcl_at_ref_age", "comorbidities.recent_mi.slope_per_decade",
            "etiology.lumbosacral_radiculopathy", "baseline_nrs.min"} <= cohort
    assert len(OVERRIDE_PATHS) > 80 and "drugs.pregabalin.responder_prob" in OVERRIDE_PATHS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", SCENARIO_PATHS, ids=_shown)
def test_every_scenario_number_is_checked(tmp_path: Path, path: tuple, kind: str) -> None:
    """NaN, inf and a negative value in any scenario or policy number: exit 2 naming file and field."""
    base = PROTOCOL if "protocol" in path else POPULATION if path[0] in ("population", "specialist") else SCENARIO
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_set(base, path, _bad(kind, path))))
    res = _cli(["run", str(f), "--out", str(tmp_path / "out"), "--quiet", "--no-report"])
    _assert_refused(res, f, _field_or_container(path, res.output))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", COHORT_PATHS, ids=_shown)
def test_every_cohort_number_is_checked(tmp_path: Path, path: tuple, kind: str) -> None:
    """NaN, inf and a negative value in any cohort number: exit 2 naming the cohort file and the field."""
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(_set(COHORT_DOC, path, _bad(kind, path))))
    _assert_refused(_cli(["cohort", str(f), "--patients", "3"]), f, _shown(path))


@pytest.mark.parametrize("kind", KINDS)
def test_every_clinical_override_is_checked(tmp_path: Path, kind: str) -> None:
    """NaN, inf and a negative value (a negative scale or replacement) for every clinical override path:
    exit 2 naming the scenario file and the overridden parameter."""
    for path in OVERRIDE_PATHS:
        f = tmp_path / "s.yaml"
        f.write_text(yaml.safe_dump({**SCENARIO, "clinical_overrides": {path: BAD[kind]}}))
        res = _cli(["run", str(f), "--out", str(tmp_path / "out"), "--quiet", "--no-report"])
        if path == "responsiveness_correlation" and kind == "negative":
            assert res.exit_code == 0 or res.exit_code == 2  # a correlation may be negative
            continue
        _assert_refused(res, f, "clinical_overrides")
        assert path.split(".")[-1] in res.output.replace("\n", ""), (path, res.output)


def _packaged_cases(model: type[BaseModel], name: str) -> list[tuple[str, tuple, str]]:
    doc = read_yaml(DATA / name)
    return [(name, p, k) for p in numeric_paths(model, doc) for k in sorted(BAD)]


PACKAGED = {"clinical.yaml": ClinicalModel, "drugs.yaml": Catalog}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_every_packaged_number_is_checked(name: str, kind: str) -> None:
    """NaN, inf and a negative value in any number of the packaged clinical data (clinical.yaml, drugs.yaml):
    the loader raises the input error naming the file and the field (the path to the parameter)."""
    model = PACKAGED[name]
    doc = read_yaml(DATA / name)
    paths = [p for p in numeric_paths(model, doc) if _present(doc, p[:-1])]  # the shipped file's numbers
    assert len(paths) > {"clinical.yaml": 300, "drugs.yaml": 40}[name], len(paths)
    parse_model(doc, model, name)  # the shipped file itself is valid
    for path in paths:
        value = _bad(kind, path)
        if kind == "negative" and path == ("responsiveness_correlation", "value"):
            value = -1.0  # a correlation may be negative, but not -1
        with pytest.raises(InputError) as err:
            parse_model(_set(doc, path, value), model, name)
        text = err.value.paragraph()
        # the parameter's group is named (checks across a group's values name the group)
        assert name in text and str(path[0]) in text, (path, kind, text)


def test_every_clinical_parameter_states_its_unit() -> None:
    """'With units': every parameter of clinical.yaml names its unit, which decides its allowed range."""
    missing: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and "value" in node and "source" in node:
            if not node.get("unit"):
                missing.append(path)
            return
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}".strip("."))

    walk(load_clinical().model_dump(mode="python"), "")
    assert missing == []
