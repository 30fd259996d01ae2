"""A counterfactual case tutor: the trainee's choice is simulated, with the same patient and the same luck.

How a session works (:class:`Session`): the patient is simulated with the trainee's decisions so far
replayed through the engine's ``Simulation(..., decide=...)`` hook; the first decision after them is the
next question. Because every random number derives from (seed, replication, patient, purpose), the
trainee's course and the guideline's course share the patient's drug responses, adverse-event draws and
drop-out: the two courses are identical until the first decision that differs, and every difference after
it is the consequence of that decision. Nothing beyond the current decision is shown until the case ends
(the simulation runs ahead with the guideline's choices, but those rows are never revealed); the debrief
then shows both courses side by side, the score, and each decision's rule and seed.

Each option is judged by the rule that actually applies (:func:`judge`):

* ``guideline``  the policy's own step (:mod:`simulator.model.policy`);
* ``acceptable`` an equally conformant step (another first-line class, raising a dose below the maximum);
* ``other``      possible and simulated, but not the guideline's step (continuing after a partial
  response, an early referral): the reason cites the guideline's rule;
* ``departure``  unwise but possible (an opioid too early, two SNRIs, an SNRI with an SSRI without the
  serotonin check): simulated as a declared departure (``Decision.departure``), flagged in the course;
* ``forbidden``  a safety rule excludes it (a tricyclic after a recent MI, a topical for diffuse pain, a
  dose above the patient's maximum): explained with its rule and seed, not simulated; the question is
  asked again.

Options are built from a small vocabulary of decision kinds (:data:`KINDS`), each turned into an engine
:class:`~simulator.model.policy.Decision`; a policy step no option matches is offered as its own option, so
new decision kinds of the policy appear in the tutor without changes here.

This module owns the options and their verdicts (:func:`build_options`, :func:`judge_all`, :func:`refusal`);
the session that asks and replays them is :mod:`simulator.teaching.tutor.session`, the terminal front end
:mod:`simulator.teaching.tutor.terminal`.

    s = Session(setup_from_case(load_case("arrhythmia-no-tca")))
    while not s.finished:
        s.answer(s.point.guideline)
    s.debrief()
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ...model import safety
from ...model.catalog import FIRST_LINE_CLASSES
from ...model.pathway import TRIGGERS
from ...model.patient import PatientModel
from ...model.policy import CIPN, Decision
from ...model.rules import load_rules
from ...model.safety import contraindication, dose_cap, schedule
from ..narrate import drug_name

if TYPE_CHECKING:
    from .session import Session

KINDS: tuple[str, ...] = ("continue", "raise", "lower", "start", "add", "switch", "taper", "topical", "tramadol",
                          "strong_opioid", "refer")
"""The decision kinds a trainee can choose from (issue: continue, raise, lower, add, switch, taper, topical,
tramadol, strong opioid, refer; ``start`` at the first visit)."""
VERDICTS: tuple[str, ...] = ("guideline", "acceptable", "other", "departure", "forbidden")
GOOD = ("guideline", "acceptable")
STRONG_FIRST = ("pregabalin", "duloxetine")  # P1: the strongest initial choices (S000, S001, S002)
TRAINEE_RULE = "X.trainee_choice"

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


def cite(rule: str) -> str:
    """'<rule text> [<rule id>; <seeds>]' for a rule id of rules.yaml (the id alone when unknown)."""
    book = load_rules()
    if not rule or not book.is_resolvable(rule):
        return f"[{rule}]" if rule else ""
    seeds = book.seeds_of(rule)
    return f"{book.text_of(rule)} [{rule}" + (f"; {', '.join(seeds)}]" if seeds else "]")


def seeds_of(rule: str) -> list[str]:
    book = load_rules()
    return list(book.seeds_of(rule)) if rule and book.is_resolvable(rule) else []


@dataclass
class Option:
    """One answer the trainee can give at a decision point."""

    key: str  # stable id, e.g. "add:duloxetine" (scripts and the web app use it)
    kind: str  # one of KINDS
    label: str
    decision: Decision | None
    verdict: str = "other"  # one of VERDICTS
    rule: str = ""  # the rule that decides the verdict
    reason: str = ""  # why, in words, citing the rule

    @property
    def simulable(self) -> bool:
        return self.decision is not None and self.verdict != "forbidden"


@dataclass
class Point:
    """A decision point of the trainee's course (what is known when the question is asked)."""

    n: int
    day: float
    outcome: str | None  # None at the first visit; relief, partial, none, intolerable
    pain: float
    state: str
    regimen: list[tuple[str, float, str]]  # (drug, daily dose, unit) running now
    proposed: Decision
    options: list[Option]
    guideline: int  # index of the guideline's option

    @property
    def guideline_option(self) -> Option:
        return self.options[self.guideline]




