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
  (``within_class_correlation``) and the drug's own factor (Gaussian copula; see :class:`Latents`). Part of
  it drifts over weeks (``responsiveness_drift``), as does membership of the nonspecific responders. At
  dose ``x`` of drug ``d`` the patient is a responder on a day when the latent uniform of that day is
  below ``responder_prob_d(x) * etiology_modifier_d``; a
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

The engine calls only the plain-Python functions and tables compiled by :func:`compile_model`; no
pydantic object is touched per event.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from scipy.special import ndtr, ndtri

from ..inputs.schema import Strict, load_model, require_known
from .catalog import ALL_CLASSES, Catalog, load_catalog

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


class PerEtiology(Strict):
    """A value per etiology, with a default for the etiologies not named."""

    value: dict[str, float]
    default: float
    unit: str = ""
    source: str = Field(min_length=1)
    tag: Tag

    @field_validator("value")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        require_known(list(v), ETIOLOGY_NAMES, "etiology")
        return v

    @model_validator(mode="after")
    def _in_unit_range(self) -> PerEtiology:
        check_unit_range([*self.value.values(), self.default], self.unit)
        return self

    def of(self, etiology: str) -> float:
        return self.value.get(etiology, self.default)


def _prob_curve(c: DoseCurve) -> DoseCurve:
    for _, p in c.value:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability {p} is outside [0, 1]")
    return c


class AdverseEvent(Strict):
    incidence: DoseCurve
    serious: bool = False

    @field_validator("incidence")
    @classmethod
    def _p(cls, v: DoseCurve) -> DoseCurve:
        return _prob_curve(v)


class DrugResponse(Strict):
    responder_prob: DoseCurve
    effect_mean: Num
    effect_sd: Num
    onset_days: Num
    etiology_modifier: PerEtiology
    localized_only: bool = False
    adverse_events: dict[str, AdverseEvent] = {}
    ae_withdrawal: DoseCurve
    ae_onset_median_days: Num
    nonresponder_effect: Num | None = None

    @field_validator("responder_prob", "ae_withdrawal")
    @classmethod
    def _p(cls, v: DoseCurve) -> DoseCurve:
        return _prob_curve(v)


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


class PerType(Strict):
    """A value per adverse-event type, with a default for the types not named."""

    value: dict[str, float]
    default: float
    unit: str = ""
    source: str = Field(min_length=1)
    tag: Tag

    def of(self, ae_type: str) -> float:
        return self.value.get(ae_type, self.default)


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


class PerClass(Strict):
    """A value per drug class (``catalog.ALL_CLASSES``), with a default for the classes not named."""

    value: dict[str, float]
    default: float
    unit: str = ""
    source: str = Field(min_length=1)
    tag: Tag

    @field_validator("value")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        require_known(list(v), ALL_CLASSES, "drug class")
        return v

    def of(self, drug_class: str) -> float:
        return self.value.get(drug_class, self.default)


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


# --------------------------------------------------------------------------------------------------
# Compiled, plain-Python tables used by the engine.
# --------------------------------------------------------------------------------------------------


