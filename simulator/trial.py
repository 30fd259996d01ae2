"""Virtual randomised trials inside the simulator (fixed arms, no pathway decisions).

A trial draws a cohort from a cohort file, randomises patients to arms (stream ``streams.TRIAL``) and
follows each arm for ``weeks`` weeks with the SAME clinical model the engine uses:

* latent draws: :func:`~simulator.clinical.draw_latents` on the ``streams.RESPONSE`` block;
* pain: :func:`~simulator.clinical.drug_effect` / :func:`~simulator.clinical.observed_pain` (their
  vectorised twins, checked equal in ``tests/test_trial.py``); the second drug of a combination arm
  contributes ``combination_factor`` of its effect, as in the engine;
* adverse events: the engine's rule on the ``streams.ADVERSE`` block (same columns): the event of type
  ``k`` occurs when ``u_inc < incidence_k(dose at onset)``, its onset is exponential with the drug's
  median, and it ends the drug when ``u_inc < incidence_k(dose) * min(1, withdrawal(dose) / sum of
  incidences(dose))``. Events after the withdrawal or after the end of the trial do not happen.
  Serious events (engine) are not part of trial reports.

Arms are titrated per the catalogue (``titration`` of ``drugs.yaml``) up to the arm's dose and then held
there; doses above the catalogue's last step are reached one titration interval later. Trial doses are
fixed (no renal or age caps: trial populations excluded those patients).

Analysis (as the Cochrane reviews, BOCF): a patient who withdraws for an adverse event keeps the
baseline pain (change 0) and is a non-responder; the end-of-trial pain is one observed NRS at the last
visit (with visit noise). ``mean_pain_end`` (the Gilron crossover outcome, pain at maximum tolerated
dose) is the mean over patients who completed the arm. Time to onset of a sustained 1-point improvement
(Freeman 2008) is read on the patient's expected (noise-free) pain curve, which is monotone, so the
first day it is >= 1 point below baseline is sustained; Kaplan-Meier median, censored at withdrawal and
at the end of the trial.

Crossover designs give every patient every arm, in a random order, in consecutive periods of
``weeks`` weeks with complete washout of the drug effect (the nonspecific response keeps building).

Trial-design properties (``TrialSpec``; the calibration battery sets them per trial design in
``data/calibration_targets.yaml``, with their sources). They describe a trial, never the pathway
simulation, which does not read them:

* ``placebo_scale`` multiplies the share of nonspecific (placebo) responders of the trial population
  (clipped to 1). Placebo response differs between trials and has risen over time (calibration.md 1c:
  Arakawa 2015, Tuttle 2015, Finnerup 2018), so each trial population gets its own modifier; the clinical
  model's ``nonspecific.responder_share`` is the per-etiology value of the trial pool as a whole (1.0).
* ``titrate``: ``False`` starts every arm at its randomised dose on day 0 (fixed-dose trials without
  titration, e.g. the pregabalin trials pooled by Freeman 2008); default: catalogue titration.
* ``nrs_resolution``: the resolution at which the trial records pain (0.1 = a mean of daily diary scores;
  1 = one whole-number rating, e.g. the BPI-SF average-pain item of Smith 2013). Baseline and
  end-of-trial pain are rounded to it before the analysis; the onset analysis is unaffected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from . import streams
from .clinical import (
    MAX_VISITS,
    RESPONSE_COLUMNS,
    DrugTable,
    ModelTables,
    compile_model,
    draw_latents,
    drug_effect_array,
    interp_array,
    observed_pain_array,
    onset_days_array,
)
from .cohort import Cohort, generate_cohort, load_cohort_spec
from .engine import N_SERIOUS
from .errors import InputError
from .packaged import resolve_cohort

Design = Literal["parallel", "crossover"]
PLACEBO = "placebo"


@dataclass(frozen=True)
class ArmDrug:
    drug: DrugTable
    dose: float
    steps: tuple[tuple[float, float], ...]  # (day offset, dose)


@dataclass(frozen=True)
class Arm:
    """One trial arm: placebo (no drugs) or one or more drugs at fixed doses."""

    label: str
    drugs: tuple[ArmDrug, ...] = ()

    @property
    def is_placebo(self) -> bool:
        return not self.drugs


def arm_schedule(drug: DrugTable, dose: float) -> tuple[tuple[float, float], ...]:
    """Catalogue titration capped at ``dose``; a dose above the last step follows one interval later."""
    steps: list[tuple[float, float]] = []
    for day, d in drug.titration:
        d = min(d, dose)
        if steps and d <= steps[-1][1]:
            continue
        steps.append((float(day), d))
    if steps[-1][1] < dose:
        gap = steps[-1][0] - steps[-2][0] if len(steps) > 1 else 7.0
        steps.append((steps[-1][0] + max(gap, 1.0), dose))
    return tuple(steps)


def parse_arm(spec: str, tables: ModelTables) -> Arm:
    """``placebo`` or ``DRUG[:DOSE][+DRUG[:DOSE]]`` (dose in the drug's unit; default its target dose)."""
    text = spec.strip()
    if not text:
        raise InputError("an arm is empty", field="--arm", fix="write DRUG[:DOSE_MG] or placebo, e.g. pregabalin:300")
    if text.lower() == PLACEBO:
        return Arm(PLACEBO)
    drugs: list[ArmDrug] = []
    for part in text.split("+"):
        name, _, dose_txt = part.strip().partition(":")
        name = name.strip()
        if name not in tables.by_name:
            raise InputError(f"unknown drug '{name}' in arm '{spec}'", field="--arm",
                             fix=f"use placebo or one of: {', '.join(tables.by_name)}")
        d = tables.by_name[name]
        if dose_txt.strip():
            try:
                dose = float(dose_txt)
            except ValueError:
                raise InputError(f"the dose '{dose_txt}' in arm '{spec}' is not a number", field="--arm",
                                 fix=f"write {name}:DOSE with DOSE in {d.unit}, e.g. {name}:{d.target_dose:g}") from None
        else:
            dose = d.target_dose
        if not math.isfinite(dose) or dose <= 0:
            raise InputError(f"the dose of {name} in arm '{spec}' must be positive (got {dose_txt})", field="--arm",
                             fix=f"use a dose between 0 and {d.max_dose:g} {d.unit}")
        if dose > d.max_dose:
            raise InputError(f"{dose:g} {d.unit} of {name} is above its maximum dose {d.max_dose:g} {d.unit}",
                             field="--arm", fix=f"use a dose of at most {d.max_dose:g}")
        if any(a.drug.name == name for a in drugs):
            raise InputError(f"arm '{spec}' names {name} twice", field="--arm", fix="name each drug once per arm")
        drugs.append(ArmDrug(d, dose, arm_schedule(d, dose)))
    label = "+".join(f"{a.drug.name}:{a.dose:g}" for a in drugs)
    return Arm(label, tuple(drugs))


@dataclass(frozen=True)
class TrialSpec:
    cohort: str
    arms: tuple[str, ...]
    weeks: float
    patients: int
    seed: int = 1
    design: Design = "parallel"
    placebo_scale: float = 1.0  # trial-population modifier of the nonspecific responder share
    titrate: bool = True  # False: every arm starts at its dose on day 0
    nrs_resolution: float = 0.1  # pain recorded to this resolution (1.0 = whole points)


@dataclass
class ArmResult:
    label: str
    n: int
    responders30: float
    responders50: float
    any_reduction: float
    mean_change: float
    mean_pain_end: float
    ae_incidence: dict[str, float]
    ae_withdrawal: float
    onset_median_days: float | None
    nnt50: dict[str, float | None] = field(default_factory=dict)
    nnt30: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm": self.label, "n": self.n, "responders_30": self.responders30,
            "responders_50": self.responders50, "any_reduction": self.any_reduction,
            "mean_nrs_change": self.mean_change, "mean_pain_end": self.mean_pain_end,
            "nnt_50_vs_placebo": self.nnt50 or None, "nnt_30_vs_placebo": self.nnt30 or None,
            "ae_incidence": self.ae_incidence, "ae_withdrawal": self.ae_withdrawal,
            "median_days_to_sustained_1pt": self.onset_median_days,
        }


