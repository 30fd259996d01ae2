"""The oracle's own statement of the guideline: the seeds' numbers, the patient and the policy as plain data,
and the caps and schedules re-derived from the drug catalogue.

Owns every rule and number the invariants hold themselves (citing the seed: an ECG over 40, a tricyclic
below 100 mg/day in older adults and cardiac disease, NRS >= 4 for a strong opioid, two failed first-line
classes, ...), :class:`Facts` (one patient), :class:`PolicyView` (a policy read as data) and the pure
functions over the catalogue (:func:`max_allowed`, :func:`fastest_dose`, :func:`earliest_offset`,
:func:`judged_target`, ...). Imports only the catalogue: never the engine's safety or policy helpers
(``tests/test_invariants_oracle.py`` checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

from ...model.catalog import Drug

TOL = 0.005  # days: event days are rounded to 3 decimals, schedule offsets too
SAME_MOMENT = 0.0015  # days: two rows of one moment differ by at most the last rounded digit (0.001); a visit
# minutes after a stop (six-week-trials 800 seed 13, patient 281: stop 503.995, visit 504.000) is another moment
EPS = 1e-6  # doses: relative tolerance for comparisons of daily doses

# ---- the oracle's own reading of the seeds (../shared/PATHWAY.md; seeds S000-S004) ------------------
FIRST_LINE: tuple[str, ...] = ("gabapentinoid", "snri", "tca")  # P1, all seeds
ANTIDEPRESSANTS: tuple[str, ...] = ("snri", "tca")  # S000 "gabapentinoid plus antidepressant"
OPIOIDS: tuple[str, ...] = ("weak_opioid", "strong_opioid")  # S004 "before prescribing any opioid"
TAPERED: tuple[str, ...] = ("snri", "tca", "weak_opioid", "strong_opioid", "gabapentinoid")  # S001 duloxetine
# "must be tapered slowly"; the same reading for the other antidepressants and the opioids (drugs.yaml taper
# sources); the gabapentinoids by their US labels (Lyrica, Neurontin: "taper gradually over a minimum of 1 week")
LABEL_TAPER_MIN_DAYS: dict[str, float] = {"gabapentinoid": 7.0}  # Lyrica and Neurontin US labels: discontinue
# gradually "over a minimum of 1 week", held by the oracle whatever drugs.yaml's taper schedule says
P8_FAILED_CLASSES = 2  # S004 "at least two first-line agents from different classes"
STRONG_OPIOID_MIN_NRS = 4.0  # S004 "patients with moderate to severe pain" (NRS >= 4)
TCA_OLDER_CARDIAC_BELOW = 100.0  # S000 "limit to <100 mg/day in older adults and those with cardiac disease"
ECG_OVER_AGE = 40.0  # S000, S002, S004 "ECG in patients over 40 years before starting"
TCA_CARDIAC_CONTRAINDICATIONS: tuple[str, ...] = ("recent_mi", "arrhythmia", "heart_block")  # S000
CARDIAC_DISEASE: tuple[str, ...] = ("cardiovascular_disease", "recent_mi", "arrhythmia", "heart_block")  # S000
CIPN_ETIOLOGIES: tuple[str, ...] = ("cipn_platinum", "cipn_taxane")  # P11
CIPN_NOT_OFFERED: tuple[str, ...] = ("tca", "gabapentinoid")  # S000 "nortriptyline, amitriptyline, and
# gabapentin showed no efficacy in RCTs"; S001 "evidence for gabapentinoids in CIPN is weak and waning"
SEED_START: dict[str, float] = {"duloxetine": 60.0}  # S000, S001, S004: duloxetine may start at 60 mg once
# daily; every other drug starts at the catalogue's first step (the seeds' starting doses)
HIV_ETIOLOGY = "hiv_neuropathy"  # S004 "in HIV-related neuropathy, opioids may paradoxically worsen pain"
TAPER_REVERSED_RULE = "P4.taper_reversed"  # a taper stopped at its current step: the drug goes back up (P4)
NO_TAPER_RULES: tuple[str, ...] = ("X.dropout", "X.serious_event")  # a drop-out or a serious event ends
# the drug at once: the clinician cannot taper (reading choice)
PROTOCOL_RULE = "X.protocol_step"
OWN_STOP_RULE = "X.patient_stop"  # the patient stopped a drug himself (not judged, not for an adverse event)
NO_BENEFIT_RULE = "P6.capsaicin_no_benefit"  # a patch stopped as its application wears off without benefit
INTERIM_RULE = "P8.titrate_to_response"  # an evaluation at a titration step (titration goes on unless relief)
LABEL_LOWEST_DOSE: dict[str, float] = {"pregabalin": 25.0, "gabapentin": 100.0}  # mg/day: the lowest daily
# dose of the US labels' renal tables (Lyrica 25-75 below CrCl 15; Neurontin 100-300 below CrCl 15), which is
# also the smallest capsule; S000, S001 "reduce ... doses based on creatinine clearance", not below the label
LABEL_RENAL_MAX: dict[str, tuple[tuple[float, float], ...]] = {  # (CrCl below mL/min, max mg/day) held by the
    # oracle from the US labels' renal tables, whatever drugs.yaml scales: Lyrica 300 / 150 / 75 at CrCl 30-60 /
    # 15-30 / < 15; Neurontin 1400 / 700 / 300 at 30-59 / 15-29 / < 15; Ultram 200 below 30 (S000, S001 "reduce
    # gabapentin and pregabalin doses based on creatinine clearance"); Effexor XR: at least halved below 30
    "pregabalin": ((60.0, 300.0), (30.0, 150.0), (15.0, 75.0)),
    "gabapentin": ((60.0, 1400.0), (30.0, 700.0), (15.0, 300.0)),
    "tramadol": ((30.0, 200.0),),
    "venlafaxine": ((30.0, 112.5),),
}
STRONG_OPIOID_RENAL: tuple[float, float] = (30.0, 0.5)  # (CrCl below mL/min, share of the normal-clearance
# schedule): a strong opioid is at least halved in severe renal impairment, held by the oracle whatever drugs.yaml
# says (MS Contin US label: lower doses, slow titration in renal impairment; the halving is the catalogue's named
# assumption, read here as the rule to hold)
SINGLE_APPLICATION_DAYS: dict[str, float] = {"capsaicin_8pct": 90.0}  # days one application acts: S002 "effect
# lasting up to 90 days" (S004 "up to 12 weeks"); the EU SmPC (Qutenza) repeats it every 90 days if pain persists
# or returns: held by the oracle, re-applied neither sooner nor later while the patch is continued
REOFFER_RULES: tuple[str, ...] = ("P4.reoffer_own_stop", "P7.tramadol_reoffer")  # the once-more re-offer
REFRACTORY_REFERRAL_RULES: tuple[str, ...] = ("P9.refractory_referral", "P9.re_referral")  # nothing left to try
CRITERIA_REFERRAL_RULE = "P9.referral_criteria"  # the policy's early criteria: options remain, care goes on
RENAL_IMPAIRMENT_BELOW = 60.0  # mL/min: CKD stage 3 and below (calibration.md 9); S000, S001 "reduce
# gabapentin and pregabalin doses based on creatinine clearance"

DOSE_EVENTS: tuple[str, ...] = ("drug_start", "dose_change", "drug_stop", "evaluation", "adverse_event",
                                 "taper_start")
NAMED_DOSE_EVENTS: tuple[str, ...] = ("taper_start", "drug_stop", "dose_limit", "adverse_event", "evaluation")
"""Rows that name a drug and a dose besides the doses given (drug_start, dose_change: ``dose_finite``): a stop
names the dose the patient was on (a cut taper: its current step), a taper start the dose before it, a limit its
value, an adverse event and an evaluation the dose they happened on (docs/event-log.md)."""
VISIT_EVENTS: tuple[str, ...] = ("maintenance_visit",)
"""Rows that name a dose when they name a drug (a visit with no drug running names neither)."""
UNDOSED_EVENTS: tuple[str, ...] = ("assessment", "transition", "excluded", "safety_check", "referral_queued",
                                   "consult", "dropout", "queue_left")
"""The event kinds that carry no dose (docs/event-log.md); any kind in none of these catalogues is flagged."""
DECISION_EVENTS: tuple[str, ...] = ("transition", "drug_start", "drug_stop", "evaluation", "dose_change", "taper_start",
                                     "dose_limit", "excluded", "safety_check")  # rows that must cite a rule
RISE_RULES: tuple[str, ...] = ("P2", "P3", "P8", "X.protocol_step")  # titration, optimisation, to response
FALL_RULES: tuple[str, ...] = ("P4", "P5")  # intolerance reduction, taper step
FAILED_OUTCOMES: tuple[str, ...] = ("partial", "none")
INTOLERANCE_RULES = ("P4.intolerance_stop", "P4.addon_not_tolerated", "X.serious_event")
BRIDGE_RULE = "P9.tramadol_bridge"  # tramadol as rescue while queued: tried for P8 only once judged failed
RELAPSE_RULE = "P4.relapse"  # issue 10: relief lost in maintenance; decided as a failed evaluation


# ------------------------------------------------------------------------------------------------
# Patient facts and the policy, as plain values
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the guideline needs to know about one patient (from the patients table)."""

    age: float
    crcl: float
    flags: frozenset[str] = frozenset()
    etiology: str = ""


