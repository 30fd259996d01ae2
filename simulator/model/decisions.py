"""The guideline's decisions: a policy and a patient's history in, the next pathway step out.

Owns :func:`first_choice` (the first visit, P1, P5, P6) and :func:`next_step` (after an evaluation or an
intolerable adverse event: P3, P4, P6-P9, P11) and their helpers, citing the rule id of each decision. They
never bypass the pathway's guards: the engine fires the trigger through the compiled pathway, which refuses
what the safety rules forbid. While a protocol governs, the decisions are :mod:`simulator.model.protocol`'s.
``p`` is the engine's patient model (:class:`simulator.model.patient.PatientModel`).
"""

from __future__ import annotations

from .catalog import FIRST_LINE_CLASSES
from .policy_context import Decision, PolicyContext, decision, revised
from .protocol import protocol_next, protocol_start

_STRATEGY_DRUG = {"pregabalin_first": ("pregabalin", "P1.pregabalin_first"),
                  "duloxetine_first": ("duloxetine", "P1.duloxetine_first"),
                  "gabapentin_first": ("gabapentin", "P1.gabapentin_cost"),
                  "tca_first": ("nortriptyline", "P1.tca_first")}
REOFFER = "P4.reoffer_own_stop"
CIPN = (2, 3)  # etiology codes of chemotherapy-induced neuropathy
RADICULOPATHY = 4
HIV = 5
ANTIDEPRESSANTS = ("snri", "tca")
RENAL_IMPAIRED_CRCL = 60.0  # CKD stage 3 (calibration.md 9), as TopicalPreferred.crcl_below


def _preferred_first(p, ctx: PolicyContext) -> tuple[str, str]:
    """The drug the strategy prefers for this patient, before safety exclusions (P1, P11).

    ``comorbidity_guided`` (S004: "choose based on comorbidities, age, pain location"; the mapping is a named
    assumption, rule P1.comorbidity_choice): cardiovascular disease -> duloxetine (S000); depression,
    radiculopathy or renal impairment -> duloxetine (an antidepressant without renal dose reduction), or
    the policy's tricyclic for depression when duloxetine is excluded; otherwise pregabalin."""
    strategy = ctx.policy.first_line
    if strategy == "tca_first":
        tca = ctx.policy.tca
        return tca, "P1.amitriptyline_tca" if tca == "amitriptyline" else "P1.tca_first"
    if strategy in _STRATEGY_DRUG:
        return _STRATEGY_DRUG[strategy]
    if p.etiology in CIPN:
        return "duloxetine", "P1.duloxetine_cipn"
    if strategy == "comorbidity_guided":
        flags = p.facts.flags
        if "cardiovascular_disease" in flags:
            return "duloxetine", "P5.cardiac_prefer_duloxetine"
        if "depression" in flags or p.etiology == RADICULOPATHY or p.facts.crcl < RENAL_IMPAIRED_CRCL:
            if ctx.by_name["duloxetine"] in p.eligible or "depression" not in flags:
                return "duloxetine", "P1.comorbidity_choice"
            return ctx.policy.tca, "P1.comorbidity_choice"
        return "pregabalin", "P1.comorbidity_choice"
    return "pregabalin", "P1.pregabalin_first"


def _topical_first(p, ctx: PolicyContext) -> str | None:
    """Rule id when this patient should start with a topical (P5, P6), else None."""
    mode = ctx.policy.topicals
    if mode in ("never", "add_on") or not p.facts.localized or not p.topical_allowed():
        return None
    if mode == "first":
        return "P6.topical_localized"
    pref = ctx.policy.topical_preferred
    if p.facts.crcl < pref.crcl_below:
        return "P5.renal_topical"
    if p.facts.age >= pref.min_age:
        return "P5.older_topical"
    return None


