"""Guideline invariants checked on every simulated trajectory (``painpath check``): an independent oracle.

The checks read only three things: a run's **event table**, its **patients table**, and the guideline's
**data** (the drug catalogue ``simulator/data/drugs.yaml`` through :func:`simulator.model.catalog.load_catalog`,
the rulebook through :func:`simulator.model.rules.load_rules`). Where a seed states a rule or a number outright
(an ECG over 40, a tricyclic below 100 mg/day in older adults and cardiac disease, NRS >= 4 for a strong
opioid, two failed first-line classes, no tricyclic or gabapentinoid in CIPN, which drugs are tapered),
the oracle holds it itself, citing the seed, so that a wrong number in the data is caught too.

This module never imports the engine or its helpers (``simulator.engine.simulation``, ``simulator.model.safety``,
``simulator.model.patient``, ``simulator.model.policy``, ``simulator.model.pathway``, ``simulator.model.clinical``): a test
inspects its imports. The policy is read as plain data (its declared departures and the few options that
change what the guideline allows, e.g. ``target_doses``), never through the engine's decision functions.
A trajectory is replayed row by row and each rule is asked again.

A policy may depart from the guideline on purpose by listing the departure in
``policy.declared_departures``. Violations of an invariant whose departure is declared are reported as
*declared departures* and do not fail the check.

Reading choices where the seeds leave room are written next to each check and in ``docs/invariants.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ..model.catalog import Catalog, Drug, load_catalog
from ..model.rules import load_rules

TOL = 0.005  # days: event days are rounded to 3 decimals, schedule offsets too
EPS = 1e-6  # doses: relative tolerance for comparisons of daily doses

# ---- the oracle's own reading of the seeds (../shared/PATHWAY.md; seeds S000-S004) ------------------
FIRST_LINE: tuple[str, ...] = ("gabapentinoid", "snri", "tca")  # P1, all seeds
ANTIDEPRESSANTS: tuple[str, ...] = ("snri", "tca")  # S000 "gabapentinoid plus antidepressant"
OPIOIDS: tuple[str, ...] = ("weak_opioid", "strong_opioid")  # S004 "before prescribing any opioid"
TAPERED: tuple[str, ...] = ("snri", "tca", "weak_opioid", "strong_opioid")  # S001 duloxetine "must be
# tapered slowly"; the same reading for the other antidepressants and the opioids (drugs.yaml taper sources)
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
NO_TAPER_RULES: tuple[str, ...] = ("X.dropout", "X.serious_event")  # a drop-out or a serious event ends
# the drug at once: the clinician cannot taper (reading choice)
PROTOCOL_RULE = "X.protocol_step"
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
RENAL_IMPAIRMENT_BELOW = 60.0  # mL/min: CKD stage 3 and below (calibration.md 9); S000, S001 "reduce
# gabapentin and pregabalin doses based on creatinine clearance"

DOSE_EVENTS: tuple[str, ...] = ("drug_start", "dose_change", "drug_stop", "evaluation", "adverse_event",
                                 "taper_start")
DECISION_EVENTS: tuple[str, ...] = ("transition", "drug_start", "drug_stop", "evaluation", "dose_change", "taper_start",
                                     "dose_limit", "excluded", "safety_check")  # rows that must cite a rule
RISE_RULES: tuple[str, ...] = ("P2", "P3", "P8", "X.protocol_step")  # titration, optimisation, to response
FALL_RULES: tuple[str, ...] = ("P4", "P5")  # intolerance reduction, taper step
FAILED_OUTCOMES: tuple[str, ...] = ("partial", "none")
INTOLERANCE_RULES = ("P4.intolerance_stop", "P4.addon_not_tolerated", "X.serious_event")
BRIDGE_RULE = "P9.tramadol_bridge"  # tramadol as rescue while queued: tried for P8 only once judged failed
RELAPSE_RULE = "P4.relapse"  # issue 10: relief lost in maintenance; decided as a failed evaluation
PATIENT_FLAGS: tuple[str, ...] = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block",
                                  "cardiovascular_disease", "glaucoma", "orthostatic_hypotension", "ssri_use",
                                  "depression", "localized", "allodynia")


@dataclass(frozen=True)
class Invariant:
    """One guideline rule checked on every trajectory: its name, rule id, seeds, what it reads."""

    name: str
    rule: str
    seeds: str
    description: str
    reads: str
    departure: str | None = None  # the declared departure that excuses it, if any


INVARIANTS: tuple[Invariant, ...] = (
    # --- doses -----------------------------------------------------------------------------------
    Invariant("dose_finite", "P2", "S000-S004",
              "every drug start and dose change carries a finite dose above 0 (NaN never reaches a dose)",
              "events: dose of drug_start/dose_change rows"),
    Invariant("max_dose", "P2.max_dose_cap", "S000, S001, S004",
              "no dose above the catalogue maximum adjusted for age, renal band and cautions",
              "events: doses; patients: age, CrCl, flags; drugs.yaml: max_dose, older_adult, renal_caps, cautions; "
              "the labels' renal-band maxima held by the oracle (LABEL_RENAL_MAX)"),
    Invariant("tca_older_cardiac", "P5.tca_cardiac_cap", "S000",
              "a tricyclic stays below 100 mg/day in older adults and in cardiac disease",
              "events: TCA doses; patients: age, cardiac flags; drugs.yaml: older_adult.min_age"),
    Invariant("renal_dose", "P5.renal_dose", "S000, S001",
              "below CrCl 60 a gabapentinoid is reduced from the first dose: every dose within the band's factor "
              "times the normal-clearance schedule (the whole schedule scales, not only its maximum)",
              "events: gabapentinoid doses and days; patients: CrCl; drugs.yaml: titration, renal_exposure"),
    Invariant("older_adult_start", "P2.older_adult_start", "S000, S001",
              "older adults start at the catalogue's lower older-adult first dose; in a renal band at the lower "
              "of that dose and the band's first dose (P2.older_renal_start), never below the smallest marketed dose",
              "events: drug_start doses; patients: age, CrCl; drugs.yaml: older_adult.start_dose, titration, "
              "renal_exposure, min_dose; policy: start_doses"),
    Invariant("min_dose", "P2.min_dose", "S000, S001",
              "no start, titration or reduced dose below the drug's smallest marketed daily dose (renal-band and "
              "older-adult reductions do not multiply into a sub-therapeutic dose); taper steps are exempt",
              "events: drug_start and dose_change doses (not taper steps); drugs.yaml: min_dose; the labels' "
              "lowest renal-band doses held by the oracle (LABEL_LOWEST_DOSE)"),
    Invariant("titration_schedule", "P13", "S000",
              "titration never faster than the catalogue schedule (older adults stretched; beyond the target "
              "the schedule goes on with its last increment and interval)",
              "events: doses and days per line; patients: age, CrCl; drugs.yaml: titration, older_adult; "
              "policy: start doses", "fast_titration"),
    Invariant("intolerance_reduction", "P4.intolerance_reduce", "S000, S002",
              "a dose lowered for intolerance stays at or above the drug's lowest effective dose (else it stops)",
              "events: dose changes with an intolerance rule; patients: CrCl; drugs.yaml: min_effective_dose"),
    Invariant("adequate_trial", "P3", "S000, S002, S004",
              "no drug judged failed before an adequate trial at the target dose (or the highest tolerated)",
              "events: evaluations, doses, dose reductions; drugs.yaml: target_dose, adequate_trial_days, "
              "min_trial_days; policy: target_doses", "short_trial"),
    # --- checks and contraindications ------------------------------------------------------------
    Invariant("tca_ecg", "P5.tca_ecg", "S000, S002, S004",
              "an ECG is logged before a tricyclic starts in a patient over 40",
              "events: safety_check rows, TCA starts; patients: age"),
    Invariant("tca_cardiac", "P5.tca_cardiac_contraindicated", "S000",
              "no tricyclic after recent MI, with arrhythmia or heart block",
              "events: TCA starts; patients: recent_mi, arrhythmia, heart_block"),
    Invariant("tca_last_resort", "P5.cardiac_prefer_duloxetine", "S000, S001",
              "a tricyclic in cardiovascular disease only after duloxetine or its class (S000: duloxetine "
              "preferred), and with "
              "a last-resort caution (glaucoma, orthostatic hypotension) only after the other first-line classes, "
              "unless they are excluded for the patient",
              "events: starts; patients: flags, CrCl, etiology; drugs.yaml: cautions (last_resort), "
              "contraindications, renal_caps, requires; policy: order, serotonin, cipn_exclusions"),
    Invariant("duloxetine_hepatic", "P5.duloxetine_hepatic", "S001",
              "no duloxetine with hepatic disease", "events: duloxetine starts; patients: hepatic_disease"),
    Invariant("contraindication", "P5", "S000, S001",
              "no drug started against a contraindication of the catalogue (or a renal cap of 0)",
              "events: drug starts; patients: flags, CrCl; drugs.yaml: contraindications, renal_caps"),
    Invariant("serotonin_check", "P5.serotonin_check", "S000, S004",
              "a serotonin check is logged before tramadol starts with an SSRI, SNRI or tricyclic, before an SNRI "
              "starts with an SSRI, a tricyclic or tramadol, and before a tricyclic starts with an SSRI, an SNRI or "
              "tramadol",
              "events: safety_check rows, starts and stops (a drug being tapered is still taken); patients: ssri_use"),
    Invariant("taper", "P5.taper_step", "S001",
              "duloxetine, venlafaxine, tricyclics, tramadol and strong opioids are tapered before they stop "
              "(a taper start, lowered doses, the stop no sooner than the taper schedule allows), unless the "
              "patient dropped out or had a serious event",
              "events: taper_start, dose changes and stops per drug; drugs.yaml: class, taper"),
    # --- etiology and topicals -------------------------------------------------------------------
    Invariant("cipn_no_tca_gabapentinoid", "P11.cipn_no_efficacy", "S000, S001",
              "no tricyclic or gabapentinoid started in chemotherapy-induced neuropathy under the guideline",
              "events: starts; patients: etiology; policy: cipn_exclusions (false is reported as declared), "
              "protocol steps are exempt"),
    Invariant("topical_indication", "P6.lidocaine_allodynia", "S000, S001, S004",
              "topicals only for localized pain, lidocaine 5% only with allodynia",
              "events: topical starts; patients: localized, allodynia"),
    # --- opioids ---------------------------------------------------------------------------------
    Invariant("tramadol_after_first_line", "P7", "S000, S004",
              "tramadol only after a documented first-line failure", "events: evaluations, stops, tramadol starts",
              "tramadol_first_line"),
    Invariant("opioid_screen", "P8.misuse_screen", "S004",
              "misuse-risk screen and treatment agreement logged before any opioid (tramadol included)",
              "events: safety_check rows, opioid starts", "no_misuse_screen"),
    Invariant("strong_opioid_prerequisites", "P8.prerequisites", "S004",
              "strong opioid only after >= 2 first-line classes failed, a failed combination of a gabapentinoid "
              "with an antidepressant (oral + topical is not one), and tramadol tried when the patient could have it",
              "events: evaluations, stops, starts; patients: flags, CrCl; drugs.yaml: contraindications; "
              "policy: tramadol never", "early_strong_opioid"),
    Invariant("strong_opioid_nrs", "P8.nrs_threshold", "S004",
              "strong opioid only at moderate-to-severe pain: the last NRS before it is >= 4",
              "events: pain_nrs of the assessment and evaluations", "early_strong_opioid"),
    Invariant("strong_opioid_hiv", "P8.hiv_caution", "S004",
              "no strong opioid in HIV neuropathy under the guideline",
              "events: strong opioid starts; patients: etiology; policy: a strong-opioid option allowing HIV "
              "neuropathy (reported as declared)"),
    Invariant("opioid_smallest_dose", "P8.titrate_to_response", "S000, S004",
              "a strong opioid is not titrated further once it has given relief (smallest effective dose)",
              "events: evaluations and strong-opioid dose changes"),
    Invariant("rule_ids", "P1-P13", "S000-S004",
              "every decision, start, stop, taper, dose change, limit, check and evaluation carries a resolvable "
              "rule id, and a dose change cites a rule of its direction (a rise P2/P3/P8, a fall P4/P5)",
              "events: rule, dose; rules.yaml"),
)
# issue 10; checked by simulator/regression/opioid_check.py (event log, catalogue and policy only)
OPIOID_REASSESSED = Invariant(
    "strong_opioid_reassessed", "P8.reassessment", "S004",
    "no strong opioid continued beyond the trial period (strong_opioid.max_trial_days) without a documented "
    "reassessment (time-limited trial, monitoring every 1-3 months)",
    "events: strong-opioid starts, stops, taper starts, evaluations and maintenance visits; policy: max_trial_days")
INVARIANTS = (*INVARIANTS, OPIOID_REASSESSED)

BY_NAME: dict[str, Invariant] = {inv.name: inv for inv in INVARIANTS}

# Usual care's departures (issue 10, simulator/model/care.py), each excusing one invariant when the scenario declares
# it: (invariant, rule of the flagged row; None: any row) -> the declared departure that makes it on purpose.
DEPARTURE_BY_RULE: dict[tuple[str, str | None], str] = {
    ("adequate_trial", None): "under_titration",  # X.under_titration: judged below the recommended dose (P2, P3)
    ("tca_last_resort", "X.usual_care_choice"): "usual_care_index",  # a tricyclic drawn as the index drug
    ("cipn_no_tca_gabapentinoid", "X.usual_care_choice"): "usual_care_index",  # index drug drawn in CIPN
    ("taper", "X.left_treatment"): "usual_care_index",  # the patient leaves treatment at once (no taper)
}


@dataclass(frozen=True)
class Violation:
    invariant: str
    replication: int
    patient: int
    day: float
    event: str
    drug: str | None
    rule: str | None
    detail: str
    declared: bool = False


@dataclass
class InvariantResult:
    invariant: Invariant
    checked: int = 0  # trajectories examined
    applicable: int = 0  # trajectories with at least one row this invariant tests
    violations: list[Violation] = field(default_factory=list)  # undeclared
    declared: list[Violation] = field(default_factory=list)  # excused by a declared departure

    @property
    def status(self) -> str:
        if self.violations:
            return "FAIL"
        return "declared departure" if self.declared else "ok"


@dataclass
class CheckReport:
    """The result of checking every trajectory of a run."""

    scenario: str
    trajectories: int
    declared_departures: tuple[str, ...]
    results: list[InvariantResult]

    @property
    def ok(self) -> bool:
        return all(not r.violations for r in self.results)

    @property
    def n_violations(self) -> int:
        return sum(len(r.violations) for r in self.results)

    @property
    def n_declared(self) -> int:
        return sum(len(r.declared) for r in self.results)

    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.violations]

    def by_invariant(self) -> dict[str, InvariantResult]:
        return {r.invariant.name: r for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "trajectories": self.trajectories,
            "declared_departures": list(self.declared_departures),
            "ok": self.ok,
            "violations": self.n_violations,
            "declared_departure_violations": self.n_declared,
            "invariants": [
                {"name": r.invariant.name, "rule": r.invariant.rule, "seeds": r.invariant.seeds,
                 "description": r.invariant.description, "reads": r.invariant.reads,
                 "departure": r.invariant.departure, "status": r.status, "checked": r.checked,
                 "applicable": r.applicable, "violations": [asdict(v) for v in r.violations],
                 "declared": [asdict(v) for v in r.declared]}
                for r in self.results
            ],
        }


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
                   strong_opioid_trial_days=getattr(gate, "max_trial_days", None))


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


def label_renal_max(name: str, facts: Facts) -> float:
    """The label's highest daily dose in the patient's CrCl band (:data:`LABEL_RENAL_MAX`; inf outside them)."""
    caps = [cap for below, cap in LABEL_RENAL_MAX.get(name, ()) if facts.crcl < below]
    return min(caps) if caps else math.inf


def older_start(drug: Drug) -> float | None:
    """The catalogue's first dose for older adults, when it gives one (P2.older_adult_start)."""
    return drug.older_adult.start_dose


