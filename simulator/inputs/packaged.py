"""Cohorts, scenarios and trial cohorts shipped with painpath, found by name.

In a checkout they are the top-level ``cohorts/`` (with ``cohorts/trials/``) and ``scenarios/`` folders,
where users expect them. A wheel ships the same folders inside the package (``simulator/cohorts``,
``simulator/scenarios``: ``pyproject.toml`` maps them with ``package-dir``), with the same relative layout,
so a packaged scenario's ``cohort: ../cohorts/mixed-primary-care.yaml`` resolves in both places.

Names resolve as follows: a scenario's ``cohort: mixed-primary-care`` (a bare name, no folder and no
``.yaml``) is the packaged cohort of that name (``trials/dpn`` a trial cohort); ``painpath run guideline``
is the packaged scenario when no file ``guideline`` exists. A path that exists always wins.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from .errors import InputError

_NAME = re.compile(r"^(trials/)?[A-Za-z0-9][A-Za-z0-9_.-]*$")


def data_root() -> Path:
    """The folder holding ``cohorts/`` and ``scenarios/``: inside the installed package, else the checkout."""
    inside = Path(str(resources.files("simulator")))
    if (inside / "cohorts").is_dir():
        return inside
    return Path(__file__).resolve().parents[2]


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def cohort_names() -> list[str]:
    """Packaged cohort names (trial cohorts as ``trials/NAME``)."""
    root = data_root() / "cohorts"
    return _names(root) + [f"trials/{n}" for n in _names(root / "trials")]


def scenario_names() -> list[str]:
    """Packaged scenario names."""
    return _names(data_root() / "scenarios")


def is_bare_name(value: str) -> bool:
    """True for a name such as ``guideline`` or ``trials/dpn`` (no other folder, no .yaml suffix)."""
    return bool(_NAME.match(value)) and not value.endswith((".yaml", ".yml"))


def packaged_cohort(name: str, *, file: str | None = None, field: str | None = "cohort") -> Path:
    """The path of the packaged cohort ``name``; InputError listing the names when there is none."""
    path = data_root() / "cohorts" / f"{name}.yaml"
    if not is_bare_name(name) or not path.is_file():
        raise InputError(f"there is no cohort file '{name}' and no packaged cohort of that name", file=file,
                         field=field, fix="give a path to a cohort YAML (relative to the scenario file) or a packaged "
                         f"cohort: {', '.join(cohort_names())}")
    return path


def packaged_scenario(name: str) -> Path | None:
    """The path of the packaged scenario ``name``, or None."""
    path = data_root() / "scenarios" / f"{name}.yaml"
    return path if is_bare_name(name) and path.is_file() else None


def resolve_cohort(value: str, base: Path | None = None, *, file: str | None = None,
                   field: str | None = "cohort") -> Path:
    """A cohort reference as a path: a file relative to ``base`` or the current folder, or a packaged name."""
    from .schema import check_path_text

    check_path_text(value, file=file, field=field)
    p = Path(value)
    candidates = [p] if p.is_absolute() else ([base / p] if base is not None else []) + [Path.cwd() / p]
    for c in candidates:
        if c.exists():
            if not c.is_file():
                kind = "a folder" if c.is_dir() else "not a regular file (a FIFO, a device or a socket)"
                raise InputError(f"the cohort '{value}' is {kind}", file=file, field=field,
                                 fix="name a cohort YAML file or a packaged cohort such as mixed-primary-care")
            return c
    if is_bare_name(value):
        return packaged_cohort(value, file=file, field=field)
    raise InputError(f"the cohort file '{value}' does not exist", file=file, field=field,
                     fix="give a path to a cohort YAML relative to the scenario file (e.g. "
                     f"../cohorts/mixed-primary-care.yaml) or a packaged cohort name: {', '.join(cohort_names())}")


def resolve_scenario(value: str) -> Path:
    """A scenario argument as a path: an existing file, else a packaged scenario name, else the value itself
    (whose reading then says what is wrong with it). A bare name that is neither: InputError listing the
    packaged scenarios."""
    p = Path(value)
    try:
        if p.exists():
            return p
    except OSError:
        return p
    found = packaged_scenario(value)
    if found is None and is_bare_name(value):
        raise InputError(f"there is no scenario file '{value}' and no packaged scenario of that name", file=value,
                         fix="give the path of a scenario YAML or a packaged scenario: " + ", ".join(scenario_names()))
    return found or p
