"""The clinical model: pain response and adverse events, parameterised from ``data/clinical.yaml``.

Structure (each piece's numbers, sources and evidence tags are in the YAML):

* **Nonspecific (placebo) response.** Each patient has a steady-state fractional pain reduction that
  does not depend on the drug: with probability ``responder_share[etiology]`` drawn around
  ``responder_mean``, otherwise around ``nonresponder_mean``; it builds up with time constant
  ``onset_days`` from the first visit. Responses in neuropathic-pain trials are bimodal (Moore 2014),
  hence the mixture.
* **Nonspecific share by etiology**: ``placebo_r50[etiology]`` (Arakawa 2015) times one calibrated
  factor, ``share_per_placebo_r50`` (CIPN has its own fitted share).
* **Drug response.** Each patient carries a latent responsiveness per drug: a patient factor
  (refractoriness, ``responsiveness_correlation`` across classes), a class factor
  (``within_class_correlation``) and the drug's own factor (Gaussian copula; see
  :class:`~simulator.model.response.Latents`). Part of it drifts over weeks (``responsiveness_drift``), as
  does membership of the nonspecific responders. At dose ``x`` of drug ``d`` the patient is a responder on
  a day when the latent uniform of that day is below ``responder_prob_d(x) * etiology_modifier_d``; a
  responder's extra fractional reduction of the remaining pain is drawn around ``effect_mean_d`` and
  builds up with time constant ``onset_days_d`` from the drug's start. A non-responder still gets a
  partial effect: ``nonresponder_effect_d`` times the effect he would have had as a responder, scaled by
  ``responder_prob_d(x) * etiology_modifier_d / max(responder_prob_d)`` (so it grows with dose and is 0
  where the drug does not work). Responses are bimodal (Moore 2014) but not all-or-nothing: the early,
  dose-ordered 1-point improvements of Freeman 2008 (median 4/5/13 days at 600/300/150 mg pregabalin)
  need most patients to feel some effect within days.
* **Combinations.** Drug effects combine multiplicatively on the remaining pain; the second drug of a
  combination contributes ``combination_factor`` of its effect (combinations use lower doses, Gilron
  2005/2009).
* **Observed pain** at a visit: ``baseline * (1 - R) + noise``, clipped to 0-10.
* **Adverse events** per drug and type: incidence over a trial at the dose reached (interpolated by
  dose), onset time exponential with the drug's median onset; an event ends the drug with a
  probability chosen so that the trial's withdrawal-for-adverse-events rate is reproduced.
* **Placebo (nocebo) adverse events** of a patient on placebo alone (trial placebo arms), and **grades**
  (mild, moderate, severe; ``ae_severity``) of every event in trial reports.
* **Serious events**, named parameters: falls (older adults on sedating drugs), serotonin syndrome
  (serotonergic combination), opioid misuse and respiratory depression, cardiac events on TCAs.

This module owns the **schema** of ``clinical.yaml`` (the pydantic models, each number with its unit,
source and tag) and :func:`load_clinical`. The engine never touches it per event: it calls the plain-Python
tables compiled by :func:`simulator.model.clinical_tables.compile_model` and the response functions of
:mod:`simulator.model.response`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from ..inputs.schema import Strict, load_model, require_known
from .catalog import ALL_CLASSES

Tag = Literal["V", "S", "U", "derived", "calibrated", "assumption"]
ETIOLOGY_NAMES: tuple[str, ...] = (
    "diabetic_neuropathy", "postherpetic_neuralgia", "cipn_platinum", "cipn_taxane",
    "lumbosacral_radiculopathy", "hiv_neuropathy", "central", "other",
)


UNIT_RANGES: tuple[tuple[str, float, float], ...] = (
    ("probability", 0.0, 1.0), ("fraction", 0.0, 1.0), ("NRS points", 0.0, 10.0), ("days", 0.0, 36500.0),
    ("years", 0.0, 120.0), ("events", 0.0, 1000.0), ("hazard per year", 0.0, 1000.0), ("rate ratio", 0.0, 1000.0),
)
"""Range of a parameter's values by its unit (prefix match); any other unit: a finite number >= 0."""


