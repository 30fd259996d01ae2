"""`painpath check` as an independent oracle: each invariant on hand-made event tables.

For every invariant a small violating trajectory (a few rows of an event table) must be reported under
that invariant, and a clean one must pass every invariant. The module must not import the engine or its
safety/policy helpers (a check must not share the code it checks).
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pandas as pd
import pytest

import simulator.regression.invariants as inv
from simulator.model.policy import Policy
from simulator.regression.invariants import INVARIANTS, check_events

NAN = math.nan
FORBIDDEN_IMPORTS = ("simulator.engine", "simulator.model.safety", "simulator.model.patient", "simulator.model.policy",
                     "simulator.model.pathway", "simulator.model.clinical", "simulator.analysis.runner", "simulator.teaching.narrate",
                     "simulator.teaching.tutor.options", "simulator.model.policy_context", "simulator.model.decisions",
                     "simulator.model.protocol", "simulator.model.clinical_tables", "simulator.model.response")
BASE_PATIENT = dict(replication=0, patient=0, age=50.0, crcl=90.0, etiology="diabetic_neuropathy",
                    localized=False, allodynia=False, hepatic_disease=False, recent_mi=False, arrhythmia=False,
                    heart_block=False, cardiovascular_disease=False, glaucoma=False, orthostatic_hypotension=False,
                    ssri_use=False, depression=False)


def row(day, event, drug=None, dose=None, rule=None, outcome=None, check=None, pain=None):
    """One event row; the rule defaults to a plausible, resolvable id for the event kind."""
    default = {"assessment": "P1", "transition": "P1.pregabalin_first", "drug_start": "P1.pregabalin_first",
               "dose_change": "P2.titration_step", "evaluation": "P3.adequate_trial",
               "drug_stop": "P4.no_response_switch", "taper_start": "P4.no_response_switch",
               "adverse_event": "X.adverse_event"}
    if rule is None and event == "safety_check":
        rule = {"ecg": "P5.tca_ecg", "serotonin_check": "P5.serotonin_check", "misuse_screen": "P8.misuse_screen",
                "treatment_agreement": "P8.agreement"}[check]
    return dict(replication=0, patient=0, day=float(day), event=event, drug=drug,
                dose=NAN if dose is None else float(dose), pain_nrs=NAN if pain is None else float(pain),
                outcome=outcome, check=check, rule=rule if rule is not None else default.get(event))


def table(rows):
    """The rows in time order (a stable sort: same-day rows keep their order), after the assessment."""
    return pd.DataFrame([row(0, "assessment", pain=7), *sorted(rows, key=lambda r: r["day"])])


def pregabalin_stop(day, rule="P4.no_response_switch", dose=300):
    """Pregabalin stopped after its trial: tapered (Lyrica label: over a minimum of 1 week; drugs.yaml halves it
    for one week, then stops)."""
    return [row(day, "taper_start", "pregabalin", dose, rule), row(day, "dose_change", "pregabalin", dose / 2, "P5.taper_step"),
            row(day + 7, "drug_stop", "pregabalin", dose / 2, "P5.taper_complete")]


def run(rows, policy=None, **patient):
    pats = pd.DataFrame([{**BASE_PATIENT, **patient}])
    return check_events(table(rows), pats, policy or Policy())


def violated(report) -> set[str]:
    return {v.invariant for v in report.violations()}


def start(day, drug, dose, rule="P1.pregabalin_first"):
    return [row(day, "transition", rule=rule), row(day, "drug_start", drug, dose, rule=rule)]


DULOXETINE_CUT = [*start(0, "duloxetine", 30, "P1.duloxetine_first"), row(7, "dose_change", "duloxetine", 60),
                  row(35, "evaluation", "duloxetine", 60, outcome="none", pain=7),
                  row(35, "taper_start", "duloxetine", 60), row(35, "dose_change", "duloxetine", 30, "P5.taper_step")]
PREGABALIN_OK = [*start(0, "pregabalin", 150), row(7, "dose_change", "pregabalin", 300, "P2.target_reached")]
def consult(day, outcome):
    """A consult's outcome row (P9.specialist_consult)."""
    return {**row(day, "consult", rule="P9.specialist_consult"), "consult_outcome": outcome}


def relief(day):
    """Relief after the consult (transition to relieved citing P9.specialist_consult)."""
    return {**row(day, "transition", rule="P9.specialist_consult"), "state": "relieved"}


CAPSAICIN = [*start(0, "capsaicin_8pct", 1, "P6.topical_localized")]  # one application, running past 90 days
PATCH_HELPS = [row(56, "evaluation", "capsaicin_8pct", 1, outcome="partial", pain=5)]  # its trial: partial response
PATCH_FAILS = [row(56, "evaluation", "capsaicin_8pct", 1, outcome="none", pain=7)]  # its trial: no response


def referral(queued, seen, outcome):
    """A referral queued on day ``queued``, the consult starting on day ``seen`` and its outcome."""
    return [row(queued, "referral_queued", rule="P9.refractory_referral"),
            {**row(seen, "consult", rule="P9.specialist_consult"), "wait_days": float(seen - queued)},
            consult(seen, outcome)]


def own_stop_then(refer: bool, restart: bool):
    """Pregabalin relieves, the patient stops it himself in maintenance, relief is lost (P4.relapse back to
    first_line); then pregabalin restarted (P4.reoffer_own_stop) or not, and a refractory referral."""
    rows = [*PREGABALIN_OK, row(42, "evaluation", "pregabalin", 300, outcome="relief", pain=3),
            {**row(42, "transition", rule="P4.relief"), "state": "relieved"},
            *[{**r, "state": "relieved"} for r in pregabalin_stop(100, "X.patient_stop")],
            {**row(140, "maintenance_visit", rule="P4.maintenance_visit", outcome="none", pain=7), "state": "relieved"},
            {**row(140, "transition", rule="P4.relapse"), "state": "first_line"}]
    if restart:
        rows += [row(140, "transition", rule="P4.reoffer_own_stop"),
                 row(140, "drug_start", "pregabalin", 150, "P4.reoffer_own_stop"),
                 row(140, "dose_limit", "pregabalin", 300, "P4.restart_dose"),
                 row(147, "dose_change", "pregabalin", 300, "P2.target_reached"),
                 row(182, "evaluation", "pregabalin", 300, outcome="none", pain=7),
                 *pregabalin_stop(182, "P9.refractory_referral")]
    if refer:
        rows += [row(200, "referral_queued", rule="P9.refractory_referral")]
    return rows


def optimised_relief_then_own_stop(restart: bool, restart_rows=None):
    """Pregabalin judged inadequate at 300 mg (day 42), optimised to 600 mg, relieves on day 84; the patient stops
    it himself in maintenance and relapses: the drug that relieved him (the earlier inadequate evaluation is no
    failure: relief followed it) is restarted at the relapse's decision (by default retitrated up to the 600 mg that
    relieved him, P4.restart_dose; ``restart_rows`` replace the restart's rows after its transition), or duloxetine
    is started in its place."""
    rows = [*PREGABALIN_OK, row(42, "evaluation", "pregabalin", 300, outcome="none", pain=7),
            row(42, "dose_change", "pregabalin", 450, "P3.dose_optimisation"),
            row(49, "dose_change", "pregabalin", 600, "P3.dose_optimisation"),
            row(84, "evaluation", "pregabalin", 600, outcome="relief", pain=3),
            {**row(84, "transition", rule="P4.relief"), "state": "relieved"},
            *[{**r, "state": "relieved"} for r in pregabalin_stop(150, "X.patient_stop", 600)],
            {**row(200, "maintenance_visit", rule="P4.maintenance_visit", outcome="none", pain=7), "state": "relieved"},
            {**row(200, "transition", rule="P4.relapse"), "state": "first_line"}]
    if restart:
        return rows + [{**row(200, "transition", rule="P4.reoffer_own_stop"), "state": "switch"},
                       *(RETITRATED_TO_600 if restart_rows is None else restart_rows)]
    return rows + [{**row(200, "transition", rule="P4.no_response_switch"), "state": "switch"},
                   row(200, "drug_start", "duloxetine", 30, "P4.no_response_switch"),
                   row(207, "dose_change", "duloxetine", 60, "P2.target_reached"),
                   row(242, "evaluation", "duloxetine", 60, outcome="relief", pain=3)]