def first_oral(p, ctx: PolicyContext) -> tuple[int, str] | None:
    """The first oral first-line drug for the patient, with its rule, or None if none is eligible.

    A tricyclic the patient should only get as a last resort (cardiovascular disease, glaucoma,
    orthostatic hypotension; P5) is replaced by the first other eligible drug (duloxetine under CVD)."""
    name, rule = _preferred_first(p, ctx)
    idx = ctx.by_name[name]
    if idx in p.last_resort:
        dul = ctx.by_name["duloxetine"]
        if p.last_resort[idx] == "P5.cardiac_prefer_duloxetine" and dul in p.eligible and dul not in p.tried:
            return dul, "P5.cardiac_prefer_duloxetine"
        for j in p.eligible:
            if j not in p.tried and j not in p.last_resort:
                return j, p.last_resort[idx]
    if idx in p.eligible and idx not in p.tried:
        return idx, rule
    for j in p.eligible:
        if j not in p.tried and ctx.tables.drugs[j].drug_class not in p.failed_classes:
            return j, "P1.next_in_order"
    for j in p.eligible:  # P4.reoffer_own_stop: a drug the patient stopped himself, after the untried ones
        if j in p.reopen and ctx.tables.drugs[j].drug_class not in p.failed_classes:
            return j, REOFFER
    return None


def serotonin_blocked(p, ctx: PolicyContext, j: int, running: bool = True) -> bool:
    """Policy ``serotonin: avoid``: a serotonergic drug is not combined with an SSRI or another one (P5)."""
    if ctx.policy.serotonin != "avoid" or not ctx.tables.drugs[j].serotonergic:
        return False
    if "ssri_use" in p.facts.flags:
        return True
    drugs = ctx.tables.drugs
    return running and any(drugs[d].serotonergic for d in p.active)


def pick_add(p, ctx: PolicyContext) -> int | None:
    """A first-line drug to add (P4): a gabapentinoid to an antidepressant or an antidepressant to a
    gabapentinoid (S000, S002: different mechanisms), of a class that has not failed."""
    drugs = ctx.tables.drugs
    active_classes = {drugs[d].drug_class for d in p.active}
    want = ANTIDEPRESSANTS if "gabapentinoid" in active_classes else ("gabapentinoid",)
    for j in p.eligible:
        c = drugs[j].drug_class
        if j not in p.tried and c in want and c not in p.failed_classes and not serotonin_blocked(p, ctx, j):
            return j
    for j in p.eligible:  # P4.reoffer_own_stop: a drug the patient stopped himself, after the untried ones
        c = drugs[j].drug_class
        if j in p.reopen and c in want and c not in p.failed_classes and not serotonin_blocked(p, ctx, j):
            return j
    return None


def pick_switch(p, ctx: PolicyContext) -> int | None:
    """An untried first-line drug of a class that has not failed (P4: alternative class); once the policy's
    ``max_first_line_regimens`` are used, only the restart of a drug that relieved (P4.reoffer_own_stop)."""
    active_classes = {ctx.tables.drugs[d].drug_class for d in p.active}
    capped = p.n_first_line >= ctx.policy.max_first_line_regimens
    for j in p.eligible:
        c = ctx.tables.drugs[j].drug_class
        if j not in p.tried and c not in p.failed_classes and c not in active_classes and not capped:
            return j
    for j in p.eligible:  # P4.reoffer_own_stop: a drug the patient stopped himself, after the untried ones
        c = ctx.tables.drugs[j].drug_class
        if j in p.reopen and c not in p.failed_classes and c not in active_classes and \
                (not capped or j in p.reopen_first):
            return j
    return None


def _cite(p, j: int, rule: str) -> str:
    """The decision's rule, or P4.reoffer_own_stop when drug ``j`` is the patient's own stop offered once more."""
    return REOFFER if j in p.reopen else rule


