"""Words the teaching tools share: a drug's catalogue name for reading, and the safety flags in plain words.

Owned here so that the narrated journey (:mod:`simulator.teaching.narrate`, :mod:`simulator.teaching.steps`) and
the clinical flowchart (:mod:`simulator.teaching.flowchart`) can both use them without importing each other (the
journey page draws the flowchart). The rule texts themselves are in ``simulator/data/rules.yaml``; these are the
words of the events around them. Imports nothing.
"""

from __future__ import annotations

FLAG_WORDS = {"hepatic_disease": "hepatic disease", "recent_mi": "recent myocardial infarction",
              "arrhythmia": "arrhythmia", "heart_block": "heart block",
              "cardiovascular_disease": "cardiovascular disease", "glaucoma": "glaucoma",
              "orthostatic_hypotension": "orthostatic hypotension", "ssri_use": "takes an SSRI",
              "depression": "depression"}
"""Cohort flag -> the words a reader sees (the flags the safety rules read; docs/cohorts)."""


def drug_name(name: str) -> str:
    """A drug's catalogue name for reading: lidocaine_5pct -> lidocaine 5%."""
    return name.replace("_5pct", " 5%").replace("_8pct", " 8%").replace("_", " ")


# Event phrasing of the narrated journey (simulator.teaching.narrate), by rule id or trigger.
DOSE_WORDS = {"P2.target_reached": "target dose reached", "P2.titration_step": "titration step",
              "P3.dose_optimisation": "dose raised toward the maximum before judging failure",
              "P4.intolerance_reduce": "dose lowered to the last tolerated step",
              "P5.taper_step": "taper step",
              "P6.capsaicin_reapply": "applied again as the last application's effect wanes; the latest "
                                      "evaluation found relief or a partial response"}
LIMIT_WORDS = {"P2.older_adult_start": "older adult, lower first dose", "P2.start_dose_policy": "policy first dose",
               "P2.older_renal_start": "older adult in renal impairment, first dose (the lower of the two, not "
               "their product)", "P2.min_dose": "no dose below the smallest marketed dose,",
               "P5.renal_dose": "renal dosing, maximum", "P5.renal_cap": "renal cap",
               "P5.older_adult_cap": "older-adult maximum", "P5.tca_cardiac_cap": "cardiac maximum",
               "P5.tca_glaucoma": "glaucoma maximum", "P5.tca_orthostatic": "orthostatic-hypotension maximum",
               "P2.max_dose_cap": "policy target capped at",
               "P2.givable_dose": "doses rounded down to what the marketed strengths give, first at",
               "P5.taper_short_use": "taken too briefly for discontinuation symptoms (under the taper threshold), "
               "stopped at once, without a taper, from",
               "P5.taper_smallest_dose": "already at the smallest marketed dose, stopped at once, without a taper, "
               "from",
               "P4.restart_dose": "restarted after his own stop: aims at the dose that relieved him (policy "
               "restart_dose),"}
TAPER_REVERSED = "P4.taper_reversed"
TAPER_REVERSED_WORDS = ("{drug}: pain back while he still tapers off it, the taper stops at {dose} and the drug is "
                        "restarted (its dose: policy restart_dose)")
"""A relapse during the taper of the drug the patient stopped himself while relieved (P4.taper_reversed)."""
VISIT_WORDS = {"P4.maintenance_visit": "maintenance visit", "P4.stable_discharge": "maintenance visit",
               "P8.reassessment": "strong-opioid reassessment", "P9.care_while_waiting": "review while waiting "
               "for the specialist", "P9.re_referral_deferred": "primary-care review while the re-referral interval "
               "runs (not on the clinic's list)"}
VISIT_AFTER = {"P4.stable_discharge": ": relief held, discharged from scheduled follow-up to repeat prescribing"}
VISIT_AFTER_NO_DRUG = {"P4.stable_discharge": ": relief held, discharged from scheduled follow-up (no drug to "
                                              "prescribe)"}
"""VISIT_AFTER when no drug runs (a specialist's intervention relieved the patient): nothing to prescribe."""
ACTION_WORDS = {"start_first_line": "start {drugs}", "start_topical": "start {drugs}", "add_on": "add {drugs}",
                "add_topical": "add {drugs} alongside",
                "switch": "switch to {drugs}", "escalate_tramadol": "step up to {drugs} (P7)",
                "escalate_strong_opioid": "time-limited strong-opioid trial: {drugs}",
                "refer": "refer to the pain specialist", "relief": "continue the regimen as maintenance",
                "consult": "specialist consultation completed",
                "discharge": "back to primary care on the current regimen: {drugs} (specialist's plan)",
                "relapse": "relief lost at the maintenance visit: back into the pathway"}
