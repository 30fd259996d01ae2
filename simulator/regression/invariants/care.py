"""Invariants of care over time, read from the event log, the catalogue and the policy as data only: the capsaicin
8% patch re-applied as its effect wanes, a drug the patient stopped himself offered once more, the specialist
referrals and their queue, and care while queued after a referral by the policy's criteria.

Owns :func:`care_checks`, called by :func:`simulator.regression.invariants.check_events` after the Checker's
replay. The numbers it holds itself are in :mod:`.rules` (``SINGLE_APPLICATION_DAYS``, ``REOFFER_RULES``,
``REFRACTORY_REFERRAL_RULES``); it never imports the engine or its decision helpers.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ...model.catalog import load_catalog
from .registry import BY_NAME
from .report import InvariantResult, Violation
from .rules import (
    CRITERIA_REFERRAL_RULE,
    FAILED_OUTCOMES,
    INTOLERANCE_RULES,
    REFRACTORY_REFERRAL_RULES,
    REOFFER_RULES,
    SAME_MOMENT,
    SINGLE_APPLICATION_DAYS,
    TOL,
)
from .trajectory import column

OWN_STOP = "X.patient_stop"
DISCHARGE = "P9.discharge_plan"
BRIDGE = "P9.tramadol_bridge"
RELAPSE = "P4.relapse"
RESUMED_IN: dict[str, tuple[str, ...]] = {"weak_opioid": ("tramadol",)}  # where a relapse resumes a drug's step;
# any other class: the first-line states (the pathway has no step back from tramadol or a strong opioid to them)
FIRST_LINE_STATES: tuple[str, ...] = ("first_line", "switch", "add_on")
TREATING_STATES: tuple[str, ...] = ("topical", "first_line", "switch", "add_on", "tramadol", "strong_opioid")
CARE_INVARIANTS: tuple[str, ...] = ("capsaicin_reapplied", "capsaicin_benefit", "reoffer_own_stop", "referral_accounting",
                                    "re_referral_interval", "criteria_referral_on_treatment", "re_referral_deferral")
RE_REFERRAL_AFTER_DAYS = 91.0  # the policy default of referral.re_referral_after_days, for a policy without it
DEFERRED = "P9.re_referral_deferred"
DEFERRAL_REVIEW_DAYS = 28.0  # the policy defaults of referral.deferral_review_days and
OPIOID_VISIT_DAYS = 56.0  # maintenance.opioid_visit_interval_days, for a policy without them


def _policy(policy: Any, path: str, default: Any) -> Any:
    """A policy field read as data (``a.b``), or ``default`` when there is no policy or no such field."""
    obj = policy
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return default
    return obj


def care_checks(events: pd.DataFrame, patients: pd.DataFrame, policy: Any, n: int) -> list[InvariantResult]:
    """The results of the :data:`CARE_INVARIANTS` over ``events`` (sorted by replication, patient, in time order).

    * ``capsaicin_reapplied`` (P6.capsaicin_reapply; S002 "effect lasting up to 90 days", EU SmPC repeat every 90
      days): while a single-application drug runs it is applied again exactly when the last application's effect
      wanes (``SINGLE_APPLICATION_DAYS``): not sooner, and it never runs past it unapplied before its stop or the
      horizon.
    * ``capsaicin_benefit`` (P6.capsaicin_no_benefit, an assumption): a single-application drug is applied again
      only when the patient's latest ``evaluation`` or ``maintenance_visit`` on a day after the drug's start, up
      to the re-application, found ``relief`` or ``partial``; a stop citing P6.capsaicin_no_benefit comes exactly
      when the last application's effect wanes and only when that latest outcome is ``none`` or there is none.
    * ``reoffer_own_stop`` (P4.reoffer_own_stop, P7.tramadol_reoffer): a drug the patient stopped himself while
      it relieved him (stopped in maintenance, state ``relieved``; strong opioids excepted: a time-limited trial) is
      started again before he is referred as refractory or discharged with nothing left at a later decision than
      the one taken at his stop, unless it had been offered once more already, the policy turns the re-offer off,
      a protocol governs, or the policy avoids serotonergic combinations (the drug is serotonergic); the policy's
      first-line regimens used up are no exemption (a restart of a working regimen is not a new one). And a
      re-offer (any own stop) is never decided at the decision taken at the stop itself (the last transition
      before the start is on a later day than the stop), nor made of a drug that had an inadequate evaluation
      (judged failed while it ran and not relieving since: a later evaluation or visit finding relief with it
      running undoes that judgement).
    * ``referral_accounting`` (P9.re_referral): at most ``referral.max_consults`` consults; a referral is queued
      only once the previous one has ended (consult, queue left, drop-out); a discharge to primary care after
      fewer consults than that comes only in specialist care (at the consult's outcome or when its plan ends), not
      once the patient is back in the pathway (refractory again later refers again).
    * ``re_referral_interval`` (P9.re_referral): a referral queued after a consult (whatever rule it cites) comes
      no sooner than ``referral.re_referral_after_days`` after the day that consult started.
    * ``criteria_referral_on_treatment`` (P9.care_while_waiting): a referral by the policy's criteria is made on a
      regimen: some drug runs (not tapering) when it is queued, unless ``referral.while_waiting: stop``.
    * ``re_referral_deferral`` (P9.re_referral_deferred): a patient refractory again before the re-referral
      interval ends waits in primary care, not on the clinic's list: the transition citing the rule leads to
      ``discharged`` while a consult's interval runs; until the deferral ends no row is in ``specialist_referral``
      and none is a ``referral_queued``; he is reviewed (``maintenance_visit`` citing the rule) no more than
      ``referral.deferral_review_days`` apart (or ``maintenance.opioid_visit_interval_days`` while an opioid runs,
      when shorter) from the
      deferral to its end (drop-out, horizon, or the next transition); that transition is relief found at a
      review that day, or, once the interval is over, the referral (``specialist_referral``) after a review that
      day without relief; he is never still deferred after the interval has ended.
    """
    cat = load_catalog().drugs
    res = {name: InvariantResult(BY_NAME[name], checked=n) for name in CARE_INVARIANTS}
    seen: dict[str, set[tuple[int, int]]] = {name: set() for name in CARE_INVARIANTS}
    if "followup_days" in patients and len(patients):
        horizon = float(patients["followup_days"].max())
    else:
        horizon = float(events["day"].max()) if len(events) else 0.0
    reoffer_on = bool(_policy(policy, "reoffer_own_stop", True))
    tramadol_reoffer = bool(_policy(policy, "tramadol_reoffer", True))
    protocol = _policy(policy, "protocol", None) is not None
    avoid = _policy(policy, "serotonin", "monitor") == "avoid"
    max_consults = int(_policy(policy, "referral.max_consults", 2))
    re_referral_days = float(_policy(policy, "referral.re_referral_after_days", RE_REFERRAL_AFTER_DAYS))
    waiting_stop = _policy(policy, "referral.while_waiting", "continue") == "stop"
    visit_days = float(_policy(policy, "referral.deferral_review_days", DEFERRAL_REVIEW_DAYS))
    opioid_visit_days = min(float(_policy(policy, "maintenance.opioid_visit_interval_days", OPIOID_VISIT_DAYS)),
                            visit_days)
    if not len(events):
        return list(res.values())

    def flag(name: str, key: tuple[int, int], day: float, event: str, drug: str | None, rule: str | None,
             detail: str) -> None:
        res[name].violations.append(Violation(name, key[0], key[1], round(day, 3), event, drug, rule, detail, False))

    ev = events
    rows = zip(ev["replication"].astype(int), ev["patient"].astype(int), ev["day"].astype(float),
               ev["event"].astype(str), column(ev, "state"), column(ev, "drug"), column(ev, "rule"),
               column(ev, "consult_outcome"), column(ev, "wait_days"), column(ev, "outcome"), strict=True)
    key: tuple[int, int] | None = None
    applied: dict[str, float] = {}  # single-application drug running -> day of its last application
    patch_start: dict[str, float] = {}  # single-application drug running -> day of its start
    judged: tuple[float, str] | None = None  # the latest evaluation or maintenance visit: (day, outcome)
    running: set[str] = set()  # drugs taken and not being stopped (tapering excluded)
    pending: dict[str, float] = {}  # drug stopped by the patient while it relieved him -> day, until restarted
    awaiting: set[str] = set()  # of those, drugs whose relapse has not come yet
    failed: set[str] = set()  # drugs judged inadequate, tramadol not tolerated (it has failed, no re-offer)
    inadequate: set[str] = set()  # drugs running at an inadequate evaluation: they had failed (never re-offered)
    class_judged: dict[str, float] = {}  # class -> day a drug of it last ran at an inadequate evaluation
    own_stop: dict[str, float] = {}  # drug -> day of the patient's last own stop of it
    own_end: dict[str, float] = {}  # drug -> day of its last drug_stop row (the end of a taper)
    decided = -1.0  # day of the last decision (transition)
    reoffered: set[str] = set()
    starts: dict[str, int] = {}
    consults = 0
    returned = False  # back in the pathway (a treating state, relief) since the last consult's outcome
    queued = False
    consult_day: float | None = None  # day the last consult started
    deferral: list[float] | None = None  # while deferred (P9.re_referral_deferred): [interval end, last review,
    # review bound in days, last review's outcome as 1.0 relief / 0.0 not, day of the last review]

    def review_gap(k: tuple[int, int], day: float, event: str) -> None:
        if deferral is not None and day > deferral[1] + deferral[2] + TOL:
            flag("re_referral_deferral", k, day, event, None, DEFERRED, f"unreviewed in primary care from day "
                 f"{deferral[1]:g} to day {day:g} while the re-referral interval ran (reviews every "
                 f"{deferral[2]:g} days)")

    def close(k: tuple[int, int] | None) -> None:
        if k is not None and deferral is not None:
            review_gap(k, horizon, "horizon")
            if horizon > deferral[0] + TOL:
                flag("re_referral_deferral", k, horizon, "horizon", None, DEFERRED, f"still deferred at the horizon "
                     f"although the re-referral interval ended on day {deferral[0]:g}")
        for drug, last in applied.items():
            if k is not None and horizon > last + SINGLE_APPLICATION_DAYS[drug] + TOL:
                flag("capsaicin_reapplied", k, last + SINGLE_APPLICATION_DAYS[drug], "horizon", drug,
                     "P6.capsaicin_reapply", f"{drug} applied on day {last:g} still runs at the horizon without "
                     f"being applied again after {SINGLE_APPLICATION_DAYS[drug]:g} days")

    for rep, pat, day, kind, state, drug, rule, outcome, wait, ev_out in rows:
        if (rep, pat) != key:
            close(key)
            key = (rep, pat)
            applied, running, pending, reoffered, starts, awaiting, failed = {}, set(), {}, set(), {}, set(), set()
            own_stop, own_end, decided, consults, returned, queued, inadequate = {}, {}, -1.0, 0, False, False, set()
            patch_start, judged, consult_day, class_judged, deferral = {}, None, None, {}, None
        if kind in ("evaluation", "maintenance_visit") and ev_out is not None:
            judged = (day, str(ev_out))
        d = cat.get(str(drug)) if drug is not None else None
        if kind in ("transition", "evaluation"):  # a decision is taken (an optimised dose logs no transition)
            decided = day
        # --- capsaicin_reapplied ---------------------------------------------------------------------------
        if drug in SINGLE_APPLICATION_DAYS and kind in ("drug_start", "dose_change", "drug_stop", "taper_start"):
            seen["capsaicin_reapplied"].add(key)
            due = SINGLE_APPLICATION_DAYS[drug]
            last = applied.get(drug)
            if last is not None and day > last + due + TOL:
                flag("capsaicin_reapplied", key, day, kind, drug, rule, f"{drug} applied on day {last:g} ran "
                     f"{day - last:g} days without a new application (its effect lasts {due:g} days)")
            if kind == "dose_change" and rule == "P6.capsaicin_reapply" and last is not None \
                    and day < last + due - TOL:
                flag("capsaicin_reapplied", key, day, kind, drug, rule, f"{drug} applied again {day - last:g} "
                     f"days after the last application (not sooner than {due:g} days)")
            # --- capsaicin_benefit (same rows) ---
            if rule in ("P6.capsaicin_reapply", "P6.capsaicin_no_benefit") and drug in patch_start:
                start = patch_start[drug]
                helped = judged is not None and judged[0] > start + TOL and judged[1] in ("relief", "partial")
                seen["capsaicin_benefit"].add(key)
                if rule == "P6.capsaicin_reapply" and not helped:
                    flag("capsaicin_benefit", key, day, kind, drug, rule, f"{drug} applied again although the "
                         "latest evaluation since its start on day " f"{start:g} found no response ("
                         + (f"{judged[1]} on day {judged[0]:g})" if judged and judged[0] > start + TOL else "none)"))
                elif rule == "P6.capsaicin_no_benefit" and helped:
                    flag("capsaicin_benefit", key, day, kind, drug, rule, f"{drug} stopped for no benefit although "
                         f"the latest evaluation (day {judged[0]:g}) found {judged[1]}")
                elif rule == "P6.capsaicin_no_benefit" and last is not None and abs(day - (last + due)) > TOL:
                    flag("capsaicin_benefit", key, day, kind, drug, rule, f"{drug} stopped for no benefit on day "
                         f"{day:g}, not when the application of day {last:g} wears off ({last + due:g})")
            if kind in ("drug_stop", "taper_start"):
                applied.pop(drug, None)
                patch_start.pop(drug, None)
            elif kind == "drug_start" or rule == "P6.capsaicin_reapply":
                applied[drug] = day
                if kind == "drug_start":
                    patch_start[drug] = day
        # --- the running regimen, re-offers ----------------------------------------------------------------
        if kind == "transition" and state == "relieved":  # relief (also the specialist's) with these drugs running:
            inadequate -= running  # what an earlier evaluation judged of them is undone (P4)
            failed -= running
        if kind == "drug_start" and rule in REOFFER_RULES and decided < day - TOL:
            decided = day  # a restart with no transition of its own (tramadol, strong-opioid states): decided now
        if kind == "drug_start" and drug is not None:
            running.add(drug)
            pending.pop(drug, None)
            if rule != BRIDGE:
                starts[drug] = starts.get(drug, 0) + 1
            if rule in REOFFER_RULES or (d is not None and d.drug_class == "weak_opioid" and starts.get(drug, 0) > 1
                                         and rule != BRIDGE):
                reoffered.add(drug)
                seen["reoffer_own_stop"].add(key)
                if drug in inadequate:
                    flag("reoffer_own_stop", key, day, kind, drug, rule, f"{drug} offered once more although an "
                         "evaluation had judged it inadequate (it had failed)")
                if drug in own_stop and decided - own_stop[drug] <= SAME_MOMENT:
                    flag("reoffer_own_stop", key, day, kind, drug, rule, f"{drug} offered once more at the decision "
                         f"taken at the patient's own stop of it (day {own_stop[drug]:g})")
                elif drug in own_stop and own_end.get(drug, -1.0) >= own_stop[drug] - TOL \
                        and decided < own_end[drug] - TOL:
                    flag("reoffer_own_stop", key, day, kind, drug, rule, f"{drug} offered once more at a decision on day "
                         f"{decided:g}, while the patient was still tapering off it after his own stop (day "
                         f"{own_stop[drug]:g}; off on day {own_end[drug]:g})")
        elif kind in ("drug_stop", "taper_start") and drug is not None:
            running.discard(drug)
            if d is not None and d.drug_class == "weak_opioid" and rule in INTOLERANCE_RULES:
                failed.add(drug)
            if rule == OWN_STOP:
                own_stop[drug] = day
            if kind == "drug_stop" and drug in own_stop:
                own_end[drug] = day  # off the drug: its taper complete, or stopped at once
            if rule == OWN_STOP and state == "relieved" and d is not None and d.drug_class != "strong_opioid" \
                    and drug not in reoffered and drug not in failed and drug not in inadequate and not protocol \
                    and not (avoid and d.serotonergic) \
                    and (tramadol_reoffer if d.drug_class == "weak_opioid" else reoffer_on):
                seen["reoffer_own_stop"].add(key)
                pending[drug] = day
                awaiting.add(drug)
        elif kind in ("evaluation", "maintenance_visit") and ev_out == "relief":  # a regimen that relieves has not
            inadequate -= running  # failed: what an earlier evaluation judged of its drugs is undone (P4)
            failed -= running
        elif kind == "evaluation" and ev_out in FAILED_OUTCOMES:  # the regimen judged inadequate: every drug of it
            inadequate |= running
            if drug is not None:
                inadequate.add(drug)
            for x in running:  # P4: its class judged inadequate on this day (an alternative class follows)
                if cat.get(x) is not None:
                    class_judged[cat[x].drug_class] = day
        elif kind == "maintenance_visit" and ev_out in FAILED_OUTCOMES and any(
                (cat.get(x) is not None and cat[x].drug_class == "weak_opioid") for x in running):
            failed |= {x for x in running if cat.get(x) is not None and cat[x].drug_class == "weak_opioid"}
        elif kind == "transition" and rule == RELAPSE:
            for drug_a in awaiting:  # the relapse resumes the step where this drug is offered again, or not
                da = cat.get(drug_a)
                if da is None or state not in RESUMED_IN.get(da.drug_class, FIRST_LINE_STATES):
                    pending.pop(drug_a, None)
            awaiting.clear()
        elif kind == "transition" and state in TREATING_STATES:
            for drug_a, stopped in list(pending.items()):  # a decision at the stop itself, or while he still
                da = cat.get(drug_a)  # tapered off it, moved on to a step that does not offer it: nothing to re-offer
                held = day - stopped <= SAME_MOMENT or own_end.get(drug_a, -1.0) < stopped - TOL
                if held and (da is None or state not in RESUMED_IN.get(da.drug_class,
                                                                                       FIRST_LINE_STATES)):
                    pending.pop(drug_a, None)
        elif kind == "dropout":
            pending.clear()
            running.clear()
        refractory = (kind == "referral_queued" and rule in REFRACTORY_REFERRAL_RULES) or \
            (kind == "transition" and rule == DISCHARGE)
        if refractory:
            for drug_p, stopped in pending.items():
                if day - stopped <= SAME_MOMENT or own_end.get(drug_p, -1.0) < stopped - TOL:
                    continue  # the decision at the stop itself, or while he still tapered off it: not yet open
                dp = cat.get(drug_p)
                if dp is not None and any(cat.get(x) is not None and cat[x].drug_class == dp.drug_class
                                          for x in running):
                    continue  # another drug of its class runs (one drug per class): nothing to add it to
                if dp is not None and class_judged.get(dp.drug_class, -1.0) > stopped + TOL:
                    continue  # its class judged inadequate since his stop (P4: an alternative class is next)
                flag("reoffer_own_stop", key, day, kind, drug_p, rule, f"{drug_p}, stopped by the patient on day "
                     f"{stopped:g} while it relieved him, was not offered again before {rule}")
            pending.clear()
        # --- re_referral_deferral ---------------------------------------------------------------------------
        if deferral is not None:
            if day > deferral[0] + TOL:
                flag("re_referral_deferral", key, day, kind, None, rule, f"still deferred on day {day:g} although the "
                     f"re-referral interval ended on day {deferral[0]:g}")
                deferral[0] = float("inf")  # flagged once
            review_gap(key, day, kind)
            if kind == "referral_queued" or state == "specialist_referral" and kind != "transition":
                flag("re_referral_deferral", key, day, kind, None, rule, "on the clinic's list while the re-referral "
                     "interval runs (deferred: in primary care)")
            if kind == "maintenance_visit" and rule == DEFERRED:
                opioid = any(cat.get(x) is not None and cat[x].drug_class in ("weak_opioid", "strong_opioid")
                             for x in running)
                deferral[1:] = [day, opioid_visit_days if opioid else visit_days,
                                1.0 if ev_out == "relief" else 0.0, day]
            elif kind == "dropout":
                deferral = None
            elif kind == "transition":
                reviewed = abs(deferral[4] - day) <= TOL
                if state == "relieved" and not (reviewed and deferral[3] == 1.0):
                    flag("re_referral_deferral", key, day, kind, None, rule, "relieved without a review finding "
                         "relief that day")
                elif state == "specialist_referral" and not (reviewed and deferral[3] == 0.0
                                                             and day >= deferral[0] - TOL):
                    flag("re_referral_deferral", key, day, kind, None, rule, "referred again without a review "
                         f"finding no relief that day once the interval was over (day {deferral[0]:g})")
                elif state not in ("relieved", "specialist_referral"):
                    flag("re_referral_deferral", key, day, kind, None, rule, f"left the deferral for {state}, not "
                         "relief or the referral")
                deferral = None
        elif kind == "transition" and rule == DEFERRED:
            seen["re_referral_deferral"].add(key)
            end = (consult_day if consult_day is not None else float("-inf")) + re_referral_days
            if state != "discharged":
                flag("re_referral_deferral", key, day, kind, None, rule, f"deferred in {state}, not discharged to "
                     "primary care")
            if day >= end - TOL:
                flag("re_referral_deferral", key, day, kind, None, rule, "deferred although no re-referral interval "
                     "runs" + (f" (the last consult started on day {consult_day:g})" if consult_day is not None
                               else " (no consult before)"))
            else:
                opioid = any(cat.get(x) is not None and cat[x].drug_class in ("weak_opioid", "strong_opioid")
                             for x in running)
                deferral = [end, day, opioid_visit_days if opioid else visit_days, -1.0, -1.0]
        # --- referrals and their queue ---------------------------------------------------------------------
        if kind == "referral_queued":
            seen["referral_accounting"].add(key)
            if queued:
                flag("referral_accounting", key, day, kind, None, rule, "referred again while still queued")
            queued = True
            if consult_day is not None:
                seen["re_referral_interval"].add(key)
                if day < consult_day + re_referral_days - TOL:
                    flag("re_referral_interval", key, day, kind, None, rule, f"referred again {day - consult_day:g} "
                         f"days after the consult of day {consult_day:g}; referral.re_referral_after_days is "
                         f"{re_referral_days:g}")
            if rule == CRITERIA_REFERRAL_RULE and not waiting_stop:
                seen["criteria_referral_on_treatment"].add(key)
                if not running:
                    flag("criteria_referral_on_treatment", key, day, kind, None, rule,
                         "referred by the policy's criteria with no drug running: the wait is a treatment gap")
        elif kind == "consult" and wait is not None and wait == wait:  # the consult starts: the queue is left
            queued = False
            consult_day = day
        elif kind in ("queue_left", "dropout"):
            queued = False
        elif kind == "consult" and outcome is not None:
            consults += 1
            returned = False
            if consults > max_consults:
                flag("referral_accounting", key, day, kind, None, rule,
                     f"consult {consults} although referral.max_consults is {max_consults}")
        elif kind == "transition" and rule == DISCHARGE and consults < max_consults and returned:
            flag("referral_accounting", key, day, kind, None, rule, f"discharged on day {day:g} after {consults} "
                 f"consult(s), back in the pathway since the last, although referral.max_consults is {max_consults}")
        elif kind == "transition" and consults and state not in (None, "specialist_referral", "specialist_care"):
            returned = True
    close(key)
    for name in CARE_INVARIANTS:
        res[name].applicable = len(seen[name])
    return list(res.values())


RESTART_DOSE_INVARIANT = "restart_dose"
RESTART_DOSE_RULE = "P4.restart_dose"
TAPER_REVERSED = "P4.taper_reversed"
DOSE_TOL = 1e-6  # mg/day: doses are logged as given


def restart_dose_checks(events: pd.DataFrame, policy: Any, n: int) -> InvariantResult:
    """``restart_dose`` (P4.restart_dose, P4.taper_reversed; policy ``restart_dose``, an assumption), read from the
    event log and the policy only.

    A drug is *stopped while relieved* when its latest end row since its latest start (``taper_start`` or
    ``drug_stop`` citing ``X.patient_stop``) has state ``relieved``; the dose on that row is the *relieving dose*
    R. When such a drug starts again citing a re-offer rule (``P4.reoffer_own_stop``, ``P7.tramadol_reoffer``):

    * a ``dose_limit`` row ``P4.restart_dose`` for it follows the start on the same day, with dose R;
    * its first dose is, under ``retitrate`` (default), the smaller of R and the first dose of the patient's first
      start of that drug, or, when a ``drug_stop`` citing ``P4.taper_reversed`` ended its taper at this decision,
      the smaller of R and the dose of that row; under ``relieving_dose``, R;
    * no ``dose_change`` of it goes above R before an ``evaluation`` or ``maintenance_visit`` after the restart finds
      no relief (partial or none: then optimisation may follow, P3);
    * the restart comes alone: no ``drug_start`` citing ``P6.topical_add`` on the day of a re-offer start (a topical
      still due follows the restart's judgement).
    """
    res = InvariantResult(BY_NAME[RESTART_DOSE_INVARIANT], checked=n)
    mode = str(_policy(policy, "restart_dose", "retitrate"))
    seen: set[tuple[int, int]] = set()
    if not len(events):
        res.applicable = 0
        return res
    ev = events
    rows = zip(ev["replication"].astype(int), ev["patient"].astype(int), ev["day"].astype(float),
               ev["event"].astype(str), column(ev, "state"), column(ev, "drug"), ev["dose"].astype(float),
               column(ev, "rule"), column(ev, "outcome"), strict=True)
    key: tuple[int, int] | None = None
    restart_day = topical_day = -1.0  # days of the patient's latest re-offer start and P6.topical_add start
    first_dose: dict[str, float] = {}  # drug -> first dose of the patient's first start of it
    relieved_stop: dict[str, float] = {}  # drug -> R, stopped by the patient while relieved, since its last start
    reversed_at: dict[str, tuple[float, float]] = {}  # drug -> (day, dose) of its P4.taper_reversed stop
    capped: dict[str, float] = {}  # restarted drug -> R, until a judgement without relief
    pending: tuple[str, float, float] | None = None  # (drug, R, day): a restart whose P4.restart_dose row is due

    def flag(k: tuple[int, int], day: float, event: str, drug: str, rule: str | None, msg: str) -> None:
        res.violations.append(Violation(RESTART_DOSE_INVARIANT, k[0], k[1], round(day, 3), event, drug, rule, msg,
                                        False))

    def settle(k: tuple[int, int] | None) -> None:
        nonlocal pending
        if pending is not None and k is not None:
            flag(k, pending[2], "drug_start", pending[0], None, f"{pending[0]} restarted after the patient's own stop "
                 f"while relieved (at {pending[1]:g}) without a P4.restart_dose row at that dose")
        pending = None

    for rep, pat, day, kind, state, drug, dose, rule, outcome in rows:
        if (rep, pat) != key:
            settle(key)
            key = (rep, pat)
            first_dose, relieved_stop, reversed_at, capped = {}, {}, {}, {}
            restart_day = topical_day = -1.0
        name = str(drug) if drug is not None else ""
        if kind == "drug_start" and rule in REOFFER_RULES:
            restart_day = day
        if kind == "drug_start" and rule == "P6.topical_add":
            topical_day = day
        if kind == "drug_start" and restart_day >= 0 and abs(restart_day - topical_day) < TOL:
            flag(key, day, kind, name, rule, "a topical added (P6.topical_add) at the decision that restarts what "
                 "relieved him: the restart comes alone")
            topical_day = -1.0
        if pending is not None and not (kind == "dose_limit" and name == pending[0] and abs(day - pending[2]) < TOL):
            settle(key)
        if kind == "dose_limit" and rule == RESTART_DOSE_RULE and pending is not None:
            if abs(dose - pending[1]) > DOSE_TOL:
                flag(key, day, kind, name, rule, f"P4.restart_dose row at {dose:g}, but {name} relieved him at "
                     f"{pending[1]:g}")
            pending = None
        elif kind == "drug_start" and name:
            relief = relieved_stop.pop(name, None)
            back = reversed_at.pop(name, None)
            if relief is not None and rule in REOFFER_RULES:
                seen.add(key)
                pending = (name, relief, day)
                capped[name] = relief
                if mode == "relieving_dose":
                    want = relief
                elif back is not None and abs(back[0] - day) < TOL:
                    want = min(back[1], relief)
                else:
                    want = min(first_dose.get(name, relief), relief)
                if abs(dose - want) > DOSE_TOL:
                    flag(key, day, kind, name, rule, f"{name} restarted at {dose:g}, not at {want:g} (restart_dose "
                         f"'{mode}', relieved at {relief:g})")
            else:
                capped.pop(name, None)
            first_dose.setdefault(name, dose)
        elif kind in ("taper_start", "drug_stop") and name:
            capped.pop(name, None)
            if rule == OWN_STOP and state == "relieved":
                relieved_stop[name] = dose
            elif kind == "drug_stop" and rule == TAPER_REVERSED:
                reversed_at[name] = (day, dose)
        elif kind == "dose_change" and name in capped and dose > capped[name] + DOSE_TOL:
            flag(key, day, kind, name, rule, f"{name} raised to {dose:g} above the dose that relieved him "
                 f"({capped[name]:g}) before a judgement after its restart found no relief")
            capped.pop(name)
        elif kind in JUDGEMENTS and outcome is not None and str(outcome) != "relief":
            capped = {}
    settle(key)
    res.applicable = len(seen)
    return res


RESTART_INVARIANT = "relapse_restarts_own_stop"
JUDGEMENTS: tuple[str, ...] = ("evaluation", "maintenance_visit")
WINDOW_ENDS: tuple[str, ...] = ("evaluation", "maintenance_visit", "referral_queued", "consult", "dropout")


def restart_checks(events: pd.DataFrame, policy: Any, n: int) -> InvariantResult:
    """``relapse_restarts_own_stop`` (P4.reoffer_own_stop, P7.tramadol_reoffer; README "the drug that relieved him
    is restarted first"), read from the event log, the catalogue and the policy only (an oracle of its own, not the
    engine's reading of failed drugs).

    A drug is *relieving* when the patient's latest ``evaluation`` or ``maintenance_visit`` found ``relief`` while it
    ran (started and not stopped). When the patient stops a relieving drug himself (``X.patient_stop`` in state
    ``relieved``) and the next transition is a relapse (``P4.relapse``), every such drug is started again at the
    relapse's decision: a ``drug_start`` of it after the relapse row and before the step is judged (the next
    evaluation or maintenance visit), the patient is referred or leaves care; a relapse while he still tapers off it
    too (the taper is reversed, P4.taper_reversed). Exempt: a drug with an ``excluded`` row at that decision
    (contraindication, failed check); a drug already restarted once after
    an own stop (``P4.reoffer_own_stop`` / ``P7.tramadol_reoffer``: offered once more); a strong opioid (a
    time-limited trial, P8); a serotonergic drug under ``serotonin: avoid``; policies turning the re-offer off
    (``reoffer_own_stop`` / ``tramadol_reoffer`` false) or governed by a protocol; a drop-out in the window, or the
    log ending (horizon) before the step is judged.
    """
    cat = load_catalog().drugs
    res = InvariantResult(BY_NAME[RESTART_INVARIANT], checked=n)
    reoffer_on = bool(_policy(policy, "reoffer_own_stop", True)) and _policy(policy, "protocol", None) is None
    tramadol_on = bool(_policy(policy, "tramadol_reoffer", True)) and _policy(policy, "protocol", None) is None
    avoid = _policy(policy, "serotonin", "monitor") == "avoid"
    seen: set[tuple[int, int]] = set()
    if not len(events):
        res.applicable = 0
        return res

    def owed_for(drug: str) -> bool:
        d = cat.get(drug)
        if d is None or d.drug_class == "strong_opioid" or (avoid and d.serotonergic):
            return False
        return tramadol_on if d.drug_class == "weak_opioid" else reoffer_on

    ev = events
    rows = zip(ev["replication"].astype(int), ev["patient"].astype(int), ev["day"].astype(float),
               ev["event"].astype(str), column(ev, "state"), column(ev, "drug"), column(ev, "rule"),
               column(ev, "outcome"), strict=True)
    key: tuple[int, int] | None = None
    running: set[str] = set()
    relieving: set[str] = set()  # drugs running at the latest judgement, if it found relief
    stopped: dict[str, float] = {}  # relieving drug stopped by the patient -> day, until the next transition
    off: dict[str, float] = {}  # drug -> day of its latest drug_stop row (off the drug)
    once: set[str] = set()  # drugs already offered once more
    running_ever: set[str] = set()  # drugs started before (a bridge aside)
    window: dict[str, float] | None = None  # owed at the open relapse decision: drug -> day of the own stop
    started: set[str] = set()
    excluded: set[str] = set()
    relapse_day = 0.0

    def close(k: tuple[int, int] | None, ended_by: str) -> None:
        nonlocal window
        if window is not None and k is not None and ended_by not in ("dropout", ""):  # "": the log ends first
            for drug, stop_day in sorted(window.items()):
                if drug in started or drug in excluded:
                    continue
                res.violations.append(Violation(
                    RESTART_INVARIANT, k[0], k[1], round(relapse_day, 3), "transition", drug, RELAPSE,
                    f"{drug}, stopped by the patient on day {stop_day:g} while it relieved him, was not restarted at "
                    f"the decision on his relapse (day {relapse_day:g})", False))
        window = None

    for rep, pat, day, kind, state, drug, rule, outcome in rows:
        if (rep, pat) != key:
            close(key, "")
            key = (rep, pat)
            running, relieving, stopped, off, once = set(), set(), {}, {}, set()
            started, excluded, running_ever = set(), set(), set()
        if window is not None:
            if kind in WINDOW_ENDS or (kind == "transition" and rule == RELAPSE):
                close(key, kind)
            elif kind == "drug_start" and drug is not None:
                started.add(str(drug))
            elif kind == "excluded" and drug is not None:
                excluded.add(str(drug))
        if kind == "drug_start" and drug is not None:
            name = str(drug)
            dn = cat.get(name)
            if rule in REOFFER_RULES or (name in running_ever and rule != BRIDGE and dn is not None
                                         and dn.drug_class == "weak_opioid"):
                once.add(name)  # offered once more (tramadol: any second start, P7.tramadol_reoffer)
            running.add(name)
            if rule != BRIDGE:
                running_ever.add(name)
        elif kind in ("drug_stop", "taper_start") and drug is not None:
            name = str(drug)
            running.discard(name)
            if kind == "drug_stop":
                off[name] = day
            if rule == OWN_STOP and state == "relieved" and name in relieving and name not in once \
                    and owed_for(name):
                stopped[name] = day
        elif kind in JUDGEMENTS and outcome is not None:
            relieving = set(running) if str(outcome) == "relief" else set()
        elif kind == "transition" and state == "relieved" and rule != RELAPSE:  # relief (the specialist's too)
            relieving = set(running)
        elif kind == "transition":
            if rule == RELAPSE and stopped:
                seen.add(key)
                window, started, excluded, relapse_day = dict(stopped), set(), set(), day
            if state != "relieved" or rule == RELAPSE:
                stopped = {}
    close(key, "")
    res.applicable = len(seen)
    return res
