"""The tutor's verdicts: each option judged by the rule that actually applies (:func:`judge_all`).

Each option is judged by the rule that actually applies:

* ``guideline``  the policy's own step (:mod:`simulator.model.policy`);
* ``acceptable`` an equally conformant step (another first-line class, raising a dose below the maximum);
* ``other``      possible and simulated, but not the guideline's step (continuing after a partial
  response, an early referral): the reason cites the guideline's rule;
* ``departure``  unwise but possible (an opioid too early, two SNRIs, an SNRI with an SSRI without the
  serotonin check): simulated as a declared departure (``Decision.departure``), flagged in the course;
* ``forbidden``  a safety rule excludes it (a tricyclic after a recent MI, a topical for diffuse pain, a
  dose above the patient's maximum): explained with its rule and seed, not simulated; the question is
  asked again.

Also the pathway's refusals in words (:func:`refusal`: the guard that refuses a step, with its rule and seed).
The options themselves are built in :mod:`simulator.teaching.tutor.options`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from ...model import safety
from ...model.catalog import FIRST_LINE_CLASSES
from ...model.decisions import CIPN
from ...model.patient import PatientModel
from ...model.policy_context import Decision
from ...model.safety import contraindication, dose_cap
from ..narrate import drug_name
from .options import Option, cite, same_step

if TYPE_CHECKING:
    from .session import Session

STRONG_FIRST = ("pregabalin", "duloxetine")  # P1: the strongest initial choices (S000, S001, S002)

# Why a pathway guard refuses a step: the rule that applies, in words (guards of simulator.model.patient).
GUARD_RULE: dict[str, tuple[str, str]] = {
    "first_line_available": ("P1.next_in_order", "no untried first-line class is left for this patient"),
    "can_add_on": ("P4.partial_add", "an add-on needs exactly one oral first-line drug running, no failed "
                   "combination, and another first-line class left"),
    "has_untried_first_line": ("P4.no_response_switch", "no alternative first-line class is left within the "
                               "policy's number of first-line regimens"),
    "tramadol_allowed": ("P7.tramadol_after_first_line", "tramadol comes only after documented failure of a "
                         "first-line agent"),
    "strong_opioid_gate": ("P8.prerequisites", ""),
    "referral_allowed": ("P9.discharge_plan", "the patient has already seen the pain specialist: one referral per "
                         "patient, after which the specialist's plan is followed (a model assumption)"),
    "localized_pain": ("P6.topical_localized", "topicals are for localized pain, and this pain is not localized"),
    "topical_allowed": ("P6.topical_localized", "the policy does not use topicals for this patient"),
}
NO_EDGE_RULE = {"escalate_tramadol": "P7.tramadol_after_first_line", "escalate_strong_opioid": "P8.prerequisites",
                "add_on": "P4.partial_add", "switch": "P4.no_response_switch", "start_topical": "P6.topical_localized",
                "start_first_line": "P1", "refer": "P9.refractory_referral"}


def _forbid_reason(name: str, rule: str) -> str:
    if rule == "P6.topical_localized":
        return f"{name} is a topical, for localized pain only, and this pain is not localized: {cite(rule)}"
    if rule == "P5.renal_cap":
        return f"{name} is excluded at this creatinine clearance: {cite(rule)}"
    if not rule.startswith("P5"):
        return f"{name} is not indicated for this patient: {cite(rule)}"
    return f"{name} is contraindicated for this patient: {cite(rule)}"


def _gate_reason(s: Session, p: PatientModel) -> str:
    gate = s.ctx.policy.strong_opioid
    missing = []
    failed = sum(1 for c in p.failed_classes if c in FIRST_LINE_CLASSES)
    if not gate.allowed:
        missing.append("this policy gives no strong opioids")
    if failed < gate.require_failed_classes:
        missing.append(f"{failed} first-line class(es) failed, {gate.require_failed_classes} required")
    if gate.require_combination and not p.combination_failed:
        missing.append("no combination of first-line classes has failed")
    if gate.require_tramadol and not p.tramadol_failed:
        missing.append("tramadol has not failed (judged inadequate after its trial, or not tolerated)")
    if gate.exclude_high_misuse_risk and p.misuse_high:
        missing.append("the misuse-risk screen is high")
    return "; ".join(missing) or "the strong-opioid gate is not passed"


def refusal(s: Session, p: PatientModel, trigger: str) -> tuple[str, str] | None:
    """(rule, reason) when the pathway's guards refuse ``trigger`` from the patient's state, else None."""
    cands = s.table.get((p.state, trigger))
    if not cands:
        if trigger in ("relief", "continue"):
            return None
        rule = NO_EDGE_RULE.get(trigger, "P4")
        where = "at the first visit" if p.state == "assessment" else f"from {p.state.replace('_', ' ')}"
        why = {"escalate_strong_opioid": "strong opioids are never first-line",
               "escalate_tramadol": "tramadol comes only after documented failure of first-line agents"}.get(
            trigger, "the pathway has no such step")
        return rule, f"{why} (no such step {where}): {cite(rule)}"
    failing = ""
    for guards, _dest in cands:
        bad = next((g for g in guards if not g(p)), None)
        if bad is None:
            return None
        failing = failing or bad.__name__
    rule, why = GUARD_RULE.get(failing, ("P4", "the pathway's guard refuses it"))
    if failing == "strong_opioid_gate":
        why = _gate_reason(s, p)
    return rule, f"{why}: {cite(rule)}"


def judge_all(s: Session, p: PatientModel, outcome: str | None, proposed: Decision, options: list[Option]) -> None:
    """Set each option's verdict, rule and reason from the rule that actually applies."""
    drugs = s.drugs
    active_classes = {drugs[a].drug_class: a for a in p.active}
    for o in options:
        d = o.decision
        if d is None:  # raise at the maximum
            j = next(j for j in p.active if o.key == f"raise:{drugs[j].name}")
            cap, rule = dose_cap(drugs[j], p.facts)
            o.verdict, o.rule = "forbidden", rule
            o.reason = (f"{drug_name(drugs[j].name)} is already at {cap:g} {drugs[j].unit}, the highest dose for "
                        f"this patient: {cite(rule)}")
            continue
        bad = next(((j, why) for j in d.start if (why := contraindication(drugs[j], p.facts)) is not None), None)
        if bad is not None:
            o.verdict, o.rule, o.reason = "forbidden", bad[1], _forbid_reason(drug_name(drugs[bad[0]].name), bad[1])
            o.decision = None
            continue
        if same_step(d, proposed):
            o.verdict, o.rule, o.reason = "guideline", proposed.rule, cite(proposed.rule)
            o.decision = proposed  # exactly the policy's decision: the guideline's answer replays its course
            continue
        if d.departure == "no_serotonin_check":
            # the rule the engine logs for the check it skips: tramadol's (P5.serotonin_check) or, for an SNRI or
            # tricyclic, the same caution applied to any two serotonergic drugs (P5.serotonin_check_snri)
            tramadol = any(drugs[j].drug_class == "weak_opioid" for j in d.start) or o.kind == "tramadol"
            o.verdict, o.rule = "departure", "P5.serotonin_check" if tramadol else "P5.serotonin_check_snri"
            o.reason = ("a serotonergic drug on top of " + ("the patient's SSRI" if "ssri_use" in p.facts.flags else
                        "a serotonergic drug") + " needs the serotonin-syndrome check first: " + cite(o.rule))
            continue
        same = [j for j in d.start if drugs[j].drug_class in active_classes and not d.stop_all]
        if same and o.kind in ("add", "tramadol", "topical"):
            j = same[0]
            other = drugs[active_classes[drugs[j].drug_class]]
            cls = drugs[j].drug_class.upper() if drugs[j].drug_class in ("snri", "tca") else drugs[j].drug_class
            risk = ("; two serotonergic drugs add serotonin-syndrome risk " + cite("P5.serotonin_check_snri")
                    if drugs[j].serotonergic and other.serotonergic else "")
            o.verdict, o.rule = "departure", "P4.partial_add"
            o.reason = (f"{drug_name(drugs[j].name)} and {drug_name(other.name)} are both {cls}s: a second drug of "
                        f"the same class adds side effects without a new mechanism ({cite('P4.partial_add')}){risk}")
            o.decision = replace(d, departure="guard_bypass")
            continue
        excluded = dict(p.excluded)  # the policy's exclusions for this patient beyond P5 (e.g. P11 in CIPN)
        ex = next(((j, excluded[j]) for j in d.start if j in excluded), None)
        if ex is not None:
            o.verdict, o.rule = "departure", ex[1]
            o.reason = f"{drug_name(drugs[ex[0]].name)} is excluded for this patient: {cite(ex[1])}"
            o.decision = replace(d, departure=d.departure or "guard_bypass")
            continue
        if o.kind == "topical" and outcome is not None and p.facts.localized:
            # P6: a topical can be added at any stage for localized pain (the engine takes the step as given).
            o.verdict, o.rule = "acceptable", "P6.topical_localized"
            o.reason = "a topical for localized pain can be added at any stage: " + cite(o.rule)
            o.decision = replace(d, rule=o.rule, departure="guard_bypass")
            continue
        refused = refusal(s, p, d.trigger)
        if refused is not None:
            o.verdict, o.rule, o.reason = "departure", refused[0], refused[1]
            o.decision = replace(d, departure=d.departure or "guard_bypass")
            continue
        why = _acceptable(s, p, o, proposed, outcome)
        if why[0]:
            o.verdict, o.rule, o.reason = "acceptable", why[0], why[1]
            o.decision = replace(d, rule=why[0])
            continue
        o.verdict, o.rule = "other", proposed.rule
        last = getattr(safety, "last_resort", None)  # drugs kept for last for this patient (e.g. P11 in CIPN)
        why_last = next((r for j in d.start if last is not None and (r := last(drugs[j], p.facts))), None)
        if why_last:
            o.rule = why_last
            o.reason = f"{drug_name(drugs[d.start[0]].name)} is kept for last for this patient: {cite(why_last)}"
            continue
        if o.kind == "continue" and p.state == "strong_opioid":
            o.reason = ("a strong opioid is a time-limited trial, stopped when it does not give relief, not continued: "
                        + cite("P8.stop_ineffective"))
            continue
        o.reason = _other_reason(s, p, o, outcome)


