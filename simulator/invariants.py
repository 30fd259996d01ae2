"""Guideline invariants checked on every simulated trajectory (``painpath check``).

The checks read only the event table and the patients table of a run, and re-derive every cap,
schedule and prerequisite from the drug catalogue (``simulator/data/drugs.yaml``) and the rules of
``PATHWAY.md``. They never trust the engine's own bookkeeping (its failed-class sets, its guards or the
caps it applied): a trajectory is replayed row by row and each safety rule is asked again.

A policy may depart from the guideline on purpose by listing the departure in
``policy.declared_departures`` (see :data:`simulator.policy.DEPARTURES`). Violations of an invariant
whose departure is declared are reported as *declared departures* and do not fail the check.

Reading choices (where ``PATHWAY.md`` leaves room):

* "tramadol tried when the patient could have it" (P7, P8): the patient could have it when the
  catalogue does not exclude tramadol for them and the policy uses tramadol at all (``tramadol: never``
  is a policy choice).
* "first-line failure" (P7): a failed evaluation of, or a stop of, a first-line oral drug or a topical
  (topicals are first-line for localized pain, P6); stops for drop-out do not count.
* "failed first-line class" (P8): a gabapentinoid, SNRI or TCA that was stopped (not for drop-out).
* "failed combination" (P8): a drug stopped in the ``add_on`` state while two or more drugs ran.
* "adequate trial" (P3, P13): a non-relief evaluation must come at least the catalogue's
  ``adequate_trial_days`` after the day the (patient-capped) target dose was reached, and at least
  ``min_trial_days`` after the start. A policy's longer trial is fine; a shorter one is ``short_trial``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from .catalog import FIRST_LINE_CLASSES, Catalog, Drug, load_catalog
from .policy import Policy
from .rules import load_rules

TOL = 0.005  # days: event days are rounded to 3 decimals, schedule offsets too
TCA_CARDIAC_CONTRAINDICATIONS: tuple[str, ...] = ("recent_mi", "arrhythmia", "heart_block")  # P5, S000
DECISION_EVENTS: tuple[str, ...] = ("transition", "drug_start", "drug_stop", "evaluation")
FAILED_OUTCOMES: tuple[str, ...] = ("partial", "none")
PATIENT_FLAGS: tuple[str, ...] = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block",
                                  "cardiovascular_disease", "glaucoma", "orthostatic_hypotension", "ssri_use",
                                  "depression")


@dataclass(frozen=True)
class Invariant:
    """One guideline rule checked on every trajectory."""

    name: str
    rule: str
    description: str
    departure: str | None = None  # the declared departure that excuses it, if any


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("strong_opioid_prerequisites", "P8",
              "strong opioid only after >=2 first-line classes and a combination failed, and tramadol tried "
              "when the patient could have it", "early_strong_opioid"),
    Invariant("strong_opioid_screen", "P8.misuse_screen",
              "misuse-risk screen and treatment agreement logged before a strong opioid starts", "no_misuse_screen"),
    Invariant("tramadol_after_first_line", "P7",
              "tramadol only after a documented first-line failure", "tramadol_first_line"),
    Invariant("tca_ecg", "P5.tca_ecg", "ECG logged before a TCA starts in a patient over 40"),
    Invariant("tca_cardiac", "P5.tca_cardiac_contraindicated",
              "no TCA after recent MI, with arrhythmia or heart block"),
    Invariant("duloxetine_hepatic", "P5.duloxetine_hepatic", "no duloxetine with hepatic disease"),
    Invariant("gabapentinoid_renal_cap", "P5.renal_cap",
              "gabapentinoid doses within the creatinine-clearance cap"),
    Invariant("max_dose", "P2.max_dose_cap",
              "no dose above the age-, renal- and caution-adjusted maximum"),
    Invariant("titration_schedule", "P13",
              "titration never faster than the catalogue schedule (older adults stretched)", "fast_titration"),
    Invariant("adequate_trial", "P3",
              "no treatment judged failed before an adequate trial at target dose", "short_trial"),
    Invariant("serotonin_check", "P5.serotonin_check",
              "serotonin check logged before tramadol with an SSRI or an active SNRI"),
    Invariant("rule_ids", "P1",
              "every transition, drug start, drug stop and evaluation carries a resolvable rule id"),
)
# issue 10; checked by simulator/opioid_check.py (event log, catalogue and policy only)
OPIOID_REASSESSED = Invariant(
    "strong_opioid_reassessed", "P8.reassessment",
    "no strong opioid beyond the trial period (strong_opioid.max_trial_days) without a documented reassessment "
    "(S004: time-limited trial, monitoring every 1-3 months)")
INVARIANTS = (*INVARIANTS, OPIOID_REASSESSED)

BY_NAME: dict[str, Invariant] = {inv.name: inv for inv in INVARIANTS}


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "trajectories": self.trajectories,
            "declared_departures": list(self.declared_departures),
            "ok": self.ok,
            "violations": self.n_violations,
            "declared_departure_violations": self.n_declared,
            "invariants": [
                {"name": r.invariant.name, "rule": r.invariant.rule, "description": r.invariant.description,
                 "departure": r.invariant.departure, "status": r.status, "checked": r.checked,
                 "applicable": r.applicable, "violations": [asdict(v) for v in r.violations],
                 "declared": [asdict(v) for v in r.declared]}
                for r in self.results
            ],
        }


# ------------------------------------------------------------------------------------------------
# Caps and schedules, re-derived from the catalogue (not from simulator.safety).
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    age: float
    crcl: float
    flags: frozenset[str]


def excluded(drug: Drug, facts: Facts) -> bool:
    """True when the catalogue forbids ``drug`` for this patient (contraindication or a renal cap of 0)."""
    if any(f in facts.flags for f in drug.contraindications):
        return True
    return any(facts.crcl < rc.crcl_below and rc.max_dose <= 0 for rc in drug.renal_caps)


def renal_cap(drug: Drug, facts: Facts) -> float:
    """The lowest renal cap that applies (inf when none; 0 means not at all)."""
    caps = [rc.max_dose for rc in drug.renal_caps if facts.crcl < rc.crcl_below]
    return min(caps) if caps else math.inf


def max_allowed(drug: Drug, facts: Facts) -> float:
    """Catalogue maximum adjusted for age, renal function and cautions (P2, P5)."""
    cap = drug.max_dose
    if facts.age >= drug.older_adult.min_age and drug.older_adult.max_dose is not None:
        cap = min(cap, drug.older_adult.max_dose)
    rc = renal_cap(drug, facts)
    if 0 < rc < cap:
        cap = rc
    for c in drug.cautions:
        if c.flag in facts.flags:
            cap = min(cap, c.max_dose)
    return cap


def earliest_offset(drug: Drug, facts: Facts, dose: float) -> float:
    """Fewest days after the start at which the catalogue schedule reaches ``dose`` (inf if never)."""
    stretch = drug.older_adult.titration_stretch if facts.age >= drug.older_adult.min_age else 1.0
    days = [s.day for s in drug.titration if s.dose >= dose - 1e-9]
    return min(days) * stretch if days else math.inf


def target_for(drug: Drug, facts: Facts) -> float:
    return min(drug.target_dose, max_allowed(drug, facts))


# ------------------------------------------------------------------------------------------------
# The replay
# ------------------------------------------------------------------------------------------------


def _col(df: pd.DataFrame, name: str) -> list[Any]:
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
    flag_vals = [patients[f].astype(bool).tolist() for f in flag_cols]
    for k in range(len(reps)):
        flags = frozenset(f for f, vals in zip(flag_cols, flag_vals, strict=True) if vals[k])
        out[(reps[k], pats[k])] = Facts(ages[k], crcl[k], flags)
    return out


class _Trajectory:
    """Replays one patient's rows, keeping what the guideline needs to know."""

    def __init__(self) -> None:
        self.active: dict[str, dict[str, Any]] = {}  # drug -> {start, doses: [(day, dose)]}
        self.failed_classes: set[str] = set()
        self.first_line_failure = False
        self.combination_failed = False
        self.tramadol_tried = False
        self.checks: list[tuple[str, str | None]] = []  # (check, drug)