def check_unit_range(values: list[float], unit: str, signed: bool = False) -> None:
    """Raise ValueError when a value lies outside the range its unit allows (see :data:`UNIT_RANGES`)."""
    lo, hi = next(((a, b) for prefix, a, b in UNIT_RANGES if unit.startswith(prefix)), (0.0, math.inf))
    if signed:
        lo = -hi
    for v in values:
        if not lo <= v <= hi:
            what = f"'{unit}'" if unit else "no unit (a number >= 0)"
            raise ValueError(f"{v:g} is outside [{lo:g}, {hi:g}], the range of a parameter in {what}; "
                             f"use a value from {lo:g} to {hi:g}")


class Num(Strict):
    """A scalar parameter with its source; its value must lie in the range of its unit (UNIT_RANGES)."""

    signed: ClassVar[bool] = False
    value: float
    unit: str = ""
    source: str = Field(min_length=1)
    tag: Tag

    @model_validator(mode="after")
    def _in_unit_range(self) -> Num:
        check_unit_range([self.value], self.unit, self.signed)
        return self


class SignedNum(Num):
    """A scalar parameter that may be negative (a correlation)."""

    signed: ClassVar[bool] = True


class DoseCurve(Strict):
    """A parameter that depends on dose: ``[[dose, value], ...]``, linearly interpolated, flat outside."""

    value: list[tuple[float, float]] = Field(min_length=1)
    unit: str = ""
    source: str = Field(min_length=1)
    tag: Tag

    @model_validator(mode="after")
    def _increasing(self) -> DoseCurve:
        doses = [d for d, _ in self.value]
        if doses != sorted(doses):
            raise ValueError("dose points must be in increasing order of dose")
        if any(d < 0 for d in doses):
            raise ValueError("doses must not be negative")
        check_unit_range([v for _, v in self.value], self.unit)
        return self


class PerKey(Strict):
    """A value per key (an etiology, an adverse-event type, a drug class), with a default for the keys not named.

    Subclasses say which keys are allowed (``KEYS``, None: any, named ``KIND`` in the error) and whether the
    values are checked against the range of their unit (``UNIT_CHECKED``, see :data:`UNIT_RANGES`)."""

    KEYS: ClassVar[tuple[str, ...] | None] = None
    KIND: ClassVar[str] = ""
    UNIT_CHECKED: ClassVar[bool] = False
    value: dict[str, float]
    default: float
    unit: str = ""
    source: str = Field(min_length=1)
    tag: Tag

    @field_validator("value")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        if cls.KEYS is not None:
            require_known(list(v), cls.KEYS, cls.KIND)
        return v

    @model_validator(mode="after")
    def _in_unit_range(self) -> PerKey:
        if self.UNIT_CHECKED:
            check_unit_range([*self.value.values(), self.default], self.unit)
        return self

    def of(self, key: str) -> float:
        """The value of ``key``, or the default when it is not named."""
        return self.value.get(key, self.default)


class PerEtiology(PerKey):
    """A value per etiology (:data:`ETIOLOGY_NAMES`), in the range of its unit, with a default."""

    KEYS = ETIOLOGY_NAMES
    KIND = "etiology"
    UNIT_CHECKED = True

def _prob_curve(c: DoseCurve) -> DoseCurve:
    for _, p in c.value:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability {p} is outside [0, 1]")
    return c


ProbCurve = Annotated[DoseCurve, AfterValidator(_prob_curve)]
"""A dose curve of probabilities (every value in [0, 1])."""


class AdverseEvent(Strict):
    incidence: ProbCurve
    serious: bool = False


class DrugResponse(Strict):
    responder_prob: ProbCurve
    effect_mean: Num
    effect_sd: Num
    onset_days: Num
    etiology_modifier: PerEtiology
    localized_only: bool = False
    adverse_events: dict[str, AdverseEvent] = {}
    ae_withdrawal: ProbCurve
    ae_onset_median_days: Num
    nonresponder_effect: Num | None = None