def interp(points: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear interpolation, flat outside the points (plain Python, fast for scalars)."""
    x0, y0 = points[0]
    if x <= x0:
        return y0
    for x1, y1 in points:  # (the first point repeats x0, y0: x > x0 here)
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        x0, y0 = x1, y1
    return y0


@dataclass(frozen=True, slots=True)
class DrugTable:
    """Everything the engine needs about one drug, as plain values."""

    index: int
    name: str
    label: str
    drug_class: str
    class_index: int
    unit: str
    titration: tuple[tuple[int, float], ...]
    target_dose: float
    max_dose: float
    adequate_trial_days: int
    min_trial_days: int
    older_min_age: float
    older_stretch: float
    older_max: float
    renal_caps: tuple[tuple[float, float], ...]
    contraindications: tuple[str, ...]
    cautions: tuple[tuple[str, float], ...]
    safety_checks: tuple[str, ...]
    ecg_min_age: float
    serotonergic: bool
    sedating: bool
    localized_only: bool
    responder_prob: tuple[tuple[float, float], ...]
    effect_mean: float
    effect_sd: float
    onset_days: float
    etiology_modifier: tuple[float, ...]  # by etiology code
    ae_types: tuple[int, ...]  # global AE type codes
    ae_slots: tuple[int, ...]  # column of the patient's adverse-event block
    ae_incidence: tuple[tuple[tuple[float, float], ...], ...]
    ae_max_incidence: tuple[float, ...]
    ae_serious: tuple[bool, ...]
    ae_withdrawal: tuple[tuple[float, float], ...]
    ae_onset_median: float
    nonresponder_effect: float = 0.0  # fraction of the responder effect a non-responder gets (at max prob)
    responder_max: float = field(init=False, default=0.0)  # max of responder_prob (derived once; drug_effect)

    def __post_init__(self) -> None:
        object.__setattr__(self, "responder_max", max(q for _, q in self.responder_prob))


@dataclass(frozen=True)
class ModelTables:
    drugs: tuple[DrugTable, ...]
    by_name: dict[str, DrugTable]
    ae_types: tuple[str, ...]
    n_ae_slots: int
    ns_share: tuple[float, ...]
    ns_resp_mean: float
    ns_non_mean: float
    ns_sd: float
    ns_onset: float
    ns_onset_sd_log: float
    corr: float
    within_corr: float
    drift_share: float
    drift_days: float
    combination_factor: float
    noise_sd: float
    serious: dict[str, float]
    misuse_per_year: tuple[float, ...]
    follow_up: dict[str, float]
    specialist: dict[str, float]
    intervention_success: tuple[float, ...]
    persistence: dict[str, float] = field(default_factory=dict)
    non_ae_stop_per_year: tuple[float, ...] = ()  # per drug (catalogue order)
    placebo_ae_types: tuple[int, ...] = ()  # global AE type codes of nocebo events on placebo
    placebo_ae_incidence: tuple[float, ...] = ()
    placebo_ae_withdrawal: float = 0.0
    placebo_ae_onset_median: float = 7.0
    ae_severity: tuple[tuple[float, float, float], ...] = ()  # (mild, moderate, severe) share per AE type code
    open_label_multiplier: float = 1.0


SERIOUS_TYPES: tuple[str, ...] = ("fall", "serotonin_syndrome", "opioid_misuse", "respiratory_depression",
                                  "cardiac_event")


def compile_model(model: ClinicalModel | None = None, catalog: Catalog | None = None) -> ModelTables:
    """Flatten catalogue and clinical model into plain tables for the engine."""
    model = model or load_clinical()
    catalog = catalog or load_catalog()
    ae_names: list[str] = []
    for d in model.drugs.values():
        for t in d.adverse_events:
            if t not in ae_names:
                ae_names.append(t)
    ae_names.extend(t for t in SERIOUS_TYPES if t not in ae_names)
    ae_names.extend(t for t in model.placebo.adverse_events if t not in ae_names)
    if len(catalog.drugs) > MAX_DRUGS:
        raise ValueError(f"the model has room for {MAX_DRUGS} drugs (MAX_DRUGS), the catalogue has {len(catalog.drugs)}")
    slot = 0
    tables: list[DrugTable] = []
    for i, (name, drug) in enumerate(catalog.drugs.items()):
        if name not in model.drugs:
            raise ValueError(f"drug '{name}' has no clinical parameters in clinical.yaml")
        r = model.drugs[name]
        types = tuple(ae_names.index(t) for t in r.adverse_events)
        slots = tuple(range(slot, slot + len(types)))
        slot += len(types)
        slot += 1  # one reserved column per drug: keeps the adverse-event block layout (and results) stable
        tables.append(DrugTable(
            index=i, name=name, label=drug.label, drug_class=drug.drug_class,
            class_index=ALL_CLASSES.index(drug.drug_class), unit=drug.unit,
            titration=tuple((s.day, s.dose) for s in drug.titration), target_dose=drug.target_dose,
            max_dose=drug.max_dose, adequate_trial_days=drug.adequate_trial_days,
            min_trial_days=drug.min_trial_days, older_min_age=drug.older_adult.min_age,
            older_stretch=drug.older_adult.titration_stretch,
            older_max=drug.older_adult.max_dose or drug.max_dose,
            renal_caps=tuple(sorted(((c.crcl_below, c.max_dose) for c in drug.renal_caps), reverse=True)),
            contraindications=tuple(drug.contraindications),
            cautions=tuple((c.flag, c.max_dose) for c in drug.cautions),
            safety_checks=tuple(drug.safety_checks),
            ecg_min_age=drug.ecg_min_age if drug.ecg_min_age is not None else math.inf, serotonergic=drug.serotonergic, sedating=drug.sedating,
            localized_only=r.localized_only, responder_prob=tuple(r.responder_prob.value),
            effect_mean=r.effect_mean.value, effect_sd=r.effect_sd.value, onset_days=r.onset_days.value,
            etiology_modifier=tuple(r.etiology_modifier.of(e) for e in ETIOLOGY_NAMES),
            ae_types=types, ae_slots=slots,
            ae_incidence=tuple(tuple(a.incidence.value) for a in r.adverse_events.values()),
            ae_max_incidence=tuple(max(p for _, p in a.incidence.value) for a in r.adverse_events.values()),
            ae_serious=tuple(a.serious for a in r.adverse_events.values()),
            ae_withdrawal=tuple(r.ae_withdrawal.value), ae_onset_median=r.ae_onset_median_days.value,
            nonresponder_effect=r.nonresponder_effect.value if r.nonresponder_effect is not None else 0.0,
        ))
    extra = set(model.drugs) - set(catalog.drugs)
    if extra:
        raise ValueError(f"clinical.yaml has parameters for drugs not in the catalogue: {sorted(extra)}")
    s = model.serious
    misuse = s.opioid_misuse_per_year
    misuse_by_e = tuple(misuse.of(e) if isinstance(misuse, PerEtiology) else misuse.value for e in ETIOLOGY_NAMES)
    sp = model.specialist
    return ModelTables(
        drugs=tuple(tables), by_name={t.name: t for t in tables}, ae_types=tuple(ae_names), n_ae_slots=slot,
        ns_share=tuple(model.nonspecific.responder_share(e) for e in ETIOLOGY_NAMES),
        ns_resp_mean=model.nonspecific.responder_mean.value, ns_non_mean=model.nonspecific.nonresponder_mean.value,
        ns_sd=model.nonspecific.sd.value, ns_onset=model.nonspecific.onset_days.value,
        ns_onset_sd_log=model.nonspecific.onset_sd_log.value if model.nonspecific.onset_sd_log else 0.0,
        corr=model.responsiveness_correlation.value, within_corr=model.within_class_correlation.value,
        drift_share=model.responsiveness_drift.share.value, drift_days=model.responsiveness_drift.time_scale_days.value,
        combination_factor=model.combination_factor.value,
        noise_sd=model.visit_noise_sd.value,
        serious={
            "falls_per_year": s.falls_per_year_older_sedated.value, "falls_min_age": s.falls_min_age.value,
            "serotonin_per_exposure": s.serotonin_syndrome_per_exposure.value,
            "serotonin_onset_days": s.serotonin_syndrome_onset_days.value,
            "misuse_high_mult": s.misuse_risk_multiplier_high.value,
            "resp_depression_per_year": s.respiratory_depression_per_year.value,
            "tca_cardiac_per_year": s.tca_cardiac_event_per_year.value,
        },
        misuse_per_year=misuse_by_e,
        follow_up={"ltfu_per_year": model.follow_up.loss_to_follow_up_per_year.value,
                   "dropout_after_failed_line": model.follow_up.dropout_after_failed_line.value},
        specialist={"consult_days": sp.consult_days.value, "intervention_prob": sp.intervention_prob.value,
                    "days_to_relief": sp.days_to_intervention_relief.value,
                    "conservative_relief_prob": sp.conservative_relief_prob.value},
        intervention_success=tuple(sp.intervention_success.of(e) for e in ETIOLOGY_NAMES),
        persistence={"relapse_per_year": model.persistence.relapse_per_year.value,
                     "relapse_effect_retained": model.persistence.relapse_effect_retained.value,
                     "non_adherence_share": model.persistence.non_adherence_share.value,
                     "non_adherent_effect": model.persistence.non_adherent_effect.value,
                     "early_stop_multiplier": model.persistence.early_stop_multiplier.value,
                     "early_days": model.persistence.early_days.value},
        non_ae_stop_per_year=tuple(model.persistence.non_ae_stop_per_year.of(t.drug_class) for t in tables),
        placebo_ae_types=tuple(ae_names.index(t) for t in model.placebo.adverse_events),
        placebo_ae_incidence=tuple(a.value for a in model.placebo.adverse_events.values()),
        placebo_ae_withdrawal=model.placebo.ae_withdrawal.value,
        placebo_ae_onset_median=model.placebo.ae_onset_median_days.value,
        ae_severity=tuple(model.ae_severity.of(t) for t in ae_names),
        open_label_multiplier=model.expectation.open_label.value,
    )


# --------------------------------------------------------------------------------------------------
# Per-patient latent draws (vectorised once per replication) and the response function.
# --------------------------------------------------------------------------------------------------

N_CLASSES = len(ALL_CLASSES)
MAX_DRUGS = 12  # latent columns reserved per drug (the catalogue may grow without shifting other draws)
DRIFT_FEATURES = 3  # random Fourier features per drifting latent (Latents._latent_scalar unpacks three)
# One drifting latent of one patient: its static normal, then K angular frequencies and K phases in single
# precision (half the memory, ample for a phase), side by side so the engine reads them in one go (_RECORD).
LATENT_RECORD = np.dtype([("x", "<f8"), ("f", "<f4", (2 * DRIFT_FEATURES,))])
_RECORD = struct.Struct(f"<d{2 * DRIFT_FEATURES}f")
N_LATENT = 2 + N_CLASSES + MAX_DRUGS  # drifting latents: nonspecific membership, patient factor, classes, drugs
RESPONSE_COLUMNS = 3 + N_CLASSES + 2 * MAX_DRUGS + 1 + 2 * N_LATENT * DRIFT_FEATURES
_SQRT2 = math.sqrt(2.0)
_NS, _G, _C = 0, 1, 2  # latent index of the nonspecific membership, the patient factor, the first class


@dataclass(frozen=True)
class Latents:
    """Per-patient latent draws, as numpy arrays (rows = patients).

    Responsiveness to drug ``d`` of class ``c`` is ``z_d = sqrt(rho) g + sqrt(w - rho) c_c + sqrt(1 - w) e_d``
    with a patient factor ``g`` (refractoriness, shared by all drugs), a class factor ``c_c`` and a drug
    factor ``e_d``: two drugs of different classes correlate with ``rho = responsiveness_correlation``, two
    drugs of one class with ``w = within_class_correlation`` (partial cross-response: a gabapentin
    non-responder may still respond to pregabalin). A patient responds to ``d`` on a day when
    ``Phi(z_d)`` is below the responder probability. Membership of the nonspecific responders works the
    same way (``Phi(x_ns) < share``).

    **Drift.** Every latent normal ``x`` (``g``, ``c_c``, ``e_d``, ``x_ns``) is
    ``sqrt(1 - s) x_static + sqrt(s) f_x(t)`` where ``s = responsiveness_drift.share`` and ``f_x`` is a
    stationary process of unit variance, ``sqrt(2 / K) sum_k cos(omega_k t + phase_k)`` (random Fourier
    features of a Gaussian kernel with time scale ``responsiveness_drift.time_scale_days``, ``t`` = day of
    the simulation). Across patients every latent stays standard normal on every day, so the responder
    share of a trial arm does not depend on the day and the correlations above hold on every day, while a
    patient moves between responder and non-responder over weeks (COMBO-DN: many week-8 non-responders
    respond by week 16).
    """

    ns_reduction: np.ndarray  # (n,) steady-state nonspecific fractional reduction on day 0
    drug_z: np.ndarray  # (n, MAX_DRUGS) standard normals for the effect magnitude, by drug index
    ns_onset: np.ndarray  # (n,) the patient's time constant of the nonspecific response, days
    records: np.ndarray  # (n, N_LATENT) of LATENT_RECORD: each drifting latent's static normal and drift features
    ns_share: np.ndarray  # (n,) the patient's probability of being a nonspecific responder
    ns_resp: np.ndarray  # (n,) nonspecific reduction as a responder
    ns_non: np.ndarray  # (n,) nonspecific reduction as a non-responder
    loadings: np.ndarray  # (MAX_DRUGS, N_LATENT) weights of the latents in each drug's responsiveness
    drift_share: float

    def take(self, rows: np.ndarray) -> Latents:
        """The latents of patients ``rows`` (copies), for repeated evaluation over a group of patients."""
        from dataclasses import fields, replace
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)
                                if f.name not in ("loadings", "drift_share")})

    @property
    def static(self) -> np.ndarray:
        """(n, N_LATENT) static normals of the drifting latents (a view of ``records``)."""
        return self.records["x"]

    @property
    def omega(self) -> np.ndarray:
        """(n, N_LATENT, K) angular frequencies of the drift features, 1/day (float32, a view of ``records``)."""
        return self.records["f"][..., :DRIFT_FEATURES]

    @property
    def phase(self) -> np.ndarray:
        """(n, N_LATENT, K) phases of the drift features, radians (float32, a view of ``records``)."""
        return self.records["f"][..., DRIFT_FEATURES:]

    def latent(self, rows: np.ndarray | int | slice, j: int, day: float) -> np.ndarray:
        """Latent normal ``j`` of patients ``rows`` on ``day``."""
        x = self.static[rows, j]
        if self.drift_share <= 0.0:
            return x
        om, ph = self.omega[rows, j], self.phase[rows, j]
        f = math.sqrt(2.0 / DRIFT_FEATURES) * np.cos(om * day + ph).sum(axis=-1, dtype=np.float64)
        return math.sqrt(1.0 - self.drift_share) * x + math.sqrt(self.drift_share) * f

    def u_at(self, rows: np.ndarray | int, drug_index: int, day: float) -> np.ndarray:
        """The latent uniform of drug ``drug_index`` on ``day`` (responder when below the responder probability)."""
        w = self.loadings[drug_index]
        z = sum(w[j] * self.latent(rows, j, day) for j in np.flatnonzero(w))
        return ndtr(z)

    # ---- scalar twins for the engine's hot path (one patient, one day) ---------------------------------
    # The same arithmetic as latent/u_at/ns_at, in the same order, on Python floats: the engine calls these a
    # few times per visit for 100k patients, where numpy scalar operations and per-call setup dominated.

    @cached_property
    def _drift_weights(self) -> tuple[float, float]:
        """(weight of the static normal, weight of the sum of drift features) of every drifting latent."""
        s = self.drift_share
        return math.sqrt(1.0 - s), math.sqrt(s * 2.0 / DRIFT_FEATURES)

    @cached_property
    def _drug_loadings(self) -> tuple[tuple[tuple[int, float], ...], ...]:
        """Per drug index, its nonzero loadings as (latent index, weight) pairs, in latent order (as u_at)."""
        return tuple(tuple((int(j), float(w[j])) for j in np.flatnonzero(w)) for w in self.loadings)

    @cached_property
    def _record_bytes(self) -> memoryview:
        return memoryview(np.ascontiguousarray(self.records)).cast("B")

    def _latent_scalar(self, i: int, j: int, day: float) -> float:
        # The latent's record read straight into Python floats (exact, float32 included): one C call instead of
        # numpy indexing and scalars. cos and sums in double precision, feature by feature, as latent().
        x, o0, o1, o2, p0, p1, p2 = _RECORD.unpack_from(self._record_bytes, (i * N_LATENT + j) * _RECORD.size)
        if self.drift_share <= 0.0:
            return x
        f = math.cos(o0 * day + p0) + math.cos(o1 * day + p1) + math.cos(o2 * day + p2)
        static_w, drift_w = self._drift_weights
        return static_w * x + drift_w * f

    def u_scalar(self, i: int, drug_index: int, day: float) -> float:
        """:meth:`u_at` for one patient in plain Python (the engine's hot path)."""
        z = 0.0
        for j, w in self._drug_loadings[drug_index]:
            z += w * self._latent_scalar(i, j, day)
        return 0.5 * math.erfc(-z / _SQRT2)

    def ns_scalar(self, i: int, day: float) -> float:
        """:meth:`ns_at` for one patient in plain Python."""
        if self.drift_share <= 0.0:
            return self.ns_reduction.item(i)
        u = 0.5 * math.erfc(-self._latent_scalar(i, _NS, day) / _SQRT2)
        return self.ns_resp.item(i) if u < self.ns_share.item(i) else self.ns_non.item(i)

    def ns_at(self, rows: np.ndarray | int, day: float) -> np.ndarray:
        """Steady-state nonspecific reduction on ``day`` (membership drifts like drug responsiveness)."""
        if self.drift_share <= 0.0:
            return self.ns_reduction[rows]
        member = ndtr(self.latent(rows, _NS, day)) < self.ns_share[rows]
        return np.where(member, self.ns_resp[rows], self.ns_non[rows])


def draw_latents(tables: ModelTables, etiology: np.ndarray, uniforms: np.ndarray) -> Latents:
    """Turn a patient block of uniforms (n, RESPONSE_COLUMNS) into the latent draws (see :class:`Latents`)."""
    u = np.clip(uniforms, 1e-12, 1 - 1e-12)
    share = np.asarray(tables.ns_share)[etiology]
    k, m = N_CLASSES, MAX_DRUGS
    ns_resp = np.clip(tables.ns_resp_mean + tables.ns_sd * ndtri(u[:, 1]), -0.3, 0.95)
    ns_non = np.clip(tables.ns_non_mean + tables.ns_sd * ndtri(u[:, 1]), -0.3, 0.95)
    static = np.concatenate([ndtri(u[:, 0:1]), ndtri(u[:, 2:3 + k + m])], axis=1)  # ns, g, classes, drugs
    ns = np.where(u[:, 0] < share, ns_resp, ns_non)
    drug_z = ndtri(u[:, 3 + k + m:3 + k + 2 * m])
    c0 = 3 + k + 2 * m
    ns_onset = tables.ns_onset * np.exp(tables.ns_onset_sd_log * ndtri(u[:, c0]))
    nf = N_LATENT * DRIFT_FEATURES
    omega = (np.abs(ndtri(u[:, c0 + 1:c0 + 1 + nf])) / tables.drift_days).reshape(-1, N_LATENT, DRIFT_FEATURES)
    phase = (2.0 * math.pi * u[:, c0 + 1 + nf:c0 + 1 + 2 * nf]).reshape(-1, N_LATENT, DRIFT_FEATURES)
    records = np.empty(static.shape, dtype=LATENT_RECORD)
    records["x"] = static
    records["f"] = np.concatenate([omega, phase], axis=2)  # to float32
    rho, w = tables.corr, tables.within_corr
    loadings = np.zeros((m, N_LATENT))
    for d in tables.drugs:
        loadings[d.index, _G] = math.sqrt(rho)
        loadings[d.index, _C + d.class_index] = math.sqrt(max(w - rho, 0.0))
        loadings[d.index, _C + k + d.index] = math.sqrt(1.0 - w)
    return Latents(ns, drug_z, ns_onset, records, np.asarray(share, dtype=float), ns_resp, ns_non,
                   loadings, tables.drift_share)


def drug_effect(tables: ModelTables, drug: DrugTable, dose: float, days_on: float, etiology: int,
                class_u: float, class_z: float, localized: bool) -> float:
    """Fractional reduction of the remaining pain from one drug (a partial effect for a non-responder).

    ``class_u``/``class_z``: the patient's latent uniform and normal for this drug
    (``Latents.drug_u[i, drug.index]``, ``Latents.drug_z[i, drug.index]``).
    """
    if days_on <= 0 or dose <= 0:
        return 0.0
    if drug.localized_only and not localized:
        return 0.0
    p = interp(drug.responder_prob, dose) * drug.etiology_modifier[etiology]
    e = drug.effect_mean + drug.effect_sd * class_z
    e = 0.0 if e < 0.0 else (0.95 if e > 0.95 else e)
    if class_u >= p:
        pmax = drug.responder_max
        e *= drug.nonresponder_effect * (p / pmax if pmax > 0 else 0.0)
    return e * (1.0 - math.exp(-days_on / drug.onset_days))


def observed_pain(baseline: float, ns_reduction: float, ns_onset: float, day: float,
                  effects: list[float], noise_sd: float, noise_z: float) -> float:
    """Observed NRS at a visit: baseline scaled by the combined reduction, plus visit noise, in [0, 10]."""
    remaining = 1.0 - ns_reduction * (1.0 - math.exp(-day / ns_onset)) if day > 0 else 1.0
    for e in effects:
        remaining *= 1.0 - e
    pain = baseline * remaining + noise_sd * noise_z
    if pain < 0.0:
        return 0.0
    if pain > 10.0:
        return 10.0
    return round(pain, 1)


def onset_days(median: float, u: float) -> float:
    """Exponential onset time with the given median, from a uniform."""
    return -median * math.log1p(-u) / math.log(2.0)


# --------------------------------------------------------------------------------------------------
# Vectorised twins of drug_effect / observed_pain / onset_days (virtual trials, simulator/analysis/trial/__init__.py).
# Same formulas and same parameters; tests/test_trial.py checks them against the scalar functions.
# --------------------------------------------------------------------------------------------------


def interp_array(points: tuple[tuple[float, float], ...], x: float | np.ndarray) -> np.ndarray:
    """:func:`interp` on arrays (flat outside the points)."""
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    return np.interp(np.asarray(x, dtype=float), xs, ys)


def drug_effect_array(tables: ModelTables, drug: DrugTable, dose: float | np.ndarray, days_on: float | np.ndarray,
                      etiology: np.ndarray, class_u: np.ndarray, class_z: np.ndarray,
                      localized: np.ndarray) -> np.ndarray:
    """:func:`drug_effect` for many patients (dose and days: scalars or arrays over patients)."""
    days = np.asarray(days_on, dtype=float)
    dose_a = np.asarray(dose, dtype=float)
    shape = np.broadcast(days, dose_a, class_u).shape
    mod = np.asarray(drug.etiology_modifier)[etiology]
    p = interp_array(drug.responder_prob, dose_a) * mod
    pmax = max(q for _, q in drug.responder_prob)
    partial = drug.nonresponder_effect * (p / pmax) if pmax > 0 else np.zeros_like(p)
    e = np.clip(drug.effect_mean + drug.effect_sd * class_z, 0.0, 0.95)
    e = np.where(class_u < p, e, e * partial)
    active = (days > 0) & (dose_a > 0)
    if drug.localized_only:
        active = active & np.asarray(localized, dtype=bool)
    build = np.where(days > 0, 1.0 - np.exp(-np.maximum(days, 0.0) / drug.onset_days), 0.0)
    return np.broadcast_to(np.where(active, e * build, 0.0), shape)


def observed_pain_array(baseline: np.ndarray, ns_reduction: np.ndarray, ns_onset: float | np.ndarray,
                        day: float | np.ndarray, effects: list[np.ndarray], noise_sd: float,
                        noise_z: np.ndarray | float) -> np.ndarray:
    """:func:`observed_pain` on arrays: baseline scaled by the combined reduction, plus noise, in [0, 10]."""
    d = np.asarray(day, dtype=float)
    remaining = np.where(d > 0, 1.0 - ns_reduction * (1.0 - np.exp(-np.maximum(d, 0.0) / ns_onset)), 1.0)
    for e in effects:
        remaining = remaining * (1.0 - e)
    pain = baseline * remaining + noise_sd * np.asarray(noise_z, dtype=float)
    return np.round(np.clip(pain, 0.0, 10.0), 1)


def onset_days_array(median: float, u: np.ndarray) -> np.ndarray:
    """:func:`onset_days` on arrays."""
    return -median * np.log1p(-u) / math.log(2.0)
