"""The clinical model compiled for the engine: plain-Python tables of every drug and parameter.

Owns :func:`compile_model` (catalogue + ``clinical.yaml`` -> :class:`ModelTables`, one :class:`DrugTable` per
drug, adverse-event type codes and slots), :func:`interp` (the scalar dose-curve interpolation) and
``MAX_DRUGS`` (the room reserved per drug in the patient's random blocks). The numbers and their sources are
in the schema (:mod:`simulator.model.clinical`); the response and adverse-event functions that read these
tables are in :mod:`simulator.model.response`. No pydantic object is touched per event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .catalog import ALL_CLASSES, Catalog, load_catalog
from .clinical import ETIOLOGY_NAMES, ClinicalModel, PerEtiology, load_clinical

MAX_DRUGS = 12  # latent columns reserved per drug (the catalogue may grow without shifting other draws)




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