class Checker:
    """Checks trajectories against :data:`INVARIANTS` for one policy."""

    def __init__(self, policy: Policy, catalog: Catalog | None = None) -> None:
        self.policy = policy
        self.catalog = catalog or load_catalog()
        self.rules = load_rules()
        self.declared = frozenset(policy.declared_departures)
        self.results = {inv.name: InvariantResult(inv) for inv in INVARIANTS}
        self._applicable: dict[str, set[tuple[int, int]]] = {inv.name: set() for inv in INVARIANTS}

    def _flag(self, name: str, key: tuple[int, int], day: float, event: str, drug: str | None,
              rule: str | None, detail: str, departure: str | None = None) -> None:
        inv = BY_NAME[name]
        departure = departure or inv.departure
        declared = departure is not None and departure in self.declared
        v = Violation(name, key[0], key[1], round(float(day), 3), event, drug, rule, detail, declared)
        res = self.results[name]
        (res.declared if declared else res.violations).append(v)

    def _touch(self, name: str, key: tuple[int, int]) -> None:
        self._applicable[name].add(key)

    def check(self, events: pd.DataFrame, patients: pd.DataFrame) -> list[InvariantResult]:
        facts = patient_facts(patients)
        cols = {c: _col(events, c) for c in ("event", "state", "drug", "dose", "outcome", "check", "rule")}
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
        pol = self.policy
        t = _Trajectory()
        ev_c, st_c, dr_c, do_c = cols["event"], cols["state"], cols["drug"], cols["dose"]
        out_c, ch_c, ru_c = cols["outcome"], cols["check"], cols["rule"]
        for k in rows:
            ev, drug, dose, rule, day = ev_c[k], dr_c[k], do_c[k], ru_c[k], days[k]
            d = cat.get(drug) if drug is not None else None

            if ev in DECISION_EVENTS:
                self._touch("rule_ids", key)
                if rule is None or not self.rules.is_resolvable(rule):
                    self._flag("rule_ids", key, day, ev, drug, rule, f"{ev} row without a resolvable rule id")

            if d is not None and dose is not None and ev != "excluded":
                self._touch("max_dose", key)
                cap = max_allowed(d, f)
                if dose > cap + 1e-9:
                    self._flag("max_dose", key, day, ev, drug, rule,
                               f"{drug} {dose:g} {d.unit} above the adjusted maximum {cap:g}")
                if d.drug_class == "gabapentinoid":
                    self._touch("gabapentinoid_renal_cap", key)
                    rc = renal_cap(d, f)
                    if dose > rc + 1e-9:
                        self._flag("gabapentinoid_renal_cap", key, day, ev, drug, rule,
                                   f"{drug} {dose:g} {d.unit} above the renal cap {rc:g} at CrCl {f.crcl:.0f}")

            if ev == "safety_check":
                t.checks.append((ch_c[k], drug))
            elif ev == "drug_start" and d is not None:
                self._on_start(key, f, t, d, drug, day, rule, pol)
                t.active[drug] = {"start": day, "doses": [(day, dose if dose is not None else 0.0)]}
                self._check_step(key, f, d, drug, day, dose, rule, t, "drug_start")
            elif ev == "dose_change" and d is not None:
                line = t.active.get(drug)
                if line is not None:
                    line["doses"].append((day, dose))
                self._check_step(key, f, d, drug, day, dose, rule, t, "dose_change")
            elif ev == "evaluation" and d is not None:
                if out_c[k] in FAILED_OUTCOMES:
                    self._check_trial(key, f, d, drug, day, rule, t)
                    if d.drug_class in FIRST_LINE_CLASSES or d.drug_class == "topical":
                        t.first_line_failure = True
            elif ev == "drug_stop" and d is not None:
                if rule != "X.dropout":
                    if st_c[k] == "add_on" and len(t.active) >= 2:
                        t.combination_failed = True
                    if d.drug_class in FIRST_LINE_CLASSES:
                        t.failed_classes.add(d.drug_class)
                    if d.drug_class in FIRST_LINE_CLASSES or d.drug_class == "topical":
                        t.first_line_failure = True
                t.active.pop(drug, None)

    # ---- per-row checks ------------------------------------------------------------------------
    def _on_start(self, key: tuple[int, int], f: Facts, t: _Trajectory, d: Drug, drug: str, day: float,
                  rule: str | None, pol: Policy) -> None:
        cls = d.drug_class
        if cls == "strong_opioid":
            self._touch("strong_opioid_prerequisites", key)
            self._touch("strong_opioid_screen", key)
            missing = []
            if len(t.failed_classes) < 2:
                missing.append(f"{len(t.failed_classes)} first-line class(es) failed, needs 2")
            if not t.combination_failed:
                missing.append("no failed combination")
            tram = next((x for x in self.catalog.drugs.values() if x.drug_class == "weak_opioid"), None)
            could = tram is not None and pol.tramadol != "never" and not excluded(tram, f)
            if could and not t.tramadol_tried:
                missing.append("tramadol not tried though the patient could have it")
            if missing:
                self._flag("strong_opioid_prerequisites", key, day, "drug_start", drug, rule, "; ".join(missing))
            done = {c for c, _ in t.checks}
            lacking = [c for c in ("misuse_screen", "treatment_agreement") if c not in done]
            if lacking:
                self._flag("strong_opioid_screen", key, day, "drug_start", drug, rule,
                           f"no {' or '.join(lacking)} before {drug}")
        elif cls == "weak_opioid":
            self._touch("tramadol_after_first_line", key)
            if not t.first_line_failure:
                self._flag("tramadol_after_first_line", key, day, "drug_start", drug, rule,
                           f"{drug} started before any first-line failure")
            t.tramadol_tried = True
            snri = [a for a in t.active if self.catalog.drugs[a].drug_class == "snri"]
            if d.serotonergic and ("ssri_use" in f.flags or snri):
                self._touch("serotonin_check", key)
                if ("serotonin_check", drug) not in t.checks:
                    why = "SSRI use" if "ssri_use" in f.flags else f"active {', '.join(snri)}"
                    self._flag("serotonin_check", key, day, "drug_start", drug, rule,
                               f"{drug} started with {why} and no serotonin check")
        elif cls == "tca":
            self._touch("tca_cardiac", key)
            bad = [c for c in TCA_CARDIAC_CONTRAINDICATIONS if c in f.flags]
            if bad:
                self._flag("tca_cardiac", key, day, "drug_start", drug, rule,
                           f"{drug} started with {', '.join(bad)}")
            ecg_age = self.catalog.drugs[drug].ecg_min_age
            if ecg_age is not None and f.age > ecg_age:
                self._touch("tca_ecg", key)
                if ("ecg", drug) not in t.checks:
                    self._flag("tca_ecg", key, day, "drug_start", drug, rule,
                               f"{drug} started at age {f.age:.0f} without a prior ECG")
        elif drug == "duloxetine":
            self._touch("duloxetine_hepatic", key)
            if "hepatic_disease" in f.flags:
                self._flag("duloxetine_hepatic", key, day, "drug_start", drug, rule,
                           "duloxetine started with hepatic disease")
        if d.drug_class == "gabapentinoid" and renal_cap(d, f) <= 0:
            self._touch("gabapentinoid_renal_cap", key)
            self._flag("gabapentinoid_renal_cap", key, day, "drug_start", drug, rule,
                       f"{drug} started although excluded at CrCl {f.crcl:.0f}")

    def _check_step(self, key: tuple[int, int], f: Facts, d: Drug, drug: str, day: float, dose: float | None,
                    rule: str | None, t: _Trajectory, event: str) -> None:
        line = t.active.get(drug)
        if line is None or dose is None:
            return
        self._touch("titration_schedule", key)
        offset = day - line["start"]
        allowed = earliest_offset(d, f, dose)
        if offset < allowed - TOL:
            when = "at the start" if event == "drug_start" else f"on day {offset:g} of the line"
            sched = "never" if math.isinf(allowed) else f"not before day {allowed:g}"
            self._flag("titration_schedule", key, day, event, drug, rule,
                       f"{drug} {dose:g} {d.unit} {when}; the schedule reaches it {sched}")

    def _check_trial(self, key: tuple[int, int], f: Facts, d: Drug, drug: str, day: float, rule: str | None,
                     t: _Trajectory) -> None:
        self._touch("adequate_trial", key)
        line = t.active.get(drug)
        if line is None:
            self._flag("adequate_trial", key, day, "evaluation", drug, rule, f"{drug} judged while not running")
            return
        target = target_for(d, f)
        reached = next((dd for dd, dose in line["doses"] if dose >= target - 1e-9), None)
        if reached is None:
            self._flag("adequate_trial", key, day, "evaluation", drug, rule,
                       f"{drug} judged failed before its target dose {target:g} was reached",
                       departure="under_titration" if "under_titration" in self.declared else None)
            return
        due = max(reached + d.adequate_trial_days, line["start"] + d.min_trial_days)
        if day < due - TOL:
            self._flag("adequate_trial", key, day, "evaluation", drug, rule,
                       f"{drug} judged failed on day {day:g}, before the adequate trial ends on day {due:g} "
                       f"(target reached day {reached:g} + {d.adequate_trial_days} d, min {d.min_trial_days} d)")


