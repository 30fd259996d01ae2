"""The drug catalogue: doses, titration, adjustments, contraindications, trial lengths.

The numbers live in ``simulator/data/drugs.yaml``; this module only describes and validates them.
Every drug names the source of each of its numbers (a seed id S000-S004, a citation from the
evidence file, or an explicit ``assumption:``). A number without a source is a load error.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..inputs.errors import InputError
from ..inputs.schema import Strict, load_model, require_known

DrugClass = Literal["gabapentinoid", "snri", "tca", "weak_opioid", "strong_opioid", "topical"]
FIRST_LINE_CLASSES: tuple[str, ...] = ("gabapentinoid", "snri", "tca")
ALL_CLASSES: tuple[str, ...] = ("gabapentinoid", "snri", "tca", "weak_opioid", "strong_opioid", "topical")

# Patient attributes a contraindication or caution may name (columns of the cohort table).
PATIENT_FLAGS: tuple[str, ...] = (
    "hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "glaucoma",
    "orthostatic_hypotension", "ssri_use", "depression", "hiv_neuropathy", "high_misuse_risk", "allodynia",
)
SafetyCheck = Literal["ecg", "serotonin_check", "misuse_screen", "treatment_agreement"]


class TitrationStep(Strict):
    day: int = Field(ge=0, description="days after the drug is started")
    dose: float = Field(gt=0, description="total daily dose from that day on")


class OlderAdult(Strict):
    min_age: float = Field(65, ge=0)
    titration_stretch: float = Field(1.0, ge=1.0, description="older adults' titration days are multiplied by this")
    max_dose: float | None = Field(None, gt=0)
    start_dose: float | None = Field(None, gt=0, description="older adults' first daily dose (P2: start lower)")


class RenalExposure(Strict):
    """A creatinine-clearance band in which the whole schedule is scaled (P5.renal_dose)."""

    crcl_below: float = Field(gt=0, description="applies when creatinine clearance (mL/min) is below this")
    factor: float = Field(gt=0, le=1, description="every dose of the schedule, and the maximum, times this")


class Taper(Strict):
    """How a drug is stopped (P5.taper_step): fractions of the dose before the taper, one per interval."""

    steps: list[float] = Field(min_length=1, max_length=12)
    interval_days: int = Field(ge=1, le=56)
    after_days: int = Field(ge=0, le=365, description="the drug is tapered only after it was taken this many days; "
                            "a shorter course stops at once (P5.taper_short_use: discontinuation symptoms follow "
                            "sustained use)")

    @field_validator("steps")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v) or v != sorted(v, reverse=True) or len(set(v)) != len(v):
            raise ValueError("taper steps are fractions of the dose strictly between 0 and 1, strictly decreasing "
                             "(e.g. [0.5, 0.25])")
        return v


class RenalCap(Strict):
    crcl_below: float = Field(gt=0, description="applies when creatinine clearance (mL/min) is below this")
    max_dose: float = Field(ge=0, description="0 means the drug is not given at all")


class Caution(Strict):
    """A condition that limits the drug (P5): a lower maximum, optionally last resort and slower titration."""

    flag: str
    max_dose: float = Field(gt=0)
    rule: str = Field("P5.tca_cardiac_cap", description="the rule id logged for this caution (rules.yaml)")
    last_resort: bool = Field(False, description="offer this drug only after the other first-line classes")
    titration_stretch: float = Field(1.0, ge=1.0, description="titration days are multiplied by this")

    @field_validator("flag")
    @classmethod
    def _known_flag(cls, v: str) -> str:
        require_known(v, PATIENT_FLAGS, "patient flag")
        return v

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, v: str) -> str:
        from .rules import load_rules

        if not load_rules().is_resolvable(v):
            raise ValueError(f"unknown rule id '{v}'; use a rule id of rules.yaml such as P5.tca_cardiac_cap")
        return v


class Drug(Strict):
    label: str
    drug_class: DrugClass = Field(alias="class")
    unit: str
    titration: list[TitrationStep] = Field(min_length=1)
    target_dose: float = Field(gt=0)
    max_dose: float = Field(gt=0)
    adequate_trial_days: int = Field(ge=1, description="days at target dose before response is judged (P3)")
    min_trial_days: int = Field(0, ge=0, description="least days from start before judging, whatever the dose")
    older_adult: OlderAdult = OlderAdult()
    renal_caps: list[RenalCap] = []
    renal_exposure: list[RenalExposure] = []
    min_effective_dose: float | None = Field(
        None, gt=0, description="lowest daily dose still effective: an intolerance reduction never goes below it (P4)")
    min_dose: float | None = Field(
        None, gt=0, description="smallest marketed daily dose: no start or titration dose goes below it, whatever "
        "the renal band and age reductions (P2.min_dose)")
    strengths: list[float] = Field(
        min_length=1, max_length=12, description="marketed unit strengths (capsule, tablet, patch, application) in the drug's dose "
        "unit; every daily dose given is a sum of whole units (P2.givable_dose)")
    units_per_day: int = Field(ge=1, le=12, description="most units taken in a day (doses a day x units a dose)")
    taper: Taper | None = Field(None, description="taper schedule used when the drug is stopped (P5)")
    titrate_to_response: bool = Field(False, description="judge at each titration step; stop titrating at relief")
    reapply_days: int | None = Field(
        None, ge=1, le=365, description="a single application whose effect lasts this many days (capsaicin 8%): "
        "re-applied at this interval while the patient continues it (P6.capsaicin_reapply)")
    requires: list[str] = Field(default_factory=list, description="patient flags the drug needs (lidocaine: allodynia)")
    contraindications: list[str] = []
    cautions: list[Caution] = []
    safety_checks: list[SafetyCheck] = []
    ecg_min_age: float | None = Field(None, ge=0, description="the ECG check applies above this age (P5)")
    serotonergic: bool = False
    sedating: bool = False
    sources: dict[str, str]

    @field_validator("contraindications", "requires")
    @classmethod
    def _known_flags(cls, v: list[str]) -> list[str]:
        require_known(v, PATIENT_FLAGS, "patient flag")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Drug:
        days = [s.day for s in self.titration]
        if days[0] != 0:
            raise ValueError("titration must start on day 0")
        if days != sorted(days) or len(set(days)) != len(days):
            raise ValueError("titration days must be strictly increasing")
        doses = [s.dose for s in self.titration]
        if doses != sorted(doses):
            raise ValueError("titration doses must not decrease")
        if self.target_dose > self.max_dose:
            raise ValueError(f"target dose {self.target_dose} is above the maximum {self.max_dose}")
        if max(doses) > self.max_dose:
            raise ValueError(f"a titration dose ({max(doses)}) is above the maximum {self.max_dose}")
        if abs(doses[-1] - self.target_dose) > 1e-9:
            raise ValueError("the last titration step must reach the target dose")
        needed = {"titration", "target_dose", "max_dose", "adequate_trial_days"}
        if self.renal_caps:
            needed.add("renal_caps")
        if self.renal_exposure:
            needed.add("renal_exposure")
        if self.older_adult.start_dose is not None and self.older_adult.start_dose > doses[0]:
            raise ValueError(f"older_adult.start_dose {self.older_adult.start_dose:g} is above the first titration "
                             f"dose {doses[0]:g}; older adults start lower (P2)")
        if self.min_effective_dose is not None and self.min_effective_dose > self.target_dose:
            raise ValueError(f"min_effective_dose {self.min_effective_dose:g} is above the target dose")
        if self.min_dose is not None:
            lowest = min([b.factor for b in self.renal_exposure] + [1.0])
            if self.min_dose > doses[0] or self.min_dose > self.max_dose * lowest:
                raise ValueError(f"min_dose {self.min_dose:g} is above the first titration dose {doses[0]:g} or the "
                                 f"lowest renal band's maximum {self.max_dose * lowest:g}")
        if any(u <= 0 for u in self.strengths) or len(set(self.strengths)) != len(self.strengths):
            raise ValueError("strengths must be distinct doses above 0 (e.g. gabapentin [100, 300, 400, 600, 800])")
        givable = givable_doses(self.strengths, self.units_per_day)
        for what, dose in (("min_dose", self.min_dose), ("the first titration dose", doses[0])):
            if dose is not None and not any(abs(g - dose) < 1e-9 for g in givable):
                raise ValueError(f"{what} {dose:g} is not a sum of at most {self.units_per_day} units of the "
                                 f"strengths {self.strengths}")
        if self.min_dose is not None and self.min_dose < givable[0] - 1e-9:
            raise ValueError(f"min_dose {self.min_dose:g} is below the smallest strength {givable[0]:g}")
        needed.update(("strengths", "units_per_day"))
        if self.contraindications:
            needed.add("contraindications")
        if self.cautions:
            needed.add("cautions")
        if self.older_adult != OlderAdult():
            needed.add("older_adult")
        if ("ecg" in self.safety_checks) != (self.ecg_min_age is not None):
            raise ValueError("an 'ecg' safety check needs ecg_min_age, and ecg_min_age needs the check; give both")
        for flag in ("min_trial_days", "safety_checks", "serotonergic", "sedating", "ecg_min_age", "min_effective_dose",
                     "min_dose", "taper", "titrate_to_response", "requires", "reapply_days"):
            if getattr(self, flag):
                needed.add(flag)
        missing = sorted(needed - set(self.sources))
        if missing:
            raise ValueError(f"no source given for {', '.join(missing)}: add them under 'sources'")
        return self

    @property
    def first_line(self) -> bool:
        return self.drug_class in FIRST_LINE_CLASSES


def givable_doses(strengths: list[float] | tuple[float, ...], units_per_day: int) -> tuple[float, ...]:
    """Every daily dose that whole units of the marketed ``strengths`` give, taking 1 to ``units_per_day``
    units a day, ascending (P2.givable_dose; drugs.yaml ``strengths``, ``units_per_day``)."""
    sums = {0.0}
    out: set[float] = set()
    for _ in range(units_per_day):
        sums = {round(s + u, 6) for s in sums for u in strengths}
        out |= sums
    return tuple(sorted(out))


class Catalog(Strict):
    drugs: dict[str, Drug]

    def get(self, name: str) -> Drug:
        try:
            return self.drugs[name]
        except KeyError:
            raise InputError(f"unknown drug '{name}'", field="drug",
                             fix=f"use one of: {', '.join(sorted(self.drugs))}") from None

    def of_class(self, drug_class: str) -> list[str]:
        return [n for n, d in self.drugs.items() if d.drug_class == drug_class]


def _data_path(name: str) -> Path:
    return Path(str(resources.files("simulator") / "data" / name))


@lru_cache(maxsize=4)
def load_catalog(path: str | None = None) -> Catalog:
    """The packaged drug catalogue, or one at ``path``."""
    return load_model(path or _data_path("drugs.yaml"), Catalog)