@dataclass(frozen=True)
class PolicyView:
    """The policy options the oracle reads, as plain data (never the engine's decision functions)."""

    declared: frozenset[str] = frozenset()
    tramadol_never: bool = False
    target_doses: dict[str, float] = field(default_factory=dict)  # P2: the policy's own targets (seed ranges)
    start_doses: dict[str, float] = field(default_factory=dict)  # P2.start_dose_policy (duloxetine 60, S001)
    protocol_doses: dict[str, float] = field(default_factory=dict)  # numeric doses of protocol steps
    cipn_exclusions: bool = True  # P11.cipn_no_efficacy applies (the guideline)
    serotonin_avoid: bool = False  # P5.serotonin_avoid: no serotonergic drug with an SSRI
    order: tuple[str, ...] = ()  # the first-line drugs the policy offers (empty: all)
    hiv_strong_opioid_allowed: bool = False  # P8.hiv_caution: strong_opioid.hiv 'caution' allows it
    strong_opioid_trial_days: float | None = None  # P8.time_limited: judged by the end of the trial period
    restart_at_relief: bool = False  # P4.restart_dose: restart_dose 'relieving_dose' (default 'retitrate')

    @classmethod
    def of(cls, policy: Any) -> PolicyView:
        """Read a :class:`simulator.model.policy.Policy` (or any object with the same attribute names) as data."""
        if policy is None:
            return cls()
        protocol = getattr(policy, "protocol", None)
        proto: dict[str, float] = {}
        for step in getattr(protocol, "steps", None) or []:
            if isinstance(step.dose, int | float):
                proto[step.drug] = min(float(step.dose), proto.get(step.drug, math.inf))
        gate = getattr(policy, "strong_opioid", None)
        return cls(declared=frozenset(getattr(policy, "declared_departures", ()) or ()),
                   tramadol_never=getattr(policy, "tramadol", None) == "never",
                   target_doses=dict(getattr(policy, "target_doses", {}) or {}),
                   start_doses=dict(getattr(policy, "start_doses", {}) or {}),
                   protocol_doses=proto,
                   cipn_exclusions=bool(getattr(policy, "cipn_exclusions", True)),
                   serotonin_avoid=getattr(policy, "serotonin", "monitor") == "avoid",
                   order=tuple(getattr(policy, "order", ()) or ()),
                   hiv_strong_opioid_allowed=getattr(gate, "hiv", "avoid") == "caution",
                   strong_opioid_trial_days=getattr(gate, "max_trial_days", None),
                   restart_at_relief=getattr(policy, "restart_dose", "retitrate") == "relieving_dose")


