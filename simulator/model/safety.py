"""Safety rules of the pathway (P2, P5, P6, P8, P13): who may get a drug, at what dose, after which checks.

These functions are the one place the contraindications, dose adjustments (renal exposure bands, older
adults' start dose and caps, cautions), the rounding of every dose to marketed strengths, taper schedules and pre-start checks are decided from the drug
catalogue (``data/drugs.yaml``). The engine calls them when it starts or stops a drug; the pathway guards
call them to know what is available. ``painpath check`` re-derives the same rules independently from the
catalogue to audit trajectories. They work on plain values (a :class:`~simulator.model.clinical_tables.DrugTable`, the
catalogue extras of :func:`drug_rules` and patient attributes), so they are cheap enough for the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .catalog import givable_doses, load_catalog
from .clinical_tables import DrugTable

# The rule id logged when a drug needs a patient flag the patient lacks (drugs.yaml ``requires``).
REQUIRES_RULE: dict[str, str] = {"allodynia": "P6.lidocaine_allodynia"}


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """The attributes safety rules read, for one patient."""

    age: float
    etiology: int
    localized: bool
    crcl: float
    flags: frozenset[str]


@dataclass(frozen=True, slots=True)
class DrugRules:
    """The catalogue's dosing and safety extras of one drug, as plain values (``drugs.yaml``)."""

    renal_exposure: tuple[tuple[float, float], ...]  # (crcl_below, factor), highest threshold first
    older_start: float  # 0: no lower older-adult start dose
    min_effective: float  # 0: any tolerated step is effective
    min_dose: float  # 0: no floor; the smallest marketed daily dose (P2.min_dose)
    taper: tuple[float, ...]  # fractions of the dose before the taper; () = stopped abruptly
    taper_interval: float
    taper_after: float  # days taken before a stop is tapered (P5.taper_short_use)
    givable: tuple[float, ...]  # every daily dose whole marketed units give, ascending (P2.givable_dose)
    to_response: bool
    requires: tuple[str, ...]
    cautions: tuple[tuple[str, float, str, bool, float], ...]  # (flag, max dose, rule, last resort, stretch)
    reapply: float = 0.0  # days between applications of a single-application drug (P6.capsaicin_reapply); 0: none


@lru_cache(maxsize=64)
def drug_rules(name: str) -> DrugRules:
    """The catalogue extras of drug ``name`` (packaged catalogue). Raises KeyError for an unknown drug."""
    d = load_catalog().drugs[name]
    return DrugRules(
        renal_exposure=tuple(sorted(((b.crcl_below, b.factor) for b in d.renal_exposure), reverse=True)),
        older_start=d.older_adult.start_dose or 0.0,
        min_effective=d.min_effective_dose or 0.0,
        min_dose=d.min_dose or 0.0,
        taper=tuple(d.taper.steps) if d.taper else (),
        taper_interval=float(d.taper.interval_days) if d.taper else 0.0,
        taper_after=float(d.taper.after_days) if d.taper else 0.0,
        givable=givable_doses(d.strengths, d.units_per_day),
        to_response=d.titrate_to_response,
        requires=tuple(d.requires),
        cautions=tuple((c.flag, c.max_dose, c.rule, c.last_resort, c.titration_stretch) for c in d.cautions),
        reapply=float(d.reapply_days or 0),
    )


def to_givable(dose: float, givable: tuple[float, ...]) -> float:
    """P2.givable_dose, the one rounding rule: the largest daily dose whole marketed units give that is not
    above ``dose``, and never below the smallest (``givable``: ascending, from :func:`drug_rules`)."""
    best = givable[0]
    for g in givable:
        if g > dose + 1e-9:
            break
        best = g
    return best


def taper_doses(dose: float, fractions: tuple[float, ...], givable: tuple[float, ...]) -> tuple[float, ...]:
    """The daily doses of a taper from ``dose`` (P5.taper_step): each fraction of ``dose`` rounded down to a
    givable dose (:func:`to_givable`), each step strictly below the one before; a step that reaches the smallest
    givable dose is the last. Empty when ``dose`` already is the smallest (P5.taper_smallest_dose)."""
    out: list[float] = []
    prev = dose
    for f in fractions:
        d = to_givable(dose * f, givable)
        if d >= prev - 1e-9:
            continue
        out.append(d)
        prev = d
        if d <= givable[0] + 1e-9:
            break
    return tuple(out)


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
    for flag in drug_rules(drug.name).requires:
        if flag not in facts.flags:
            return REQUIRES_RULE.get(flag, "P5")
    return None