def lowest_dose(name: str, drug: Drug) -> float:
    """The smallest daily dose a drug is given at (P2.min_dose): the catalogue's ``min_dose``, and never
    below the label's lowest renal-band dose the oracle holds itself (:data:`LABEL_LOWEST_DOSE`)."""
    return max(drug.min_dose or 0.0, LABEL_LOWEST_DOSE.get(name, 0.0))


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
    900-3600 in S004), scaled by the renal band (exposure, P5.renal_dose) and capped at the patient's maximum.
    """
    target = drug.target_dose
    for override in (pol.target_doses.get(name), pol.protocol_doses.get(name)):
        if override is not None:
            target = min(target, override)
    return min(target * renal_factor(drug, facts), max_allowed(drug, facts))


# ------------------------------------------------------------------------------------------------
# The replay
# ------------------------------------------------------------------------------------------------


def _col(df: pd.DataFrame, name: str) -> list[Any]:
    if name not in df.columns:
        return [None] * len(df)
    s = df[name]
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    return s.where(s.notna(), None).tolist()


def patient_facts(patients: pd.DataFrame) -> dict[tuple[int, int], Facts]:
    """Facts per (replication, patient) from a run's patients table."""
    out: dict[tuple[int, int], Facts] = {}
    flag_cols = [f for f in PATIENT_FLAGS if f in patients.columns]
    reps = patients["replication"].astype(int).tolist()
    pats = patients["patient"].astype(int).tolist()
    ages = patients["age"].astype(float).tolist()
    crcl = patients["crcl"].astype(float).tolist()
    etio = patients["etiology"].astype(str).tolist() if "etiology" in patients.columns else [""] * len(reps)
    flag_vals = [patients[f].fillna(False).astype(bool).tolist() for f in flag_cols]
    cache: dict[tuple[bool, ...], frozenset[str]] = {}
    for k in range(len(reps)):
        bits = tuple(vals[k] for vals in flag_vals)
        flags = cache.get(bits)
        if flags is None:
            flags = cache[bits] = frozenset(f for f, v in zip(flag_cols, bits, strict=True) if v)
        out[(reps[k], pats[k])] = Facts(ages[k], crcl[k], flags, etio[k])
    return out