RETITRATED_TO_600 = [row(200, "drug_start", "pregabalin", 150, "P4.reoffer_own_stop"),
                     row(200, "dose_limit", "pregabalin", 600, "P4.restart_dose"),
                     row(207, "dose_change", "pregabalin", 300), row(214, "dose_change", "pregabalin", 450),
                     row(221, "dose_change", "pregabalin", 600, "P2.target_reached"),
                     row(263, "evaluation", "pregabalin", 600, outcome="relief", pain=3)]
# today's (v0.2) restart: from the first dose to the catalogue target, no P4.restart_dose, then optimised again
RESTART_FROM_SCRATCH = [row(200, "drug_start", "pregabalin", 150, "P4.reoffer_own_stop"),
                        row(207, "dose_change", "pregabalin", 300, "P2.target_reached"),
                        row(242, "evaluation", "pregabalin", 300, outcome="partial", pain=5),
                        row(242, "dose_change", "pregabalin", 450, "P3.dose_optimisation"),
                        row(249, "dose_change", "pregabalin", 600, "P3.dose_optimisation")]
AT_RELIEF = [row(200, "drug_start", "pregabalin", 600, "P4.reoffer_own_stop"),
             row(200, "dose_limit", "pregabalin", 600, "P4.restart_dose"),
             row(242, "evaluation", "pregabalin", 600, outcome="relief", pain=3)]
RESTART_ROW_AT_300 = [RETITRATED_TO_600[0], row(200, "dose_limit", "pregabalin", 300, "P4.restart_dose"),
                      *RETITRATED_TO_600[2:]]


NORTRIPTYLINE_OK = [row(0, "transition", rule="P1.tca_first"), row(0, "safety_check", "nortriptyline", check="ecg"),
                    row(0, "drug_start", "nortriptyline", 25, "P1.tca_first"),
                    row(7, "dose_change", "nortriptyline", 50), row(14, "dose_change", "nortriptyline", 75,
                                                                    "P2.target_reached")]


def shift(rows, days):
    return [{**r, "day": r["day"] + days} for r in rows]


def duloxetine_then(tca_rows):
    """Duloxetine fails and is tapered, then the tricyclic rows start on day 49."""
    return [*start(0, "duloxetine", 30, "P1.duloxetine_first"), row(7, "dose_change", "duloxetine", 60),
            row(35, "evaluation", "duloxetine", 60, outcome="none", pain=7),
            row(35, "taper_start", "duloxetine", 60), row(35, "dose_change", "duloxetine", 30, "P5.taper_step"),
            row(42, "dose_change", "duloxetine", 20, "P5.taper_step"),
            row(49, "drug_stop", "duloxetine", 20, "P5.taper_complete"), *shift(tca_rows, 49)]


DULOXETINE_THEN_TCA = duloxetine_then(NORTRIPTYLINE_OK)
MORPHINE_SCREENED = [row(0, "safety_check", "morphine", check="misuse_screen"),
                     row(0, "safety_check", "morphine", check="treatment_agreement")]


def escalation(last_pain=6.0, combination=("pregabalin", "duloxetine"), tramadol=True):
    """A guideline-clean path to morphine: pregabalin partial -> add duloxetine -> combination fails ->
    tramadol (duloxetine tapered across it) -> tramadol fails -> morphine."""
    base, addon = combination
    rows = [*PREGABALIN_OK,
            row(42, "evaluation", "pregabalin", 300, outcome="partial", pain=5),
            row(42, "transition", rule="P4.partial_add")]
    if addon == "duloxetine":
        rows += [row(42, "drug_start", "duloxetine", 30, "P4.partial_add"), row(49, "dose_change", "duloxetine", 60),
                 row(84, "evaluation", "duloxetine", 60, outcome="none", pain=6.5),
                 *pregabalin_stop(84, "P4.combination_failed"),
                 row(84, "taper_start", "duloxetine", 60, "P4.combination_failed"),
                 row(84, "dose_change", "duloxetine", 30, "P5.taper_step")]
    else:  # a topical "added": not a combination (P8, item 6); then a switch to duloxetine fails
        rows += [row(42, "drug_start", addon, 1, "P6.topical_add"),
                 row(84, "evaluation", addon, 1, outcome="none", pain=6.5),
                 *pregabalin_stop(84, "P4.no_response_switch"),
                 row(84, "drug_stop", addon, 1, "P4.no_response_switch"),
                 row(84, "transition", rule="P4.no_response_switch"),
                 row(84, "drug_start", "duloxetine", 30, "P4.no_response_switch"),
                 row(91, "dose_change", "duloxetine", 60, "P2.target_reached"),
                 row(84 + 42, "evaluation", "duloxetine", 60, outcome="none", pain=6.5),
                 row(84 + 42, "taper_start", "duloxetine", 60, "P7.tramadol_after_first_line"),
                 row(84 + 42, "dose_change", "duloxetine", 30, "P5.taper_step")]
    t0 = rows[-1]["day"]
    if tramadol:
        rows += [row(t0, "transition", rule="P7.tramadol_after_first_line"),
                 row(t0, "safety_check", "tramadol", check="misuse_screen"),
                 row(t0, "safety_check", "tramadol", check="treatment_agreement"),
                 row(t0, "safety_check", "tramadol", check="serotonin_check"),
                 row(t0, "drug_start", "tramadol", 100, "P7.tramadol_after_first_line"),
                 row(t0 + 7, "dose_change", "duloxetine", 20, "P5.taper_step"),
                 row(t0 + 7, "dose_change", "tramadol", 200, "P2.target_reached"),
                 row(t0 + 14, "drug_stop", "duloxetine", 20, "P5.taper_complete"),
                 row(t0 + 42, "evaluation", "tramadol", 200, outcome="none", pain=last_pain),
                 row(t0 + 42, "taper_start", "tramadol", 200, "P8.prerequisites"),
                 row(t0 + 42, "dose_change", "tramadol", 100, "P5.taper_step"),
                 row(t0 + 42, "transition", rule="P8.prerequisites"),
                 row(t0 + 42, "drug_start", "morphine", 30, "P8.prerequisites"),
                 row(t0 + 49, "drug_stop", "tramadol", 100, "P5.taper_complete")]
    else:
        rows += [row(t0 + 7, "dose_change", "duloxetine", 20, "P5.taper_step"),
                 row(t0 + 14, "drug_stop", "duloxetine", 20, "P5.taper_complete"),
                 row(t0 + 14, "transition", rule="P8.prerequisites"),
                 row(t0 + 14, "safety_check", "morphine", check="misuse_screen"),
                 row(t0 + 14, "safety_check", "morphine", check="treatment_agreement"),
                 row(t0 + 14, "drug_start", "morphine", 30, "P8.prerequisites")]
    return rows


def with_pain(rows, pain):
    out = [dict(r) for r in rows]
    last_eval = max(i for i, r in enumerate(out) if r["event"] == "evaluation")
    out[last_eval]["pain_nrs"] = pain
    return out


def without(rows, event, check=None):
    return [r for r in rows if not (r["event"] == event and (check is None or r["check"] == check))]