def last_resort(drug: DrugTable, facts: PatientFacts) -> str | None:
    """The rule id of a caution that makes ``drug`` a last resort for this patient (P5), or None.

    Cardiovascular disease puts tricyclics behind duloxetine under every strategy (S000); glaucoma and
    orthostatic hypotension are catalogue cautions marked ``last_resort`` (S001)."""
    if drug.drug_class == "tca" and "cardiovascular_disease" in facts.flags:
        return "P5.cardiac_prefer_duloxetine"
    for flag, _cap, rule, last, _stretch in drug_rules(drug.name).cautions:
        if last and flag in facts.flags:
            return rule
    return None


def exposure_factor(drug: DrugTable, facts: PatientFacts) -> float:
    """Renal exposure factor of the schedule (P5.renal_dose): 1 in normal clearance, the lowest band's below."""
    factor = 1.0
    for below, f in drug_rules(drug.name).renal_exposure:  # highest threshold first: the last match is lowest
        if facts.crcl < below:
            factor = f
    return factor


@dataclass(frozen=True, slots=True)
class Plan:
    """One patient's schedule of one drug.

    ``steps``: ``((day_offset, daily dose), ...)`` as given (renal-scaled); ``target``: the dose held for the
    adequate trial; ``maximum``: the highest dose this patient may get (optimisation goes up to it);
    ``factor``: renal exposure factor (a dose ``x`` acts like ``x / factor``); ``increment`` / ``interval``:
    the schedule's last step, used to raise the dose (P3.dose_optimisation); ``limits``: ``((rule id,
    dose), ...)`` logged as ``dose_limit`` rows (docs/event-log.md)."""

    steps: tuple[tuple[float, float], ...]
    target: float
    maximum: float
    factor: float
    increment: float
    interval: float
    limits: tuple[tuple[str, float], ...]


def plan(drug: DrugTable, facts: PatientFacts, speed: float = 1.0, target: float | None = None,
         start: float | None = None) -> Plan:
    """This patient's schedule of ``drug`` (P2, P5), from the catalogue.

    ``speed`` multiplies titration intervals (policy ``titration_speed``). ``target`` (policy ``target_doses``)
    replaces the catalogue target: below it the schedule stops early; above it the schedule continues with
    steps of its own last increment and interval. ``start`` (policy ``start_doses``) replaces the first dose.
    Older adults start at the catalogue's ``older_adult.start_dose`` and titrate ``titration_stretch`` times
    more slowly; in renal impairment every dose is scaled by the band's factor (P5.renal_dose), and an older
    adult there starts at the lower of the two first doses, not their product (P2.older_renal_start); caps
    (older adult, renal, cautions) bound every dose, and no dose goes below the drug's smallest marketed
    daily dose ``min_dose`` (P2.min_dose). Every dose, and the maximum, is then rounded down to a dose whole
    marketed units give (:func:`to_givable`, P2.givable_dose; the first rounded dose is logged as a limit).
    """
    x = drug_rules(drug.name)
    limits: list[tuple[str, float]] = []
    factor = exposure_factor(drug, facts)
    cap = drug.max_dose * factor
    if factor < 1.0:
        limits.append(("P5.renal_dose", cap))
    older = facts.age >= drug.older_min_age
    stretch = drug.older_stretch if older else 1.0
    if older and drug.older_max < drug.max_dose:
        c = drug.older_max * factor
        limits.append(("P5.older_adult_cap", c))
        cap = min(cap, c)
    renal = 0.0
    for below, r in drug.renal_caps:  # highest threshold first: keep the lowest matching band
        if facts.crcl < below and r > 0:
            renal = r
    if 0 < renal < drug.max_dose:
        limits.append(("P5.renal_cap", renal))
        cap = min(cap, renal)
    for flag, cmax, rule, _last, cstretch in x.cautions:
        if flag in facts.flags:
            c = cmax * factor
            limits.append((rule, c))
            cap = min(cap, c)
            stretch = max(stretch, cstretch)
    stretch *= speed
    days = [float(day) for day, _ in drug.titration]
    doses = [dose for _, dose in drug.titration]
    inc = doses[-1] - doses[-2] if len(doses) > 1 else doses[-1]
    gap = days[-1] - days[-2] if len(days) > 1 else 7.0
    goal = drug.target_dose if target is None else target
    if target is not None and target * factor > cap + 1e-9:
        limits.append(("P2.max_dose_cap", cap))
    while doses[-1] < goal and len(doses) > 1:  # a policy target above the catalogue's last step
        doses.append(min(doses[-1] + inc, goal))
        days.append(days[-1] + gap)
    first = None
    if start is not None:
        first = start
        limits.append(("P2.start_dose_policy", start * factor))
    elif older and 0 < x.older_start < doses[0] and factor < 1.0:
        # P2.older_renal_start: in a renal band the older adult starts at the lower of the older-adult first
        # dose and the band's first dose, not at their product (the band already is the low start).
        if x.older_start < doses[0] * factor:
            first = x.older_start / factor
    elif older and 0 < x.older_start < doses[0]:
        first = x.older_start
        limits.append(("P2.older_adult_start", first * factor))
    if first is not None:  # keep the catalogue steps above the first dose, at their own intervals
        keep = [k for k, d in enumerate(doses) if d > first + 1e-9]
        if keep:
            k0 = keep[0]
            lead = days[k0] - days[k0 - 1] if k0 > 0 else (days[1] - days[0] if len(days) > 1 else 7.0)
            days = [0.0] + [days[k] - days[k0] + lead for k in keep]
            doses = [first] + [doses[k] for k in keep]
        else:
            days, doses = [0.0], [first]
    top = min(goal * factor, cap)
    floor = x.min_dose  # P2.min_dose: no scheduled dose below the smallest marketed daily dose
    steps: list[tuple[float, float]] = []
    rounded = 0.0
    for day, dose in zip(days, doses, strict=True):
        raw = max(min(dose * factor, top), floor)
        d = to_givable(raw, x.givable)  # P2.givable_dose: whole units of the marketed strengths
        if d < raw - 1e-9 and not rounded:
            rounded = d
        if steps and d <= steps[-1][1] + 1e-9:
            continue
        steps.append((round(day * stretch, 3), d))
    if older and 0 < x.older_start < drug.titration[0][1] and factor < 1.0 and start is None:
        limits.append(("P2.older_renal_start", steps[0][1]))
    if floor > 0 and min(dose * factor for dose in doses) < floor - 1e-9:
        limits.append(("P2.min_dose", floor))
    if rounded:
        limits.append(("P2.givable_dose", rounded))
    target_dose = steps[-1][1]
    maximum = max(to_givable(cap, x.givable), target_dose)
    return Plan(tuple(steps), target_dose, maximum, factor, inc * factor, gap * stretch,
                tuple((r, round(v, 6)) for r, v in limits))


