"""The event log of one patient told as steps in plain clinical language, each with the rule that decided it
(:func:`narrate`).

The log is walked row by row (:class:`Narrator`, one method per kind of row). What runs at each row is read from
the log itself (:class:`simulator.teaching.regimen.Regimen`: a tapering drug runs until its stop row), and so is
why a patient leaves care (:func:`simulator.teaching.regimen.leaving_reason`). The words are in
:mod:`simulator.teaching.words`, the rule texts and seeds in ``simulator/data/rules.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..model.rules import load_rules
from .one_patient import Setup
from .regimen import SAME_DAY, Leaving, Regimen, leaving_reason
from .words import (
    ACTION_WORDS,
    CONSULT_WORDS,
    DEFERRED_DISCHARGE,
    DEFERRED_RELIEF,
    DISCHARGE_NO_DRUG,
    DISCHARGE_TAPERING,
    DOSE_WORDS,
    FIRST_OPIOID_WORDS,
    LEAVING_WORDS,
    LEFT_AFTER,
    LIMIT_WORDS,
    RELAPSE_INTOLERANCE,
    RELAPSE_RESTART,
    SPECIALIST_RELIEF,
    TAPER_REVERSED,
    TAPER_REVERSED_WORDS,
    VISIT_AFTER,
    VISIT_AFTER_NO_DRUG,
    VISIT_WORDS,
    WAIT_ALONE,
    drug_name,
)

OUTCOME_WORDS = {"relief": "relief", "partial": "partial response", "none": "no response",
                 "intolerable": "not tolerated", "dropout": "dropped out"}


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


def _cite(rule: str) -> tuple[list[str], str]:
    book = load_rules()
    if not rule or not book.is_resolvable(rule):
        return [], ""
    return book.seeds_of(rule), book.text_of(rule)


def unit_for(unit: str, dose: float) -> str:
    """The catalogue unit in agreement with the dose: 1 application, 1 plaster/day, 2 plasters/day; mg/day and
    MME/day stay as they are."""
    if abs(dose - 1.0) < 1e-9:
        head, sep, tail = unit.partition("/")
        if head.endswith("s") and head not in ("mg", "MME"):
            return head[:-1] + sep + tail
    return unit


def dose_words(setup: Setup, drug: Any, dose: Any) -> str:
    """'pregabalin 150 mg/day' (the drug alone when the dose is missing; '' when the drug is)."""
    if drug is None or (isinstance(drug, float) and math.isnan(drug)):
        return ""
    d = setup.ctx.tables.drugs[setup.ctx.by_name[str(drug)]]
    if dose is None or pd.isna(dose):
        return drug_name(d.name)
    return f"{drug_name(d.name)} {float(dose):g} {unit_for(d.unit, float(dose))}"


def _step(day: float, kind: str, text: str, rule: str = "") -> Step:
    seeds, words = _cite(rule)
    return Step(float(day), kind, text, rule, seeds, words)


_STARTING = {"start_first_line": "the next drug", "start_topical": "a topical", "add_on": "the next drug",
             "add_topical": "a topical", "switch": "the next drug", "escalate_tramadol": "tramadol",
             "escalate_strong_opioid": "a strong opioid"}
"""Triggers whose decision starts a drug, and the drug's words when the log never shows its start."""


def _same(a: float, b: float) -> bool:
    return abs(a - b) < SAME_DAY


