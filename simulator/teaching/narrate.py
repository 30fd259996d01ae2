"""One patient's journey through the pathway, told in plain clinical language with the reason for each step.

How a single patient is simulated (:func:`setup_from_scenario`): the scenario's full-size cohort is
generated (``generate_cohort(spec, max(K + 1, scenario.patients), seed, replication)``) and the engine runs
with ``only=[K]``. Every random stream is keyed by (seed, replication, purpose) and read by patient row,
so patient K gets exactly the draws it gets in a full run of the cohort: same profile, same drug
responses, same adverse events, same drop-out. The one thing that differs is the pain clinic's queue
(P9): alone in the simulation, the patient never waits behind other referrals, so a referral is seen
at once where the full run may make it wait. Simulating the whole cohort to extract one patient would
give the queue too but costs the whole cohort's run (seconds instead of milliseconds, and the tutor
re-simulates at every answer); the caveat is printed instead.

This module simulates the patient and tells the journey as steps (:func:`trace`, :func:`narrate`); rendering it
for a reader (text, terminal, HTML page with the flowchart) is :mod:`simulator.teaching.journey`.

Typical use::

    setup = setup_from_scenario(load_scenario("scenarios/guideline.yaml"), patient=3, seed=1)
    journey = trace(setup)
    print(journey_text(journey)); Path("j.html").write_text(journey_html(journey))  # simulator.teaching.journey
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..analysis.outcomes import events_frame
from ..engine.simulation import EngineConfig, Simulation
from ..inputs.errors import InputError
from ..model.pathway import TERMINAL
from ..model.policy_context import PolicyContext
from ..model.rules import load_rules
from ..population.cohort import Cohort, generate_cohort
from ..population.cohort_spec import ETIOLOGIES, MISUSE_RISK_LEVELS
from . import diagram
from .cases import Case
from .words import (
    ACTION_WORDS,
    CONSULT_WORDS,
    DISCHARGE_NO_DRUG,
    DOSE_WORDS,
    FLAG_WORDS,
    LIMIT_WORDS,
    RELAPSE_OWN_STOP,
    SPECIALIST_RELIEF,
    VISIT_AFTER,
    VISIT_WORDS,
    drug_name,
)

QUEUE_CAVEAT = ("This patient was simulated alone with the draws it has in the full cohort: the journey is the one "
                "it has in a run of the cohort, except that it never queues behind other patients for the pain "
                "clinic (P9), so specialist waits may be shorter than in the full run.")
CASE_NOTE = "A curated teaching case, simulated alone (no queue for the pain clinic)."
NOT_CLINICAL = "Teaching material from a simulation; not clinical advice and not for treating patients."

OUTCOME_WORDS = {"relief": "relief", "partial": "partial response", "none": "no response",
                 "intolerable": "not tolerated", "dropout": "dropped out"}


@dataclass
class Setup:
    """Everything needed to simulate one patient."""

    ctx: PolicyContext
    cohort: Cohort
    config: EngineConfig
    index: int
    replication: int
    label: str
    caveat: str
    case: Case | None = None


@dataclass
class Step:
    day: float
    kind: str  # profile-free steps: decision, evaluation, dose, check, excluded, adverse_event, stop, referral, dropout, end
    text: str
    rule: str = ""
    seeds: list[str] = field(default_factory=list)
    rule_text: str = ""

    def line(self) -> str:
        cite = ""
        if self.rule:
            cite = f" [{self.rule}" + (f"; {', '.join(self.seeds)}" if self.seeds else "") + "]"
        return f"Day {self.day:.0f}: {self.text}{cite}"


@dataclass
class Journey:
    setup: Setup
    profile: list[tuple[str, str]]
    steps: list[Step]
    events: pd.DataFrame
    states: list[str]
    edges: list[diagram.EdgeKey]
    final_state: str
    relief_day: float | None

    @property
    def decisions(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "decision"]

    def rule_ids(self) -> set[str]:
        return {str(r) for r in self.events["rule"].dropna().astype(str)}


# ------------------------------------------------------------------------------------------------
# Setting up and simulating one patient
# ------------------------------------------------------------------------------------------------

def setup_from_scenario(scenario: Any, patient: int, seed: int | None = None, replication: int = 0) -> Setup:
    from ..model.clinical_tables import compile_model

    if patient < 0:
        raise InputError(f"the patient index must be 0 or more (got {patient})", field="--patient",
                         fix="give a patient index such as 0, 1, 2 ...")
    if replication < 0:
        raise InputError(f"the replication must be 0 or more (got {replication})", field="--replication",
                         fix="use a whole number >= 0")
    sc = scenario.with_overrides(seed=seed) if seed is not None else scenario
    cohort = generate_cohort(sc.cohort_spec, max(patient + 1, sc.patients), sc.seed, replication=replication)
    ctx = PolicyContext.build(sc.policy, compile_model())
    config = EngineConfig(horizon_days=float(sc.horizon_days),
                          specialist_slots_per_week=sc.specialist.slots(sc.patients), seed=sc.seed)
    return Setup(ctx, cohort, config, patient, replication,
                 f"{sc.name}: patient {patient}, seed {sc.seed}, replication {replication}", QUEUE_CAVEAT)


def setup_from_cohort(cohort_file: str, patient: int, seed: int, replication: int = 0) -> Setup:
    """A patient of a cohort file under the guideline policy (tutor ``--cohort``)."""
    from ..model.clinical_tables import compile_model
    from ..model.policy import Policy
    from ..population.cohort_spec import load_cohort_spec

    if patient < 0:
        raise InputError(f"the patient index must be 0 or more (got {patient})", field="--patient",
                         fix="give a patient index such as 0, 1, 2 ...")
    spec = load_cohort_spec(cohort_file)
    cohort = generate_cohort(spec, patient + 1, seed, replication=replication)
    ctx = PolicyContext.build(Policy(), compile_model())
    config = EngineConfig(horizon_days=730.0, specialist_slots_per_week=1, seed=seed)
    return Setup(ctx, cohort, config, patient, replication,
                 f"{spec.name}: patient {patient}, seed {seed}, guideline policy", QUEUE_CAVEAT)


def setup_from_case(case: Case) -> Setup:
    from ..model.clinical_tables import compile_model

    ctx = PolicyContext.build(case.policy, compile_model())
    config = EngineConfig(horizon_days=float(case.horizon_days), specialist_slots_per_week=1, seed=case.seed)
    return Setup(ctx, case.to_cohort(), config, 0, case.replication, f"case '{case.name}': {case.title}",
                 CASE_NOTE, case)


def teaching_seeds(case: Case, candidates: range = range(200), limit: int = 5) -> list[int]:
    """Simulation seeds under which the case's journey shows every rule it claims to teach.

    A case's recorded ``seed`` depends on the clinical model: after a recalibration, run
    ``painpath trace --case NAME --find-seeds`` and record one of these in the case file.
    """
    found: list[int] = []
    for s in candidates:
        j = trace(setup_from_case(case.model_copy(update={"seed": s})))
        if set(case.rules) <= j.rule_ids():
            found.append(s)
            if len(found) >= limit:
                break
    return found


Decide = Callable[..., Any]


def simulate(setup: Setup, decide: Decide | None = None) -> pd.DataFrame:
    """The readable event log of the one patient (``decide`` as in :class:`simulator.engine.simulation.Simulation`)."""
    sim = Simulation(setup.ctx, setup.cohort, setup.config, setup.replication, only=[setup.index], decide=decide)
    ev = events_frame([sim.run()], setup.ctx.tables)
    return ev[ev["patient"] == setup.index].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Telling the journey
# ------------------------------------------------------------------------------------------------

def profile(setup: Setup) -> list[tuple[str, str]]:
    c, i = setup.cohort, setup.index
    flags = [w for f, w in FLAG_WORDS.items() if bool(getattr(c, f)[i])]
    loc = "localized" if bool(c.localized[i]) else "not localized"
    if bool(c.allodynia[i]):
        loc += ", with allodynia"
    crcl = float(c.crcl[i])
    renal = f"{crcl:.0f} mL/min" + (" (renal impairment)" if crcl < 60 else "")
    return [("age", f"{float(c.age[i]):.0f}"), ("sex", "male" if int(c.sex[i]) == 1 else "female"),
            ("etiology", ETIOLOGIES[int(c.etiology[i])].replace("_", " ")),
            ("baseline pain", f"{float(c.baseline_nrs[i]):.1f}/10"), ("pain", loc),
            ("creatinine clearance", renal), ("comorbidities that matter", ", ".join(flags) or "none"),
            ("opioid misuse risk", MISUSE_RISK_LEVELS[int(c.misuse_risk[i])])]


def _cite(rule: str) -> tuple[list[str], str]:
    book = load_rules()
    if not rule or not book.is_resolvable(rule):
        return [], ""
    return book.seeds_of(rule), book.text_of(rule)


def _dose(setup: Setup, drug: str, dose: Any) -> str:
    if drug is None or (isinstance(drug, float) and math.isnan(drug)):
        return ""
    d = setup.ctx.tables.drugs[setup.ctx.by_name[str(drug)]]
    if dose is None or pd.isna(dose):
        return drug_name(d.name)
    return f"{drug_name(d.name)} {float(dose):g} {unit_for(d.unit, float(dose))}"


def unit_for(unit: str, dose: float) -> str:
    """The catalogue unit in agreement with the dose: 1 application, 1 plaster/day, 2 plasters/day; mg/day and
    MME/day stay as they are."""
    if abs(dose - 1.0) < 1e-9:
        head, sep, tail = unit.partition("/")
        if head.endswith("s") and head not in ("mg", "MME"):
            return head[:-1] + sep + tail
    return unit


def _step(day: float, kind: str, text: str, rule: str = "") -> Step:
    seeds, words = _cite(rule)
    return Step(float(day), kind, text, rule, seeds, words)


def narrate(setup: Setup, events: pd.DataFrame) -> list[Step]:
    """The journey as steps, in order; each decision step carries its rule id, text and seeds."""
    steps: list[Step] = []
    base = float(setup.cohort.baseline_nrs[setup.index])
    rows = events.to_dict("records")
    pending_eval: dict[str, Any] | None = None
    pending_ae: dict[str, Any] | None = None
    stopped: list[tuple[float, str]] = []
    running: list[str] = []  # drugs taken (a tapering drug is no longer part of the regimen)
    visit_day = own_stop_day = -1.0  # the last maintenance visit, the last stop by the patient (P4.relapse words)
    consult_words = "care"  # what the last consult gave (SPECIALIST_RELIEF)
    i = 0

    def pain_words(r: dict[str, Any]) -> str:
        p = float(r["pain_nrs"])
        pct = 100.0 * (p - base) / base if base > 0 else 0.0
        return f"pain {p:.1f}/10 ({pct:+.0f}%)"

    def flush_eval() -> None:
        nonlocal pending_eval
        if pending_eval is not None:
            r = pending_eval
            steps.append(_step(r["day"], "evaluation", f"evaluation on {_dose(setup, r['drug'], r['dose'])}: "
                               f"{pain_words(r)}, {OUTCOME_WORDS.get(str(r['outcome']), str(r['outcome']))}",
                               str(r["rule"])))
            pending_eval = None

    while i < len(rows):
        r = rows[i]
        ev, day, rule = str(r["event"]), float(r["day"]), str(r["rule"]) if pd.notna(r["rule"]) else ""
        if ev == "drug_start":
            running.append(str(r["drug"]))
        elif ev in ("drug_stop", "taper_start", "dropout"):
            running[:] = [] if ev == "dropout" else [d for d in running if d != str(r["drug"])]
        if pending_eval is not None and (day > pending_eval["day"] + 1e-9 or ev in ("dropout",)):
            flush_eval()
        if ev == "assessment":
            steps.append(_step(day, "assessment", f"assessment, baseline pain {float(r['pain_nrs']):.1f}/10", rule))
        elif ev == "excluded":
            steps.append(_step(day, "excluded", f"{drug_name(str(r['drug']))} ruled out for this patient", rule))
        elif ev == "evaluation":
            pending_eval = r
        elif ev == "maintenance_visit":  # told on its own: a documented review (P4, P8, P9), whatever follows
            flush_eval()
            visit_day = day
            what = VISIT_WORDS.get(rule, "maintenance visit")
            on = _dose(setup, r["drug"], r["dose"])
            on = f" on {on}" if on else " (no drug running)"
            if pd.isna(r["pain_nrs"]):  # relief the specialist brought: no NRS model, held until a relapse
                judged = (f"the relief from the specialist's {consult_words} holds" if str(r["outcome"]) == "relief"
                          else f"the relief from the specialist's {consult_words} is lost")
            else:
                judged = f"{pain_words(r)}, {OUTCOME_WORDS.get(str(r['outcome']), str(r['outcome']))}"
            steps.append(_step(day, "evaluation", f"{what}{on}: {judged}" + VISIT_AFTER.get(rule, ""), rule))
        elif ev == "adverse_event":
            serious = " (serious)" if rule == "X.serious_event" else ""
            steps.append(_step(day, "adverse_event", f"adverse event{serious}: {str(r['adverse_event']).replace('_', ' ')} "
                               f"on {_dose(setup, r['drug'], r['dose'])}", rule))
        elif ev in ("drug_stop", "taper_start"):
            if rule in ("X.dropout", "X.left_treatment"):
                flush_eval()  # the evaluation of that day came first; leaving care is not its decision
            name = drug_name(str(r["drug"]))
            verb = "tapering off" if ev == "taper_start" else "stopped"
            if pd.notna(r["adverse_event"]):
                pending_ae = r
                steps.append(_step(day, "stop", f"{name} {verb}: not tolerated "
                                   f"({str(r['adverse_event']).replace('_', ' ')})", rule))
            elif rule == "P5.taper_complete":
                steps.append(_step(day, "stop", f"{name} stopped: taper complete", rule))
            else:
                if rule == "X.patient_stop":
                    own_stop_day = day
                stopped.append((day, f"{verb} {name}"))
                before = f" ({_dose(setup, r['drug'], r['dose'])} before)" if pd.notna(r["dose"]) else ""
                steps.append(_step(day, "stop", f"{name} {verb}{before}", rule))
        elif ev == "dose_change":
            if rule == "P3.dose_optimisation":
                flush_eval()  # the evaluation that led to the optimisation comes first
            what = DOSE_WORDS.get(rule, "dose change")
            steps.append(_step(day, "dose", f"{_dose(setup, r['drug'], r['dose'])} ({what})", rule))
        elif ev == "drug_start":  # a start without its own transition: a topical alongside a dose optimisation,
            # or a start its decision deferred until a taper ended (nothing else runs then)
            alone = rule != "P6.topical_add" and running == [str(r["drug"])]
            words = "starts, the taper done" if alone else "added alongside"
            steps.append(_step(day, "decision", f"{_dose(setup, r['drug'], r['dose'])} {words}"
                               + (" for the localized pain" if rule == "P6.topical_add" else ""), rule))
        elif ev == "dose_limit":
            steps.append(_step(day, "dose", f"{drug_name(str(r['drug']))} for this patient: "
                               f"{LIMIT_WORDS.get(rule, 'limit')} {_dose(setup, r['drug'], r['dose'])}", rule))
        elif ev == "safety_check":
            steps.append(_step(day, "check", f"{str(r['check']).replace('_', ' ')} before {r['drug']}", rule))
        elif ev == "transition":
            trig = str(r["trigger"])
            j = i + 1
            starts: list[str] = []
            alongside: list[Step] = []  # topicals added at the same visit, with their own rule (P6.topical_add)
            while j < len(rows) and str(rows[j]["event"]) in ("drug_start", "safety_check") \
                    and float(rows[j]["day"]) <= day + 1e-9:
                rj = rows[j]
                if str(rj["event"]) == "safety_check":
                    steps.append(_step(day, "check", f"{str(rj['check']).replace('_', ' ')} before {rj['drug']}",
                                       str(rj["rule"])))
                elif str(rj["rule"]) == "P6.topical_add" and rule != "P6.topical_add":
                    alongside.append(_step(day, "decision", f"and {_dose(setup, rj['drug'], rj['dose'])} added "
                                           "alongside for the localized pain", "P6.topical_add"))
                else:
                    starts.append(_dose(setup, rj["drug"], rj["dose"]))
                if str(rj["event"]) == "drug_start":
                    running.append(str(rj["drug"]))
                j += 1
            context = ""
            if pending_eval is not None and abs(float(pending_eval["day"]) - day) < 1e-9:
                context = (f"{pain_words(pending_eval)}: "
                           f"{OUTCOME_WORDS.get(str(pending_eval['outcome']), str(pending_eval['outcome']))}, ")
                pending_eval = None
            elif pending_ae is not None and abs(float(pending_ae["day"]) - day) < 1e-9:
                context = "after intolerance, "
            pending_ae = None
            if not starts:  # a start deferred by a taper (P5, P7.tramadol_reoffer): named with its day
                starts = _deferred_start(setup, rows, j, rule)
            action = ACTION_WORDS.get(trig, trig).format(drugs=" + ".join(starts) or "-")
            if trig == "relapse" and own_stop_day == day and visit_day != day:  # no visit: the patient's own stop
                action = RELAPSE_OWN_STOP
            if trig == "relief" and rule == "P9.specialist_consult":  # relief after the consult (issue 10)
                action = SPECIALIST_RELIEF.format(how=consult_words)
            if trig == "discharge":  # P9.discharge_plan: the regimen left once the same day's stops are done
                kept = _kept_after(rows, j, day, running)
                action = ACTION_WORDS[trig].format(drugs=" + ".join(map(drug_name, kept))) if kept else DISCHARGE_NO_DRUG
            gone = [w for d, w in stopped if abs(d - day) < 1e-9]
            if gone:  # the trace names the drugs stopped at a switch (item 12)
                action += f" ({', '.join(gone)})"
            stopped.clear()
            steps.append(_step(day, "decision", context + action, rule))
            steps.extend(alongside)
            i = j
            continue
        elif ev == "referral_queued":
            steps.append(_step(day, "referral", "on the pain clinic's list", rule))
        elif ev == "queue_left":
            steps.append(_step(day, "referral", "leaves the pain clinic's list: relieved while waiting", rule))
        elif ev == "consult":
            if pd.notna(r["wait_days"]):
                steps.append(_step(day, "referral", f"seen by the pain specialist after {float(r['wait_days']):.0f} "
                                   "days' wait", rule))
            elif pd.notna(r["consult_outcome"]):
                consult_words = CONSULT_WORDS.get(str(r["consult_outcome"]), consult_words)
                steps.append(_step(day, "referral", "specialist outcome: "
                                   f"{str(r['consult_outcome']).replace('_', ' ')}", rule))
        elif ev == "dropout":
            steps.append(_step(day, "dropout", "drops out of care (lost to follow-up)", rule))
        i += 1
    flush_eval()
    return steps


def _deferred_start(setup, rows: list[dict[str, Any]], j: int, rule: str) -> list[str]:
    """The drug a decision (``rule``) starts later, once a taper ends, named with its day (rows from ``j`` up
    to the next transition); empty if it never starts (the horizon, a drop-out)."""
    for rk in rows[j:]:
        if str(rk["event"]) == "transition":
            break
        if str(rk["event"]) == "drug_start" and str(rk["rule"]) == rule:
            return [f"{_dose(setup, rk['drug'], rk['dose'])} once the taper ends (day {float(rk['day']):.0f})"]
    return []


def _kept_after(rows: list[dict[str, Any]], j: int, day: float, running: list[str]) -> list[str]:
    """The drugs of ``running`` not stopped on ``day`` by the rows from ``j`` (a discharge stops the opioids
    without relief just after its transition row, P8.stop_ineffective)."""
    gone = set()
    while j < len(rows) and float(rows[j]["day"]) <= day + 1e-9:
        if str(rows[j]["event"]) in ("drug_stop", "taper_start"):
            gone.add(str(rows[j]["drug"]))
        j += 1
    return [d for d in running if d not in gone]


def path_of(events: pd.DataFrame) -> tuple[list[str], list[diagram.EdgeKey]]:
    """Visited states (in order, from assessment) and the edges taken."""
    states = ["assessment"]
    edges: list[diagram.EdgeKey] = []
    for ev, state, trig in zip(events["event"].astype(str), events["state"].astype(str),
                               events["trigger"].astype(object), strict=True):
        if ev not in ("transition", "dropout"):
            continue
        t = "drop_out" if ev == "dropout" else str(trig)
        edges.append((states[-1], t, state))
        states.append(state)
    return states, edges


def trace(setup: Setup) -> Journey:
    """Simulate the patient under the policy and tell the journey."""
    events = simulate(setup)
    steps = narrate(setup, events)
    states, edges = path_of(events)
    final = states[-1]
    relief = events[(events["event"] == "transition") & (events["state"] == "relieved")]["day"]
    horizon = setup.config.horizon_days
    if final not in TERMINAL:
        steps.append(Step(horizon, "end", f"end of follow-up, still in {final.replace('_', ' ')}"))
    return Journey(setup, profile(setup), steps, events, states, edges, final,
                   float(relief.iloc[0]) if len(relief) else None)
