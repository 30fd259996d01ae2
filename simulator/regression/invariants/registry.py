"""The registry of guideline invariants: each one's name, rule id, seeds, what it reads and the declared
departure that excuses it (:data:`INVARIANTS`, :data:`BY_NAME`), and usual care's departures by rule
(:data:`DEPARTURE_BY_RULE`). Data only; ``docs/invariants.md`` has a row for each."""

from __future__ import annotations

from dataclasses import dataclass


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
    Invariant("dose_recorded", "P5", "S000-S004",
              "every other row about a drug names its dose, finite and above 0: a stop the dose the patient was on "
              "(a taper cut short: its current step), a taper start the dose before it, a limit, an adverse event, "
              "an evaluation and a maintenance visit on a drug theirs; the event kinds that carry no dose are listed "
              "(assessment, transition, excluded, safety_check, referral_queued, consult, dropout, queue_left) and "
              "a row of any other kind is flagged",
              "events: event, drug and dose of every row"),
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
    Invariant("strong_opioid_renal", "P5.renal_dose", "S000, S004",
              "below CrCl 30 a strong opioid is given at no more than half the normal-clearance schedule, from the "
              "first dose (metabolites accumulate; MS Contin label: lower doses in renal impairment; halving: "
              "assumption held by the oracle, STRONG_OPIOID_RENAL)",
              "events: strong-opioid doses and days; patients: CrCl; drugs.yaml: titration, min_dose"),
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
    Invariant("givable_dose", "P2.givable_dose", "S000, S001",
              "every start, titration, optimisation, reduction and taper dose is a sum of whole units of the drug's "
              "marketed strengths (no gabapentin 120 mg/day, no duloxetine 7.5 mg/day)",
              "events: drug_start and dose_change doses; drugs.yaml: strengths, units_per_day (the oracle's own "
              "coin-change reading)"),
    Invariant("titration_schedule", "P13", "S000",
              "titration never faster than the catalogue schedule (older adults stretched; beyond the target "
              "the schedule goes on with its last increment and interval)",
              "events: doses and days per line; patients: age, CrCl; drugs.yaml: titration, older_adult; "
              "policy: start doses", "fast_titration"),
    Invariant("intolerance_reduction", "P4.intolerance_reduce", "S000, S002",
              "a dose lowered for intolerance stays at or above the drug's lowest effective dose (else it stops)",
              "events: dose changes with an intolerance rule; patients: CrCl; drugs.yaml: min_effective_dose"),
    Invariant("adequate_trial", "P3", "S000, S002, S004",
              "no drug judged failed before an adequate trial at the target dose (or the highest tolerated); oral "
              "drugs started together (a regimen restarted, P4.reoffer_own_stop) are judged only once each has had "
              "its own, whichever the evaluation names",
              "events: evaluations, drug starts, doses, dose reductions, taper starts; drugs.yaml: class, "
              "target_dose, adequate_trial_days, min_trial_days; policy: target_doses", "short_trial"),
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
              "duloxetine, venlafaxine, tricyclics, gabapentinoids (labels: over at least a week), tramadol and strong "
              "opioids taken at least taper.after_days are tapered before they stop unless already at the smallest "
              "marketed dose (a taper start, each step lower, none below the smallest marketed dose and none after "
              "it, each held the taper interval); a shorter course stops at once; a drop-out or a serious event "
              "ends it at once",
              "events: drug_start, taper_start, dose changes and stops per drug; drugs.yaml: class, taper "
              "(interval_days, after_days), strengths; the labels' one-week gabapentinoid minimum held by the oracle "
              "(LABEL_TAPER_MIN_DAYS)"),
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
              "with an antidepressant (oral + topical is not one), and tramadol failed when the patient could have it "
              "(judged inadequate after its trial, relief lost, or not tolerated; the patient's own stop is no failure)",
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
    Invariant("opioid_titrated_to_response", "P8.titrate_to_response", "S000, S004",
              "each rise of a strong-opioid dose follows an evaluation of the response on that drug "
              "(P8.titrate_to_response, outcome not relief) since its last dose level: titrated to the smallest "
              "effective dose, never by schedule alone (every strong opioid, held by the oracle)",
              "events: strong-opioid drug_start and dose changes, evaluations (rule, drug, outcome)"),
    Invariant("own_stop_waits_for_visit", "P4.reoffer_own_stop", "S000, S004",
              "the patient's own stop of a drug while relieved decides nothing by itself: no transition, drug start "
              "or referral follows it before a visit measures his pain (evaluation or maintenance visit); at that "
              "visit a relapse is decided (the drug restarted first) or he stays in relief off it (assumption)",
              "events: taper_start/drug_stop citing X.patient_stop (state), evaluations, maintenance visits, "
              "transitions, drug starts, referral_queued, drop-outs"),
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
# issue 10: care after a consult that relieves; checked by invariants._specialist_relief (event log and policy only)
SPECIALIST_RELIEF = (
    Invariant("specialist_relief_followed_up", "P4.maintenance_visit", "S004",
              "relief after a specialist consult is not absorbing: a maintenance visit, a relapse or a drop-out follows "
              "within the policy's maintenance.visit_interval_days, unless the horizon comes first",
              "events: relief transitions citing P9.specialist_consult, maintenance visits, relapses, drop-outs; "
              "policy: maintenance.visit_interval_days"),
    Invariant("managed_relief_regimen", "P9.specialist_consult", "S002, S004",
              "relief from specialist drug management is dated only while every drug taken at the consult's outcome "
              "still runs (none stopped or tapering)",
              "events: consult outcomes, drug starts, stops and taper starts, relief transitions"),
)
# Care over time (gaps of the issue 9/10 review); checked by invariants/care.py (event log, catalogue, policy only)
CARE = (
    Invariant("capsaicin_reapplied", "P6.capsaicin_reapply", "S002, S004",
              "a capsaicin 8% patch still continued is applied again when the last application's effect wanes "
              "(90 days, held by the oracle: S002, EU SmPC), neither sooner nor later, until it stops or the horizon",
              "events: capsaicin starts, P6.capsaicin_reapply dose changes, stops; patients: followup_days"),
    Invariant("capsaicin_benefit", "P6.capsaicin_no_benefit", "S002, S004",
              "a capsaicin 8% patch is applied again only when the latest evaluation or maintenance visit since its "
              "start found relief or a partial response; otherwise it stops (P6.capsaicin_no_benefit) exactly when "
              "the last application wears off (assumption: benefit judged on the whole regimen)",
              "events: capsaicin starts, re-applications and stops, evaluation and maintenance_visit outcomes"),
    Invariant("reoffer_own_stop", "P4.reoffer_own_stop", "S000, S004",
              "a drug the patient stopped himself while it relieved him (strong opioids excepted) is started again "
              "before a refractory referral or a discharge with nothing left taken at a later decision than the "
              "stop's own, unless already offered once more (policy reoffer_own_stop / tramadol_reoffer false, "
              "protocols, serotonin: avoid for a serotonergic drug are exempt; used-up first-line regimens are not: "
              "a restart is no new regimen); a re-offer is never decided at the stop's own decision, nor made of a "
              "drug with an inadequate evaluation (it had failed)",
              "events: drug starts and stops (rule, state), evaluations, transitions, referral_queued, "
              "P9.discharge_plan transitions; drugs.yaml: class, serotonergic; policy: reoffer_own_stop, "
              "tramadol_reoffer, protocol, serotonin"),
    Invariant("relapse_restarts_own_stop", "P4.reoffer_own_stop", "S000, S004",
              "at the first decision after a relapse that follows the patient's own stop of a drug of a relieving "
              "regimen (the latest evaluation or maintenance visit found relief with it running), that drug is "
              "started again, before the step is judged, he is referred or leaves care (a taper still under way is "
              "reversed, P4.taper_reversed); unless excluded by a rule logged at that decision, already offered "
              "once more, a strong opioid "
              "(time-limited trial), serotonergic under serotonin: avoid, or the policy turns the re-offer off "
              "(reoffer_own_stop / tramadol_reoffer false, protocols)",
              "events: drug starts, stops and taper starts (rule, state), evaluation and maintenance_visit outcomes, "
              "transitions, excluded rows, referral_queued, consults, drop-outs; drugs.yaml: class, serotonergic; "
              "policy: reoffer_own_stop, tramadol_reoffer, protocol, serotonin"),
    Invariant("restart_dose", "P4.restart_dose", "S000, S002",
              "a drug restarted once more (P4.reoffer_own_stop, P7.tramadol_reoffer) after the patient stopped it "
              "himself while relieved aims at the dose he stopped at: a P4.restart_dose dose_limit row at that dose "
              "follows its drug_start; its first dose is, under restart_dose 'retitrate', its first dose at the "
              "patient's earlier start of it (or the taper step a P4.taper_reversed stop left him on, or the "
              "relieving dose if lower), under 'relieving_dose' the relieving dose; no dose of it goes above the "
              "relieving dose before a judgement after the restart finds no relief; the restart comes alone (no "
              "P6.topical_add start at its decision)",
              "events: drug starts, stops and taper starts (rule, state, dose), dose_limit and dose_change rows, "
              "evaluation and maintenance_visit outcomes; policy: restart_dose"),
    Invariant("referral_accounting", "P9.re_referral", "S002, S004",
              "at most referral.max_consults consults; a referral is queued only after the previous one ended "
              "(consult, queue left, drop-out); a discharge after fewer consults than the maximum only in "
              "specialist care, not once back in the pathway (refractory again later is referred again)",
              "events: referral_queued, consult (wait_days, consult_outcome), queue_left, dropout, "
              "P9.discharge_plan transitions; policy: referral.max_consults"),
    Invariant("re_referral_interval", "P9.re_referral", "S002, S004",
              "a patient is referred again (any referral after a consult) no sooner than "
              "referral.re_referral_after_days after his last consult started (assumption: three months by default)",
              "events: consult rows (wait_days: the consult starts), referral_queued; policy: "
              "referral.re_referral_after_days"),
    Invariant("re_referral_deferral", "P9.re_referral_deferred", "S002, S004",
              "refractory again before the re-referral interval ends, the patient waits in primary care "
              "(discharged), not on the clinic's list: reviewed every referral.deferral_review_days (the opioid "
              "visit interval while an opioid runs, when shorter), relief at a review ends the wait, and the referral comes once the "
              "interval is over after a review without relief (assumption)",
              "events: P9.re_referral_deferred transitions and maintenance_visit rows, transitions, "
              "referral_queued, consult rows, drug starts and stops, dropout; policy: "
              "referral.re_referral_after_days, referral.deferral_review_days, "
              "maintenance.opioid_visit_interval_days"),
    Invariant("criteria_referral_on_treatment", "P9.care_while_waiting", "S002, S004",
              "a referral by the policy's criteria (P9.referral_criteria) is made on a regimen: a drug runs (not "
              "tapering) when it is queued, so the wait is not a treatment gap (unless referral.while_waiting: stop)",
              "events: drug starts, stops, taper starts, referral_queued; policy: referral.while_waiting"),
)
INVARIANTS = (*INVARIANTS, OPIOID_REASSESSED, *SPECIALIST_RELIEF, *CARE)

BY_NAME: dict[str, Invariant] = {inv.name: inv for inv in INVARIANTS}

# Usual care's departures (issue 10, simulator/model/care.py), each excusing one invariant when the scenario declares
# it: (invariant, rule of the flagged row; None: any row) -> the declared departure that makes it on purpose.
DEPARTURE_BY_RULE: dict[tuple[str, str | None], str] = {
    ("adequate_trial", None): "under_titration",  # X.under_titration: judged below the recommended dose (P2, P3)
    ("tca_last_resort", "X.usual_care_choice"): "usual_care_index",  # a tricyclic drawn as the index drug
    ("cipn_no_tca_gabapentinoid", "X.usual_care_choice"): "usual_care_index",  # index drug drawn in CIPN
    # X.left_treatment: usual care's patient who does not come back stops what still runs himself, at once (no
    # taper, P5): its own departure, not the index drug's (return_after_stop < 1 needs it, simulator.model.care)
    ("taper", "X.left_treatment"): "usual_care_leaves_care",
}