class Narrator:
    """Walks the rows of one patient's event log and tells them as :class:`Step` s (:meth:`run`)."""

    def __init__(self, setup: Setup, events: pd.DataFrame) -> None:
        self.setup = setup
        self.base = float(setup.cohort.baseline_nrs[setup.index])
        self.rows: list[dict[str, Any]] = events.to_dict("records")
        self.steps: list[Step] = []
        self.regimen = Regimen()  # what runs, from the log (a tapering drug runs until its stop row)
        self.pending_eval: dict[str, Any] | None = None
        self.pending_ae: dict[str, Any] | None = None
        self.stopped: list[tuple[float, str]] = []
        self.visit_day = self.own_stop_day = self.ae_stop_day = -1.0  # what may end relief (P4.relapse words)
        self.consult_words = "care"  # what the last consult gave (SPECIALIST_RELIEF)
        self.failed_consult_day = -1.0  # a consult without relief: the decisions of its day are the specialist's plan
        self.last_pain = (0.0, "")  # the day and words of the last pain measured (assessment, evaluation, visit)
        self.leaving: Leaving | None = None  # why the patient leaves care, read at the leaving's first row
        self.deferred: set[str] = set()  # rules of decisions whose start waits for a taper to end

    # ---- words ----------------------------------------------------------------------------------------------
    def dose(self, drug: Any, dose: Any) -> str:
        return dose_words(self.setup, drug, dose)

    def regimen_words(self) -> str:
        return self.regimen.words(self.dose)

    def pain_words(self, r: dict[str, Any]) -> str:
        p = float(r["pain_nrs"])
        pct = round(100.0 * (p - self.base) / self.base) if self.base > 0 else 0
        return f"pain {p:.1f}/10 ({pct:+d}%)"  # a whole number: no "-0%"

    def outcome(self, r: dict[str, Any]) -> str:
        return OUTCOME_WORDS.get(str(r["outcome"]), str(r["outcome"]))

    def add(self, day: float, kind: str, text: str, rule: str = "") -> None:
        self.steps.append(_step(day, kind, text, rule))

    def flush_eval(self) -> None:
        r = self.pending_eval
        if r is not None:
            self.add(r["day"], "evaluation", f"evaluation on {r['on']}: {self.pain_words(r)}, {self.outcome(r)}",
                     str(r["rule"]))
            self.pending_eval = None

    # ---- the walk -------------------------------------------------------------------------------------------
    def run(self) -> list[Step]:
        i = 0
        while i < len(self.rows):
            r = self.rows[i]
            ev, day = str(r["event"]), float(r["day"])
            rule = str(r["rule"]) if pd.notna(r["rule"]) else ""
            if rule in ("X.dropout", "X.left_treatment") and self.leaving is None:
                self.leaving = leaving_reason(self.rows, i)
            if ev == "evaluation":  # told with what runs at its moment (the whole regimen, not the drug judged)
                r = dict(r, on=self.regimen_words() or self.dose(r["drug"], r["dose"]))
            if ev in ("assessment", "evaluation", "maintenance_visit") and pd.notna(r["pain_nrs"]):
                self.last_pain = (day, f"baseline pain {float(r['pain_nrs']):.1f}/10" if ev == "assessment"
                                  else f"{self.pain_words(r)}, {self.outcome(r)}")
            self.regimen.apply(r)
            if self.pending_eval is not None and (day > self.pending_eval["day"] + 1e-9 or ev == "dropout"):
                self.flush_eval()
            if ev == "transition":
                i = self.transition(i, r, day, rule)
                continue
            handler = getattr(self, f"on_{ev}", None)
            if handler is not None:
                handler(r, day, rule)
            i += 1
        self.flush_eval()
        return self.steps

    def on_assessment(self, r: dict[str, Any], day: float, rule: str) -> None:
        self.add(day, "assessment", f"assessment, baseline pain {float(r['pain_nrs']):.1f}/10", rule)

    def on_excluded(self, r: dict[str, Any], day: float, rule: str) -> None:
        self.add(day, "excluded", f"{drug_name(str(r['drug']))} ruled out for this patient", rule)

    def on_evaluation(self, r: dict[str, Any], day: float, rule: str) -> None:
        self.pending_eval = r  # told with the decision it leads to, or alone

    def on_maintenance_visit(self, r: dict[str, Any], day: float, rule: str) -> None:
        """Told on its own: a documented review (P4, P8, P9), whatever follows."""
        self.flush_eval()
        self.visit_day = day
        what = VISIT_WORDS.get(rule, "maintenance visit")
        on = self.regimen_words()
        if pd.isna(r["pain_nrs"]):  # relief the specialist brought: no NRS model, held until a relapse
            judged = (f"the relief from the specialist's {self.consult_words} holds" if str(r["outcome"]) == "relief"
                      else f"the relief from the specialist's {self.consult_words} is lost")
        else:
            judged = f"{self.pain_words(r)}, {self.outcome(r)}"
        after = (VISIT_AFTER if on else VISIT_AFTER_NO_DRUG).get(rule, "")
        if pd.isna(r["pain_nrs"]):  # "... holds" already says the relief held
            after = after.replace(": relief held, ", "; ")
        self.add(day, "evaluation", f"{what}{f' on {on}' if on else ' (no drug running)'}: {judged}{after}", rule)

    def on_adverse_event(self, r: dict[str, Any], day: float, rule: str) -> None:
        serious = " (serious)" if rule == "X.serious_event" else ""
        self.add(day, "adverse_event", f"adverse event{serious}: {str(r['adverse_event']).replace('_', ' ')} "
                 f"on {self.dose(r['drug'], r['dose'])}", rule)

    def on_drug_stop(self, r: dict[str, Any], day: float, rule: str) -> None:
        if rule in ("X.dropout", "X.left_treatment"):
            self.flush_eval()  # the evaluation of that day came first; leaving care is not its decision
        name = drug_name(str(r["drug"]))
        verb = "tapering off" if r["event"] == "taper_start" else "stopped"
        if pd.notna(r["adverse_event"]):
            self.pending_ae = r
            self.ae_stop_day = day
            self.add(day, "stop", f"{name} {verb}: not tolerated ({str(r['adverse_event']).replace('_', ' ')})", rule)
        elif rule == "P5.taper_complete":
            self.add(day, "stop", f"{name} stopped: taper complete", rule)
        else:
            if rule == "X.patient_stop":
                self.own_stop_day = day
            self.stopped.append((day, f"{verb} {name}"))
            before = f" ({self.dose(r['drug'], r['dose'])} before)" if pd.notna(r["dose"]) else ""
            if rule == "X.left_treatment":  # usual care: he stops what still runs himself, untapered (P5 departure)
                verb = "stopped at once by the patient"
            self.add(day, "stop", f"{name} {verb}{before}", rule)

    on_taper_start = on_drug_stop

    def on_dose_change(self, r: dict[str, Any], day: float, rule: str) -> None:
        if rule == "P3.dose_optimisation":
            self.flush_eval()  # the evaluation that led to the optimisation comes first
        what = DOSE_WORDS.get(rule, "dose change")
        self.add(day, "dose", f"{self.dose(r['drug'], r['dose'])} ({what})", rule)

    def on_drug_start(self, r: dict[str, Any], day: float, rule: str) -> None:
        """A start without its own transition: a topical alongside a dose optimisation, or a start its decision
        deferred until a taper ended (other drugs may continue beside it)."""
        others = [drug_name(d) for d in self.regimen.continuing if d != str(r["drug"])]
        if rule in self.deferred:
            self.deferred.discard(rule)
            words = "starts, the taper done" + (f" (alongside {' + '.join(others)})" if others else "")
        else:
            words = "starts, the taper done" if rule != "P6.topical_add" and not others else "added alongside"
        self.add(day, "decision", f"{self.dose(r['drug'], r['dose'])} {words}"
                 + (" for the localized pain" if rule == "P6.topical_add" else ""), rule)

    def on_dose_limit(self, r: dict[str, Any], day: float, rule: str) -> None:
        self.add(day, "dose", f"{drug_name(str(r['drug']))} for this patient: "
                 f"{LIMIT_WORDS.get(rule, 'limit')} {self.dose(r['drug'], r['dose'])}", rule)

    def on_safety_check(self, r: dict[str, Any], day: float, rule: str) -> None:
        self.add(day, "check", f"{str(r['check']).replace('_', ' ')} before {r['drug']}", rule)

    def on_referral_queued(self, r: dict[str, Any], day: float, rule: str) -> None:
        self.add(day, "referral", "on the pain clinic's list", rule)

    def on_queue_left(self, r: dict[str, Any], day: float, rule: str) -> None:
        self.add(day, "referral", "leaves the pain clinic's list: relieved while waiting", rule)

    def on_consult(self, r: dict[str, Any], day: float, rule: str) -> None:
        if pd.notna(r["wait_days"]):
            n = round(float(r["wait_days"]))
            wait = "1 day's" if n == 1 else f"{n} days'"
            self.add(day, "referral", f"seen by the pain specialist after {wait} wait ({WAIT_ALONE})", rule)
        elif pd.notna(r["consult_outcome"]):
            self.consult_words = CONSULT_WORDS.get(str(r["consult_outcome"]), self.consult_words)
            if str(r["consult_outcome"]) not in CONSULT_WORDS:  # no relief: the pathway's remaining options
                self.failed_consult_day = day
            self.add(day, "referral", f"specialist outcome: {str(r['consult_outcome']).replace('_', ' ')}", rule)

    def on_dropout(self, r: dict[str, Any], day: float, rule: str) -> None:
        why = self.leaving or Leaving("lost", "lost")  # read at the leaving's first row (rule X.dropout, ...)
        drug = drug_name(why.drug) if why.drug else "the drug"
        what = LEFT_AFTER.get(why.cause, LEFT_AFTER["lost"]).format(drug=drug)
        self.add(day, "dropout", LEAVING_WORDS[why.kind].format(drug=drug, what=what), rule)

    # ---- a decision: the transition row and the starts and checks that follow it on its day -----------------
    def transition(self, i: int, r: dict[str, Any], day: float, rule: str) -> int:
        rows = self.rows
        trig = str(r["trigger"])
        j = i + 1
        starts: list[str] = []
        start_rule = ""
        alongside: list[Step] = []  # topicals added at the same visit, with their own rule (P6.topical_add)
        checks: list[Step] = []  # told after a relapse's own line (the relapse comes first, then its restart)
        while j < len(rows) and (str(rows[j]["event"]) in ("drug_start", "safety_check") or (
                str(rows[j]["event"]) == "drug_stop" and str(rows[j]["rule"]) == TAPER_REVERSED)) \
                and float(rows[j]["day"]) <= day + 1e-9:
            rj = rows[j]
            if str(rj["event"]) == "drug_stop":  # the taper of the drug restarted is stopped at its step (P4)
                checks.append(_step(day, "stop", TAPER_REVERSED_WORDS.format(
                    drug=drug_name(str(rj["drug"])), dose=self.dose(rj["drug"], rj["dose"])), TAPER_REVERSED))
            elif str(rj["event"]) == "safety_check":
                checks.append(_step(day, "check", f"{str(rj['check']).replace('_', ' ')} before {rj['drug']}",
                                    str(rj["rule"])))
            elif str(rj["rule"]) == "P6.topical_add" and rule != "P6.topical_add":
                alongside.append(_step(day, "decision", f"and {self.dose(rj['drug'], rj['dose'])} added "
                                       "alongside for the localized pain", "P6.topical_add"))
            else:
                starts.append(self.dose(rj["drug"], rj["dose"]))
                start_rule = start_rule or str(rj["rule"])
            self.regimen.apply(rj)
            j += 1
        if trig != "relapse":
            self.steps.extend(checks)
        context = ""
        pe, pa = self.pending_eval, self.pending_ae
        if pe is not None and _same(float(pe["day"]), day):
            context = f"{self.pain_words(pe)}: {self.outcome(pe)}, "
            self.pending_eval = None
        elif pa is not None and _same(float(pa["day"]), day) and trig != "relapse":
            context = "after intolerance, "
        elif trig not in ("discharge", "consult") and _same(self.failed_consult_day, day):
            context = "the specialist's plan after the consult without relief: "
        elif trig != "relapse" and _same(self.own_stop_day, day) and not _same(self.last_pain[0], day):
            # decided on the patient's own stop, not on a pain measured that day (the rule cited may speak of
            # refractory pain or failed drugs: say what the decision had to go on)
            context = (f"after the patient's own stop, with no pain measured since day {self.last_pain[0]:.0f} "
                       f"({self.last_pain[1]}): ")
        self.pending_ae = None
        if not starts:  # a start deferred by a taper (P5, P7.tramadol_reoffer): named with its day
            starts = self._deferred_start(j, rule, trig)
        action = ACTION_WORDS.get(trig, trig).format(drugs=" + ".join(starts) or "-")
        if trig in FIRST_OPIOID_WORDS and not any(x.kind == "decision" for x in self.steps):
            action = FIRST_OPIOID_WORDS[trig].format(drugs=" + ".join(starts))  # nothing to step up from
        if trig == "relapse" and not _same(self.visit_day, day):  # no visit that day: what ended relief
            if _same(self.ae_stop_day, day):
                action = RELAPSE_INTOLERANCE
        if trig == "relief" and rule == "P9.specialist_consult":  # relief after the consult (issue 10)
            action = SPECIALIST_RELIEF.format(how=self.consult_words)
        gone = [w for d, w in self.stopped if _same(d, day)]
        if trig == "relief" and rule == "P9.re_referral_deferred":
            action = DEFERRED_RELIEF
        if trig == "discharge":  # P9.discharge_plan: the regimen left once the same day's stops are done
            action, tapering = self._discharge_words(j, day)
            if rule == "P9.re_referral_deferred":
                action = DEFERRED_DISCHARGE.format(what=self._deferred_regimen(j, day))
            gone = [w for w in gone if w not in {f"tapering off {drug_name(d)}" for d in tapering}]
        if gone:  # the trace names the drugs stopped at a switch (item 12)
            action += f" ({', '.join(gone)})"
        self.stopped.clear()
        self.steps.append(_step(day, "decision", context + action, rule))
        if trig == "relapse":  # a restart decided with the relapse, with no transition of its own (P4.reoffer_own_stop)
            self.steps.extend(checks)
            if starts:
                self.steps.append(_step(day, "decision", RELAPSE_RESTART.format(drugs=" + ".join(starts)),
                                        start_rule))
        self.steps.extend(alongside)
        return j

    def _deferred_start(self, j: int, rule: str, trigger: str) -> list[str]:
        """The drug a decision (``rule``) starts later, once a taper ends, named with its day (rows from ``j``
        up to the next transition). When it never starts, why: the patient leaves care first, or follow-up ends
        (the drug is named only when the trigger names it); empty for a decision that starts nothing."""
        if trigger not in _STARTING:
            return []
        for rk in self.rows[j:]:
            if str(rk["event"]) == "transition":
                break
            if str(rk["event"]) == "dropout":
                return [f"{_STARTING[trigger]} once the taper ends (not started: the patient leaves care first)"]
            if str(rk["event"]) == "drug_start" and str(rk["rule"]) == rule:
                self.deferred.add(rule)
                return [f"{self.dose(rk['drug'], rk['dose'])} once the taper ends (day {float(rk['day']):.0f})"]
        return [f"{_STARTING[trigger]} once the taper ends (not started: follow-up ends first)"]

    def _after_stops(self, j: int, day: float) -> tuple[list[str], list[str]]:
        """The drugs that go on and those tapering off once the same day's stops (rows from ``j``) are done."""
        after = self.regimen.copy()
        while j < len(self.rows) and float(self.rows[j]["day"]) <= day + 1e-9:
            if str(self.rows[j]["event"]) in ("drug_stop", "taper_start"):
                after.apply(self.rows[j])
            j += 1
        return after.continuing, after.tapering_off

    def _deferred_regimen(self, j: int, day: float) -> str:
        """P9.re_referral_deferred: what goes on in primary care once the same day's stops are done."""
        kept, tapering = self._after_stops(j, day)
        off = f"{' and '.join(map(drug_name, tapering))} tapering off" if tapering else ""
        if kept:
            return f"on {' + '.join(map(drug_name, kept))}" + (f", with {off}" if off else "")
        return f"with no drug continuing ({off})" if off else "with no drug running"

    def _discharge_words(self, j: int, day: float) -> tuple[str, list[str]]:
        """P9.discharge_plan: the regimen that goes on once the stops of the day (rows from ``j``; a discharge
        stops the opioids without relief just after its transition row, P8.stop_ineffective) are done; a drug
        being tapered off still runs but does not go on. Returns (the words, the drugs tapering off)."""
        kept, tapering = self._after_stops(j, day)
        if kept:
            off = f", with {' and '.join(map(drug_name, tapering))} tapering off" if tapering else ""
            return ACTION_WORDS["discharge"].format(drugs=" + ".join(map(drug_name, kept)) + off), tapering
        if tapering:
            return DISCHARGE_TAPERING.format(drugs=" and ".join(map(drug_name, tapering))), tapering
        return DISCHARGE_NO_DRUG, tapering


def narrate(setup: Setup, events: pd.DataFrame) -> list[Step]:
    """The journey as steps, in order; each decision step carries its rule id, text and seeds."""
    return Narrator(setup, events).run()