# ------------------------------------------------------------------------------------------------
# Caps and schedules, re-derived from the catalogue (never from the engine)
# ------------------------------------------------------------------------------------------------


def is_older(drug: Drug, facts: Facts) -> bool:
    return facts.age >= drug.older_adult.min_age


def stretch_for(drug: Drug, facts: Facts) -> float:
    """Factor on the schedule's days: older adults (``older_adult.titration_stretch``) and cautions with a
    slower titration (orthostatic hypotension); the largest one that applies (P2: "titrate more slowly")."""
    stretch = drug.older_adult.titration_stretch if is_older(drug, facts) else 1.0
    for c in drug.cautions:
        if c.flag in facts.flags:
            stretch = max(stretch, c.titration_stretch)
    return stretch


def excluded(drug: Drug, facts: Facts) -> bool:
    """True when the catalogue forbids ``drug`` for this patient (contraindication or a renal cap of 0)."""
    if any(f in facts.flags for f in drug.contraindications):
        return True
    return renal_cap(drug, facts) <= 0


def renal_cap(drug: Drug, facts: Facts) -> float:
    """The lowest renal cap that applies (inf when none; 0 means not at all)."""
    caps = [rc.max_dose for rc in drug.renal_caps if facts.crcl < rc.crcl_below]
    return min(caps) if caps else math.inf