class _Line:
    """One drug being taken, from its start to its stop."""

    __slots__ = ("name", "drug", "start", "doses", "peak", "ceiling", "last_outcome", "relieved", "taper_day",
                 "tapered", "stop_rule", "level_day", "failed")

    def __init__(self, name: str, drug: Drug, start: float, dose: float) -> None:
        self.name = name
        self.drug = drug
        self.start = start
        self.doses: list[tuple[float, float]] = [(start, dose)]
        self.peak = dose
        self.ceiling = math.inf  # the highest tolerated dose, after an intolerance reduction
        self.last_outcome: str | None = None  # of the last evaluation while this line ran
        self.relieved = False  # a relief evaluation while this line ran (strong opioids: smallest dose)
        self.failed = False  # judged failed while it ran (a later relief with an added drug does not undo it)
        self.taper_day: float | None = None  # day of the taper_start row
        self.tapered = False  # a dose was lowered (not for intolerance) since the last increase
        self.stop_rule: str | None = None  # why it is stopped (taper_start or drug_stop rule)
        self.level_day = start  # the day the current dose level was reached (titration pace)

    @property
    def dose(self) -> float:
        return self.doses[-1][1]


class _Trajectory:
    """What one patient's history tells the guideline so far."""

    def __init__(self) -> None:
        self.active: dict[str, _Line] = {}  # running drugs, a tapering drug included
        self.ended: list[_Line] = []
        self.first_line_failure = False
        self.combination_failed = False
        self.tramadol_tried = False
        self.checks: list[tuple[str, str | None, float]] = []  # (check, drug, day)
        self.last_nrs: float | None = None
        self.visit_outcome: str | None = None  # of the last maintenance visit (issue 10)
        self.bridge: _Line | None = None  # a tramadol bridge running (P9.tramadol_bridge)