# (invariant, patient facts, policy kwargs, violating rows, clean rows)
CASES = [
    ("dose_finite", {}, {}, start(0, "pregabalin", NAN), PREGABALIN_OK),
    # a taper cut short by loss to follow-up: its stop names the step the patient was on (not NaN, as on main)
    ("dose_recorded", {}, {}, [*DULOXETINE_CUT, row(38, "drug_stop", "duloxetine", None, "X.dropout"),
                               row(38, "dropout", rule="X.dropout")],
     [*DULOXETINE_CUT, row(38, "drug_stop", "duloxetine", 30, "X.dropout"), row(38, "dropout", rule="X.dropout")]),
    ("dose_recorded", {}, {}, [*PREGABALIN_OK, row(40, "dropout", dose=300, rule="X.dropout")],  # no dose there
     [*PREGABALIN_OK, row(40, "dropout", rule="X.dropout")]),
    ("dose_recorded", {}, {}, [*PREGABALIN_OK, row(40, "pharmacy_visit", "pregabalin", 300, rule="P1")],
     [*PREGABALIN_OK, row(40, "maintenance_visit", rule="P4.maintenance_visit", outcome="relief", pain=2)]),
    ("max_dose", {}, {"target_doses": {"pregabalin": 600}},
     [*PREGABALIN_OK, row(14, "dose_change", "pregabalin", 450), row(21, "dose_change", "pregabalin", 600),
      row(56, "evaluation", "pregabalin", 600, outcome="none", pain=6), row(56, "dose_change", "pregabalin", 750)],
     [*PREGABALIN_OK, row(14, "dose_change", "pregabalin", 450), row(21, "dose_change", "pregabalin", 600)]),
    ("tca_older_cardiac", {"cardiovascular_disease": True, "hepatic_disease": True}, {},
     [*NORTRIPTYLINE_OK, row(21, "dose_change", "nortriptyline", 100, "P3.dose_optimisation")], NORTRIPTYLINE_OK),
    ("renal_dose", {"crcl": 45.0}, {}, PREGABALIN_OK,
     [*start(0, "pregabalin", 75), row(7, "dose_change", "pregabalin", 150, "P2.target_reached")]),
    ("strong_opioid_renal", {"crcl": 20.0}, {"declared_departures": ["early_strong_opioid"]},
     [*MORPHINE_SCREENED, *start(0, "morphine", 30, "P8.prerequisites"), row(7, "dose_change", "morphine", 60)],
     [*MORPHINE_SCREENED, *start(0, "morphine", 15, "P8.prerequisites"),
      row(6, "evaluation", "morphine", 15, "P8.titrate_to_response", outcome="none", pain=6),
      row(7, "dose_change", "morphine", 30),
      row(13, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="none", pain=6),
      row(14, "dose_change", "morphine", 45, "P2.target_reached")]),
    ("older_adult_start", {"age": 84.0}, {}, start(0, "pregabalin", 150),
     [*start(0, "pregabalin", 75), row(14, "dose_change", "pregabalin", 150)]),
    ("titration_schedule", {}, {}, [*start(0, "pregabalin", 150), row(3, "dose_change", "pregabalin", 300)],
     PREGABALIN_OK),
    ("intolerance_reduction", {}, {},
     [*PREGABALIN_OK, row(10, "adverse_event", "pregabalin", 300),
      row(10, "dose_change", "pregabalin", 75, "P4.intolerance_reduce")],
     [*PREGABALIN_OK, row(10, "adverse_event", "pregabalin", 300),
      row(10, "dose_change", "pregabalin", 150, "P4.intolerance_reduce")]),
    ("adequate_trial", {}, {}, [*PREGABALIN_OK, row(14, "evaluation", "pregabalin", 300, outcome="none", pain=7)],
     [*PREGABALIN_OK, row(35, "evaluation", "pregabalin", 300, outcome="none", pain=7)]),
    ("tca_last_resort", {"cardiovascular_disease": True}, {}, NORTRIPTYLINE_OK, DULOXETINE_THEN_TCA),
    ("tca_last_resort", {"glaucoma": True}, {}, duloxetine_then(NORTRIPTYLINE_OK[:-1]),
     [*PREGABALIN_OK, row(35, "evaluation", "pregabalin", 300, outcome="none", pain=7),
      *pregabalin_stop(35), *shift(duloxetine_then(NORTRIPTYLINE_OK[:-1]), 35)]),
    ("tca_ecg", {}, {}, without(NORTRIPTYLINE_OK, "safety_check"), NORTRIPTYLINE_OK),
    ("tca_cardiac", {"recent_mi": True}, {}, NORTRIPTYLINE_OK, start(0, "pregabalin", 150)),
    ("duloxetine_hepatic", {"hepatic_disease": True}, {}, start(0, "duloxetine", 30, "P1.duloxetine_first"),
     start(0, "pregabalin", 150)),
    ("contraindication", {"crcl": 20.0}, {}, start(0, "duloxetine", 30, "P1.duloxetine_first"),
     start(0, "pregabalin", 25)),
    ("serotonin_check", {"ssri_use": True}, {}, start(0, "duloxetine", 30, "P1.duloxetine_first"),
     [row(0, "transition", rule="P1.duloxetine_first"),
      row(0, "safety_check", "duloxetine", check="serotonin_check", rule="P5.serotonin_check_snri"),
      row(0, "drug_start", "duloxetine", 30, "P1.duloxetine_first")]),
    ("serotonin_check", {}, {}, without(escalation(), "safety_check", "serotonin_check"), escalation()),
    ("taper", {}, {},
     [*start(0, "duloxetine", 30, "P1.duloxetine_first"), row(7, "dose_change", "duloxetine", 60),
      row(35, "evaluation", "duloxetine", 60, outcome="none", pain=7), row(35, "drug_stop", "duloxetine", 60)],
     [*start(0, "duloxetine", 30, "P1.duloxetine_first"), row(7, "dose_change", "duloxetine", 60),
      row(35, "evaluation", "duloxetine", 60, outcome="none", pain=7), row(35, "taper_start", "duloxetine", 60),
      row(35, "dose_change", "duloxetine", 30, "P5.taper_step"), row(42, "dose_change", "duloxetine", 20, "P5.taper_step"),
      row(49, "drug_stop", "duloxetine", 20, "P5.taper_complete")]),
    ("taper", {}, {},  # too fast: the schedule (2 steps x 7 days) is not followed
     [*start(0, "duloxetine", 30, "P1.duloxetine_first"), row(7, "dose_change", "duloxetine", 60),
      row(35, "evaluation", "duloxetine", 60, outcome="none", pain=7), row(35, "taper_start", "duloxetine", 60),
      row(35, "dose_change", "duloxetine", 30, "P5.taper_step"), row(36, "drug_stop", "duloxetine", 30, "P5.taper_complete")],
     [*start(0, "duloxetine", 30, "P1.duloxetine_first"), row(7, "dose_change", "duloxetine", 60),
      row(20, "adverse_event", "duloxetine", 60), row(20, "drug_stop", "duloxetine", 60, "X.serious_event")]),
    ("cipn_no_tca_gabapentinoid", {"etiology": "cipn_platinum"}, {}, NORTRIPTYLINE_OK,
     start(0, "duloxetine", 30, "P1.duloxetine_cipn")),
    ("topical_indication", {}, {}, start(0, "lidocaine_5pct", 1, "P6.topical_localized"),
     start(0, "pregabalin", 150)),
    ("topical_indication", {"localized": True}, {}, start(0, "lidocaine_5pct", 1, "P6.topical_localized"),
     start(0, "capsaicin_8pct", 1, "P6.topical_localized")),
    ("tramadol_after_first_line", {}, {},
     [row(0, "safety_check", "tramadol", check="misuse_screen"),
      row(0, "safety_check", "tramadol", check="treatment_agreement"), *start(0, "tramadol", 100, "P7")],
     escalation()),
    ("opioid_screen", {}, {}, without(escalation(), "safety_check", "misuse_screen"), escalation()),
    ("strong_opioid_prerequisites", {}, {},
     [*PREGABALIN_OK, row(35, "evaluation", "pregabalin", 300, outcome="none", pain=7),
      *pregabalin_stop(35, "P8.prerequisites"),
      row(35, "safety_check", "morphine", check="misuse_screen"),
      row(35, "safety_check", "morphine", check="treatment_agreement"),
      *start(35, "morphine", 30, "P8.prerequisites")], escalation()),
    ("strong_opioid_prerequisites", {"localized": True, "allodynia": True}, {},  # oral + topical is no combination
     escalation(combination=("pregabalin", "lidocaine_5pct")), escalation()),
    ("strong_opioid_prerequisites", {}, {}, escalation(tramadol=False), escalation()),
    ("strong_opioid_nrs", {}, {}, escalation(last_pain=3.0), escalation(last_pain=4.0)),
    ("strong_opioid_hiv", {"etiology": "hiv_neuropathy"}, {}, escalation(),
     [r for r in escalation() if r["drug"] != "morphine" and r["event"] != "transition"]),
    # morphine starts on day 126; it is judged within the trial period (P8.reassessment, S004: every 1-3 months)
    ("opioid_smallest_dose", {}, {},
     [*escalation(), row(196, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="relief", pain=3),
      row(203, "dose_change", "morphine", 60)],
     [*escalation(), row(196, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="none", pain=6),
      row(203, "dose_change", "morphine", 60),
      row(210, "evaluation", "morphine", 60, "P8.titrate_to_response", outcome="relief", pain=3)]),
    # morphine starts on day 126: each rise answers an evaluation of its response since the last dose level
    ("opioid_titrated_to_response", {}, {},  # the second rise follows the first without a new evaluation
     [*escalation(), row(132, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="none", pain=6),
      row(133, "dose_change", "morphine", 60), row(140, "dose_change", "morphine", 90, "P2.target_reached")],
     [*escalation(), row(132, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="none", pain=6),
      row(133, "dose_change", "morphine", 60),
      row(139, "evaluation", "morphine", 60, "P8.titrate_to_response", outcome="partial", pain=5),
      row(140, "dose_change", "morphine", 90, "P2.target_reached")]),
    ("opioid_titrated_to_response", {}, {},  # a rise by the schedule alone, or after another drug's evaluation
     [*escalation(), row(132, "evaluation", "pregabalin", 300, "P8.titrate_to_response", outcome="none", pain=6),
      row(133, "dose_change", "morphine", 60)],
     [*escalation(), row(132, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="none", pain=6),
      row(133, "dose_change", "morphine", 60)]),
    ("strong_opioid_reassessed", {}, {},
     [*escalation(), row(400, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="relief", pain=3)],
     [*escalation(), row(196, "evaluation", "morphine", 30, "P8.titrate_to_response", outcome="relief", pain=3),
      row(280, "maintenance_visit", "morphine", 30, "P8.reassessment", pain=3),
      row(364, "maintenance_visit", "morphine", 30, "P8.reassessment", pain=3)]),
    # issue 10: relief after the consult is followed up; drug management relieves only through its regimen
    ("specialist_relief_followed_up", {}, {},
     [*PREGABALIN_OK, consult(100, "intervention_success"), relief(190), row(400, "adverse_event", "pregabalin", 300)],
     [*PREGABALIN_OK, consult(100, "intervention_success"), relief(190),
      row(281, "maintenance_visit", "pregabalin", 300, "P4.maintenance_visit", outcome="relief"),
      row(400, "adverse_event", "pregabalin", 300)]),
    ("managed_relief_regimen", {}, {},
     [*PREGABALIN_OK, consult(100, "conservative_relief"), row(120, "drug_stop", "pregabalin", 300, "X.patient_stop"),
      relief(190), row(281, "maintenance_visit", None, None, "P4.maintenance_visit", outcome="relief")],
     [*PREGABALIN_OK, consult(100, "conservative_relief"), relief(190),
      row(281, "maintenance_visit", "pregabalin", 300, "P4.maintenance_visit", outcome="relief"),
      *pregabalin_stop(300, "X.patient_stop")]),
    # gaps of the issue 9/10 review: capsaicin re-applied, own stops re-offered, consults, care while queued
    ("capsaicin_reapplied", {"localized": True}, {},  # still running on day 150: never applied again
     [*CAPSAICIN, row(150, "drug_stop", "capsaicin_8pct", 1, "X.patient_stop")],
     [*CAPSAICIN, *PATCH_HELPS, row(90, "dose_change", "capsaicin_8pct", 1, "P6.capsaicin_reapply"),
      row(150, "drug_stop", "capsaicin_8pct", 1, "X.patient_stop")]),
    ("capsaicin_reapplied", {"localized": True}, {},  # re-applied sooner than the label's 90 days
     [*CAPSAICIN, *PATCH_HELPS, row(60, "dose_change", "capsaicin_8pct", 1, "P6.capsaicin_reapply"),
      row(80, "drug_stop", "capsaicin_8pct", 1, "X.patient_stop")],
     [*CAPSAICIN, row(80, "drug_stop", "capsaicin_8pct", 1, "X.patient_stop")]),
    # P6.capsaicin_no_benefit: re-applied only after relief or a partial response since the patch's start
    ("capsaicin_benefit", {"localized": True}, {},  # re-applied although the latest evaluation found no response
     [*CAPSAICIN, *PATCH_FAILS, row(90, "dose_change", "capsaicin_8pct", 1, "P6.capsaicin_reapply"),
      row(150, "drug_stop", "capsaicin_8pct", 1, "X.patient_stop")],
     [*CAPSAICIN, *PATCH_FAILS, row(90, "drug_stop", "capsaicin_8pct", 1, "P6.capsaicin_no_benefit")]),
    ("capsaicin_benefit", {"localized": True}, {},  # re-applied with no evaluation since its start
     [*CAPSAICIN, row(90, "dose_change", "capsaicin_8pct", 1, "P6.capsaicin_reapply"),
      row(150, "drug_stop", "capsaicin_8pct", 1, "X.patient_stop")],
     [*CAPSAICIN, row(90, "drug_stop", "capsaicin_8pct", 1, "P6.capsaicin_no_benefit")]),
    ("capsaicin_benefit", {"localized": True}, {},  # stopped for no benefit although it helped, or not when due
     [*CAPSAICIN, *PATCH_HELPS, row(90, "drug_stop", "capsaicin_8pct", 1, "P6.capsaicin_no_benefit")],
     [*CAPSAICIN, *PATCH_HELPS, row(90, "dose_change", "capsaicin_8pct", 1, "P6.capsaicin_reapply"),
      row(150, "drug_stop", "capsaicin_8pct", 1, "X.patient_stop")]),
    ("capsaicin_benefit", {"localized": True}, {},
     [*CAPSAICIN, *PATCH_FAILS, row(75, "drug_stop", "capsaicin_8pct", 1, "P6.capsaicin_no_benefit")],
     [*CAPSAICIN, *PATCH_FAILS, row(90, "drug_stop", "capsaicin_8pct", 1, "P6.capsaicin_no_benefit")]),
    ("reoffer_own_stop", {}, {}, own_stop_then(refer=True, restart=False), own_stop_then(refer=True, restart=True)),
    ("relapse_restarts_own_stop", {}, {}, own_stop_then(refer=True, restart=False),
     own_stop_then(refer=True, restart=True)),
    ("relapse_restarts_own_stop", {}, {}, optimised_relief_then_own_stop(restart=False),
     optimised_relief_then_own_stop(restart=True)),
    # P4.restart_dose: the restart aims at the 600 mg that relieved him (retitrated by default)
    ("restart_dose", {}, {}, optimised_relief_then_own_stop(True, RESTART_FROM_SCRATCH),
     optimised_relief_then_own_stop(restart=True)),
    ("restart_dose", {}, {}, optimised_relief_then_own_stop(True, RESTART_ROW_AT_300),  # the row names another dose
     optimised_relief_then_own_stop(restart=True)),
    ("restart_dose", {}, {}, optimised_relief_then_own_stop(True, AT_RELIEF),  # 'retitrate': not straight at 600
     optimised_relief_then_own_stop(restart=True)),
    ("restart_dose", {"localized": True}, {},  # a topical added at the restart's own decision (review rev14)
     optimised_relief_then_own_stop(True, [*RETITRATED_TO_600[:2],
                                           row(200, "drug_start", "capsaicin_8pct", 1, "P6.topical_add"),
                                           *RETITRATED_TO_600[2:]]),
     optimised_relief_then_own_stop(restart=True)),
    ("restart_dose", {}, {"restart_dose": "relieving_dose"}, optimised_relief_then_own_stop(restart=True),
     optimised_relief_then_own_stop(True, AT_RELIEF)),
    ("restart_dose", {}, {},  # above the relieving dose before a judgement found no relief
     own_stop_then(refer=False, restart=True)[:-3] + [row(154, "dose_change", "pregabalin", 450, "P3.dose_optimisation")],
     own_stop_then(refer=False, restart=True)),
    # the patient's own stop while relieved decides nothing until a visit measures his pain
    ("own_stop_waits_for_visit", {}, {},  # moved on to duloxetine at the stop itself
     [*PREGABALIN_OK, row(42, "evaluation", "pregabalin", 300, outcome="relief", pain=3),
      {**row(42, "transition", rule="P4.relief"), "state": "relieved"},
      *[{**r, "state": "relieved"} for r in pregabalin_stop(100, "X.patient_stop")],
      {**row(100, "transition", rule="P4.relapse"), "state": "first_line"},
      {**row(100, "transition", rule="P4.no_response_switch"), "state": "switch"},
      row(100, "drug_start", "duloxetine", 30, "P4.no_response_switch")],
     own_stop_then(refer=False, restart=True)),
    ("own_stop_waits_for_visit", {}, {},  # referred later, still with no visit since the stop
     [*own_stop_then(refer=False, restart=False)[:-2],
      {**row(120, "transition", rule="P9.refractory_referral"), "state": "specialist_referral"},
      row(120, "referral_queued", rule="P9.refractory_referral")],
     [*own_stop_then(refer=False, restart=False)[:-2],
      {**row(182, "maintenance_visit", rule="P4.maintenance_visit", outcome="relief", pain=2), "state": "relieved"}]),
    ("own_stop_waits_for_visit", {"localized": True, "allodynia": True}, {},  # the relapse comes on the stop
     # of another drug for a serious event (a reason of its own to decide)
     [*PREGABALIN_OK, row(0, "drug_start", "lidocaine_5pct", 1, "P6.topical_add"),
      row(42, "evaluation", "pregabalin", 300, outcome="relief", pain=3),
      {**row(42, "transition", rule="P4.relief"), "state": "relieved"},
      *[{**r, "state": "relieved"} for r in pregabalin_stop(100, "X.patient_stop")],
      {**row(120, "transition", rule="P4.relapse"), "state": "first_line"}],
     [*PREGABALIN_OK, row(0, "drug_start", "lidocaine_5pct", 1, "P6.topical_add"),
      row(42, "evaluation", "pregabalin", 300, outcome="relief", pain=3),
      {**row(42, "transition", rule="P4.relief"), "state": "relieved"},
      *[{**r, "state": "relieved"} for r in pregabalin_stop(100, "X.patient_stop")],
      row(120, "adverse_event", "lidocaine_5pct", 1, "X.serious_event"),
      {**row(120, "drug_stop", "lidocaine_5pct", 1, "X.serious_event"), "state": "relieved"},
      {**row(120, "transition", rule="P4.relapse"), "state": "first_line"}]),
    ("referral_accounting", {}, {"referral": {"max_consults": 1}},
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"), *referral(200, 250, "conservative_no_relief")],
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief")]),
    ("referral_accounting", {}, {},  # back in the pathway after the only consult, then discharged, not referred
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"),
      {**row(150, "transition", rule="P4.no_response_switch"), "state": "switch"},
      {**row(300, "transition", rule="P9.discharge_plan"), "state": "discharged"}],
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"),
      {**row(150, "transition", rule="P9.discharge_plan"), "state": "discharged"}]),
    ("referral_accounting", {}, {},  # queued twice without the first referral ending
     [*PREGABALIN_OK, row(100, "referral_queued", rule="P9.refractory_referral"),
      row(120, "referral_queued", rule="P9.refractory_referral")],
     [*PREGABALIN_OK, row(100, "referral_queued", rule="P9.refractory_referral"),
      row(110, "queue_left", rule="P9.relieved_while_waiting"),
      row(120, "referral_queued", rule="P9.refractory_referral")]),
    ("re_referral_interval", {}, {},  # referred again 50 days after the consult started (default: 91 days)
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"), row(200, "referral_queued", rule="P9.re_referral")],
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"), row(241, "referral_queued", rule="P9.re_referral")]),
    ("re_referral_interval", {}, {"referral": {"re_referral_after_days": 120}},  # the policy's interval, not 91
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"), row(260, "referral_queued", rule="P9.re_referral")],
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"), row(270, "referral_queued", rule="P9.re_referral")]),
    ("re_referral_deferral", {}, {},  # refractory again 50 days after the consult: deferred on the list, unreviewed
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"),
      {**row(200, "transition", rule="P9.re_referral_deferred"), "state": "specialist_referral"},
      {**row(241, "referral_queued", rule="P9.re_referral"), "state": "specialist_referral"}],
     [*PREGABALIN_OK, *referral(100, 150, "conservative_no_relief"),
      {**row(200, "transition", rule="P9.re_referral_deferred"), "state": "discharged"},
      {**row(228, "maintenance_visit", "pregabalin", 300, "P9.re_referral_deferred", "none", pain=7),
       "state": "discharged"},  # reviewed every referral.deferral_review_days (28)
      {**row(241, "maintenance_visit", "pregabalin", 300, "P9.re_referral_deferred", "none", pain=7),
       "state": "discharged"},
      {**row(241, "transition", rule="P9.re_referral"), "state": "specialist_referral"},
      {**row(241, "referral_queued", rule="P9.re_referral"), "state": "specialist_referral"}]),
    ("criteria_referral_on_treatment", {}, {"referral": {"after_failed_lines": 1}},
     [*PREGABALIN_OK, row(42, "evaluation", "pregabalin", 300, outcome="none", pain=7),
      *pregabalin_stop(42, "P9.referral_criteria"), row(42, "referral_queued", rule="P9.referral_criteria")],
     [*PREGABALIN_OK, row(42, "evaluation", "pregabalin", 300, outcome="partial", pain=5),
      row(42, "referral_queued", rule="P9.referral_criteria")]),
    ("min_dose", {"crcl": 10.0, "age": 80.0}, {}, [*start(0, "gabapentin", 10.0, "P1.gabapentin_cost")],
     [*start(0, "gabapentin", 100.0, "P1.gabapentin_cost")]),
    ("givable_dose", {"crcl": 45.0}, {}, start(0, "gabapentin", 120.0, "P1.gabapentin_cost"),
     start(0, "gabapentin", 100.0, "P1.gabapentin_cost")),
    ("rule_ids", {}, {}, [row(0, "transition", rule="P99.nothing"), row(0, "drug_start", "pregabalin", 150, "P1")],
     PREGABALIN_OK),
    ("rule_ids", {}, {}, [*PREGABALIN_OK, row(20, "dose_change", "pregabalin", 150, "P2.titration_step")],
     [*PREGABALIN_OK, row(20, "dose_change", "pregabalin", 150, "P4.intolerance_reduce")]),
]