def _reoffer_first(p, ctx: PolicyContext, state: str) -> Decision | None:
    """P4.reoffer_own_stop: on a relapse, the drugs the patient stopped himself while they relieved him are restarted
    at once, before anything else (effective and tolerated; before a dose optimisation too): a first-line drug added
    back to the complementary one still running (P4) when the policy combines (``on_partial: add``), else replacing
    the regimen; in the tramadol state tramadol offered once more (P7.tramadol_reoffer, before any strong opioid:
    S004) and there, as with a strong opioid, a first-line drug added back to what runs (the pathway has no
    first-line step from those states); the topical added back to what runs (P6, any stage; alone in the topical
    state)."""
    drugs = ctx.tables.drugs
    # relieved in the tramadol state, now without it: the patient stopped it (not tolerated or judged: failed)
    tramadol = state == "tramadol" and p.relieved_from == "tramadol" and ctx.tramadol not in p.active \
        and p.tramadol_allowed()
    if not p.reopen_first and not tramadol:
        return None
    topical = (p.topical,) if p.topical in p.reopen_first and p.topical_addable() and state in TOPICAL_ADD_STATES \
        else ()
    first: list[int] = []  # first-line drugs to restart, the one that relieved him last first
    if state in ("first_line", "switch", "add_on", "tramadol", "strong_opioid") and p.reopen_first:
        last = p.last_relief_stop
        taken = {drugs[d].drug_class for d in p.active}
        for j in ((last, *p.eligible) if last in p.reopen_first and last in p.eligible else p.eligible):
            c = drugs[j].drug_class
            if j in p.reopen_first and j not in first and c in FIRST_LINE_CLASSES and c not in p.failed_classes \
                    and c not in taken and not serotonin_blocked(p, ctx, j):
                first.append(j)
                taken.add(c)
    if state in ("tramadol", "strong_opioid"):
        if tramadol:
            add = ctx.policy.tramadol_mode == "add" and bool(p.active or first)
            # the first-line drugs last: the newest line sets the evaluation (its own adequate trial, P3)
            return decision("escalate_tramadol", (ctx.tramadol, *first), stop_all=not add, also=topical,
                            rule="P7.tramadol_reoffer")
        if first:  # no transition: what runs continues with the restart (P4.reoffer_own_stop)
            return decision("continue", tuple(first), also=topical, rule=REOFFER)
    elif first:
        oral = [d for d in p.active if drugs[d].drug_class in FIRST_LINE_CLASSES]
        j = first[0]
        if len(oral) == 1 and ctx.policy.on_partial == "add" and p.can_add_on() and \
                (drugs[j].drug_class == "gabapentinoid") != (drugs[oral[0]].drug_class == "gabapentinoid"):
            return decision("add_on", tuple(first), also=topical, rule=REOFFER)
        if p.has_untried_first_line():  # within the regimens, or at the cap this restart (not a new regimen)
            return decision("switch", tuple(first), stop_all=True, also=topical, rule=REOFFER)
    if topical:
        return decision("add_topical", topical, rule=REOFFER)
    return None


# States a topical may be added in (the add_topical edges of simulator.model.pathway, P6).
TOPICAL_ADD_STATES: tuple[str, ...] = ("topical", "first_line", "add_on", "switch", "tramadol", "strong_opioid")
RESTART_RULES: tuple[str, ...] = (REOFFER, "P7.tramadol_reoffer")


def first_choice(p, ctx: PolicyContext) -> Decision:
    """The decision at the assessment visit (P1, P5, P6)."""
    if ctx.policy.protocol is not None:
        return protocol_start(p, ctx, 0, "start")
    rule = _topical_first(p, ctx)
    if rule is not None:
        return decision("start_topical", (p.topical,), rule=rule)
    first = first_oral(p, ctx)
    if first is not None:
        return decision("start_first_line", (first[0],), rule=first[1])
    if p.facts.localized and p.topical_allowed():
        return decision("start_topical", (p.topical,), rule="P6.topical_localized")
    return decision("refer", rule="P9.refractory_referral")


def _switch_rule(outcome: str, state: str) -> str:
    if state == "add_on":
        return "P4.combination_failed"
    return {"intolerable": "P4.intolerance_switch", "partial": "P4.partial_switch"}.get(
        outcome, "P4.no_response_switch")