class Nonspecific(Strict):
    placebo_r50: PerEtiology
    share_per_placebo_r50: Num
    responder_share_override: PerEtiology | None = None
    responder_mean: Num
    nonresponder_mean: Num
    sd: Num
    onset_days: Num
    onset_sd_log: Num | None = None

    def responder_share(self, etiology: str) -> float:
        """Share of nonspecific (placebo) responders of an etiology: the override where one is given,
        else ``placebo_r50[etiology] * share_per_placebo_r50`` (clipped to 1)."""
        o = self.responder_share_override
        if o is not None and etiology in o.value:
            return o.value[etiology]
        return min(1.0, self.placebo_r50.of(etiology) * self.share_per_placebo_r50.value)


class PerType(PerKey):
    """A value per adverse-event type, with a default for the types not named."""

class Severity(Strict):
    """Grades of adverse events: the share that is moderate or severe, and the share that is severe."""

    moderate_or_severe: PerType
    severe: PerType

    @model_validator(mode="after")
    def _shares(self) -> Severity:
        names = set(self.moderate_or_severe.value) | set(self.severe.value) | {"default"}
        for t in names:
            ms = self.moderate_or_severe.default if t == "default" else self.moderate_or_severe.of(t)
            sv = self.severe.default if t == "default" else self.severe.of(t)
            if not 0.0 <= sv <= ms <= 1.0:
                raise ValueError(f"ae_severity {t}: need 0 <= severe <= moderate_or_severe <= 1 (got {sv}, {ms})")
        return self

    def of(self, ae_type: str) -> tuple[float, float, float]:
        """(mild, moderate, severe) shares."""
        ms, sv = self.moderate_or_severe.of(ae_type), self.severe.of(ae_type)
        return (1.0 - ms, ms - sv, sv)


class PlaceboResponse(Strict):
    """Nocebo adverse events of a patient on placebo alone (trial placebo arms)."""

    adverse_events: dict[str, Num]
    ae_withdrawal: Num
    ae_onset_median_days: Num


class Expectation(Strict):
    """Expectation effect of the trial's blinding on the nonspecific responder share."""

    open_label: Num


class Serious(Strict):
    falls_per_year_older_sedated: Num
    falls_min_age: Num
    serotonin_syndrome_per_exposure: Num
    serotonin_syndrome_onset_days: Num
    opioid_misuse_per_year: PerEtiology | Num
    misuse_risk_multiplier_high: Num
    respiratory_depression_per_year: Num
    tca_cardiac_event_per_year: Num


class FollowUp(Strict):
    loss_to_follow_up_per_year: Num
    dropout_after_failed_line: Num


class PerClass(PerKey):
    """A value per drug class (``catalog.ALL_CLASSES``), with a default for the classes not named."""

    KEYS = ALL_CLASSES
    KIND = "drug class"

class Persistence(Strict):
    """The year after the first answer (issue 10): relapse, adherence and stopping for other reasons.

    Patient behaviour, shared by every scenario (the care a scenario gives changes what follows a stop,
    not whether patients stop): ``relapse_per_year`` is the hazard of losing response on a relieving
    regimen, after which the regimen keeps ``relapse_effect_retained`` of its effect; a share
    ``non_adherence_share`` of patients take their drugs irregularly and get ``non_adherent_effect`` of
    each drug's effect; ``non_ae_stop_per_year`` is the hazard of stopping a drug for reasons other than
    adverse events, ``early_stop_multiplier`` times higher during its first ``early_days``."""

    relapse_per_year: Num
    relapse_effect_retained: Num
    non_adherence_share: Num
    non_adherent_effect: Num
    non_ae_stop_per_year: PerClass
    early_stop_multiplier: Num
    early_days: Num


class Specialist(Strict):
    consult_days: Num
    intervention_prob: Num
    intervention_success: PerEtiology
    days_to_intervention_relief: Num
    conservative_relief_prob: Num


class Drift(Strict):
    """Time-varying responsiveness: a share of the latent responsiveness drifts over time (see draw_latents)."""

    share: Num
    time_scale_days: Num