class Checker:
    """Checks trajectories against :data:`INVARIANTS` for one policy."""

    def __init__(self, policy: Any = None, catalog: Catalog | None = None) -> None:
        self.pol = PolicyView.of(policy)
        self.catalog = catalog or load_catalog()
        self.rules = load_rules()
        self.results = {inv.name: InvariantResult(inv) for inv in INVARIANTS}
        self._applicable: dict[str, set[tuple[int, int]]] = {inv.name: set() for inv in INVARIANTS}
        self._tramadol = [d for d in self.catalog.drugs.values() if d.drug_class == "weak_opioid"]
        # invariants a policy option turns off on purpose: reported as declared, never as failures
        self._excused = {name for name, off in (("cipn_no_tca_gabapentinoid", not self.pol.cipn_exclusions),
                                                ("strong_opioid_hiv", self.pol.hiv_strong_opioid_allowed)) if off}

    def _flag(self, name: str, key: tuple[int, int], day: float, event: str, drug: str | None,
              rule: str | None, detail: str) -> None:
        inv = BY_NAME[name]
        declared = ((inv.departure is not None and inv.departure in self.pol.declared) or name in self._excused
                    or DEPARTURE_BY_RULE.get((name, rule), DEPARTURE_BY_RULE.get((name, None))) in self.pol.declared)
        v = Violation(name, key[0], key[1], round(float(day), 3), event, drug, rule, detail, declared)
        res = self.results[name]
        (res.declared if declared else res.violations).append(v)

    def _touch(self, name: str, key: tuple[int, int]) -> None:
        self._applicable[name].add(key)

    def check(self, events: pd.DataFrame, patients: pd.DataFrame) -> list[InvariantResult]:
        facts = patient_facts(patients)
        cols = {c: _col(events, c) for c in ("event", "drug", "dose", "pain_nrs", "outcome", "check", "rule")}
        reps = events["replication"].astype(int).tolist()
        pats = events["patient"].astype(int).tolist()
        days = events["day"].astype(float).tolist()
        n = len(reps)
        start = 0
        keys_seen: set[tuple[int, int]] = set(facts)
        while start < n:
            end = start
            key = (reps[start], pats[start])
            while end < n and reps[end] == key[0] and pats[end] == key[1]:
                end += 1
            keys_seen.add(key)
            f = facts.get(key)
            if f is None:
                raise ValueError(f"events of replication {key[0]} patient {key[1]} have no row in the patients table")
            self._replay(key, f, range(start, end), days, cols)
            start = end
        for name, res in self.results.items():
            res.checked = len(keys_seen)
            res.applicable = len(self._applicable[name])
        return list(self.results.values())

    def _replay(self, key: tuple[int, int], f: Facts, rows: Iterable[int], days: list[float],
                cols: dict[str, list[Any]]) -> None:
        cat = self.catalog.drugs
        t = _Trajectory()
        ev_c, dr_c, do_c, pn_c = cols["event"], cols["drug"], cols["dose"], cols["pain_nrs"]
        out_c, ch_c, ru_c = cols["outcome"], cols["check"], cols["rule"]
        for k in rows:
            ev, name, dose, rule, day = ev_c[k], dr_c[k], do_c[k], ru_c[k], days[k]
            if ev in ("assessment", "evaluation", "maintenance_visit") and pn_c[k] is not None:  # issue 10 visits
                t.last_nrs = float(pn_c[k])
            if ev in DECISION_EVENTS:
                self._touch("rule_ids", key)
                if rule is None or not self.rules.is_resolvable(rule):
                    self._flag("rule_ids", key, day, ev, name, rule, f"{ev} row without a resolvable rule id")
            if ev == "safety_check":
                t.checks.append((ch_c[k], name, day))
                continue
            if ev == "maintenance_visit":
                t.visit_outcome = out_c[k]
                b = t.bridge
                if b is not None and out_c[k] in FAILED_OUTCOMES and b.name in t.active \
                        and day - b.start >= b.drug.adequate_trial_days - EPS:
                    t.tramadol_tried = True  # the bridge had its trial and did not relieve (P8 gate)
            elif ev == "transition" and rule == RELAPSE_RULE:
                self._on_relapse(t)
            if ev == "dose_change" and rule is not None and name in t.active and dose is not None:
                prev = t.active[name].dose
                fits = (RISE_RULES if dose > prev else FALL_RULES if dose < prev else None)
                if fits is not None and not any(rule == r or rule.startswith(r + ".") for r in fits):
                    self._flag("rule_ids", key, day, ev, name, rule,
                               f"{name} {'raised' if dose > prev else 'lowered'} from {prev:g} to {dose:g} citing {rule}")
            d = cat.get(name) if name is not None else None
            if d is None:
                continue
            if ev in ("drug_start", "dose_change"):
                self._touch("dose_finite", key)
                if dose is None or not math.isfinite(dose) or dose <= 0:
                    self._flag("dose_finite", key, day, ev, name, rule, f"{name} {ev} with dose {dose!r}")
                    dose = None
            if dose is not None and ev in DOSE_EVENTS:
                self._check_caps(key, f, d, name, dose, day, ev, rule)
            if dose is not None and ev in ("drug_start", "dose_change"):
                self._check_floor(key, t, d, name, dose, day, ev, rule)
            if ev in ("taper_start", "drug_stop") and t.bridge is not None and t.active.get(name) is t.bridge \
                    and rule in INTOLERANCE_RULES:
                t.tramadol_tried = True  # a bridge not tolerated was tried (P8 gate)
            if ev == "drug_start":
                self._on_start(key, f, t, d, name, day, rule, dose)
                line = _Line(name, d, day, dose if dose is not None else 0.0)
                t.active[name] = line
                if rule == BRIDGE_RULE:
                    t.bridge = line
                self._check_titration(key, f, line, day, line.dose, rule, "drug_start")
            elif ev == "dose_change":
                line = t.active.get(name)
                if line is not None and dose is not None:
                    self._on_dose(key, f, line, day, dose, rule)
            elif ev == "evaluation":
                self._on_evaluation(key, f, t, d, name, day, rule, out_c[k])
            elif ev == "taper_start":
                line = t.active.get(name)
                if line is not None:
                    line.taper_day = day
                    self._on_stop_decided(t, line, rule)
            elif ev == "drug_stop":
                self._on_stop(key, t, d, name, day, rule)

    # ---- doses ---------------------------------------------------------------------------------
    def _check_caps(self, key: tuple[int, int], f: Facts, d: Drug, name: str, dose: float, day: float,
                    ev: str, rule: str | None) -> None:
        self._touch("max_dose", key)
        cap = min(max_allowed(d, f), label_renal_max(name, f))
        if dose > cap * (1 + EPS):
            self._flag("max_dose", key, day, ev, name, rule,
                       f"{name} {dose:g} {d.unit} above the adjusted maximum {cap:g} "
                       f"(age {f.age:.0f}, CrCl {f.crcl:.0f})")
        if d.drug_class == "tca" and (is_older(d, f) or any(c in f.flags for c in CARDIAC_DISEASE)):
            self._touch("tca_older_cardiac", key)
            if dose >= TCA_OLDER_CARDIAC_BELOW:
                why = f"age {f.age:.0f}" if is_older(d, f) else "cardiac disease"
                self._flag("tca_older_cardiac", key, day, ev, name, rule,
                           f"{name} {dose:g} mg/day with {why}; must stay below {TCA_OLDER_CARDIAC_BELOW:g}")

    def _check_floor(self, key: tuple[int, int], t: _Trajectory, d: Drug, name: str, dose: float, day: float,
                     ev: str, rule: str | None) -> None:
        """P2.min_dose: a treating dose (not a taper step) is at least the drug's smallest marketed dose."""
        line = t.active.get(name)
        if rule == "P5.taper_step" or (ev == "dose_change" and line is not None and line.taper_day is not None):
            return
        floor = lowest_dose(name, d)
        if floor <= 0:
            return
        self._touch("min_dose", key)
        if dose < floor * (1 - EPS):
            self._flag("min_dose", key, day, ev, name, rule,
                       f"{name} {dose:g} {d.unit}, below its smallest marketed daily dose {floor:g}")

    def _check_titration(self, key: tuple[int, int], f: Facts, line: _Line, day: float, dose: float,
                         rule: str | None, event: str) -> bool:
        """P13 from the start of the line, and P5.renal_dose; True when the titration was too fast."""
        d = line.drug
        offset = day - line.start
        allowed = fastest_dose(d, f, offset, legal_start(line.name, d, self.pol.start_doses.get(line.name)))
        self._touch("titration_schedule", key)
        fast = dose > allowed * (1 + EPS)
        if fast:
            when = "at the start" if event == "drug_start" else f"on day {offset:g} of the line"
            reach = earliest_offset(d, f, dose)
            sched = "never" if math.isinf(reach) else f"not before day {reach:g}"
            self._flag("titration_schedule", key, day, event, line.name, rule,
                       f"{line.name} {dose:g} {d.unit} {when}; the schedule allows {allowed:g} "
                       f"(reaches {dose:g} {sched})")
        if d.drug_class == "gabapentinoid" and f.crcl < RENAL_IMPAIRMENT_BELOW:
            self._touch("renal_dose", key)
            factor = renal_factor(d, f)
            limit = max(allowed * factor, lowest_dose(line.name, d))  # P2.min_dose: a floor, not a rise
            if factor >= 1.0:
                self._flag("renal_dose", key, day, event, line.name, rule,
                           f"{line.name} at CrCl {f.crcl:.0f} with no renal reduction in the data")
            elif dose > limit * (1 + EPS):
                self._flag("renal_dose", key, day, event, line.name, rule,
                           f"{line.name} {dose:g} {d.unit} on day {offset:g} of the line at CrCl {f.crcl:.0f}: "
                           f"the band scales the whole schedule by {factor:g}, allowing {limit:g}")
        return fast

    def _check_pace(self, key: tuple[int, int], f: Facts, line: _Line, day: float, prev: float, dose: float,
                    rule: str | None) -> None:
        """P13: one increase takes at least as long as the schedule takes between the two doses (in
        normal-clearance terms), so dose optimisation after a trial goes no faster than titration."""
        d = line.drug
        factor = renal_factor(d, f)
        need = earliest_offset(d, f, dose / factor) - earliest_offset(d, f, prev / factor)
        gap = day - line.level_day
        if math.isfinite(need) and gap < need - TOL:
            self._flag("titration_schedule", key, day, "dose_change", line.name, rule,
                       f"{line.name} raised from {prev:g} to {dose:g} {d.unit} after {gap:g} days; the schedule "
                       f"takes {need:g} days between them")

    def _on_dose(self, key: tuple[int, int], f: Facts, line: _Line, day: float, dose: float,
                 rule: str | None) -> None:
        prev = line.dose
        line.doses.append((day, dose))
        if dose > prev * (1 + EPS):
            if not self._check_titration(key, f, line, day, dose, rule, "dose_change"):
                self._check_pace(key, f, line, day, prev, dose, rule)
            line.level_day = day
            if line.drug.drug_class == "strong_opioid":
                self._touch("opioid_smallest_dose", key)
                if line.relieved:
                    self._flag("opioid_smallest_dose", key, day, "dose_change", line.name, rule,
                               f"{line.name} raised to {dose:g} {line.drug.unit} after it had given relief")
            line.peak = max(line.peak, dose)
            line.tapered = False
        elif dose < prev * (1 - EPS):
            if line.taper_day is None and rule is not None and rule.startswith("P4.intolerance"):
                line.ceiling = dose  # the highest tolerated dose (P3: TCAs "at the highest tolerated dosage")
                self._touch("intolerance_reduction", key)
                floor = (line.drug.min_effective_dose or 0.0) * renal_factor(line.drug, f)
                if dose < floor * (1 - EPS):
                    self._flag("intolerance_reduction", key, day, "dose_change", line.name, rule,
                               f"{line.name} lowered to {dose:g} {line.drug.unit}, below its lowest effective dose "
                               f"{floor:g}: it should have been stopped")
            else:
                line.tapered = True

    # ---- starts --------------------------------------------------------------------------------
    def _on_start(self, key: tuple[int, int], f: Facts, t: _Trajectory, d: Drug, name: str, day: float,
                  rule: str | None, dose: float | None) -> None:
        cls = d.drug_class
        self._touch("contraindication", key)
        bad = [c for c in d.contraindications if c in f.flags]
        if bad:
            self._flag("contraindication", key, day, "drug_start", name, rule, f"{name} started with {', '.join(bad)}")
        if renal_cap(d, f) <= 0:
            self._flag("contraindication", key, day, "drug_start", name, rule,
                       f"{name} started although excluded at CrCl {f.crcl:.0f}")
        lower = older_start(d)
        if is_older(d, f) and dose is not None and lower is not None:
            self._touch("older_adult_start", key)
            factor = renal_factor(d, f)
            # P2.older_renal_start: in a renal band, the lower of the two first doses, not their product
            first = min(lower, d.titration[0].dose * factor) if factor < 1.0 else lower
            limit = max(first, self.pol.start_doses.get(name, 0.0) * factor, lowest_dose(name, d))
            if dose > limit * (1 + EPS):
                self._flag("older_adult_start", key, day, "drug_start", name, rule,
                           f"{name} started at {dose:g} {d.unit} at age {f.age:.0f}; the older-adult first dose is "
                           f"{limit:g}")
            elif factor < 1.0 and name not in self.pol.start_doses and rule != PROTOCOL_RULE \
                    and dose < max(first, lowest_dose(name, d)) * (1 - EPS):
                # the two reductions multiplied (issue 9 review: 75 x 1/8 = 9.375 mg/day at CrCl < 15)
                self._flag("older_adult_start", key, day, "drug_start", name, rule,
                           f"{name} started at {dose:g} {d.unit} at age {f.age:.0f}, CrCl {f.crcl:.0f}: below the lower "
                           f"of the older-adult and the renal band's first doses ({max(first, lowest_dose(name, d)):g}); "
                           "the reductions must not multiply")
        protocol = rule == PROTOCOL_RULE
        if f.etiology in CIPN_ETIOLOGIES:
            self._touch("cipn_no_tca_gabapentinoid", key)
        if f.etiology in CIPN_ETIOLOGIES and cls in CIPN_NOT_OFFERED:
            if not protocol:
                self._flag("cipn_no_tca_gabapentinoid", key, day, "drug_start", name, rule,
                           f"{name} started in {f.etiology} (the guideline does not offer it)")
        if cls == "topical" or d.requires:
            self._touch("topical_indication", key)
            need = [r for r in d.requires if r not in f.flags]
            if cls == "topical" and "localized" not in f.flags:
                need.insert(0, "localized")
            if name.startswith("lidocaine") and "allodynia" not in f.flags and "allodynia" not in need:
                need.append("allodynia")
            if need:
                self._flag("topical_indication", key, day, "drug_start", name, rule,
                           f"{name} started without {' and '.join(need)} pain")
        self._check_serotonin(key, f, t, d, name, day, rule)
        if cls == "tca" and not protocol:
            self._check_last_resort(key, f, t, d, name, day, rule)
        if cls == "tca":
            self._touch("tca_cardiac", key)
            bad = [c for c in TCA_CARDIAC_CONTRAINDICATIONS if c in f.flags]
            if bad:
                self._flag("tca_cardiac", key, day, "drug_start", name, rule, f"{name} started with {', '.join(bad)}")
            if f.age > ECG_OVER_AGE:
                self._touch("tca_ecg", key)
                if not self._checked(t, "ecg", name, day):
                    self._flag("tca_ecg", key, day, "drug_start", name, rule,
                               f"{name} started at age {f.age:.0f} without an ECG logged before it")
        if name == "duloxetine":
            self._touch("duloxetine_hepatic", key)
            if "hepatic_disease" in f.flags:
                self._flag("duloxetine_hepatic", key, day, "drug_start", name, rule,
                           "duloxetine started with hepatic disease")
        if f.etiology == HIV_ETIOLOGY:
            self._touch("strong_opioid_hiv", key)
        if cls in OPIOIDS:
            self._touch("opioid_screen", key)
            done = {c for c, _, _ in t.checks}
            lacking = [c for c in ("misuse_screen", "treatment_agreement") if c not in done]
            if lacking:
                self._flag("opioid_screen", key, day, "drug_start", name, rule,
                           f"no {' or '.join(lacking)} logged before {name}")
        if cls == "weak_opioid":
            self._touch("tramadol_after_first_line", key)
            if not t.first_line_failure:
                self._flag("tramadol_after_first_line", key, day, "drug_start", name, rule,
                           f"{name} started before any first-line failure")
            if rule != BRIDGE_RULE:  # a bridge counts once judged failed (maintenance_visit below)
                t.tramadol_tried = True
        elif cls == "strong_opioid":
            self._strong_opioid(key, f, t, name, day, rule)

    def _unavailable(self, drug: str, f: Facts) -> bool:
        """The guideline could not give ``drug`` to this patient (catalogue exclusion or a policy choice)."""
        d = self.catalog.drugs[drug]
        if excluded(d, f) or any(r not in f.flags for r in d.requires):
            return True
        if self.pol.order and drug not in self.pol.order:
            return True
        if self.pol.serotonin_avoid and d.serotonergic and "ssri_use" in f.flags:
            return True
        return (self.pol.cipn_exclusions and f.etiology in CIPN_ETIOLOGIES and d.drug_class in CIPN_NOT_OFFERED)

    def _check_last_resort(self, key: tuple[int, int], f: Facts, t: _Trajectory, d: Drug, name: str, day: float,
                           rule: str | None) -> None:
        cautious = [c.flag for c in d.cautions if c.last_resort and c.flag in f.flags]
        if "cardiovascular_disease" not in f.flags and not cautious:
            return
        self._touch("tca_last_resort", key)
        started = {ln.name for ln in [*t.ended, *t.active.values()]}
        lacking: list[str] = []
        if "cardiovascular_disease" in f.flags and "duloxetine" in self.catalog.drugs:
            snris = self.catalog.of_class("snri")  # duloxetine, or its class once judged (P4: no retry)
            if not any(n in started for n in snris) and not self._unavailable("duloxetine", f):
                lacking.append("duloxetine (preferred over a tricyclic in cardiovascular disease)")
        if cautious:
            for cls in FIRST_LINE:
                if cls == "tca":
                    continue
                names = self.catalog.of_class(cls)
                if not any(n in started for n in names) and not all(self._unavailable(n, f) for n in names):
                    lacking.append(f"the {cls} class ({', '.join(cautious)}: a last resort)")
        if lacking:
                self._flag("tca_last_resort", key, day, "drug_start", name, rule,
                       f"{name} started before {' and '.join(lacking)}")

    @staticmethod
    def _checked(t: _Trajectory, check: str, drug: str, day: float) -> bool:
        """A ``check`` for ``drug`` was logged on the start day, before the start row."""
        return any(c == check and dr == drug and abs(dd - day) <= TOL for c, dr, dd in t.checks)

    def _check_serotonin(self, key: tuple[int, int], f: Facts, t: _Trajectory, d: Drug, name: str, day: float,
                         rule: str | None) -> None:
        cls = d.drug_class
        taken = {ln.drug.drug_class for ln in t.active.values()}
        ssri = "ssri_use" in f.flags
        why: list[str] = []
        if cls == "weak_opioid":
            why = ["an SSRI"] * ssri + [c.upper() for c in ("snri", "tca") if c in taken]
        elif cls == "snri":
            why = ["an SSRI"] * ssri + [c.upper() for c in ("tca",) if c in taken] + ["tramadol"] * ("weak_opioid" in taken)
        elif cls == "tca":
            why = ["an SSRI"] * ssri + [c.upper() for c in ("snri",) if c in taken] + ["tramadol"] * ("weak_opioid" in taken)
        if not why:
            return
        self._touch("serotonin_check", key)
        if not self._checked(t, "serotonin_check", name, day):
            self._flag("serotonin_check", key, day, "drug_start", name, rule,
                       f"{name} started with {' and '.join(why)} and no serotonin check logged before it")

    def _strong_opioid(self, key: tuple[int, int], f: Facts, t: _Trajectory, name: str, day: float,
                       rule: str | None) -> None:
        self._touch("strong_opioid_prerequisites", key)
        self._touch("strong_opioid_nrs", key)
        failed = {ln.drug.drug_class for ln in [*t.ended, *t.active.values()]
                  if ln.drug.drug_class in FIRST_LINE
                  and ((ln.stop_rule is not None and ln.stop_rule != "X.dropout")
                       or ln.failed or ln.last_outcome in FAILED_OUTCOMES)}
        missing = []
        if len(failed) < P8_FAILED_CLASSES:
            missing.append(f"{len(failed)} first-line class(es) failed ({', '.join(sorted(failed)) or 'none'}), "
                           f"needs {P8_FAILED_CLASSES}")
        if not t.combination_failed:
            missing.append("no failed combination of a gabapentinoid with an antidepressant")
        could = not self.pol.tramadol_never and any(not excluded(x, f) for x in self._tramadol)
        if could and not t.tramadol_tried:
            missing.append("tramadol not tried though the patient could have it")
        if missing:
            self._flag("strong_opioid_prerequisites", key, day, "drug_start", name, rule, "; ".join(missing))
        if t.last_nrs is None or t.last_nrs < STRONG_OPIOID_MIN_NRS:
            shown = "unknown" if t.last_nrs is None else f"{t.last_nrs:.1f}"
            self._flag("strong_opioid_nrs", key, day, "drug_start", name, rule,
                       f"{name} started at NRS {shown}; needs >= {STRONG_OPIOID_MIN_NRS:g}")
        if f.etiology == HIV_ETIOLOGY:
            self._flag("strong_opioid_hiv", key, day, "drug_start", name, rule, f"{name} started in HIV neuropathy")

    # ---- evaluations and stops -----------------------------------------------------------------
    def _on_evaluation(self, key: tuple[int, int], f: Facts, t: _Trajectory, d: Drug, name: str, day: float,
                       rule: str | None, outcome: str | None) -> None:
        active = list(t.active.values())
        for ln in active:
            ln.last_outcome = outcome
            if outcome == "relief":
                ln.relieved = True
        if outcome not in FAILED_OUTCOMES:
            return
        line = t.active.get(name)
        interim = (rule == INTERIM_RULE and d.titrate_to_response and line is not None
                   and line.dose < judged_target(d, f, self.pol, name) * (1 - EPS))
        if interim:  # P8.titrate_to_response: judged at a titration step, titration goes on
            return
        self._check_trial(key, f, t, d, name, day, rule)
        self._on_failure(t, active, {d.drug_class})

    def _on_relapse(self, t: _Trajectory) -> None:
        """P4.relapse: relief lost after it was found, confirmed at a maintenance visit; the regimen is then
        decided on as after an evaluation with that visit's outcome (a failure of the drugs taken). No
        adequate-trial condition: the drugs already had their trial when they gave relief."""
        outcome = t.visit_outcome
        active = list(t.active.values())
        for ln in active:
            ln.last_outcome = outcome
        if outcome in FAILED_OUTCOMES:
            self._on_failure(t, active, {ln.drug.drug_class for ln in active})

    def _on_failure(self, t: _Trajectory, active: list[_Line], judged: set[str]) -> None:
        """A failed judgement of the regimen ``active``; ``judged``: the classes judged (the newest drug at
        an evaluation, every drug taken at a relapse)."""
        for ln in active:
            ln.failed = True
        classes = {ln.drug.drug_class for ln in active}
        if any(c in FIRST_LINE or c == "topical" for c in judged):
            t.first_line_failure = True
        if "gabapentinoid" in classes and any(c in classes for c in ANTIDEPRESSANTS):
            t.combination_failed = True

    def _on_stop_decided(self, t: _Trajectory, line: _Line, rule: str | None) -> None:
        line.stop_rule = rule or ""
        cls = line.drug.drug_class
        if rule != "X.dropout" and (cls in FIRST_LINE or cls == "topical"):
            t.first_line_failure = True

    def _on_stop(self, key: tuple[int, int], t: _Trajectory, d: Drug, name: str, day: float,
                 rule: str | None) -> None:
        line = t.active.pop(name, None)
        if line is None:
            return
        t.ended.append(line)
        if line.taper_day is None:
            self._on_stop_decided(t, line, rule)
        if d.drug_class not in TAPERED or rule in NO_TAPER_RULES:
            return
        self._touch("taper", key)
        if line.taper_day is None or not line.tapered:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} stopped at {line.dose:g} {d.unit} without a taper (no lowered dose before the stop)")
            return
        need = len(d.taper.steps) * d.taper.interval_days if d.taper is not None else 0
        if day - line.taper_day < need - TOL:
            self._flag("taper", key, day, "drug_stop", name, rule,
                       f"{name} tapered over {day - line.taper_day:g} days, faster than its schedule ({need} days)")

    def _check_trial(self, key: tuple[int, int], f: Facts, t: _Trajectory, d: Drug, name: str, day: float,
                     rule: str | None) -> None:
        self._touch("adequate_trial", key)
        line = t.active.get(name)
        if line is None:
            self._flag("adequate_trial", key, day, "evaluation", name, rule, f"{name} judged while not running")
            return
        need = min(judged_target(d, f, self.pol, name), line.ceiling)
        if line.dose < need * (1 - EPS):
            self._flag("adequate_trial", key, day, "evaluation", name, rule,
                       f"{name} judged failed at {line.dose:g} {d.unit}, below its target {need:g}")
            return
        since: float | None = None  # the start of the latest run of doses at or above the target
        for dd, dose in line.doses:
            if dose < need * (1 - EPS):
                since = None
            elif since is None:
                since = dd
        since = line.doses[-1][0] if since is None else since
        due = max(since + d.adequate_trial_days, line.start + d.min_trial_days)
        limit = self.pol.strong_opioid_trial_days
        if d.drug_class == "strong_opioid" and limit is not None:  # P8.time_limited (S004): judged by its end
            due = min(due, line.start + float(limit))
        if day < due - TOL:
            self._flag("adequate_trial", key, day, "evaluation", name, rule,
                       f"{name} judged failed on day {day:g}, before the adequate trial ends on day {due:g} "
                       f"(at {need:g} {d.unit} since day {since:g} + {d.adequate_trial_days} d, "
                       f"min {d.min_trial_days} d from the start)")


