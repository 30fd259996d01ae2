"""Scenarios: a cohort, a policy, a horizon, specialist capacity, patients (a closed cohort) or an open
population, replications and a seed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from .arrivals import PopulationSpec
from .clinic import CapacitySpec
from .cohort import CohortSpec, load_cohort_spec
from .errors import InputError
from .overrides import validate_overrides
from .policy import Policy
from .schema import Strict, parse_model, read_yaml

SpecialistCapacity = CapacitySpec
"""P9: pain-clinic capacity as a rate (see :mod:`simulator.clinic`)."""


class Scenario(Strict):
    name: str
    description: str = ""
    rationale: str = ""
    cohort: str = Field(description="path of the cohort YAML, relative to the scenario file")
    patients: int = Field(2000, ge=1)
    replications: int = Field(1, ge=1, le=1000)
    seed: int = Field(1, ge=0)
    horizon_days: int = Field(730, ge=1, le=36500)
    specialist: CapacitySpec = CapacitySpec()
    population: PopulationSpec | None = Field(
        None, description="an open population (patients enter over time); absent: a closed cohort of `patients`")
    policy: Policy = Policy()
    clinical_overrides: dict[str, float] = Field(
        default_factory=dict, description="dotted path into clinical.yaml -> value (see simulator/overrides.py)")
    # Set by the loader, not by the user:
    source_path: str = Field("", exclude=True)
    cohort_spec: CohortSpec | None = Field(None, exclude=True)

    @field_validator("clinical_overrides")
    @classmethod
    def _overrides_valid(cls, v: dict[str, float]) -> dict[str, float]:
        return validate_overrides(v)

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
        """A copy with run-time overrides (``patients``, ``seed``, ``replications``...), re-validated."""
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
    """Read and validate a scenario file and the cohort it names."""
    path = Path(path)
    data = read_yaml(path)
    scenario = parse_model(data, Scenario, str(path))
    cohort_path = Path(scenario.cohort)
    if not cohort_path.is_absolute():
        candidates = [path.parent / cohort_path, Path.cwd() / cohort_path]
        cohort_path = next((c for c in candidates if c.exists()), candidates[0])
    if not cohort_path.exists():
        raise InputError(f"the cohort file '{scenario.cohort}' does not exist", file=str(path), field="cohort",
                         fix="give a path to a cohort YAML relative to the scenario file, e.g. ../cohorts/mixed-primary-care.yaml")
    spec = load_cohort_spec(cohort_path)
    return scenario.model_copy(update={"source_path": str(path), "cohort_spec": spec})
