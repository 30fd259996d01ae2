"""The clinical model: pain response and adverse events, parameterised from ``data/clinical.yaml``.

Structure (each piece's numbers, sources and evidence tags are in the YAML):

* **Nonspecific (placebo) response.** Each patient has a steady-state fractional pain reduction that
  does not depend on the drug: with probability ``responder_share[etiology]`` drawn around
  ``responder_mean``, otherwise around ``nonresponder_mean``; it builds up with time constant
  ``onset_days`` from the first visit. Responses in neuropathic-pain trials are bimodal (Moore 2014),
  hence the mixture.
* **Drug response.** Each patient carries a latent responsiveness per drug class, correlated across
  classes (Gaussian copula, ``responsiveness_correlation``). At dose ``x`` of drug ``d`` the patient is
  a responder when that latent uniform is below ``responder_prob_d(x) * etiology_modifier_d``; a
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
* **Serious events**, named parameters: falls (older adults on sedating drugs), serotonin syndrome
  (serotonergic combination), opioid misuse and respiratory depression, cardiac events on TCAs.

The engine calls only the plain-Python functions and tables compiled by :func:`compile_model`; no
pydantic object is touched per event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from scipy.special import ndtr, ndtri

from .catalog import ALL_CLASSES, Catalog, load_catalog
from .schema import Strict, load_model, require_known

Tag = Literal["V", "S", "U", "derived", "calibrated", "assumption"]
ETIOLOGY_NAMES: tuple[str, ...] = (
    "diabetic_neuropathy", "postherpetic_neuralgia", "cipn_platinum", "cipn_taxane",
    "lumbosacral_radiculopathy", "hiv_neuropathy", "central", "other",
)


class Num(Strict):
    """A scalar parameter with its source."""

    value: float
    unit: str = ""
    source: str = Field(min_length=1)
    tag: Tag


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
    responder_share: PerEtiology
    responder_mean: Num
    nonresponder_mean: Num
    sd: Num
    onset_days: Num


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


class ClinicalModel(Strict):
    nonspecific: Nonspecific
    drugs: dict[str, DrugResponse]
    responsiveness_correlation: Num
    combination_factor: Num
    visit_noise_sd: Num
    serious: Serious
    follow_up: FollowUp
    specialist: Specialist
    persistence: Persistence

    @model_validator(mode="after")
    def _probabilities(self) -> ClinicalModel:
        for name in ("responsiveness_correlation",):
            v = getattr(self, name).value
            if not -0.99 <= v <= 0.99:
                raise ValueError(f"{name} must be between -0.99 and 0.99")
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
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


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
    corr: float
    combination_factor: float
    noise_sd: float
    serious: dict[str, float]
    misuse_per_year: tuple[float, ...]
    follow_up: dict[str, float]
    specialist: dict[str, float]
    intervention_success: tuple[float, ...]
    persistence: dict[str, float] = field(default_factory=dict)
    non_ae_stop_per_year: tuple[float, ...] = ()  # per drug (catalogue order)


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
        ns_share=tuple(model.nonspecific.responder_share.of(e) for e in ETIOLOGY_NAMES),
        ns_resp_mean=model.nonspecific.responder_mean.value, ns_non_mean=model.nonspecific.nonresponder_mean.value,
        ns_sd=model.nonspecific.sd.value, ns_onset=model.nonspecific.onset_days.value,
        corr=model.responsiveness_correlation.value, combination_factor=model.combination_factor.value,
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
    )


# --------------------------------------------------------------------------------------------------
# Per-patient latent draws (vectorised once per replication) and the response function.
# --------------------------------------------------------------------------------------------------

N_CLASSES = len(ALL_CLASSES)
MAX_VISITS = 48  # visit-noise slots per patient; later visits reuse slots cyclically
RESPONSE_COLUMNS = 2 + 2 * N_CLASSES + MAX_VISITS


@dataclass(frozen=True)
class Latents:
    """Per-patient latent draws, as numpy arrays (rows = patients)."""

    ns_reduction: np.ndarray  # (n,) steady-state nonspecific fractional reduction
    class_u: np.ndarray  # (n, classes) copula uniforms: responder when below the responder probability
    class_z: np.ndarray  # (n, classes) standard normals for the effect magnitude
    noise: np.ndarray  # (n, MAX_VISITS) standard normals for visit noise


def draw_latents(tables: ModelTables, etiology: np.ndarray, uniforms: np.ndarray) -> Latents:
    """Turn a patient block of uniforms (n, RESPONSE_COLUMNS) into the latent draws."""
    n = uniforms.shape[0]
    u = np.clip(uniforms, 1e-12, 1 - 1e-12)
    share = np.asarray(tables.ns_share)[etiology]
    is_resp = u[:, 0] < share
    mean = np.where(is_resp, tables.ns_resp_mean, tables.ns_non_mean)
    ns = np.clip(mean + tables.ns_sd * ndtri(u[:, 1]), -0.3, 0.95)
    k = N_CLASSES
    z = ndtri(u[:, 2:2 + k])
    rho = tables.corr
    cov = np.full((k, k), rho) + np.eye(k) * (1 - rho)
    chol = np.linalg.cholesky(cov)
    class_u = ndtr(z @ chol.T)
    class_z = ndtri(u[:, 2 + k:2 + 2 * k])
    noise = ndtri(u[:, 2 + 2 * k:2 + 2 * k + MAX_VISITS])
    assert class_u.shape == (n, k)
    return Latents(ns, class_u, class_z, noise)


def drug_effect(tables: ModelTables, drug: DrugTable, dose: float, days_on: float, etiology: int,
                class_u: float, class_z: float, localized: bool) -> float:
    """Fractional reduction of the remaining pain from one drug (a partial effect for a non-responder)."""
    if days_on <= 0 or dose <= 0:
        return 0.0
    if drug.localized_only and not localized:
        return 0.0
    p = interp(drug.responder_prob, dose) * drug.etiology_modifier[etiology]
    e = drug.effect_mean + drug.effect_sd * class_z
    e = 0.0 if e < 0.0 else (0.95 if e > 0.95 else e)
    if class_u >= p:
        pmax = max(q for _, q in drug.responder_prob)
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
# Vectorised twins of drug_effect / observed_pain / onset_days (virtual trials, simulator/trial.py).
# Same formulas and same parameters; tests/test_trial.py checks them against the scalar functions.
# --------------------------------------------------------------------------------------------------


def interp_array(points: tuple[tuple[float, float], ...], x: float | np.ndarray) -> np.ndarray:
    """:func:`interp` on arrays (flat outside the points)."""
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    return np.interp(np.asarray(x, dtype=float), xs, ys)


def drug_effect_array(tables: ModelTables, drug: DrugTable, dose: float, days_on: float | np.ndarray,
                      etiology: np.ndarray, class_u: np.ndarray, class_z: np.ndarray,
                      localized: np.ndarray) -> np.ndarray:
    """:func:`drug_effect` for many patients at one dose (arrays over patients, or days broadcast)."""
    days = np.asarray(days_on, dtype=float)
    shape = np.broadcast(days, class_u).shape
    if dose <= 0:
        return np.zeros(shape)
    mod = np.asarray(drug.etiology_modifier)[etiology]
    p = float(interp(drug.responder_prob, dose)) * mod
    pmax = max(q for _, q in drug.responder_prob)
    partial = drug.nonresponder_effect * (p / pmax) if pmax > 0 else np.zeros_like(p)
    e = np.clip(drug.effect_mean + drug.effect_sd * class_z, 0.0, 0.95)
    e = np.where(class_u < p, e, e * partial)
    active = days > 0
    if drug.localized_only:
        active = active & np.asarray(localized, dtype=bool)
    build = np.where(days > 0, 1.0 - np.exp(-np.maximum(days, 0.0) / drug.onset_days), 0.0)
    return np.where(active, e * build, 0.0)


def observed_pain_array(baseline: np.ndarray, ns_reduction: np.ndarray, ns_onset: float,
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
