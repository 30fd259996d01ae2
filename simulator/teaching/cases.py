"""Teaching cases: curated patients as data files (``simulator/data/cases/*.yaml``).

A case is one patient described with the fields of :class:`simulator.population.cohort.Cohort`, a title, its
teaching points (each with its rule and the tutor answers that reach it), the rule ids its journey must show (``rules``), related rules the discussion touches
(``related``), the seed sources, and the simulation ``seed`` chosen so the intended teaching path
actually happens (``tests/test_teach.py`` checks every case's journey contains its ``rules``).

    case = load_case("arrhythmia-no-tca")      # a packaged name, or a path to a YAML file
    cohort = case.to_cohort()                  # a one-patient Cohort
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ..inputs.errors import InputError
from ..inputs.schema import Strict, load_model, require_known
from ..model.policy import Policy
from ..model.rules import SEED_FILES, load_rules
from ..population.cohort import Cohort
from ..population.cohort_spec import ETIOLOGIES, MISUSE_RISK_LEVELS

CASES_DIR = Path(__file__).resolve().parents[1] / "data" / "cases"

Flag = Literal["hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "glaucoma",
               "orthostatic_hypotension", "ssri_use", "depression"]
FLAGS: tuple[str, ...] = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease",
                          "glaucoma", "orthostatic_hypotension", "ssri_use", "depression")


class CasePatient(Strict):
    """One patient, with the attributes of :class:`simulator.population.cohort.Cohort`."""

    age: float = Field(ge=18, le=110)
    sex: Literal["female", "male"]
    etiology: str
    baseline_nrs: float = Field(ge=4, le=10, description="average pain, NRS 0-10 (inclusion: 4 or more)")
    localized: bool = False
    allodynia: bool = False
    crcl: float = Field(ge=5, le=200, description="creatinine clearance, mL/min")
    comorbidities: list[Flag] = []
    misuse_risk: Literal["low", "moderate", "high"] = "low"

    @field_validator("etiology")
    @classmethod
    def _etiology(cls, v: str) -> str:
        require_known(v, ETIOLOGIES, "etiology")
        return v


class TeachingPoint(Strict):
    """One thing the case teaches, the rule it is about, and how a trainee reaches it.

    ``answers`` are tutor option keys (``start:nortriptyline``, ``add:venlafaxine``, ``raise:pregabalin``,
    ...) chosen in order from the first question; the guideline's choices follow. Empty: the guideline's
    own course shows it. ``tests/test_cases.py`` proves every point is reached: its ``rule`` appears in the
    course's event log or is the rule the tutor cites for one of those answers.
    """

    text: str = Field(min_length=1)
    rule: str
    answers: list[str] = []

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, v: str) -> str:
        if not load_rules().is_resolvable(v):
            raise ValueError(f"unknown rule id '{v}'; use ids of simulator/data/rules.yaml")
        return v


class Case(Strict):
    title: str = Field(min_length=1)
    teaching_points: list[TeachingPoint] = Field(min_length=1)
    rules: list[str] = Field(min_length=1, description="rule ids the journey must show")
    related: list[str] = Field(default_factory=list, description="rules the discussion touches (may not be events)")
    seeds: list[str] = Field(min_length=1)
    seed: int = Field(ge=0, description="simulation seed chosen so the teaching path happens")
    replication: int = Field(0, ge=0)
    horizon_days: int = Field(730, ge=1, le=3650)
    policy: Policy = Policy()
    patient: CasePatient
    name: str = Field("", exclude=True)

    @field_validator("rules", "related")
    @classmethod
    def _known_rules(cls, v: list[str]) -> list[str]:
        book = load_rules()
        for r in v:
            if not book.is_resolvable(r):
                raise ValueError(f"unknown rule id '{r}'; use ids of simulator/data/rules.yaml")
        return v

    @field_validator("seeds")
    @classmethod
    def _known_seeds(cls, v: list[str]) -> list[str]:
        require_known(v, SEED_FILES, "seed id")
        return v

    @property
    def teaching_point(self) -> str:
        """All teaching points as one paragraph."""
        return " ".join(tp.text.strip() for tp in self.teaching_points)

    def to_cohort(self) -> Cohort:
        """A one-patient Cohort with the same field names and dtypes as generated cohorts."""
        p = self.patient
        flags = {f: np.array([f in p.comorbidities], dtype=bool) for f in FLAGS}
        return Cohort(age=np.array([p.age], dtype=np.float64), sex=np.array([p.sex == "male"], dtype=np.int8),
                      etiology=np.array([ETIOLOGIES.index(p.etiology)], dtype=np.int8),
                      baseline_nrs=np.array([p.baseline_nrs], dtype=np.float64),
                      localized=np.array([p.localized], dtype=bool),
                      allodynia=np.array([p.allodynia and p.localized], dtype=bool),
                      crcl=np.array([p.crcl], dtype=np.float64),
                      misuse_risk=np.array([MISUSE_RISK_LEVELS.index(p.misuse_risk)], dtype=np.int8), **flags)


def case_names() -> list[str]:
    """Names of the packaged cases (file stems), sorted."""
    return sorted(p.stem for p in CASES_DIR.glob("*.yaml"))


def case_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    packaged = CASES_DIR / f"{name_or_path}.yaml"
    if packaged.exists():
        return packaged
    raise InputError(f"no teaching case '{name_or_path}'", field="--case",
                     fix=f"give a case YAML file or one of: {', '.join(case_names())}")


def load_case(name_or_path: str | Path) -> Case:
    """Load a case by packaged name or path; InputError names the file, field and fix."""
    path = case_path(name_or_path)
    case = load_model(path, Case)
    return case.model_copy(update={"name": path.stem})


def all_cases() -> list[Case]:
    return [load_case(n) for n in case_names()]