@dataclass
class TrialResult:
    spec: TrialSpec
    arms: list[ArmResult]
    analysis: str = ("BOCF: adverse-event withdrawals keep baseline pain and are non-responders; "
                     "mean_pain_end over completers of the arm")

    def arm(self, label: str) -> ArmResult:
        for a in self.arms:
            if a.label == label:
                return a
        raise KeyError(label)

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"cohort": s.cohort, "design": s.design, "weeks": s.weeks, "patients": s.patients, "seed": s.seed,
                "analysis": self.analysis, "arms": [a.as_dict() for a in self.arms]}


def nnt(p_drug: float, n_drug: int, p_pbo: float, n_pbo: int) -> dict[str, float | None]:
    """NNT = 1 / risk difference with a 95% CI from the Wald CI of the difference (None = not bounded)."""
    rd = p_drug - p_pbo
    se = math.sqrt(p_drug * (1 - p_drug) / max(n_drug, 1) + p_pbo * (1 - p_pbo) / max(n_pbo, 1))
    lo, hi = rd - 1.959964 * se, rd + 1.959964 * se

    def inv(x: float) -> float | None:
        return None if x <= 0 else 1.0 / x

    return {"nnt": inv(rd), "ci_low": inv(hi), "ci_high": inv(lo) if lo > 0 else None}


