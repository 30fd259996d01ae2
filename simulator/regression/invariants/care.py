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
VISIT_DAYS = 91.0  # the policy defaults of maintenance.visit_interval_days and opioid_visit_interval_days,
OPIOID_VISIT_DAYS = 56.0  # for a policy without them


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
      (judged failed while it ran).
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
      ``maintenance.visit_interval_days`` apart (``opioid_visit_interval_days`` while an opioid runs) from the
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
    visit_days = float(_policy(policy, "maintenance.visit_interval_days", VISIT_DAYS))
    opioid_visit_days = float(_policy(policy, "maintenance.opioid_visit_interval_days", OPIOID_VISIT_DAYS))
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
            patch_start, judged, consult_day, deferral = {}, None, None, None
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
                if drug in own_stop and decided - own_stop[drug] <= TOL:
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
        elif kind == "evaluation" and ev_out in FAILED_OUTCOMES:  # the regimen judged inadequate: every drug of it
            inadequate |= running
            if drug is not None:
                inadequate.add(drug)
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
                held = day - stopped <= TOL or own_end.get(drug_a, -1.0) < stopped - TOL
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
                if day - stopped <= TOL or own_end.get(drug_p, -1.0) < stopped - TOL:
                    continue  # the decision at the stop itself, or while he still tapered off it: not yet open
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