@pytest.mark.parametrize(("name", "facts", "policy", "bad", "good"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_invariant_reports_violation_and_passes_clean(name, facts, policy, bad, good):
    """Protects each invariant: a hand-made violating trajectory is reported under it, a clean one passes all."""
    assert name in inv.BY_NAME
    pol = Policy(**policy)
    report = run(bad, pol, **facts)
    assert name in violated(report), [(v.invariant, v.detail) for v in report.violations()]
    assert all(v.replication == 0 and v.patient == 0 for v in report.violations())
    clean = run(good, pol, **facts)
    assert clean.ok, [(v.invariant, v.detail) for v in clean.violations()]


def test_every_invariant_has_a_hand_made_case():
    """Protects the oracle's coverage: no invariant goes without a violating and a clean trajectory."""
    assert {c[0] for c in CASES} == {i.name for i in INVARIANTS}


def test_target_doses_600_is_not_a_titration_violation():
    """Protects agreement on legal options (v0.1: target_doses {pregabalin: 600} gave 631 false
    titration_schedule violations): the schedule beyond its target goes on with its last increment."""
    rows = [*PREGABALIN_OK, row(14, "dose_change", "pregabalin", 450), row(21, "dose_change", "pregabalin", 600,
                                                                            "P2.target_reached"),
            row(49, "evaluation", "pregabalin", 600, outcome="none", pain=7)]
    assert run(rows, Policy(target_doses={"pregabalin": 600})).ok
    too_fast = [*PREGABALIN_OK, row(8, "dose_change", "pregabalin", 450)]
    assert "titration_schedule" in violated(run(too_fast, Policy(target_doses={"pregabalin": 600})))


def test_dose_optimisation_after_trial_passes_and_is_judged_again():
    """Protects P3 dose optimisation: raising toward the maximum after a trial is legal, and a failure
    judged right after the raise is reported (an adequate trial at target is still required)."""
    opt = [*PREGABALIN_OK, row(35, "evaluation", "pregabalin", 300, outcome="none", pain=7),
           row(35, "dose_change", "pregabalin", 450, "P3.dose_optimisation"),
           row(42, "dose_change", "pregabalin", 600, "P3.dose_optimisation"),
           row(70, "evaluation", "pregabalin", 600, outcome="none", pain=7)]
    assert run(opt).ok
    reduced = [*PREGABALIN_OK, row(10, "adverse_event", "pregabalin", 300),
               row(10, "dose_change", "pregabalin", 150, "P4.intolerance_reduce"),
               row(35, "evaluation", "pregabalin", 150, outcome="none", pain=7)]
    assert run(reduced).ok  # judged at the highest tolerated dose
    early = [*PREGABALIN_OK, row(20, "evaluation", "pregabalin", 300, outcome="none", pain=7)]
    assert "adequate_trial" in violated(run(early))


def test_declared_departures_and_policy_options_are_reported_as_declared():
    """Protects declared departures: the same violation under a declared departure is reported as declared
    and does not fail the check."""
    rows = [*start(0, "pregabalin", 150), row(3, "dose_change", "pregabalin", 300)]
    report = run(rows, Policy(titration_speed=0.5, declared_departures=["fast_titration"]))
    assert report.ok and report.n_declared == 1
    assert report.by_invariant()["titration_schedule"].status == "declared departure"


def test_renal_older_start_takes_the_lower_first_dose_not_the_product():
    """Protects P2.older_renal_start: an older adult in a renal band starts at the lower of the older-adult
    first dose (pregabalin 75) and the band's first dose (150 x 1/2 = 75 at CrCl 30-59; 150 x 1/4 = 37.5 at
    15-29), not at their product; higher is reported, and below the smallest capsule (25 mg) is reported as
    P2.min_dose (issue 9 review: 9.375 mg/day at CrCl < 15)."""
    assert run([*start(0, "pregabalin", 75), row(14, "dose_change", "pregabalin", 150)], age=80.0, crcl=45.0).ok
    assert "older_adult_start" in violated(run(start(0, "pregabalin", 150), age=80.0, crcl=45.0))
    assert "older_adult_start" in violated(run(start(0, "pregabalin", 75), age=80.0, crcl=20.0))
    assert "older_adult_start" in violated(run(start(0, "pregabalin", 37.5), age=80.0, crcl=45.0))  # 75 x 1/2
    # 37.5 as marketed capsules give it: 25 (P2.givable_dose)
    assert run([*start(0, "pregabalin", 25), row(28, "dose_change", "pregabalin", 75)], age=80.0, crcl=20.0).ok
    stacked = violated(run(start(0, "pregabalin", 9.375), age=80.0, crcl=10.0))
    assert "min_dose" in stacked
    assert run(start(0, "pregabalin", 25), age=80.0, crcl=10.0).ok


def _oracle_imports() -> dict[str, set[str]]:
    """Every module of the oracle package (``simulator/regression/invariants/*.py``) -> the dotted names it
    imports (relative imports resolved against its own package; lazy imports included)."""
    root = Path(inv.__file__).parent
    out: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        package = inv.__name__.split(".")  # every module of the oracle sits in this package
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                parts = package[:len(package) - node.level + 1] if node.level else []
                base = ".".join([*parts, *([node.module] if node.module else [])])
                imported.add(base)
                imported |= {f"{base}.{a.name}" for a in node.names}
        out[path.name] = imported
    return out


def test_oracle_does_not_import_the_engine():
    """Protects independence: no module of simulator.regression.invariants imports the engine or its safety,
    policy, patient, pathway or clinical helpers, at module level or inside a function; of painpath it imports
    only the catalogue, the rulebook, the opioid reassessment check and itself. Every module of the package
    is read (a new one is covered without a change here)."""
    found = _oracle_imports()
    assert {"__init__.py", "checker.py", "rules.py"} <= set(found)  # the walk reads the package
    import simulator.regression.opioid_check as opioid_check  # the oracle's helper module (issue 10), read too

    helper: set[str] = set()
    for node in ast.walk(ast.parse(Path(opioid_check.__file__).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = ".".join(["simulator"] * (node.level == 2) + [node.module]) if node.level else node.module
            helper |= {base, *(f"{base}.{a.name}" for a in node.names)}
    assert not [m for m in helper if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IMPORTS)], helper
    assert opioid_check.DEFAULT_MAX_TRIAL_DAYS == Policy().strong_opioid.max_trial_days
    imported = set().union(*found.values())
    bad = sorted(m for m in imported if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IMPORTS))
    assert not bad, f"simulator.regression.invariants imports engine code: {bad}"
    own = inv.__name__
    allowed = ("simulator.model.catalog", "simulator.model.rules", "simulator.regression.opioid_check", own)
    other = {f"{name}: {m}" for name, ms in found.items() for m in ms
             if m.startswith("simulator") and not any(m == a or m.startswith(a + ".") for a in allowed)}
    assert not other, f"the oracle imports painpath code beyond the catalogue and the rules: {sorted(other)}"
    assert "simulator.model.catalog" in imported and "simulator.model.rules" in imported
    assert opioid_check.DEFAULT_MAX_TRIAL_DAYS == Policy().strong_opioid.max_trial_days


def test_oracle_import_check_can_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Protects the check above: a module of the oracle that imports the engine's safety helpers is seen."""
    fake = tmp_path / "invariants"
    fake.mkdir()
    (fake / "__init__.py").write_text("from ...model.catalog import load_catalog\nfrom ...model.rules import load_rules\n")
    (fake / "checker.py").write_text("def f():\n    from ...model import safety\n")
    (fake / "rules.py").write_text("")
    monkeypatch.setattr(inv, "__file__", str(fake / "__init__.py"))
    found = _oracle_imports()
    assert "simulator.model.safety" in found["checker.py"]
    with pytest.raises(AssertionError, match="engine code"):
        test_oracle_does_not_import_the_engine()


def test_unknown_patient_is_an_error():
    """Protects the replay: events of a patient missing from the patients table are refused, not skipped."""
    ev = table(start(0, "pregabalin", 150))
    ev["patient"] = 5
    with pytest.raises(ValueError, match="patient 5"):
        check_events(ev, pd.DataFrame([BASE_PATIENT]), Policy())


def test_policy_options_that_turn_a_rule_off_are_declared():
    """Protects policy options outside the guideline (cipn_exclusions: false, strong_opioid.hiv: caution):
    their trajectories are reported as declared departures, not as failures, and not hidden either."""
    from types import SimpleNamespace

    cipn_off = SimpleNamespace(declared_departures=[], cipn_exclusions=False)
    pats = pd.DataFrame([{**BASE_PATIENT, "etiology": "cipn_taxane"}])
    report = check_events(table(NORTRIPTYLINE_OK), pats, cipn_off)
    assert report.ok and report.by_invariant()["cipn_no_tca_gabapentinoid"].status == "declared departure"
    hiv_ok = SimpleNamespace(declared_departures=[], strong_opioid=SimpleNamespace(hiv="caution"))
    pats = pd.DataFrame([{**BASE_PATIENT, "etiology": "hiv_neuropathy"}])
    report = check_events(table(escalation()), pats, hiv_ok)
    assert report.ok and len(report.by_invariant()["strong_opioid_hiv"].declared) == 1


def test_dose_optimisation_no_faster_than_the_schedule():
    """Protects P13 within a line: an increase after the trial still takes the schedule's interval
    (450 -> 600 mg pregabalin needs 7 days), even though the line started long before."""
    base = [*PREGABALIN_OK, row(35, "evaluation", "pregabalin", 300, outcome="none", pain=7),
            row(35, "dose_change", "pregabalin", 450, "P3.dose_optimisation")]
    assert "titration_schedule" in violated(run([*base, row(36, "dose_change", "pregabalin", 600,
                                                            "P3.dose_optimisation")]))
    assert run([*base, row(42, "dose_change", "pregabalin", 600, "P3.dose_optimisation")]).ok
    # in renal impairment the same pace applies to the scaled doses (x 1/2 at CrCl 45)
    renal = [*start(0, "pregabalin", 75), row(7, "dose_change", "pregabalin", 150, "P2.target_reached"),
             row(35, "evaluation", "pregabalin", 150, outcome="none", pain=7),
             row(35, "dose_change", "pregabalin", 225, "P3.dose_optimisation")]
    assert "titration_schedule" in violated(run([*renal, row(37, "dose_change", "pregabalin", 300)], crcl=45.0))
    assert run([*renal, row(42, "dose_change", "pregabalin", 300, "P3.dose_optimisation")], crcl=45.0).ok


def test_docs_list_every_invariant():
    """Protects the documentation: docs/invariants.md has a row for each invariant with its rule id."""
    text = (Path(__file__).parent.parent / "docs" / "invariants.md").read_text()
    for i in INVARIANTS:
        assert f"| `{i.name}` | `{i.rule}` |" in text, i.name


def test_readme_states_no_stale_count_of_invariants():
    """Protects the README's Regression testing section: it said "24 guideline invariants" while the registry held
    38; it names the registry instead of a count, and no count of invariants may come back unless it is true."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    counts = [int(n) for n in re.findall(r"(\d+) (?:guideline )?invariants", readme)]
    assert all(n == len(INVARIANTS) for n in counts), (counts, len(INVARIANTS))
    assert "every guideline invariant of the registry" in readme


def test_policy_start_dose_only_up_to_the_seeds_start():
    """Protects P2/P13 on the start_doses option: duloxetine at 60 mg from day 0 is a seed position (S001);
    pregabalin at 300 mg from day 0 is a fast titration, whatever the policy says."""
    from types import SimpleNamespace

    dul = SimpleNamespace(declared_departures=[], start_doses={"duloxetine": 60.0})
    pats = pd.DataFrame([BASE_PATIENT])
    assert check_events(table(start(0, "duloxetine", 60, "P1.duloxetine_first")), pats, dul).ok
    preg = SimpleNamespace(declared_departures=[], start_doses={"pregabalin": 300.0})
    report = check_events(table(start(0, "pregabalin", 300)), pats, preg)
    assert "titration_schedule" in violated(report)


def test_policy_start_dose_shifts_the_schedule():
    """Protects agreement on start_doses + a higher target: duloxetine started at 60 may reach 90 one
    interval later (the schedule's own pace from 60), not sooner."""
    from types import SimpleNamespace

    pol = SimpleNamespace(declared_departures=[], start_doses={"duloxetine": 60.0}, target_doses={"duloxetine": 120})
    pats = pd.DataFrame([BASE_PATIENT])
    ok = [*start(0, "duloxetine", 60, "P1.duloxetine_first"), row(7, "dose_change", "duloxetine", 90),
          row(14, "dose_change", "duloxetine", 120, "P2.target_reached")]
    assert check_events(table(ok), pats, pol).ok
    fast = [*start(0, "duloxetine", 60, "P1.duloxetine_first"), row(3, "dose_change", "duloxetine", 90)]
    assert "titration_schedule" in violated(check_events(table(fast), pats, pol))


def test_usual_care_departures_are_declared_only_when_the_scenario_declares_them():
    """Protects the usual-care mapping (invariants.DEPARTURE_BY_RULE): an abrupt stop when the patient leaves
    treatment (X.left_treatment) is a declared departure under usual_care_leaves_care, the departure that names
    it, and a violation otherwise, also when only usual_care_index (the index drug's departure, which used to
    excuse it) is declared; an evaluation below target is declared under under_titration."""
    from types import SimpleNamespace

    left = [*escalation(), row(141, "drug_stop", "morphine", 30, "X.left_treatment")]  # 15 days on morphine: past taper.after_days
    assert "taper" in violated(run(left, SimpleNamespace(declared_departures=[])))
    assert "taper" in violated(run(left, SimpleNamespace(declared_departures=["usual_care_index"])))
    report = run(left, SimpleNamespace(declared_departures=["usual_care_leaves_care"]))
    assert report.ok and report.by_invariant()["taper"].status == "declared departure"
    low = [*start(0, "pregabalin", 150), row(42, "evaluation", "pregabalin", 150, outcome="none", pain=7)]
    assert "adequate_trial" in violated(run(low, SimpleNamespace(declared_departures=[])))
    report = run(low, SimpleNamespace(declared_departures=["under_titration"]))
    assert report.ok and report.by_invariant()["adequate_trial"].status == "declared departure"


def _bridged_escalation(judged: bool) -> list[dict]:
    """The clean escalation, but its tramadol is a bridge while queued (P9.tramadol_bridge): judged at a review
    without relief after its adequate trial (a maintenance_visit, P9.care_while_waiting), or only evaluated."""
    rows = []
    for r in escalation():
        if r["event"] == "drug_start" and r["drug"] == "tramadol":
            r = {**r, "rule": "P9.tramadol_bridge"}
        if judged and r["event"] == "evaluation" and r["drug"] == "tramadol":
            r = {**r, "event": "maintenance_visit", "rule": "P9.care_while_waiting"}
        rows.append(r)
    return rows


def test_a_bridge_is_a_tramadol_trial_only_once_failed():
    """P8 gate (S004: tramadol before a strong opioid; NICE CG173: tramadol as rescue while waiting): morphine
    after a tramadol bridge that no review judged is flagged; after a review without relief once the bridge
    had its adequate trial it is clean."""
    assert "strong_opioid_prerequisites" in violated(run(_bridged_escalation(judged=False)))
    assert "strong_opioid_prerequisites" not in violated(run(_bridged_escalation(judged=True)))


def _escalation_tramadol_ends(how: str) -> list[dict]:
    """The clean escalation, but its tramadol ends another way before morphine: stopped by the patient before
    its evaluation, stopped by the patient after relief, relief lost at maintenance visits while it ran, or
    not tolerated."""
    rows = [r for r in escalation() if not (r["drug"] == "tramadol" and r["event"] in ("evaluation",))]
    t_eval = next(r["day"] for r in escalation() if r["event"] == "evaluation" and r["drug"] == "tramadol")
    out = []
    for r in rows:
        if r["event"] == "taper_start" and r["drug"] == "tramadol":
            if how == "patient_stop":
                r = {**r, "rule": "X.patient_stop"}
            elif how == "intolerance":
                r = {**r, "rule": "P4.intolerance_stop"}
            elif how == "relief_then_patient_stop":
                out += [row(t_eval - 14, "evaluation", "tramadol", 200, outcome="relief", pain=2),
                        row(t_eval - 14, "transition", rule="P4.relief")]
                r = {**r, "rule": "X.patient_stop"}
            elif how == "relapse":
                out += [row(t_eval - 14, "evaluation", "tramadol", 200, outcome="relief", pain=2),
                        row(t_eval - 14, "transition", rule="P4.relief"),
                        {**row(t_eval - 7, "maintenance_visit", "tramadol", 200, outcome="none", pain=6),
                         "rule": "P4.maintenance_visit"},
                        {**row(t_eval, "maintenance_visit", "tramadol", 200, outcome="none", pain=6),
                         "rule": "P4.maintenance_visit"},
                        row(t_eval, "transition", rule="P4.relapse")]
        out.append(r)
    return out


@pytest.mark.parametrize(("how", "flagged"), [("patient_stop", True), ("relief_then_patient_stop", True),
                                              ("relapse", False), ("intolerance", False)])
def test_strong_opioid_needs_a_failed_tramadol_not_a_tried_one(how, flagged):
    """P8 gate (S004 "strong opioids only if tramadol fails"): morphine after a tramadol the patient stopped
    himself (before it was judged, or while it relieved) is flagged; after relief lost on tramadol or tramadol
    not tolerated it is clean. The oracle reads the failure from the rows itself."""
    report = run(_escalation_tramadol_ends(how))
    assert ("strong_opioid_prerequisites" in violated(report)) is flagged
    if flagged:
        v = report.by_invariant()["strong_opioid_prerequisites"].violations
        assert any("tramadol has not failed" in x.detail for x in v)


def test_a_patient_stop_is_no_documented_first_line_failure():
    """P7 (S000 "only after documented failure of first-line agents"): tramadol after a first-line drug the
    patient stopped himself is flagged; after the same drug stopped for intolerance it is clean."""
    def path(stop_rule):
        return [*PREGABALIN_OK, row(20, "drug_stop", "pregabalin", 300, stop_rule),
                row(20, "transition", rule="P7.tramadol_after_first_line"),
                row(20, "safety_check", "tramadol", check="misuse_screen"),
                row(20, "safety_check", "tramadol", check="treatment_agreement"),
                row(20, "drug_start", "tramadol", 100, "P7.tramadol_after_first_line")]
    assert "tramadol_after_first_line" in violated(run(path("X.patient_stop")))
    assert "tramadol_after_first_line" not in violated(run(path("P4.intolerance_stop")))


def test_no_reoffer_is_owed_when_the_policy_turns_it_off_or_the_relapse_escalates():
    """P4.reoffer_own_stop: with ``reoffer_own_stop: false`` (usual care) a drug the patient stopped himself is not
    owed a re-offer; a relapse that returns him to the tramadol state (no step back to first-line drugs) owes none
    either; the default policy owes it when the relapse returns to a first-line state (the case above)."""
    bad = own_stop_then(refer=True, restart=False)
    assert "reoffer_own_stop" in violated(run(bad))
    assert "reoffer_own_stop" not in violated(run(bad, Policy(reoffer_own_stop=False)))
    escalated = [{**r, "state": "tramadol"} if r.get("rule") == "P4.relapse" else r for r in bad]
    assert "reoffer_own_stop" not in violated(run(escalated))


def test_restart_owed_whatever_an_earlier_evaluation_judged_and_exempt_when_turned_off():
    """P4.reoffer_own_stop (README: "the drug that relieved him is restarted first"): the restart is owed at the
    relapse's decision itself, not merely before a referral, and an inadequate evaluation that dose optimisation then
    turned into relief does not exempt it (the engine's failed-drug record did, on main); a policy turning the
    re-offer off owes none. A relapse still within the taper of the drug stopped owes it too (exempt on v0.2): the
    taper is reversed (P4.taper_reversed) and the drug climbs back from the step he is on."""
    bad = optimised_relief_then_own_stop(restart=False)
    assert "relapse_restarts_own_stop" in violated(run(bad))
    assert "reoffer_own_stop" not in violated(run(bad))  # the referral-only reading did not see it
    assert "relapse_restarts_own_stop" not in violated(run(bad, Policy(reoffer_own_stop=False)))
    tapering = [{**r, "day": 204.0} if r["event"] == "drug_stop" and r["drug"] == "pregabalin" else r for r in bad]
    tapering = [{**r, "day": 153.0} if r.get("rule") == "X.patient_stop" else r for r in tapering]
    tapering = [{**r, "day": r["day"] + 3.0} if r["day"] >= 200.0 and r["event"] != "drug_stop" else r
                for r in tapering]  # the visit finding pain back, the relapse and its decision on day 203
    assert "relapse_restarts_own_stop" in violated(run(tapering))
    on_step = [{**r, "day": 153.0} if r.get("rule") == "P5.taper_step" else r for r in tapering
               if not (r["event"] == "drug_stop" and r["drug"] == "pregabalin")]  # its taper: 600 -> 300 on day 153
    reversed_ = [*on_step, row(203, "drug_stop", "pregabalin", 300, "P4.taper_reversed"),
                 row(203, "drug_start", "pregabalin", 300, "P4.reoffer_own_stop"),
                 row(203, "dose_limit", "pregabalin", 600, "P4.restart_dose"),
                 row(210, "dose_change", "pregabalin", 450), row(217, "dose_change", "pregabalin", 600),
                 row(259, "evaluation", "pregabalin", 600, outcome="relief", pain=3)]
    assert run(reversed_).ok, [(v.invariant, v.detail) for v in run(reversed_).violations()]
    from_first = [*reversed_[:-5], row(203, "drug_start", "pregabalin", 150, "P4.reoffer_own_stop"), *reversed_[-4:]]
    assert "restart_dose" in violated(run(from_first))  # not from the taper step he was on


def test_a_visit_minutes_after_the_own_stop_is_its_own_decision():
    """``reoffer_own_stop``: a re-offer is never decided at the stop itself, but a maintenance visit 0.005 days after
    the patient's own stop is another decision (six-week-trials 800 seed 13, patient 281: stop 503.995, relapse at
    the visit of day 504.000, tramadol restarted: flagged before SAME_MOMENT); at the very moment it is flagged."""
    def course(stop_day):
        rows = [*PREGABALIN_OK, row(42, "evaluation", "pregabalin", 300, outcome="relief", pain=3),
                {**row(42, "transition", rule="P4.relief"), "state": "relieved"},
                {**row(stop_day, "taper_start", "pregabalin", 300, "X.patient_stop"), "state": "relieved"},
                {**row(stop_day, "dose_change", "pregabalin", 150, "P5.taper_step"), "state": "relieved"},
                {**row(140, "maintenance_visit", rule="P4.maintenance_visit", outcome="none", pain=7),
                 "state": "relieved"},
                {**row(140, "transition", rule="P4.relapse"), "state": "first_line"},
                row(140, "transition", rule="P4.reoffer_own_stop"),
                row(140, "drug_stop", "pregabalin", 150, "P4.taper_reversed"),
                row(140, "drug_start", "pregabalin", 150, "P4.reoffer_own_stop"),
                row(140, "dose_limit", "pregabalin", 300, "P4.restart_dose")]
        return [(v.invariant, v.detail) for v in run(rows).violations() if v.invariant == "reoffer_own_stop"]
    assert course(139.995) == []
    assert course(140.0)


def _restarted_together(judged_on: float) -> list[dict]:
    """Gabapentin (target 1800 mg/day on day 14) and duloxetine added to it (60 mg/day on day 49) relieve; the patient
    stops both himself, relapses at the visit of day 140 and both are restarted together (P4.reoffer_own_stop),
    retitrated to the doses that relieved him (P4.restart_dose): duloxetine back at 60 on day 147 (its 28-day trial
    ends on day 175), gabapentin at 1800 on day 154 (its trial ends on day 182). The regimen is judged (on the
    newest drug, duloxetine) on day ``judged_on``."""
    relieved = [*start(0, "gabapentin", 300, "P1.gabapentin_cost"), row(1, "dose_change", "gabapentin", 600),
                row(2, "dose_change", "gabapentin", 900), row(7, "dose_change", "gabapentin", 1200),
                row(14, "dose_change", "gabapentin", 1800, "P2.target_reached"),
                row(42, "evaluation", "gabapentin", 1800, outcome="partial", pain=5),
                row(42, "transition", rule="P4.partial_add"), row(42, "drug_start", "duloxetine", 30, "P4.partial_add"),
                row(49, "dose_change", "duloxetine", 60, "P2.target_reached"),
                row(77, "evaluation", "duloxetine", 60, outcome="relief", pain=2),
                {**row(77, "transition", rule="P4.relief"), "state": "relieved"}]
    own_stops = [row(100, "taper_start", "duloxetine", 60, "X.patient_stop"),
                 row(100, "dose_change", "duloxetine", 30, "P5.taper_step"),
                 row(107, "dose_change", "duloxetine", 20, "P5.taper_step"),
                 row(114, "drug_stop", "duloxetine", 20, "P5.taper_complete"),
                 row(120, "taper_start", "gabapentin", 1800, "X.patient_stop"),
                 row(120, "dose_change", "gabapentin", 900, "P5.taper_step"),
                 row(127, "drug_stop", "gabapentin", 900, "P5.taper_complete"),
                 row(140, "maintenance_visit", rule="P4.maintenance_visit", outcome="none", pain=7)]
    restart = [{**row(140, "transition", rule="P4.relapse"), "state": "add_on"},
               {**row(140, "transition", rule="P4.reoffer_own_stop"), "state": "switch"},
               row(140, "drug_start", "gabapentin", 300, "P4.reoffer_own_stop"),
               row(140, "dose_limit", "gabapentin", 1800, "P4.restart_dose"),
               row(140, "drug_start", "duloxetine", 30, "P4.reoffer_own_stop"),
               row(140, "dose_limit", "duloxetine", 60, "P4.restart_dose"),
               row(141, "dose_change", "gabapentin", 600), row(142, "dose_change", "gabapentin", 900),
               row(147, "dose_change", "gabapentin", 1200), row(147, "dose_change", "duloxetine", 60, "P2.target_reached"),
               row(154, "dose_change", "gabapentin", 1800, "P2.target_reached"),
               row(judged_on, "evaluation", "duloxetine", 60, outcome="none", pain=7)]
    return [*relieved, *[{**r, "state": "relieved"} for r in own_stops], *restart]


def test_drugs_restarted_together_are_each_judged_after_their_own_adequate_trial():
    """P3 (S000 "ensure target doses are reached before switching"): a regimen of oral drugs started together (a
    restart, P4.reoffer_own_stop) is judged failed only once each of them has had its own adequate trial, not only
    the newest drug the evaluation row names. Judged on day 175, after duloxetine's trial but before gabapentin's
    (day 182), it is reported under ``adequate_trial`` naming gabapentin; judged on day 182 the trajectory is clean
    (before: the oracle read the newest drug's trial only, and day 175 passed)."""
    early = run(_restarted_together(175))
    found = [v for v in early.violations() if v.invariant == "adequate_trial"]
    assert [(v.drug, v.day) for v in found] == [("gabapentin", 175.0)], [(v.invariant, v.detail) for v in found]
    assert "duloxetine" in found[0].detail and "182" in found[0].detail
    legal = run(_restarted_together(182))
    assert legal.ok, [(v.invariant, v.detail) for v in legal.violations()]
    alone = [r for r in _restarted_together(175) if not (r["drug"] == "gabapentin" and r["day"] >= 140)]
    assert "adequate_trial" not in violated(run(alone))  # duloxetine restarted alone: its own trial only


def test_a_bridge_counts_as_failed_only_after_its_adequate_trial_at_target():
    """P8 gate, P3: a tramadol bridge judged without relief counts as tramadol tried once it has had its adequate
    trial at its target dose (28 days at 200 mg/day, reached a week after its start), as the engine judges it
    (Evaluation._trial_due); the oracle used to count 28 days from its start. Judged 30 days after its start (23
    at target), the morphine that follows is flagged; judged at 42 days, it is clean."""
    rows = _bridged_escalation(judged=True)
    t0 = next(r["day"] for r in rows if r["event"] == "drug_start" and r["drug"] == "tramadol")
    early = [{**r, "day": r["day"] - 12} if r["day"] >= t0 + 42 else r for r in rows]
    assert any(r["event"] == "maintenance_visit" and r["day"] == t0 + 30 for r in early)
    assert "strong_opioid_prerequisites" in violated(run(early))
    assert "strong_opioid_prerequisites" not in violated(run(rows))