def _km_median(durations: np.ndarray, events: np.ndarray) -> float | None:
    """Kaplan-Meier median (first time survival <= 0.5), None when not reached."""
    if durations.size == 0:
        return None
    times = np.unique(durations[events])
    surv = 1.0
    for t in times:
        at_risk = np.count_nonzero(durations >= t)
        d = np.count_nonzero((durations == t) & events)
        surv *= 1.0 - d / at_risk
        if surv <= 0.5:
            return float(t)
    return None


class _Population:
    """Cohort, latents and adverse-event uniforms of one trial (shared by all arms)."""

    def __init__(self, tables: ModelTables, cohort: Cohort, seed: int, placebo_scale: float = 1.0) -> None:
        n = cohort.n
        self.tables = tables
        self.cohort = cohort
        self.baseline = cohort.baseline_nrs.astype(float)
        self.etiology = cohort.etiology.astype(int)
        self.localized = cohort.localized.astype(bool)
        latent_tables = tables
        if placebo_scale != 1.0:  # trial-population modifier of the nonspecific responder share
            latent_tables = dataclasses.replace(
                tables, ns_share=tuple(min(1.0, s * placebo_scale) for s in tables.ns_share))
        self.latents = draw_latents(latent_tables, cohort.etiology, streams.block(seed, 0, streams.RESPONSE, n,
                                                                                  RESPONSE_COLUMNS))
        n_adv = 2 * tables.n_ae_slots + N_SERIOUS * len(tables.drugs)
        self.adverse = streams.block(seed, 0, streams.ADVERSE, n, n_adv)


def _dose_at(steps: tuple[tuple[float, float], ...], day: np.ndarray | float) -> np.ndarray:
    offs = np.array([s[0] for s in steps])
    doses = np.array([s[1] for s in steps])
    idx = np.searchsorted(offs, np.asarray(day, dtype=float) + 1e-9, side="right") - 1
    return doses[np.clip(idx, 0, None)]