def referral_due(p, ctx: PolicyContext, day: float, pain: float) -> bool:
    """Policy referral criteria (P9.referral_criteria): after N failed lines, or pain above X after Y days."""
    r = ctx.policy.referral
    if r.after_failed_lines is not None and p.failed_lines() >= r.after_failed_lines:
        return True
    return r.pain_above is not None and day >= r.after_days and pain > r.pain_above


def _topical_add_due(p, ctx: PolicyContext, state: str) -> bool:
    """P6.topical_add: a topical may be added to the oral regimen for localized pain (S004 any stage; S002 step 3)."""
    mode = ctx.policy.topical_add
    if mode == "never" or not p.topical_addable():
        return False
    if mode == "after_combination":
        return state == "add_on"
    return state in ("first_line", "switch", "add_on", "tramadol", "strong_opioid")


def _tramadol(p, ctx: PolicyContext, rule: str) -> Decision:
    """P7: tramadol added to the regimen (policy tramadol_mode: add, S002) or replacing it."""
    if ctx.policy.tramadol_mode == "add" and p.active:
        return decision("escalate_tramadol", (ctx.tramadol,), rule="P7.tramadol_add")
    return decision("escalate_tramadol", (ctx.tramadol,), stop_all=True, rule=rule)


def _strong(p, ctx: PolicyContext) -> Decision:
    """P8: the strong opioid, with the regimen reduced to what the seeds combine it with (P8.opioid_regimen):
    a gabapentinoid (morphine + gabapentin, S000, S004) and a topical continue; the other drugs, judged failed
    (the antidepressant of the failed combination, tramadol), are tapered and stopped."""
    keep = ("gabapentinoid", "topical") if ctx.policy.strong_opioid.keep_gabapentinoid else ("topical",)
    return decision("escalate_strong_opioid", (ctx.strong,), stop_all=True, keep=keep, rule="P8.prerequisites",
                    stop_rule="P8.opioid_regimen")


def _exhausted(p, ctx: PolicyContext, notes: tuple[tuple[int, str], ...]) -> Decision:
    if p.consulted and not p.referral_allowed():  # seen by the specialist, nothing left, no further referral
        return decision("discharge", rule="P9.discharge_plan", notes=notes)  # back to primary care on the regimen
    if p.consulted:  # refractory again after a consult's plan and the remaining options (P9.re_referral)
        return decision("refer", stop_all=True, rule="P9.re_referral", notes=notes)
    if ctx.policy.referral.when_exhausted:
        return decision("refer", stop_all=True, rule="P9.refractory_referral", notes=notes)
    return decision("stay", stop_all=True, rule="P9.refractory_referral", notes=notes)


def _continues_while_queued(p, ctx: PolicyContext) -> bool:
    """P9.care_while_waiting: a drug other than an opioid runs, so treatment goes on while queued (an opioid
    running at referral has not relieved and is stopped, P8.stop_ineffective)."""
    drugs = ctx.tables.drugs
    return any(drugs[j].drug_class not in ("weak_opioid", "strong_opioid") for j in p.active)


