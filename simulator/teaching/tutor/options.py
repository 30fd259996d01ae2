"""A counterfactual case tutor: the trainee's choice is simulated, with the same patient and the same luck.

How a session works (:class:`Session`): the patient is simulated with the trainee's decisions so far
replayed through the engine's ``Simulation(..., decide=...)`` hook; the first decision after them is the
next question. Because every random number derives from (seed, replication, patient, purpose), the
trainee's course and the guideline's course share the patient's drug responses, adverse-event draws and
drop-out: the two courses are identical until the first decision that differs, and every difference after
it is the consequence of that decision. Nothing beyond the current decision is shown until the case ends
(the simulation runs ahead with the guideline's choices, but those rows are never revealed); the debrief
then shows both courses side by side, the score, and each decision's rule and seed.

Each option gets a verdict (``guideline``, ``acceptable``, ``other``, ``departure``, ``forbidden``) from the rule
that actually applies: :mod:`simulator.teaching.tutor.verdicts`.

Options are built from a small vocabulary of decision kinds (:data:`KINDS`), each turned into an engine
:class:`~simulator.model.policy_context.Decision`; a policy step no option matches is offered as its own option, so
new decision kinds of the policy appear in the tutor without changes here.

This module owns the options (:func:`build_options`, :class:`Option`, :class:`Point`, :func:`same_step`,
:func:`describe`, :func:`cite`); their verdicts are :mod:`simulator.teaching.tutor.verdicts`, the session that
asks and replays them :mod:`simulator.teaching.tutor.session`, the terminal front end
:mod:`simulator.teaching.tutor.terminal`.

    s = Session(setup_from_case(load_case("arrhythmia-no-tca")))
    while not s.finished:
        s.answer(s.point.guideline)
    s.debrief()
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ...model.catalog import FIRST_LINE_CLASSES
from ...model.pathway import TRIGGERS
from ...model.patient import PatientModel
from ...model.policy_context import Decision
from ...model.rules import load_rules
from ...model.safety import dose_cap, schedule
from ..narrate import drug_name

if TYPE_CHECKING:
    from .session import Session

KINDS: tuple[str, ...] = ("continue", "raise", "lower", "start", "add", "switch", "taper", "topical", "tramadol",
                          "strong_opioid", "refer")
"""The decision kinds a trainee can choose from (issue: continue, raise, lower, add, switch, taper, topical,
tramadol, strong opioid, refer; ``start`` at the first visit)."""
VERDICTS: tuple[str, ...] = ("guideline", "acceptable", "other", "departure", "forbidden")
GOOD = ("guideline", "acceptable")
TRAINEE_RULE = "X.trainee_choice"



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