def _arm_outcomes(pop: _Population, arm: Arm, rows: np.ndarray, start: float, days: int,
                  noise_slot: int, resolution: float = 0.1) -> dict[str, np.ndarray]:
    """Per-patient outcomes of ``rows`` on ``arm`` over a period starting at trial day ``start``."""
    t = pop.tables
    lat = pop.latents
    base = pop.baseline[rows]
    etio = pop.etiology[rows]
    loc = pop.localized[rows]
    ns = lat.ns_reduction[rows]
    end = float(days)
    # --- adverse events (engine rule) ----------------------------------------------------------------
    wd_day = np.full(rows.size, np.inf)
    occurrences: list[tuple[str, np.ndarray, np.ndarray]] = []
    for a in arm.drugs:
        d = a.drug
        for k, slot in enumerate(d.ae_slots):
            u_inc = pop.adverse[rows, 2 * slot]
            day = onset_days_array(d.ae_onset_median, pop.adverse[rows, 2 * slot + 1])
            dose_then = _dose_at(a.steps, day)
            inc_then = np.interp(dose_then, [p[0] for p in d.ae_incidence[k]], [p[1] for p in d.ae_incidence[k]])
            occurs = (u_inc < inc_then) & (day < end)
            total = sum(interp_array(c, dose_then) for c in d.ae_incidence)
            wd = interp_array(d.ae_withdrawal, dose_then)
            ratio = np.where(total > 0, np.minimum(1.0, wd / np.where(total > 0, total, 1.0)), 0.0)
            stops = occurs & (total > 0) & (u_inc < inc_then * ratio)
            wd_day = np.where(stops & (day < wd_day), day, wd_day)
            occurrences.append((t.ae_types[d.ae_types[k]], occurs, day))
    withdrawn = np.isfinite(wd_day)
    ae: dict[str, np.ndarray] = {}
    for name, occurs, day in occurrences:
        hit = occurs & (day <= wd_day)
        ae[name] = ae[name] | hit if name in ae else hit

    # --- pain ----------------------------------------------------------------------------------------
    def effects(day: float) -> list[np.ndarray]:
        out = []
        for j, a in enumerate(arm.drugs):
            d = a.drug
            ci = d.class_index
            dose = float(_dose_at(a.steps, day))
            e = drug_effect_array(t, d, dose, day, etio, lat.class_u[rows, ci], lat.class_z[rows, ci], loc)
            out.append(e * t.combination_factor if j > 0 else e)
        return out

    pain_end = observed_pain_array(base, ns, t.ns_onset, start + end, effects(end), t.noise_sd,
                                   lat.noise[rows, noise_slot % MAX_VISITS])
    if resolution != 0.1:  # the trial records pain to this resolution (baseline and end alike)
        base_rec = np.round(base / resolution) * resolution
        pain_end = np.round(pain_end / resolution) * resolution
    else:
        base_rec = base
    pain_end = np.where(withdrawn, base_rec, pain_end)  # BOCF
    # expected (noise-free) daily pain for the time to a sustained 1-point improvement
    onset = np.full(rows.size, np.inf)
    for dd in range(1, days + 1):
        expected = observed_pain_array(base, ns, t.ns_onset, start + dd, effects(float(dd)), t.noise_sd, 0.0)
        newly = np.isinf(onset) & (base - expected >= 1.0 - 1e-9)
        onset[newly] = dd
    event = np.isfinite(onset) & (onset < wd_day)
    duration = np.where(event, onset, np.minimum(end, np.ceil(wd_day)))
    return {"baseline": base_rec, "pain_end": pain_end, "withdrawn": withdrawn, "ae": ae,  # type: ignore[dict-item]
            "onset": duration, "onset_event": event}


def _summarise(label: str, o: dict[str, Any]) -> ArmResult:
    base, pain, wd = o["baseline"], o["pain_end"], o["withdrawn"]
    red = np.where(base > 0, (base - pain) / np.where(base > 0, base, 1.0), 0.0)
    n = int(base.size)
    return ArmResult(
        label=label, n=n,
        responders30=float(np.mean(red >= 0.3 - 1e-9)), responders50=float(np.mean(red >= 0.5 - 1e-9)),
        any_reduction=float(np.mean(pain < base)), mean_change=float(np.mean(pain - base)),
        mean_pain_end=float(np.mean(pain[~wd])) if np.any(~wd) else math.nan,
        ae_incidence={k: float(np.mean(v)) for k, v in o["ae"].items()},
        ae_withdrawal=float(np.mean(wd)),
        onset_median_days=_km_median(o["onset"], o["onset_event"]),
    )