def next_step(p, ctx: PolicyContext, outcome: str, day: float, pain: float) -> Decision:
    """The decision after an evaluation (or an intolerable adverse event) in a treating state."""
    protocol = ctx.policy.protocol
    if protocol is not None and (outcome != "relief" or p.protocol_step + 1 < len(protocol.steps)):
        return protocol_next(p, ctx, outcome, pain)  # the protocol's rules govern until its last step
    if outcome == "relief":
        return _RELIEF
    pol = ctx.policy
    state = p.state
    inadequate = outcome in ("partial", "none")
    # P4.reoffer_own_stop: what relieved him and he stopped himself comes back first (before a referral too)
    restart = _reoffer_first(p, ctx, state)  # whatever ended relief (a patch stopped without benefit too)
    if state == "strong_opioid" and restart is None:  # refer as refractory (P9); an opioid still running without relief is
        # tapered and stopped for it (P8.stop_ineffective, S004). Not tolerated, stopped by the patient, or a
        # relapse after the opioid had already stopped: no opioid stops here, the referral is the pathway's.
        ineffective = outcome != "intolerable" and ctx.strong in p.active
        return decision("refer", stop_all=True,
                        rule="P8.stop_ineffective" if ineffective else "P9.refractory_referral")
    # P9.referral_criteria refers while options remain, and the regimen goes on while queued (issue 10): when
    # the line has just ended with nothing running (not tolerated, stopped by the patient), the pathway's next
    # step comes first and the criteria refer at its evaluation, so the wait is never a treatment gap.
    # The same when only an opioid that failed runs: it stops at referral (P8.stop_ineffective), so the next step
    # comes first. The criteria refer before a first consult; after one, only refractory pain refers again.
    if restart is None and referral_due(p, ctx, day, pain) and p.n_consults == 0 and p.referral_allowed() \
            and (_continues_while_queued(p, ctx) if pol.referral.while_waiting == "continue"
                 else (p.active or outcome != "intolerable")):
        return decision("refer", stop_all=True, rule="P9.referral_criteria")
    add_possible = state in ("first_line", "switch") and p.can_add_on()
    oral = restart or _oral_step(p, ctx, outcome, state, inadequate, add_possible)
    if (outcome == "intolerable" or oral.rule == REOFFER) and oral.stop_all and "topical" not in oral.keep:
        # P4.intolerance_stop stops the drug not tolerated (or the patient stopped it), not a topical beside it:
        # the topical goes on with the next step (S004: topicals for localized pain at any stage). The same when a
        # drug the patient stopped himself is offered once more (P4.reoffer_own_stop judges no topical).
        oral = revised(oral, keep=(*oral.keep, "topical"))
    if inadequate and oral.trigger != "add_topical" and _topical_add_due(p, ctx, state):
        # S004 "for localized pain at any stage: add topical": alongside the oral step the algorithm calls for
        # at this visit (optimise, add, switch, escalate), never in its place; with no such step left
        # (refer, stay), the topical is the step. S002 step 3 (after_combination): the topical is the step after
        # the combination. Either way, what relieved him and he stopped himself is restarted (P4.reoffer_own_stop).
        if oral.rule in RESTART_RULES:  # the restart comes first, alone: a topical, if still due, once it is judged
            return oral
        if oral.trigger in WITH_TOPICAL and pol.topical_add != "after_combination":
            return revised(oral, also=(p.topical,))
        return decision("add_topical", (p.topical,), rule="P6.topical_add")
    return oral


# The two most frequent decisions, built once (a Decision is immutable; building one costs microseconds).
_RELIEF = Decision("relief", rule="P4.relief")
_OPTIMISE = Decision("optimise", rule="P3.dose_optimisation")

# Steps a topical may accompany at the same visit (P6.topical_add): the oral or opioid step goes on.
WITH_TOPICAL: tuple[str, ...] = ("optimise", "add_on", "switch", "start_first_line", "escalate_tramadol",
                                 "escalate_strong_opioid")


