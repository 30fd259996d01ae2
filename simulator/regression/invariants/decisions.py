"""The decision checks of the Checker, asked at every drug start: contraindications (P5), the older-adult first
dose (P2.older_adult_start), CIPN (P11), topicals (P6), the serotonin check (P5.serotonin_check), the tricyclic's
ECG, cardiac and last-resort rules (P5), duloxetine and hepatic disease, the opioid screen (P8.misuse_screen),
tramadol after first line (P7) and the strong-opioid gate (P8.prerequisites, nrs_threshold, hiv_caution)."""

from __future__ import annotations

from ...model.catalog import Drug
from .base import CheckerBase
from .rules import (
    CIPN_ETIOLOGIES,
    CIPN_NOT_OFFERED,
    ECG_OVER_AGE,
    EPS,
    FAILED_OUTCOMES,
    FIRST_LINE,
    HIV_ETIOLOGY,
    INTOLERANCE_RULES,
    OPIOIDS,
    P8_FAILED_CLASSES,
    PROTOCOL_RULE,
    STRONG_OPIOID_MIN_NRS,
    TCA_CARDIAC_CONTRAINDICATIONS,
    TOL,
    Facts,
    excluded,
    givable_below,
    is_older,
    lowest_dose,
    older_start,
    renal_cap,
    renal_factor,
)
from .trajectory import Trajectory


class DecisionChecks(CheckerBase):
    """Who may get which drug, and what must be logged before it starts."""

    def _on_start(self, key: tuple[int, int], f: Facts, t: Trajectory, d: Drug, name: str, day: float,
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
        # a restart from a reversed taper's step or at the relieving dose is not a first start (P4.restart_dose)
        if is_older(d, f) and dose is not None and lower is not None and t.restart_from is None:
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
                    and dose < givable_below(d, max(first, lowest_dose(name, d))) * (1 - EPS):
                # the two reductions multiplied (issue 9 review: 75 x 1/8 = 9.375 mg/day at CrCl < 15); the lower
                # first dose as marketed units give it (P2.givable_dose: 37.5 -> 25 mg/day pregabalin)
                self._flag("older_adult_start", key, day, "drug_start", name, rule,
                           f"{name} started at {dose:g} {d.unit} at age {f.age:.0f}, CrCl {f.crcl:.0f}: below the lower "
                           f"of the older-adult and the renal band's first doses "
                           f"({givable_below(d, max(first, lowest_dose(name, d))):g}); the reductions must not multiply")
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
                self._require_check("tca_ecg", "ecg", key, t, name, day, rule,
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

    def _check_last_resort(self, key: tuple[int, int], f: Facts, t: Trajectory, d: Drug, name: str, day: float,
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

    def _require_check(self, invariant: str, check: str, key: tuple[int, int], t: Trajectory, name: str, day: float,
                       rule: str | None, detail: str) -> None:
        """``invariant`` applies to this start, and fails with ``detail`` unless ``check`` was logged before it."""
        self._touch(invariant, key)
        if not self._checked(t, check, name, day):
            self._flag(invariant, key, day, "drug_start", name, rule, detail)

    @staticmethod
    def _checked(t: Trajectory, check: str, drug: str, day: float) -> bool:
        """A ``check`` for ``drug`` was logged on the start day, before the start row."""
        return any(c == check and dr == drug and abs(dd - day) <= TOL for c, dr, dd in t.checks)

    def _check_serotonin(self, key: tuple[int, int], f: Facts, t: Trajectory, d: Drug, name: str, day: float,
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
        self._require_check("serotonin_check", "serotonin_check", key, t, name, day, rule,
                            f"{name} started with {' and '.join(why)} and no serotonin check logged before it")

    def _strong_opioid(self, key: tuple[int, int], f: Facts, t: Trajectory, name: str, day: float,
                       rule: str | None) -> None:
        self._touch("strong_opioid_prerequisites", key)
        self._touch("strong_opioid_nrs", key)
        # a class failed: judged inadequate while it ran, or not tolerated (a patient's own stop is no failure)
        failed = {ln.drug.drug_class for ln in [*t.ended, *t.active.values()]
                  if ln.drug.drug_class in FIRST_LINE
                  and (ln.stop_rule in INTOLERANCE_RULES or ln.failed or ln.last_outcome in FAILED_OUTCOMES)}
        missing = []
        if len(failed) < P8_FAILED_CLASSES:
            missing.append(f"{len(failed)} first-line class(es) failed ({', '.join(sorted(failed)) or 'none'}), "
                           f"needs {P8_FAILED_CLASSES}")
        if not t.combination_failed:
            missing.append("no failed combination of a gabapentinoid with an antidepressant")
        could = not self.pol.tramadol_never and any(not excluded(x, f) for x in self._tramadol)
        if could and not t.tramadol_failed:
            missing.append("tramadol has not failed (judged inadequate after its trial, or not tolerated) though the "
                           "patient could have it")
        if missing:
            self._flag("strong_opioid_prerequisites", key, day, "drug_start", name, rule, "; ".join(missing))
        if t.last_nrs is None or t.last_nrs < STRONG_OPIOID_MIN_NRS:
            shown = "unknown" if t.last_nrs is None else f"{t.last_nrs:.1f}"
            self._flag("strong_opioid_nrs", key, day, "drug_start", name, rule,
                       f"{name} started at NRS {shown}; needs >= {STRONG_OPIOID_MIN_NRS:g}")
        if f.etiology == HIV_ETIOLOGY:
            self._flag("strong_opioid_hiv", key, day, "drug_start", name, rule, f"{name} started in HIV neuropathy")