def run_trial(spec: TrialSpec, tables: ModelTables | None = None) -> TrialResult:
    """Run a virtual trial; raise InputError for bad input."""
    tables = tables or compile_model()
    if not spec.arms:
        raise InputError("a trial needs at least one arm", field="--arm", fix="add --arm DRUG[:DOSE] --arm placebo")
    if not (isinstance(spec.weeks, int | float) and math.isfinite(spec.weeks) and spec.weeks > 0):
        raise InputError(f"weeks must be positive (got {spec.weeks})", field="--weeks", fix="use e.g. --weeks 12")
    if spec.patients < 1:
        raise InputError(f"patients must be at least 1 (got {spec.patients})", field="--patients",
                         fix="use e.g. --patients 2000")
    if spec.design not in ("parallel", "crossover"):
        raise InputError(f"unknown design '{spec.design}'", field="--design", fix="use parallel or crossover")
    if not (math.isfinite(spec.placebo_scale) and spec.placebo_scale >= 0):
        raise InputError(f"placebo_scale must be a non-negative number (got {spec.placebo_scale})",
                         field="placebo_scale", fix="use e.g. 1.0 (the clinical model's responder share)")
    if not (math.isfinite(spec.nrs_resolution) and spec.nrs_resolution > 0):
        raise InputError(f"nrs_resolution must be positive (got {spec.nrs_resolution})", field="nrs_resolution",
                         fix="use 0.1 (diary means) or 1 (whole-number ratings)")
    arms = [parse_arm(a, tables) for a in spec.arms]
    if not spec.titrate:
        arms = [Arm(a.label, tuple(dataclasses.replace(d, steps=((0.0, d.dose),)) for d in a.drugs)) for a in arms]
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise InputError("two arms are the same", field="--arm", fix="give each arm once")
    cohort = generate_cohort(load_cohort_spec(resolve_cohort(spec.cohort, field="--cohort")), spec.patients, spec.seed, 0)
    pop = _Population(tables, cohort, spec.seed, spec.placebo_scale)
    days = max(int(round(spec.weeks * 7)), 1)
    n, k = spec.patients, len(arms)
    u = streams.block(spec.seed, 0, streams.TRIAL, n, k)
    results: list[ArmResult] = []
    if spec.design == "parallel":
        # balanced randomisation: patients ranked by their uniform, dealt to arms in turn
        order = np.argsort(u[:, 0], kind="stable")
        alloc = np.empty(n, dtype=int)
        alloc[order] = np.arange(n) % k
        for j, arm in enumerate(arms):
            rows = np.flatnonzero(alloc == j)
            results.append(_summarise(arm.label, _arm_outcomes(pop, arm, rows, 0.0, days, 0, spec.nrs_resolution)))
    else:
        period_of = np.argsort(np.argsort(u, axis=1), axis=1)  # period of arm j for each patient
        rows_all = np.arange(n)
        for j, arm in enumerate(arms):
            parts = []
            for q in range(k):
                rows = rows_all[period_of[:, j] == q]
                if rows.size:
                    parts.append(_arm_outcomes(pop, arm, rows, float(q * days), days, q, spec.nrs_resolution))
            merged: dict[str, Any] = {}
            for key in ("baseline", "pain_end", "withdrawn", "onset", "onset_event"):
                merged[key] = np.concatenate([p[key] for p in parts])
            names = {nm for p in parts for nm in p["ae"]}
            merged["ae"] = {nm: np.concatenate([p["ae"].get(nm, np.zeros(p["baseline"].size, bool)) for p in parts])
                            for nm in names}
            results.append(_summarise(arm.label, merged))
    pbo = next((r for r, a in zip(results, arms, strict=True) if a.is_placebo), None)
    if pbo is not None:
        for r, a in zip(results, arms, strict=True):
            if not a.is_placebo:
                r.nnt50 = nnt(r.responders50, r.n, pbo.responders50, pbo.n)
                r.nnt30 = nnt(r.responders30, r.n, pbo.responders30, pbo.n)
    return TrialResult(spec, results)