def _oral_step(p, ctx: PolicyContext, outcome: str, state: str, inadequate: bool, add_possible: bool) -> Decision:
    """The decision after an inadequate or intolerable evaluation, topicals at any stage aside (P3, P4, P7-P9),
    when no restart comes first (:func:`next_step` asks :func:`_reoffer_first` before)."""
    pol = ctx.policy
    # P3: ensure the dose is optimised before judging failure (S000, S001, S002, S004).
    if inadequate and p.optimisable and state in ("first_line", "switch", "tramadol"):
        mode = pol.dose_optimisation
        adding = add_possible and pol.on_partial == "add" and (
            outcome == "partial" or pol.on_no_response == "add" or p.etiology == RADICULOPATHY)
        if mode == "to_maximum" and not (p.etiology == RADICULOPATHY and adding):  # P11: combination earlier
            return _OPTIMISE
        if mode == "before_switch" and not adding:
            return _OPTIMISE
    # P4: an add-on that was not tolerated stopped alone; the base continues and another add may follow.
    if outcome == "intolerable" and state == "add_on" and p.active and p.can_add_on():
        add = pick_add(p, ctx)
        if add is not None:
            return decision("add_on", (add,), rule=_cite(p, add, "P4.addon_replaced"))
    if state == "tramadol":
        if p.strong_opioid_gate():
            return _strong(p, ctx)
        # S004 "strong opioids only if tramadol fails": a tramadol not yet judged is not a failure.
        if ctx.tramadol in p.active and not p.tramadol_failed:  # another drug of the regimen stopped first
            return decision("continue", rule="P7.tramadol_trial_continues")
        if p.tramadol_allowed():  # the patient stopped tramadol before it failed: offered once more
            if pol.tramadol_mode == "add" and p.active:
                return decision("escalate_tramadol", (ctx.tramadol,), rule="P7.tramadol_reoffer")
            return decision("escalate_tramadol", (ctx.tramadol,), stop_all=True, rule="P7.tramadol_reoffer")
        return _exhausted(p, ctx, p.strong_opioid_notes())
    if state == "topical":
        first = first_oral(p, ctx)
        if first is not None:
            keep = outcome == "partial"
            return decision("start_first_line", (first[0],), stop_all=not keep,
                            rule="P6.oral_after_topical" if keep else first[1],
                            stop_rule="" if keep else "P6.topical_stop")
    if add_possible:
        if outcome == "partial" and pol.on_partial == "add":
            if pol.topicals == "add_on" and p.topical_addable():
                return decision("add_topical", (p.topical,), rule="P6.topical_add")
            add = pick_add(p, ctx)
            if add is not None:
                return decision("add_on", (add,), rule=_cite(p, add, "P4.partial_add"))
        if outcome == "none" and pol.on_no_response == "add":
            add = pick_add(p, ctx)
            if add is not None:
                return decision("add_on", (add,), rule=_cite(p, add, "P4.add_after_no_response"))
        if outcome == "none" and p.etiology == RADICULOPATHY and pol.on_partial == "add":
            add = pick_add(p, ctx)
            if add is not None:
                return decision("add_on", (add,), rule=_cite(p, add, "P11.radiculopathy_combination"))
    capped = p.n_first_line >= pol.max_first_line_regimens  # then only a restart (P4.reoffer_own_stop) is left
    if outcome == "intolerable" and p.intolerant in ctx.on_intolerance and not capped and p.has_untried_first_line():
        alt = ctx.on_intolerance[p.intolerant]
        if alt in p.eligible and alt not in p.tried and not serotonin_blocked(p, ctx, alt, running=False):
            return decision("switch", (alt,), stop_all=True, rule="P4.intolerance_same_class")
    escalate = state == "add_on" and pol.after_combination == "escalate"
    if pol.tramadol == "second_line" and p.n_first_line >= 2 and p.tramadol_allowed():
        return _tramadol(p, ctx, "P7.tramadol_second_line")
    if not escalate and p.has_untried_first_line():
        venla = ctx.by_name["venlafaxine"]
        if p.etiology in CIPN and venla in p.eligible and venla not in p.tried and not capped:  # S002: CIPN
            return decision("switch", (venla,), stop_all=True, rule="P11.cipn_venlafaxine", fails_class=False)
        nxt = pick_switch(p, ctx)
        if nxt is not None:
            return decision("switch", (nxt,), stop_all=True, rule=_cite(p, nxt, _switch_rule(outcome, state)))
    if p.tramadol_allowed():
        return _tramadol(p, ctx, "P7.tramadol_after_first_line")
    if p.strong_opioid_gate():
        return _strong(p, ctx)
    return _exhausted(p, ctx, p.strong_opioid_notes())