class ClinicalModel(Strict):
    nonspecific: Nonspecific
    drugs: dict[str, DrugResponse]
    placebo: PlaceboResponse
    ae_severity: Severity
    expectation: Expectation
    responsiveness_correlation: SignedNum
    within_class_correlation: SignedNum
    responsiveness_drift: Drift
    combination_factor: Num
    visit_noise_sd: Num
    serious: Serious
    follow_up: FollowUp
    specialist: Specialist
    persistence: Persistence

    @model_validator(mode="after")
    def _probabilities(self) -> ClinicalModel:
        rho, w = self.responsiveness_correlation.value, self.within_class_correlation.value
        if not 0.0 <= rho <= w <= 0.99:
            raise ValueError("responsiveness_correlation and within_class_correlation must satisfy "
                             f"0 <= responsiveness_correlation <= within_class_correlation <= 0.99 (got {rho}, {w})")
        for k, a in self.placebo.adverse_events.items():
            if not 0.0 <= a.value <= 1.0:
                raise ValueError(f"placebo.adverse_events.{k} is {a.value}, a probability outside [0, 1]")
        if not 0.0 <= self.placebo.ae_withdrawal.value <= 1.0:
            raise ValueError("placebo.ae_withdrawal is a probability in [0, 1]")
        if not 0.0 <= self.responsiveness_drift.share.value <= 1.0:
            raise ValueError("responsiveness_drift.share is a share of variance in [0, 1]")
        if self.responsiveness_drift.time_scale_days.value <= 0:
            raise ValueError("responsiveness_drift.time_scale_days must be positive")
        if self.expectation.open_label.value < 0:
            raise ValueError("expectation.open_label is a multiplier and must not be negative")
        probs = {
            "combination_factor": self.combination_factor.value,
            "follow_up.dropout_after_failed_line": self.follow_up.dropout_after_failed_line.value,
            "specialist.intervention_prob": self.specialist.intervention_prob.value,
            "specialist.conservative_relief_prob": self.specialist.conservative_relief_prob.value,
            "serious.serotonin_syndrome_per_exposure": self.serious.serotonin_syndrome_per_exposure.value,
            "persistence.relapse_effect_retained": self.persistence.relapse_effect_retained.value,
            "persistence.non_adherence_share": self.persistence.non_adherence_share.value,
            "persistence.non_adherent_effect": self.persistence.non_adherent_effect.value,
        }
        for k, v in probs.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{k} is {v}, a probability outside [0, 1]")
        pe = self.persistence
        rates = {"persistence.relapse_per_year": pe.relapse_per_year.value,
                 "persistence.early_stop_multiplier": pe.early_stop_multiplier.value,
                 "persistence.early_days": pe.early_days.value,
                 **{f"persistence.non_ae_stop_per_year.{k}": v for k, v in pe.non_ae_stop_per_year.value.items()},
                 "persistence.non_ae_stop_per_year.default": pe.non_ae_stop_per_year.default}
        for k, v in rates.items():
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{k} is {v}; use a number of at least 0")
        for d in self.drugs.values():
            for v in (d.effect_mean.value, d.effect_sd.value):
                if not 0.0 <= v <= 1.0:
                    raise ValueError("effect_mean and effect_sd are fractions of pain and lie in [0, 1]")
            if d.nonresponder_effect is not None and not 0.0 <= d.nonresponder_effect.value <= 1.0:
                raise ValueError("nonresponder_effect is a fraction of the responder effect and lies in [0, 1]")
            if d.onset_days.value <= 0 or d.ae_onset_median_days.value <= 0:
                raise ValueError("onset times must be positive")
        if self.nonspecific.onset_days.value <= 0:
            raise ValueError("nonspecific.onset_days must be positive (it divides the time since the first visit)")
        return self


def _data_path(name: str) -> Path:
    return Path(str(resources.files("simulator") / "data" / name))


@lru_cache(maxsize=4)
def load_clinical(path: str | None = None) -> ClinicalModel:
    """The packaged clinical model, or one at ``path``."""
    return load_model(path or _data_path("clinical.yaml"), ClinicalModel)
