"""Safety rules of the pathway (P5, P8, P13): who may get a drug, at what dose, after which checks.

These functions are the one place the contraindications, dose caps and pre-start checks are decided.
The engine calls them when it starts a drug, the pathway guards call them to know what is available,
and ``painpath check`` re-derives the same caps independently from the catalogue to audit trajectories.
They work on plain values (a :class:`~simulator.clinical.DrugTable` and patient attributes), so they are
cheap enough for the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clinical import DrugTable


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """The attributes safety rules read, for one patient."""

    age: float
    etiology: int
    localized: bool
    crcl: float
    flags: frozenset[str]


def contraindication(drug: DrugTable, facts: PatientFacts) -> str | None:
    """The rule id that excludes ``drug`` for this patient, or None if it may be given."""
    for flag in drug.contraindications:
        if flag in facts.flags:
            if drug.drug_class == "tca":
                return "P5.tca_cardiac_contraindicated"
            if flag == "hepatic_disease":
                return "P5.duloxetine_hepatic"
            return "P5"
    for below, cap in drug.renal_caps:
        if facts.crcl < below and cap <= 0:
            return "P5.renal_cap"
    if drug.localized_only and not facts.localized:
        return "P6.topical_localized"
    return None


def dose_cap(drug: DrugTable, facts: PatientFacts) -> tuple[float, str]:
    """The highest daily dose allowed for this patient and the rule that set it."""
    cap, rule = drug.max_dose, "P2.max_dose_cap"
    if facts.age >= drug.older_min_age and drug.older_max < cap:
        cap, rule = drug.older_max, "P5.older_adult_cap"
    for below, renal in drug.renal_caps:  # sorted from the highest threshold down
        if facts.crcl < below and 0 < renal < cap:
            cap, rule = renal, "P5.renal_cap"
    for flag, caution_cap in drug.cautions:
        if flag in facts.flags and caution_cap < cap:
            cap, rule = caution_cap, "P5.tca_cardiac_cap"
    return cap, rule


def titration_stretch(drug: DrugTable, facts: PatientFacts) -> float:
    """Factor on titration intervals: older adults titrate more slowly (P2, P5; S000, S001)."""
    return drug.older_stretch if facts.age >= drug.older_min_age else 1.0


def schedule(drug: DrugTable, facts: PatientFacts, speed: float = 1.0,
             target: float | None = None) -> tuple[tuple[tuple[float, float], ...], float]:
    """Titration steps ``((day_offset, dose), ...)`` capped for this patient, and the effective target.

    ``speed`` multiplies the intervals (policy ``titration_speed``; above 1 is slower). ``target``
    (policy ``target_doses``) replaces the catalogue target: below it the schedule stops early; above it
    the schedule continues with further steps of the schedule's own last increment and interval.
    """
    cap, _ = dose_cap(drug, facts)
    stretch = titration_stretch(drug, facts) * speed
    goal = drug.target_dose if target is None else target
    days = [day for day, _ in drug.titration]
    doses = [dose for _, dose in drug.titration]
    if goal > doses[-1] and len(doses) > 1:
        inc, gap = doses[-1] - doses[-2], days[-1] - days[-2]
        while doses[-1] < goal:
            doses.append(min(doses[-1] + inc, goal))
            days.append(days[-1] + gap)
    goal = min(goal, cap)
    steps: list[tuple[float, float]] = []
    for day, dose in zip(days, doses, strict=True):
        d = min(dose, goal)
        if steps and d <= steps[-1][1]:
            continue
        steps.append((round(day * stretch, 3), d))
    return tuple(steps), goal


def required_checks(drug: DrugTable, facts: PatientFacts, serotonergic_with: bool) -> tuple[tuple[str, str], ...]:
    """Checks to log before starting ``drug``: ``((check, rule_id), ...)``."""
    out: list[tuple[str, str]] = []
    for check in drug.safety_checks:
        if check == "ecg":
            if facts.age > drug.ecg_min_age:  # P5: over 40 for TCAs (drugs.yaml)
                out.append(("ecg", "P5.tca_ecg"))
        elif check == "serotonin_check":
            if serotonergic_with:
                out.append(("serotonin_check", "P5.serotonin_check"))
        elif check == "misuse_screen":
            out.append(("misuse_screen", "P8.misuse_screen"))
        elif check == "treatment_agreement":
            out.append(("treatment_agreement", "P8.agreement"))
    return tuple(out)