# Why an option that is possible is still not the guideline's step ("other"), by kind and outcome; each
# sentence names the rule it rests on (the guideline's own step and rule are added by Answer.feedback).
OTHER_REASON: dict[tuple[str, str], str] = {
    ("continue", ""): "continuing unchanged delays the step the response calls for ({P4}).",
    ("refer", ""): "referral is for refractory pain, after the drug steps are exhausted ({P9.refractory_referral}).",
    ("lower", "relief"): "the regimen gives relief at this dose: it continues as it is ({P4.relief}).",
    ("lower", ""): "a lower dose is for a dose-limiting side effect, not for an inadequate response "
                   "({P4.intolerance_reduce}).",
    ("taper", ""): "stopping a drug that is part of a working regimen removes its effect ({P4}).",
    ("raise", "relief"): "the regimen gives relief at this dose: raising it adds side effects without need "
                         "({P4.relief}).",
    ("raise", "intolerable"): "a higher dose after a dose-limiting side effect adds to it ({P4.intolerance_reduce}).",
    ("add", "relief"): "the regimen gives relief: nothing needs adding ({P4.relief}).",
    ("add", "none"): "adding is for a partial response; with no response the failed drug is replaced "
                     "({P4.no_response_switch}).",
    ("add", "intolerable"): "after intolerance the drug not tolerated is replaced, not added to "
                            "({P4.intolerance_switch}).",
    ("add", ""): "this is not the drug or class the next step offers for this patient ({P4}).",
    ("switch", "relief"): "the regimen gives relief: it continues as maintenance ({P4.relief}).",
    ("switch", "partial"): "a partial response calls for adding the other first-line class rather than switching "
                           "({P4.partial_add}).",
    ("switch", ""): "this is not the drug the pathway offers next for this patient ({P4}).",
    ("start", ""): "this is not the first choice the guideline makes for this patient ({P1}).",
    ("topical", ""): "a topical first is for localized pain in older adults or renal impairment "
                     "({P5.older_topical}).",
    ("tramadol", "relief"): "the regimen gives relief: no opioid is needed ({P4.relief}).",
    ("tramadol", ""): "tramadol comes after documented failure of the first-line options the guideline still has "
                      "for this patient ({P7}).",
    ("strong_opioid", "relief"): "the regimen gives relief: no opioid is needed ({P4.relief}).",
    ("strong_opioid", ""): "a strong opioid is the last drug step, after first-line classes, their combination and "
                           "tramadol ({P8.prerequisites}).",
}