def _opioid_reassessment(events: pd.DataFrame, patients: pd.DataFrame, policy: Any, n: int) -> InvariantResult:
    """The ``strong_opioid_reassessed`` invariant (simulator/regression/opioid_check.py): event log and policy only."""
    from .opioid_check import unreassessed_opioid_gaps

    if "followup_days" in patients and len(patients):
        horizon = float(patients["followup_days"].max())
    else:
        horizon = float(events["day"].max()) if len(events) else 0.0
    strong = [name for name, d in load_catalog().drugs.items() if d.drug_class == "strong_opioid"]
    starts = events[(events["event"] == "drug_start") & events["drug"].astype(str).isin(strong)]
    res = InvariantResult(OPIOID_REASSESSED, checked=n,
                          applicable=starts[["replication", "patient"]].drop_duplicates().shape[0])
    for g in unreassessed_opioid_gaps(events, policy, horizon):
        res.violations.append(Violation(OPIOID_REASSESSED.name, int(g.replication), int(g.patient), round(g.to_day, 3),
                                        "drug_stop" if g.to_day < horizon else "horizon", g.drug,
                                        OPIOID_REASSESSED.rule, g.detail, False))
    return res


def check_events(events: pd.DataFrame, patients: pd.DataFrame, policy: Any = None, scenario: str = "",
                 catalog: Catalog | None = None) -> CheckReport:
    """Check every trajectory in ``events`` (patient attributes from ``patients``) against the invariants.

    ``events``: one row per event with columns replication, patient, day, event, drug, dose, pain_nrs,
    outcome, check, rule (as :class:`~simulator.analysis.runner.RunResult.events`), sorted by replication and patient,
    in time order within a patient. ``patients``: replication, patient, age, crcl, etiology and the boolean
    flags. ``policy``: the scenario's policy (read as data). Raises ValueError when events name a patient the
    patients table lacks.
    """
    checker = Checker(policy, catalog)
    results = checker.check(events, patients)
    n = len(patients[["replication", "patient"]].drop_duplicates())
    if policy is not None:
        results = [_opioid_reassessment(events, patients, policy, n) if r.invariant is OPIOID_REASSESSED else r
                   for r in results]
    return CheckReport(scenario=scenario, trajectories=n,
                       declared_departures=tuple(sorted(checker.pol.declared)), results=results)


def check_run(result: Any) -> CheckReport:
    """Check a :class:`~simulator.analysis.runner.RunResult`."""
    return check_events(result.events, result.patients, result.scenario.policy, result.scenario.name)