# ---- options ---------------------------------------------------------------------------------------------
def _decision(kind: str, **kw: Any) -> Decision:
    return Decision(rule=TRAINEE_RULE, **kw)


def _higher(s: Session, p: PatientModel, j: int, cur: float) -> float | None:
    d = s.drugs[j]
    cap, _ = dose_cap(d, p.facts)
    steps, _ = schedule(d, p.facts, s.ctx.policy.titration_speed, cap)
    return next((x for _, x in steps if x > cur + 1e-9), None)


def _lower(s: Session, p: PatientModel, j: int, cur: float) -> float | None:
    d = s.drugs[j]
    steps, _ = schedule(d, p.facts, s.ctx.policy.titration_speed, d.target_dose)
    below = [x for _, x in steps if x < cur - 1e-9]
    return below[-1] if below else None


def build_options(s: Session, p: PatientModel, outcome: str | None, doses: dict[int, float]) -> list[Option]:
    """Every answer offered at this point, before judging."""
    ctx, drugs = s.ctx, s.drugs
    first_line = [d.index for d in drugs if d.drug_class in FIRST_LINE_CLASSES]
    order = list(ctx.order) + [j for j in first_line if j not in ctx.order]
    topicals = sorted((d.index for d in drugs if d.drug_class == "topical"), key=lambda j: j != ctx.topical)
    opts: list[Option] = []
    serotonergic_now = "ssri_use" in p.facts.flags or any(drugs[a].serotonergic for a in p.active)

    def with_check_variants(key: str, kind: str, label: str, dec: Decision, j: int) -> None:
        variants = drugs[j].serotonergic and serotonergic_now
        opts.append(Option(key, kind, label + (" (after a serotonin-syndrome check)" if variants else ""), dec))
        if variants:
            nd = replace(dec, departure="no_serotonin_check")
            opts.append(Option(key + ":no-check", kind, label + " without a serotonin check", nd))

    if outcome is None:
        for j in order:
            with_check_variants(f"start:{drugs[j].name}", "start", f"Start {drug_name(drugs[j].name)}",
                                _decision("start", trigger="start_first_line", start=(j,)), j)
        for j in topicals:
            opts.append(Option(f"topical:{drugs[j].name}", "topical", f"Start a topical: {drug_name(drugs[j].name)}",
                               _decision("topical", trigger="start_topical", start=(j,))))
        opts.append(Option("tramadol", "tramadol", "Start tramadol",
                           _decision("tramadol", trigger="escalate_tramadol", start=(ctx.tramadol,))))
        opts.append(Option("strong_opioid", "strong_opioid", f"Start a strong opioid ({drug_name(drugs[ctx.strong].name)})",
                           _decision("strong_opioid", trigger="escalate_strong_opioid", start=(ctx.strong,))))
        opts.append(Option("refer", "refer", "Refer to the pain specialist", _decision("refer", trigger="refer")))
        return opts

    active = list(p.active)
    newest = active[-1] if active else -1
    trial = float(ctx.trial_days[drugs[newest].name]) if active else 0.0
    if outcome == "relief":
        opts.append(Option("continue", "continue", "Continue the current regimen (maintenance)",
                            _decision("continue", trigger="relief")))
    elif active:
        opts.append(Option("continue", "continue", "Continue the current regimen unchanged and review after "
                           f"another {trial:.0f} days", _decision("continue", trigger="continue", eval_after=trial)))
    for j in active:
        if drugs[j].drug_class == "topical":  # a patch is not titrated
            continue
        name, cur = drug_name(drugs[j].name), doses.get(j, 0.0)
        up = _higher(s, p, j, cur)
        cap = dose_cap(drugs[j], p.facts)[0]  # the engine raises step by step up to the patient's maximum (P3)
        label = f"Raise the {name} dose" + (f" step by step toward {cap:g} {drugs[j].unit}" if up else "")
        opts.append(Option(f"raise:{drugs[j].name}", "raise", label,
                           _decision("raise", trigger="continue", adjust=((j, up),), eval_after=trial + 14.0)
                           if up else None))
        down = _lower(s, p, j, cur)
        if down is not None:
            opts.append(Option(f"lower:{drugs[j].name}", "lower", f"Lower the {name} dose to {down:g} {drugs[j].unit}",
                               _decision("lower", trigger="continue", adjust=((j, down),), eval_after=trial)))
        if len(active) > 1:
            opts.append(Option(f"taper:{drugs[j].name}", "taper", f"Taper off {name}, keep the rest",
                               _decision("taper", trigger="continue", adjust=((j, 0.0),), eval_after=trial)))
    for j in order:
        if j in active:
            continue
        name = drug_name(drugs[j].name)
        if not active:  # nothing runs (the last drug was stopped): a drug is started, nothing is added to
            trig = "start_first_line" if p.state == "topical" else "switch"
            with_check_variants(f"switch:{drugs[j].name}", "switch", f"Start {name}",
                                _decision("switch", trigger=trig, start=(j,), stop_all=True), j)
        elif p.state == "topical":
            with_check_variants(f"add:{drugs[j].name}", "add", f"Add oral {name} to the topical",
                                _decision("add", trigger="start_first_line", start=(j,)), j)
            with_check_variants(f"switch:{drugs[j].name}", "switch", f"Stop the topical, start {name}",
                                _decision("switch", trigger="start_first_line", start=(j,), stop_all=True), j)
        else:
            with_check_variants(f"add:{drugs[j].name}", "add", f"Add {name}",
                                _decision("add", trigger="add_on", start=(j,)), j)
            with_check_variants(f"switch:{drugs[j].name}", "switch", f"Switch to {name}",
                                _decision("switch", trigger="switch", start=(j,), stop_all=True), j)
    add_topical = "add_topical" if "add_topical" in TRIGGERS else "add_on"  # P6: a topical alongside, any stage
    for j in topicals:
        if j not in active and p.state != "topical":
            verb = "Add" if active else "Start"
            opts.append(Option(f"topical:{drugs[j].name}", "topical", f"{verb} a topical: {drug_name(drugs[j].name)}",
                               _decision("topical", trigger=add_topical, start=(j,))))
    if ctx.tramadol not in active:
        with_check_variants("tramadol", "tramadol", "Switch to tramadol" if active else "Start tramadol",
                            _decision("tramadol", trigger="escalate_tramadol", start=(ctx.tramadol,), stop_all=True),
                            ctx.tramadol)
        if active:
            with_check_variants("tramadol:add", "tramadol", "Add tramadol to the current regimen",
                                _decision("tramadol", trigger="escalate_tramadol", start=(ctx.tramadol,)),
                                ctx.tramadol)
    if ctx.strong not in active:
        opts.append(Option("strong_opioid", "strong_opioid",
                           f"{'Switch to' if active else 'Start'} a strong opioid ({drug_name(drugs[ctx.strong].name)})",
                           _decision("strong_opioid", trigger="escalate_strong_opioid", start=(ctx.strong,),
                                     stop_all=True)))
    opts.append(Option("refer", "refer", "Refer to the pain specialist",
                       _decision("refer", trigger="refer", stop_all=True)))
    return opts