def _other_reason(s: Session, p: PatientModel, o: Option, outcome: str | None) -> str:
    """Why a possible option is not the guideline's step (verdict ``other``), citing the rule it rests on."""
    text = OTHER_REASON.get((o.kind, outcome or "")) or OTHER_REASON.get((o.kind, ""))
    if text is None:
        return "this is not the step the guideline takes here."
    return re.sub(r"\{([^}]+)\}", lambda m: cite(m.group(1)), text)


def _acceptable(s: Session, p: PatientModel, o: Option, proposed: Decision, outcome: str | None) -> tuple[str, str]:
    """(rule, reason) when ``o`` is an equally conformant alternative to the policy's step, else ('', '')."""
    d = o.decision
    assert d is not None
    drugs = s.drugs
    if o.kind == "raise" and outcome in ("partial", "none"):
        return "P2", ("raising a dose below the patient's maximum before judging the drug a failure is dose "
                      "optimisation: " + cite("P2"))
    if o.kind == "tramadol" and proposed.trigger == "escalate_tramadol":
        return "P7.tramadol_after_first_line", ("tramadol added while the other treatments are optimised, or in "
                                                "their place, is the same step: " + cite("P7.tramadol_after_first_line"))
    if d.trigger != proposed.trigger or len(d.start) != 1 or len(proposed.start) != 1:
        return "", ""
    j, g = d.start[0], proposed.start[0]
    cls = drugs[j].drug_class
    if cls not in FIRST_LINE_CLASSES or j in p.tried or d.stop_all != proposed.stop_all:
        return "", ""
    if d.trigger == "start_first_line" and outcome is None:
        if drugs[j].name in STRONG_FIRST and drugs[g].name in STRONG_FIRST and p.etiology not in CIPN:
            return "P1", "pregabalin and duloxetine are both strongest initial choices: " + cite("P1")
        return "", ""
    if d.trigger in ("add_on", "switch"):
        active_classes = {drugs[a].drug_class for a in p.active}
        if cls not in active_classes and cls not in p.failed_classes and drugs[g].drug_class != "topical":
            rule = proposed.rule
            return rule, "another first-line class not yet tried, as the rule asks: " + cite(rule)
    return "", ""
