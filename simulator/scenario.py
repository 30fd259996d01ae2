"""Scenarios: a cohort, a policy, a horizon, specialist capacity, patients (a closed cohort) or an open
population, replications and a seed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from .engine.clinic import CapacitySpec
from .inputs.errors import InputError
from .inputs.schema import Strict, parse_model, read_yaml
from .model.overrides import validate_overrides
from .model.policy import Policy
from .population.arrivals import PopulationSpec
from .population.cohort_spec import CohortSpec, load_cohort_spec

SpecialistCapacity = CapacitySpec
"""P9: pain-clinic capacity as a rate (see :mod:`simulator.engine.clinic`)."""


MAX_PATIENTS = 200_000
"""Most patients per replication: about 5 kB each in memory while a run is assembled (about 1 GB here).
For a larger sample use replications (up to MAX_PATIENT_REPLICATIONS in one run), or several runs with
different seeds (README, "Large cohorts")."""
MAX_PATIENT_REPLICATIONS = 1_000_000
"""Most patients x replications in one run (all replications' events are held together, about 5 GB)."""
MAX_NAME = 120
"""Longest scenario, policy or cohort name (characters): a label for tables, reports and folder names."""
MAX_TEXT = 10_000
"""Longest description or rationale (characters)."""


def check_label(v: str) -> str:
    """A name is a one-line label: no control characters (newlines, tabs, escapes), not blank."""
    if not v.strip():
        raise ValueError("the name is blank; give a short label such as 'guideline'")
    bad = next((c for c in v if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"the name contains the control character {bad!r}; write it on one line without "
                         "control characters")
    return v


class Scenario(Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME,
                      description="a label for tables and reports (never a path; folder names are made from it)")
    description: str = Field("", max_length=MAX_TEXT)
    rationale: str = Field("", max_length=MAX_TEXT)
    cohort: str = Field(max_length=4000,
                        description="path of the cohort YAML, relative to the scenario file, or a packaged "
                                    "cohort name such as mixed-primary-care")
    patients: int = Field(2000, ge=1, le=MAX_PATIENTS, description="patients per replication")
    replications: int = Field(1, ge=1, le=1000)
    seed: int = Field(1, ge=0, le=2**63 - 1)
    horizon_days: int = Field(730, ge=1, le=36500, description="days")
    specialist: CapacitySpec = CapacitySpec()
    population: PopulationSpec | None = Field(
        None, description="an open population (patients enter over time); absent: a closed cohort of `patients`")
    policy: Policy = Policy()
    clinical_overrides: dict[str, float] = Field(
        default_factory=dict, max_length=500, description="dotted path into clinical.yaml -> value (see simulator/model/overrides.py)")
    # Set by the loader, not by the user:
    source_path: str = Field("", exclude=True)
    cohort_spec: CohortSpec | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _label(cls, v: str) -> str:
        return check_label(v)

    @field_validator("cohort")
    @classmethod
    def _cohort_named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the cohort is blank; name a cohort file (relative to the scenario file) or a packaged "
                             "cohort such as mixed-primary-care")
        return v

    @field_validator("clinical_overrides")
    @classmethod
    def _overrides_valid(cls, v: dict[str, float]) -> dict[str, float]:
        return validate_overrides(v)

    @model_validator(mode="after")
    def _size(self) -> Scenario:
        if self.population is not None:  # an open population: the patients expected to enter
            pop = self.population
            n = pop.prevalent + pop.expected_arrivals(0.0, float(self.horizon_days))
            if n > MAX_PATIENTS:
                raise ValueError(f"the open population would bring about {n:,.0f} patients per replication, above "
                                 f"the {MAX_PATIENTS:,} one replication holds; lower population.size or the incidence, "
                                 "or shorten horizon_days (README, Large cohorts)")
            total = n * self.replications
        else:
            total = self.patients * self.replications
        if total > MAX_PATIENT_REPLICATIONS:
            raise ValueError(f"patients x replications is {total:,.0f}, above the {MAX_PATIENT_REPLICATIONS:,} one run "
                             "holds in memory; use fewer replications, or several runs with different seeds "
                             "(README, Large cohorts)")
        return self

    @model_validator(mode="after")
    def _open_capacity(self) -> Scenario:
        if self.population is not None and self.specialist.slots_per_week_per_100k is None:
            raise ValueError("an open population (population:) needs specialist.slots_per_week_per_100k, the "
                             "clinic's consults per week per 100,000 people served; add it, e.g. 1.5")
        if self.population is not None and self.population.warmup_days >= self.horizon_days:
            raise ValueError(f"population.warmup_days ({self.population.warmup_days:g}) must be shorter than "
                             f"horizon_days ({self.horizon_days}); shorten the warm-up or lengthen the run")
        return self

    def with_overrides(self, **kw: object) -> Scenario:
        """A copy with run-time overrides (``patients``, ``seed``, ``replications``...), re-validated.

        Raises :class:`~simulator.inputs.errors.InputError` for ``patients`` on an open population (its
        ``population`` sets who enters; an option that would do nothing is an error, README)."""
        if kw.get("patients") is not None and self.population is not None:
            raise InputError(
                f"--patients does not apply to an open population: scenario '{self.name}' brings its patients in "
                f"over the run from its population block (population.size, the incidence, population.prevalent), "
                f"so --patients {kw['patients']} would be ignored", file=self.source_path or None, field="--patients",
                fix="leave out --patients; to simulate fewer or more patients, change population.size (or the "
                    "incidence, or horizon_days) in the scenario file")
        data = self.model_dump(exclude={"source_path", "cohort_spec"})
        data.update({k: v for k, v in kw.items() if v is not None})
        new = parse_model(data, Scenario, self.source_path or "command line")
        return new.model_copy(update={"source_path": self.source_path, "cohort_spec": self.cohort_spec})

    def hash(self) -> str:
        """Hash of everything that determines the results (scenario, policy, cohort spec)."""
        payload = {"scenario": self.model_dump(mode="json", exclude={"source_path", "cohort_spec"}),
                   "cohort": self.cohort_spec.model_dump(mode="json") if self.cohort_spec else None}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def policy_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.policy.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def cohort_hash(self) -> str:
        if self.cohort_spec is None:
            return ""
        return hashlib.sha256(json.dumps(self.cohort_spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (or a packaged scenario name) and the cohort it names."""
    from .inputs.packaged import resolve_cohort, resolve_scenario

    path = resolve_scenario(str(path))
    data = read_yaml(path)
    scenario = parse_model(data, Scenario, str(path))
    cohort_path = resolve_cohort(scenario.cohort, path.parent, file=str(path), field="cohort")
    spec = load_cohort_spec(cohort_path)
    return scenario.model_copy(update={"source_path": str(path), "cohort_spec": spec})
