"""The patient model the pathway machine fires triggers on, and the pathway's guards.

One plain slotted object per simulated patient holds its state and treatment history. The guard
methods are the conditions named in :data:`simulator.model.pathway.TRANSITIONS`; each encodes a safety rule
(P4, P5, P6, P7, P8) and reads the compiled policy. They are cheap: no pydantic, no logging.
"""

from __future__ import annotations

import math

from .catalog import FIRST_LINE_CLASSES
from .decisions import ANTIDEPRESSANTS, CIPN, HIV
from .policy_context import PolicyContext
from .safety import PatientFacts, contraindication, last_resort

CIPN_EXCLUDED_CLASSES = ("tca", "gabapentinoid")  # P11.cipn_no_efficacy (S000, S001)
_NO_CLASSES: frozenset[str] = frozenset()
_NO_DRUGS: frozenset[int] = frozenset()


class PatientModel:
    __slots__ = ("idx", "state", "facts", "etiology", "baseline", "misuse_high", "ctx", "eligible", "excluded",
                 "last_resort", "active", "tried", "failed_classes", "failed_agent_classes", "combination_failed",
                 "n_failed", "n_self_stops", "n_first_line", "tramadol_tried", "tramadol_failed",
                 "tramadol_reoffered", "strong_tried", "_topical_ok", "topical",
                 "topical_tried", "protocol_step", "tapering", "taper_end", "taper_rest", "until", "last_pain", "intolerant",
                 "optimisable", "consulted", "relieved_from", "n_relapses", "assessed", "referred_from", "bridge_judged",
                 "reopen", "reopen_first", "reoffered", "n_consults", "judged_day", "judged_benefit", "stopped_now",
                 "stopped_day", "reopen_next", "reopen_first_next", "failed_drugs", "last_consult", "last_relief_stop",
                 "failure_marks", "deferred_until", "relief_dose")

    def __init__(self, idx: int, facts: PatientFacts, baseline: float, misuse_high: bool,
                 ctx: PolicyContext) -> None:
        self.idx = idx
        self.state = "assessment"
        self.facts = facts
        self.etiology = facts.etiology
        self.baseline = baseline
        self.misuse_high = misuse_high
        self.ctx = ctx
        # Eligibility depends only on these facts: computed once per distinct combination (hot path).
        key = (facts.etiology, facts.localized, facts.flags, facts.crcl < ctx.renal_threshold)
        cached = ctx.eligibility.get(key)
        if cached is None:
            cached = ctx.eligibility[key] = self._eligibility()
        self.eligible, self.excluded, self.last_resort, self.topical = cached
        self._topical_ok = self.topical >= 0
        self.active: list[int] = []
        self.tried: set[int] = set()
        # The class sets start as one shared empty frozenset and a class is added by replacing the set: most
        # patients never fail a class, so no empty set per patient (memory per patient is run time at 100k).
        self.failed_classes: frozenset[str] = _NO_CLASSES  # classes judged ineffective (not offered again)
        self.failed_agent_classes: frozenset[str] = _NO_CLASSES  # classes with an agent failed or not tolerated (P8)
        self.combination_failed = False
        self.n_failed = 0  # lines ended without relief (judged, not tolerated, or stopped by the patient)
        self.n_self_stops = 0  # of those, lines the patient stopped himself before they were judged (issue 10)
        self.n_first_line = 0
        self.tramadol_tried = False  # a P7 tramadol line was started (or a bridge judged or not tolerated)
        self.tramadol_failed = False  # tramadol judged failed: inadequate after an adequate trial, or not
        # tolerated (P8 gate, S004 "strong opioids only if tramadol fails"); a patient's own stop is not a failure
        self.tramadol_reoffered = False  # P7.tramadol_reoffer: tramadol started again after the patient's stop
        self.strong_tried = False
        self.protocol_step = 0
        self.relieved_from = ""  # the treating state relief was reached in (maintenance, issue 10)
        self.n_relapses = 0
        self.tapering: list[tuple[int, float]] = []  # (drug, day its taper ends)
        self.taper_end = 0.0
        self.taper_rest: list[tuple[int, float, int, float]] = []  # tapers cut at `until`: (drug, dose, step, day)
        self.until = float("inf")  # loss to follow-up or horizon (set by the engine)
        self.last_pain = baseline
        self.intolerant = -1
        self.optimisable = False
        self.topical_tried = False
        self.consulted = False  # seen by the pain specialist (P9)
        self.assessed = 0.0  # day of the last documented assessment (evaluation, visit, strong-opioid start; P8)
        # The last evaluation or visit with an outcome: its day, and whether it found relief or a partial response
        # (P6.capsaicin_no_benefit: a capsaicin 8% patch is applied again only after such a benefit).
        self.judged_day = -1.0
        self.judged_benefit = False
        self.referred_from = ""  # the treating state the patient was referred from (care while waiting, P9)
        self.bridge_judged = False  # the tramadol bridge had an adequate trial without relief (P7, P8 gate)
        # P4.reoffer_own_stop: drugs the patient stopped himself before they failed, open once more (tramadol has
        # its own flags, P7.tramadol_reoffer); of those, the ones he was relieved on (restarted first on a relapse);
        # drugs already re-offered once.
        self.reopen: frozenset[int] = _NO_DRUGS
        self.reopen_first: frozenset[int] = _NO_DRUGS
        self.reoffered: frozenset[int] = _NO_DRUGS
        # The drugs the patient stopped himself since the last decision (day ``stopped_day``) and the re-opens
        # they bring: the decision taken at his stop does not offer the drug just stopped; a later one may
        # (:meth:`close_own_stops`). Drugs with an inadequate evaluation have failed: never re-opened, unless a
        # later relief with them running undid it (Evaluation._relief_clears).
        self.stopped_now: frozenset[int] = _NO_DRUGS
        self.stopped_day = -1.0
        self.reopen_next: frozenset[int] = _NO_DRUGS
        self.reopen_first_next: frozenset[int] = _NO_DRUGS
        self.failed_drugs: frozenset[int] = _NO_DRUGS
        # What each inadequate evaluation marked: (drugs judged, first-line classes it first marked failed, whether
        # it first marked the combination failed). A later relief with those drugs running clears it (P4).
        self.failure_marks: tuple[tuple[frozenset[int], frozenset[str], bool], ...] = ()
        self.last_relief_stop = -1  # the drug he last stopped himself while it relieved him: restarted first (P4)
        # P4.restart_dose: drug -> (the daily dose he was on when he stopped it himself while relieved, the dose
        # that relieved him; the taper step the restart climbs from, 0 for its usual first dose, P4.taper_reversed):
        # a restart aims at it (policy restart_dose); used up by the restart
        self.relief_dose: dict[int, tuple[float, float]] = {}
        self.n_consults = 0  # specialist consults so far (P9.re_referral)
        self.last_consult = -math.inf  # day the last consult started (P9.re_referral: referral.re_referral_after_days)
        # while refractory again too soon after a consult: the day the re-referral interval ends (P9.re_referral_deferred)
        self.deferred_until = -math.inf

    def _eligibility(self) -> tuple[list[int], list[tuple[int, str]], dict[int, str], int]:
        """(eligible drugs in order, last-resort drugs last; exclusions with their rule; last-resort rules;
        the patient's topical or -1) from the policy's order (P1, P5, P6, P11)."""
        ctx = self.ctx
        facts = self.facts
        drugs = ctx.tables.drugs
        pol = ctx.policy
        guideline = pol.protocol is None
        eligible: list[int] = []
        later: list[int] = []
        self.excluded: list[tuple[int, str]] = []
        self.last_resort: dict[int, str] = {}
        for j in ctx.order:
            d = drugs[j]
            why = contraindication(d, facts)
            if why is None and guideline and pol.cipn_exclusions and facts.etiology in CIPN \
                    and d.drug_class in CIPN_EXCLUDED_CLASSES:
                why = "P11.cipn_no_efficacy"
            if why is None and pol.serotonin == "avoid" and d.serotonergic and "ssri_use" in facts.flags:
                why = "P5.serotonin_avoid"
            if why is not None:
                self.excluded.append((j, why))
                continue
            lr = last_resort(d, facts)
            if lr is not None:  # P5: offered only after the other first-line classes
                self.last_resort[j] = lr
                later.append(j)
            else:
                eligible.append(j)
        topical = self._choose_topical()
        return eligible + later, self.excluded, self.last_resort, topical

    def _choose_topical(self) -> int:
        """P6: the policy's topical, or per patient lidocaine 5% with allodynia, capsaicin 8% otherwise (S000)."""
        ctx = self.ctx
        if ctx.policy.topicals == "never":
            return -1
        drugs = ctx.tables.drugs
        if ctx.topical >= 0:
            return ctx.topical if contraindication(drugs[ctx.topical], self.facts) is None else -1
        for j in (ctx.lidocaine, ctx.capsaicin):
            why = contraindication(drugs[j], self.facts)
            if why is None:
                return j
            if why != "P6.topical_localized":
                self.excluded.append((j, why))
        return -1

    # ---- guards (conditions of the pathway's transitions) ---------------------------------------
    # P4.relapse: back to the treating state the patient was relieved in.
    def relieved_in_topical(self) -> bool:
        return self.relieved_from == "topical"

    def relieved_in_first_line(self) -> bool:
        return self.relieved_from == "first_line"

    def relieved_in_add_on(self) -> bool:
        return self.relieved_from == "add_on"

    def relieved_in_switch(self) -> bool:
        return self.relieved_from == "switch"

    def relieved_in_tramadol(self) -> bool:
        return self.relieved_from == "tramadol"

    def relieved_in_strong_opioid(self) -> bool:
        return self.relieved_from == "strong_opioid"

    def localized_pain(self) -> bool:
        """P6: topicals are for localized pain."""
        return self.facts.localized

    def topical_allowed(self) -> bool:
        """P6: the policy uses topicals and a topical is suitable for this patient."""
        return self._topical_ok

    def can_add_topical(self) -> bool:
        """P6: a topical may be added to the running drugs at any stage (localized pain, none tried yet)."""
        return self.topical_addable()

    def topical_addable(self) -> bool:
        return self._topical_ok and self.facts.localized and (not self.topical_tried or self.topical in self.reopen) \
            and self.topical not in self.active

    def open_drug(self, j: int) -> bool:
        """P1/P4: drug ``j`` may be offered: never tried, or stopped by the patient himself and open once more
        (P4.reoffer_own_stop)."""
        return j not in self.tried or j in self.reopen

    def first_line_available(self) -> bool:
        """P1/P5: an eligible, untried first-line drug of a class that has not failed."""
        drugs = self.ctx.tables.drugs
        for j in self.eligible:  # a loop, not any(generator): a guard evaluated at most visits
            if (j not in self.tried or j in self.reopen) and drugs[j].drug_class not in self.failed_classes:
                return True
        return False

    def can_add_on(self) -> bool:
        """P4: exactly one oral first-line drug running, no failed combination, and the complementary class
        (gabapentinoid with antidepressant, S000, S002) available."""
        drugs = self.ctx.tables.drugs
        oral = [d for d in self.active if drugs[d].drug_class in FIRST_LINE_CLASSES]
        if len(oral) != 1 or self.combination_failed:
            return False
        want = ANTIDEPRESSANTS if drugs[oral[0]].drug_class == "gabapentinoid" else ("gabapentinoid",)
        for j in self.eligible:
            if self.open_drug(j) and drugs[j].drug_class in want and drugs[j].drug_class not in self.failed_classes:
                return True
        return False

    def close_own_stops(self, before: float) -> None:
        """P4.reoffer_own_stop, P7.tramadol_reoffer: at a decision on day ``before``, the drugs the patient
        stopped himself on an earlier day become open to it, each once its own taper has ended (a re-offer
        answers a relapse after the stop, never the decision at the stop nor one while he is still tapering
        off the drug he chose to stop, unless it relieved him: P4.taper_reversed); a decision on the stop's own
        day is the decision at the stop."""
        if not self.stopped_now or self.stopped_day >= before - 1e-9:
            return
        held = frozenset(j for j, end in self.tapering if end > before + 1e-9 and j not in self.relief_dose) \
            & self.stopped_now
        self.reopen = self.reopen | (self.reopen_next - held)
        self.reopen_first = self.reopen_first | (self.reopen_first_next - held)
        self.reopen_next = self.reopen_next & held
        self.reopen_first_next = self.reopen_first_next & held
        self.stopped_now = held

    def restart_available(self) -> bool:
        """P4.reoffer_own_stop: a first-line drug that relieved the patient before his own stop may be restarted
        (eligible, of a class that has not failed): a working regimen, not a new one."""
        drugs = self.ctx.tables.drugs
        for j in self.reopen_first:
            if j in self.eligible and drugs[j].drug_class in FIRST_LINE_CLASSES \
                    and drugs[j].drug_class not in self.failed_classes:
                return True
        return False

    def has_untried_first_line(self) -> bool:
        """P4: an alternative first-line class is left, within the policy's number of regimens
        (``max_first_line_regimens``); a restart of a drug that relieved (P4.reoffer_own_stop) is not a new
        regimen: neither counted nor blocked."""
        if self.n_first_line >= self.ctx.policy.max_first_line_regimens:
            return self.restart_available()
        return self.first_line_available()

    def restarts_own_stop(self, j: int, rule: str) -> bool:
        """Whether starting drug ``j`` under ``rule`` offers once more a drug he stopped himself (P4.reoffer_own_stop,
        or tramadol by P7.tramadol_reoffer): such a start aims at ``relief_dose[j]`` when he stopped it while
        relieved (P4.restart_dose)."""
        return j in self.reopen or rule == "P7.tramadol_reoffer"

    def tramadol_allowed(self) -> bool:
        """P7: tramadol only after documented failure of a first-line agent, if the policy uses it; P5: not
        with a serotonergic drug under the policy ``serotonin: avoid``."""
        ctx = self.ctx
        pol = ctx.policy
        if pol.tramadol == "never" or self.tramadol_failed:
            return False
        if self.tramadol_tried and (self.tramadol_reoffered or not pol.tramadol_reoffer or ctx.tramadol in self.active
                                    or ctx.tramadol in self.stopped_now):
            return False  # P7.tramadol_reoffer: once more only after the patient's own stop (it has not failed)
        if not self.documented_failure() and "tramadol_first_line" not in pol.declared_departures:
            return False
        if pol.serotonin == "avoid":
            drugs = ctx.tables.drugs
            if "ssri_use" in self.facts.flags or (
                    pol.tramadol_mode == "add" and any(drugs[d].serotonergic for d in self.active)):
                return False
        return contraindication(ctx.tables.drugs[ctx.tramadol], self.facts) is None

    def documented_failure(self) -> bool:
        """P7: a first-line agent judged failed (inadequate after its adequate trial) or not tolerated (S000
        "only after documented failure of first-line agents"); a patient's own stop documents no failure."""
        return any(c in FIRST_LINE_CLASSES for c in self.failed_agent_classes)

    def failed_lines(self) -> int:
        """P9.referral_criteria: lines ended without relief, not counting the patient's own stops."""
        return self.n_failed - self.n_self_stops

    def strong_opioid_gate(self) -> bool:
        """P8: two first-line classes and a combination failed, tramadol failed (S004 "strong opioids only if
        tramadol fails": judged inadequate after its adequate trial, or not tolerated), misuse risk screened,
        moderate-to-severe pain (NRS >= 4), not HIV neuropathy (S004)."""
        return self._gate_block() is None

    def _gate_block(self) -> str | None:
        ctx = self.ctx
        pol = ctx.policy
        gate = pol.strong_opioid
        if not gate.allowed or self.strong_tried:
            return "closed"
        departure = pol.protocol is not None and "early_strong_opioid" in pol.declared_departures
        if not departure:
            first_failed = sum(1 for c in self.failed_agent_classes if c in FIRST_LINE_CLASSES)
            if first_failed < gate.require_failed_classes:
                return "prerequisites"
            if gate.require_combination and not self.combination_failed:
                return "prerequisites"
            if gate.require_tramadol and not self.tramadol_failed and self._tramadol_possible():
                return "prerequisites"
        if gate.misuse_screen and gate.exclude_high_misuse_risk and self.misuse_high:
            return "misuse"
        if contraindication(ctx.tables.drugs[ctx.strong], self.facts) is not None:
            return "contraindicated"
        if gate.hiv == "avoid" and self.etiology == HIV:
            return "P8.hiv_caution"
        if self.last_pain < gate.min_nrs:
            return "P8.nrs_threshold"
        return None

    def strong_opioid_notes(self) -> tuple[tuple[int, str], ...]:
        """``excluded`` rows to log when only HIV neuropathy or NRS < 4 keep the strong opioid out (P8)."""
        why = self._gate_block()
        if why in ("P8.hiv_caution", "P8.nrs_threshold"):
            return ((self.ctx.strong, why),)
        return ()

    def _tramadol_possible(self) -> bool:
        ctx = self.ctx
        return ctx.policy.tramadol != "never" and contraindication(ctx.tables.drugs[ctx.tramadol], self.facts) is None

    def referral_allowed(self) -> bool:
        """P9: referral while the patient has had fewer consults than ``referral.max_consults``
        (P9.re_referral: refractory again after a consult, referred again; assumption); capacity decides how
        long it takes."""
        return self.n_consults < self.ctx.policy.referral.max_consults

    def deferring_re_referral(self) -> bool:
        """P9.re_referral_deferred: back in primary care while the re-referral interval runs (the relief, the
        referral and the loss to follow-up that end it leave the discharged state; a final discharge stays)."""
        return self.deferred_until > -math.inf

    def seen_by_specialist(self) -> bool:
        """P9.discharge_plan: discharge back to primary care follows a specialist consult."""
        return self.consulted