def schedule(drug: DrugTable, facts: PatientFacts, speed: float = 1.0,
             target: float | None = None) -> tuple[tuple[tuple[float, float], ...], float]:
    """Titration steps ``((day_offset, dose), ...)`` for this patient and the effective target (see :func:`plan`)."""
    p = plan(drug, facts, speed, target)
    return p.steps, p.target


def dose_cap(drug: DrugTable, facts: PatientFacts) -> tuple[float, str]:
    """The highest daily dose allowed for this patient and the rule that set it (see :func:`plan`)."""
    p = plan(drug, facts)
    if not p.limits:
        return drug.max_dose, "P2.max_dose_cap"
    rule = min((lim for lim in p.limits if not lim[0].startswith("P2.")), key=lambda lim: lim[1],
               default=("P2.max_dose_cap", drug.max_dose))[0]
    return p.maximum, rule


def titration_stretch(drug: DrugTable, facts: PatientFacts) -> float:
    """Factor on titration intervals: older adults titrate more slowly (P2, P5; S000, S001)."""
    return drug.older_stretch if facts.age >= drug.older_min_age else 1.0


def reduced_dose(steps: tuple[tuple[float, float], ...], dose: float, min_effective: float) -> float:
    """P4.intolerance_reduce: the last tolerated step below ``dose`` when it is still effective, else 0 (stop)."""
    below = [d for _, d in steps if d < dose - 1e-9]
    if below and below[-1] >= min_effective - 1e-9:
        return below[-1]
    return 0.0


def required_checks(drug: DrugTable, facts: PatientFacts, serotonergic_with: bool,
                    tramadol_with: bool = False) -> tuple[tuple[str, str], ...]:
    """Checks to log before starting ``drug``: ``((check, rule_id), ...)``.

    ``serotonergic_with``: the patient takes an SSRI, or another serotonergic drug is running or tapering.
    ``tramadol_with``: tramadol (a serotonergic opioid) is running or tapering. The serotonin check
    (P5, S000, S004) is due when tramadol meets an SNRI, SSRI or TCA, and when an SNRI or a TCA meets an SSRI
    or another serotonergic drug (the catalogue marks TCAs ``serotonergic``; ``serotonin: avoid`` already
    keeps them from an SSRI, so ``monitor`` checks them)."""
    out: list[tuple[str, str]] = []
    for check in drug.safety_checks:
        if check == "ecg":
            if facts.age > drug.ecg_min_age:  # P5: over 40 for TCAs (drugs.yaml)
                out.append(("ecg", "P5.tca_ecg"))
        elif check == "serotonin_check":
            if drug.drug_class == "weak_opioid" or tramadol_with:
                if serotonergic_with:
                    out.append(("serotonin_check", "P5.serotonin_check"))
            elif serotonergic_with:
                out.append(("serotonin_check", "P5.serotonin_check_snri"))
        elif check == "misuse_screen":
            out.append(("misuse_screen", "P8.misuse_screen"))
        elif check == "treatment_agreement":
            out.append(("treatment_agreement", "P8.agreement"))
    return tuple(out)