def renal_factor(drug: Drug, facts: Facts) -> float:
    """The share of the normal-clearance schedule a drug may reach in this CrCl band (P5.renal_dose).

    The factor of the lowest ``renal_exposure`` band of ``drugs.yaml`` the patient's CrCl falls in
    (pregabalin x 1/2 at CrCl 30-59, x 1/4 at 15-29, x 1/8 below 15, as the labels' renal tables scale the
    whole dose range); 1 outside every band.
    """
    factors = [b.factor for b in drug.renal_exposure if facts.crcl < b.crcl_below]
    return min(factors) if factors else 1.0


def label_renal_max(name: str, facts: Facts) -> float:
    """The label's highest daily dose in the patient's CrCl band (:data:`LABEL_RENAL_MAX`; inf outside them)."""
    caps = [cap for below, cap in LABEL_RENAL_MAX.get(name, ()) if facts.crcl < below]
    return min(caps) if caps else math.inf


def max_allowed(drug: Drug, facts: Facts) -> float:
    """Catalogue maximum adjusted for age, cautions and renal function (P2, P5).

    The maximum, the older-adult cap and the caution caps are doses in normal clearance; in a renal
    ``renal_exposure`` band they scale with the band's factor, as every dose does (a dose ``x`` at factor
    ``f`` acts like ``x / f``; docs/event-log.md). A ``renal_caps`` cap (tramadol 200 below CrCl 30) is absolute.
    """
    cap = drug.max_dose
    if is_older(drug, facts) and drug.older_adult.max_dose is not None:
        cap = min(cap, drug.older_adult.max_dose)
    for c in drug.cautions:
        if c.flag in facts.flags:
            cap = min(cap, c.max_dose)
    cap *= renal_factor(drug, facts)
    rc = renal_cap(drug, facts)
    if 0 < rc < cap:
        cap = rc
    return cap


def older_start(drug: Drug) -> float | None:
    """The catalogue's first dose for older adults, when it gives one (P2.older_adult_start)."""
    return drug.older_adult.start_dose


def lowest_dose(name: str, drug: Drug) -> float:
    """The smallest daily dose a drug is given at (P2.min_dose): the catalogue's ``min_dose``, and never
    below the label's lowest renal-band dose the oracle holds itself (:data:`LABEL_LOWEST_DOSE`)."""
    return max(drug.min_dose or 0.0, LABEL_LOWEST_DOSE.get(name, 0.0))