FIRST_OPIOID_WORDS = {"escalate_tramadol": "start {drugs} as the first drug (an opioid first: a declared departure "
                                          "from P7)",
                      "escalate_strong_opioid": "start {drugs} as the first drug, a time-limited strong-opioid trial "
                                                "(an opioid first: a declared departure from P8)"}
"""An opioid as the index drug (usual care, X.usual_care_choice): the words of ACTION_WORDS would say it steps up
from a drug that never ran."""
# P4.relapse without a visit: the patient stopped the drug that relieved (X.patient_stop), not a failure (P7)
# P4.relapse without a visit: the drug that relieved was stopped for an adverse event (P4.intolerance_stop,
# X.serious_event on the stop row)
RELAPSE_RESTART = "{drugs} started again: what relieved him, stopped by himself, comes back first"
# P4.reoffer_own_stop inside another decision (a switch, an add-on, a topical or tramadol step): the start row cites
# the re-offer, so it is told on its own line under that rule, after the decision's own line
REOFFER_ALONGSIDE = "and {drugs} offered once more alongside: the patient had stopped {it} himself before {it} failed"
REOFFER_WORDS = "{drugs} offered once more: the patient had stopped {it} himself before {it} failed"
RELAPSE_INTOLERANCE = "relief ended: the drug that gave it was stopped as not tolerated; back into the pathway"
DISCHARGE_NO_DRUG = "back to primary care with no drug running: no pathway option is left (specialist's plan)"
"""P9.discharge_plan when every drug has stopped (the narration must not speak of a current regimen)."""
DISCHARGE_TAPERING = ("back to primary care with no drug continuing ({drugs} tapering off): no pathway option is left "
                      "(specialist's plan)")
"""P9.discharge_plan when the only drugs left are being tapered off: they still run until their taper ends."""
DEFERRED_DISCHARGE = ("refractory again too soon after the last consult to be referred again "
                      "(referral.re_referral_after_days): back to primary care, not on the clinic's list, reviewed at "
                      "the visit interval until the re-referral interval ends, {what}")
"""P9.re_referral_deferred: the discharge that waits out the re-referral interval (what: the regimen that goes on)."""
DEFERRED_RELIEF = "relieved at the primary-care review: no re-referral needed; maintenance visits follow"
"""P9.re_referral_deferred: relief found at a review while the re-referral interval ran."""
DEFERRED_END = "end of follow-up, back in primary care waiting out the re-referral interval (not on the clinic's list)"
"""The horizon during P9.re_referral_deferred (the state is discharged, the patient not on the list)."""
# Relief after the consult (issue 10): maintenance follows, as for any relief (P4.maintenance_visit)
SPECIALIST_RELIEF = ("relieved after the specialist's {how}: maintenance visits follow; a relapse returns the patient to "
                     "the pathway's remaining options, and to the pain clinic again while the policy's consults per patient allow "
                     "(referral.max_consults; P9.re_referral), loss to follow-up goes on")
CONSULT_WORDS = {"intervention_success": "intervention", "conservative_relief": "drug management"}
"""What the consult gave, named in SPECIALIST_RELIEF and at the maintenance visits after it."""

LEAVING_WORDS = {
    "lost": "drops out of care (lost to follow-up)",
    "left_treatment": "leaves care: after {what} the patient does not come back for another pain drug (usual care)",
    "after_own_stop": "leaves care after the patient's own stop of {drug} (decided then, not lost to follow-up)",
    "after_intolerance": "leaves care after {drug} was not tolerated (decided then, not lost to follow-up)",
    "after_failed_line": "leaves care after the evaluation without relief (decided then, not lost to follow-up)",
    "after_relapse": "leaves care after relief was lost (decided then, not lost to follow-up)",
}
"""Why a patient leaves care (simulator.teaching.regimen.leaving_reason): X.dropout is a loss to follow-up or the
patient's decision after a failed line or his own stop (assumption dropout_after_failed_line); X.left_treatment is
usual care's not coming back."""
LEFT_AFTER = {"after_own_stop": "stopping {drug}", "after_intolerance": "{drug} was not tolerated",
              "after_failed_line": "an evaluation without relief", "after_relapse": "relief was lost",
              "lost": "the last drug stopped"}
"""The {what} of LEAVING_WORDS["left_treatment"], by what came before it."""
WAIT_ALONE = ("simulated alone, so behind no one in the queue; the queue is shared, so in a run the wait depends on the "
              "whole simulated cohort's demand against the clinic's capacity: this wait is not representative")
"""Said at every specialist consult of a trace: the one patient's wait is not the wait of a run (P9)."""