def check_events(events: pd.DataFrame, patients: pd.DataFrame, policy: Policy, scenario: str = "",
                 catalog: Catalog | None = None) -> CheckReport:
    """Check every trajectory in ``events`` (patient attributes from ``patients``) against the invariants."""
    checker = Checker(policy, catalog)
    results = checker.check(events, patients)
    n = len(patients[["replication", "patient"]].drop_duplicates())
    results = [_opioid_reassessment(events, patients, policy, n) if r.invariant is OPIOID_REASSESSED else r
               for r in results]
    return CheckReport(scenario=scenario, trajectories=n, declared_departures=tuple(policy.declared_departures),
                       results=results)


def _opioid_reassessment(events: pd.DataFrame, patients: pd.DataFrame, policy: Policy, n: int) -> InvariantResult:
    """The ``strong_opioid_reassessed`` invariant (simulator/opioid_check.py): event log and policy only."""
    from .opioid_check import unreassessed_opioid_gaps

    horizon = float(patients["followup_days"].max()) if "followup_days" in patients and len(patients) else \
        float(events["day"].max()) if len(events) else 0.0
    strong = [name for name, d in load_catalog().drugs.items() if d.drug_class == "strong_opioid"]
    starts = events[(events["event"] == "drug_start") & events["drug"].astype(str).isin(strong)]
    res = InvariantResult(OPIOID_REASSESSED, checked=n,
                          applicable=starts[["replication", "patient"]].drop_duplicates().shape[0])
    for g in unreassessed_opioid_gaps(events, policy, horizon):
        res.violations.append(Violation(OPIOID_REASSESSED.name, int(g.replication), int(g.patient), round(g.to_day, 3),
                                        "drug_stop" if g.to_day < horizon else "horizon", g.drug, OPIOID_REASSESSED.rule,
                                        g.detail, False))
    return res


def check_run(result: Any) -> CheckReport:
    """Check a :class:`~simulator.runner.RunResult`."""
    return check_events(result.events, result.patients, result.scenario.policy, result.scenario.name)


def check_scenario(scenario: Any, *, patients: int | None = None, seed: int | None = None,
                   replications: int | None = None, workers: int = 1) -> tuple[Any, CheckReport]:
    """Simulate ``scenario`` and check it; returns ``(run_result, report)``."""
    from .runner import simulate

    result = simulate(scenario, patients=patients, seed=seed, replications=replications, workers=workers)
    return result, check_run(result)