@lru_cache(maxsize=64)
def _unit_grid(strengths: tuple[float, ...]) -> tuple[Fraction, tuple[int, ...]]:
    """The strengths' greatest common unit and each strength as a multiple of it (exact, by fractions)."""
    fr = [Fraction(str(s)) for s in strengths]
    den = math.lcm(*(f.denominator for f in fr))
    nums = [int(f * den) for f in fr]
    g = math.gcd(*nums)
    return Fraction(g, den), tuple(n // g for n in nums)


@lru_cache(maxsize=65536)
def _reachable(mult: tuple[int, ...], k: int, units: int) -> bool:
    """True when ``k`` grid units are a sum of at most ``units`` of the multiples ``mult`` (descending): a
    memoised search downwards from the dose, an algorithm of the oracle's own (the engine enumerates sums)."""
    if k == 0:
        return True
    if units == 0 or k > mult[0] * units:
        return False
    return any(m <= k and _reachable(mult, k - m, units - 1) for m in mult)


def givable(drug: Drug, dose: float) -> bool:
    """P2.givable_dose: ``dose`` (a daily dose) is a sum of whole units of the marketed ``strengths`` taken at
    most ``units_per_day`` times a day (drugs.yaml, from the US labels)."""
    if not math.isfinite(dose) or dose <= 0 or dose > max(drug.strengths) * drug.units_per_day:
        return False  # more than the most units a day can give (and no table the size of the dose)
    unit, mult = _unit_grid(tuple(drug.strengths))
    k = Fraction(dose).limit_denominator(1000) / unit
    if k.denominator != 1:
        return False
    return _reachable(tuple(sorted(mult, reverse=True)), int(k), drug.units_per_day)


def smallest_givable(drug: Drug) -> float:
    """The smallest daily dose marketed units give: the smallest strength (one unit)."""
    return min(drug.strengths)


def givable_below(drug: Drug, dose: float) -> float:
    """The largest givable daily dose not above ``dose``, never below :func:`smallest_givable` (the rounding
    rule of P2.givable_dose, re-derived by walking the strengths' common unit downwards)."""
    unit, _mult = _unit_grid(tuple(drug.strengths))
    dose = min(dose, max(drug.strengths) * drug.units_per_day)
    k = math.floor(Fraction(dose).limit_denominator(1000) / unit)
    while k > 0:
        if givable(drug, float(k * unit)):
            return float(k * unit)
        k -= 1
    return smallest_givable(drug)


def fastest_dose(drug: Drug, facts: Facts, offset: float, start: float | None = None) -> float:
    """The highest dose the catalogue schedule may have reached ``offset`` days after the start (P2, P13).

    The schedule's days are stretched for older adults (``older_adult.titration_stretch``); beyond its last
    step it goes on with its last increment and interval up to the drug's maximum (dose optimisation and a
    policy's higher target titrate no faster than the schedule itself). ``start``: a policy's start dose
    (S001: duloxetine straight at 60 mg/day, see :func:`legal_start`) starts the schedule at the day it
    reaches that dose, so the steps after it keep their own intervals.
    """
    stretch = stretch_for(drug, facts)
    days = [s.day * stretch for s in drug.titration]
    doses = [s.dose for s in drug.titration]
    if start is not None and start > doses[0]:
        offset += earliest_offset(drug, facts, start)
    best = doses[0]
    for day, dose in zip(days, doses, strict=True):
        if day <= offset + TOL:
            best = dose
    if len(days) > 1 and offset + TOL >= days[-1]:
        inc = doses[-1] - doses[-2]
        gap = days[-1] - days[-2]
        if inc > 0 and gap > 0:
            steps = math.floor((offset + TOL - days[-1]) / gap)
            best = max(best, doses[-1] + steps * inc)
    return min(max(best, start or 0.0), drug.max_dose)


def legal_start(name: str, drug: Drug, policy_start: float | None) -> float | None:
    """A policy's start dose as far as the seeds allow it: up to the seeds' starting dose (:data:`SEED_START`)
    or the catalogue's first step; a higher policy start is a fast titration (P13)."""
    if policy_start is None:
        return None
    return min(policy_start, max(SEED_START.get(name, 0.0), drug.titration[0].dose))


def earliest_offset(drug: Drug, facts: Facts, dose: float) -> float:
    """Fewest days after the start at which the (extended) catalogue schedule reaches ``dose`` (inf if never)."""
    if dose > drug.max_dose * (1 + EPS):
        return math.inf
    stretch = stretch_for(drug, facts)
    for s in drug.titration:
        if s.dose >= dose * (1 - EPS):
            return s.day * stretch
    t = drug.titration
    if len(t) < 2 or t[-1].dose <= t[-2].dose:
        return math.inf
    inc, gap = t[-1].dose - t[-2].dose, (t[-1].day - t[-2].day) * stretch
    return t[-1].day * stretch + math.ceil((dose * (1 - EPS) - t[-1].dose) / inc) * gap


def judged_target(drug: Drug, facts: Facts, pol: PolicyView, name: str) -> float:
    """The dose a drug must reach before it may be judged failed (P3, P13: "ensure target doses are reached").

    The catalogue target, or the policy's own lower target or protocol dose (seed ranges, e.g. gabapentin
    900-3600 in S004), scaled by the renal band (exposure, P5.renal_dose) and capped at the patient's maximum,
    not below the smallest marketed dose, rounded down to a givable dose (P2.givable_dose: gabapentin's 720
    mg/day at CrCl 30-59 is given as 700).
    """
    target = drug.target_dose
    for override in (pol.target_doses.get(name), pol.protocol_doses.get(name)):
        if override is not None:
            target = min(target, override)
    need = max(min(target * renal_factor(drug, facts), max_allowed(drug, facts)), lowest_dose(name, drug))
    return givable_below(drug, need)  # P2.givable_dose: the target as marketed units give it