def same_step(d: Decision | None, proposed: Decision) -> bool:
    """The option takes the policy's step (same trigger, drugs started, stops and dose changes)."""
    if d is None:
        return False
    if d.trigger != proposed.trigger or set(d.start) != set(proposed.start):
        return False
    if proposed.trigger in ("relief", "refer", "stay"):
        return True
    return d.stop_all == proposed.stop_all and {j for j, _ in d.adjust} == {j for j, _ in proposed.adjust} \
        and not d.departure


def describe(s: Session, d: Decision) -> str:
    """A decision in words (for policy steps and the guideline's course)."""
    names = " + ".join(drug_name(s.drugs[j].name) for j in d.start)
    words = {"start_first_line": f"start {names}", "start_topical": f"start a topical: {names}",
             "add_on": f"add {names}", "switch": f"switch to {names}", "escalate_tramadol": f"tramadol ({names})",
             "escalate_strong_opioid": f"strong opioid ({names})", "refer": "refer to the pain specialist",
             "relief": "continue the regimen (maintenance)", "continue": "continue the regimen",
             "stay": "no further step"}.get(d.trigger, d.trigger.replace("_", " "))
    for j, x in d.adjust:
        words += f"; {drug_name(s.drugs[j].name)} " + (f"to {x:g} {s.drugs[j].unit}" if x > 0 else "stopped")
    if d.also:  # P6.topical_add: a topical added at the same visit
        words += "; " + " + ".join(drug_name(s.drugs[j].name) for j in d.also) + " added alongside"
    return words[0].upper() + words[1:]


# ---- judging ---------------------------------------------------------------------------------------------
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
    if gate.require_tramadol and not p.tramadol_tried:
        missing.append("tramadol has not been tried")
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


