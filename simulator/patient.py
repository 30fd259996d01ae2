"""The patient model the pathway machine fires triggers on, and the pathway's guards.

One plain slotted object per simulated patient holds its state and treatment history. The guard
methods are the conditions named in :data:`simulator.pathway.TRANSITIONS`; each encodes a safety rule
(P5, P6, P7, P8) and reads the compiled policy. They are cheap: no pydantic, no logging.
"""

from __future__ import annotations

from .catalog import FIRST_LINE_CLASSES
from .policy import PolicyContext
from .safety import PatientFacts, contraindication


class PatientModel:
    __slots__ = ("idx", "state", "facts", "etiology", "baseline", "misuse_high", "ctx", "eligible", "excluded",
                 "active", "tried", "failed_classes", "combination_failed", "n_failed", "n_first_line",
                 "tramadol_tried", "strong_tried", "checks", "_topical_ok", "protocol_step",
                 "relieved_from", "n_relapses")

    def __init__(self, idx: int, facts: PatientFacts, baseline: float, misuse_high: bool,
                 ctx: PolicyContext) -> None:
        self.idx = idx
        self.state = "assessment"
        self.facts = facts
        self.etiology = facts.etiology
        self.baseline = baseline
        self.misuse_high = misuse_high
        self.ctx = ctx
        drugs = ctx.tables.drugs
        self.eligible: list[int] = []
        self.excluded: list[tuple[int, str]] = []
        for j in ctx.order:
            why = contraindication(drugs[j], facts)
            if why is None:
                self.eligible.append(j)
            else:
                self.excluded.append((j, why))
        self.active: list[int] = []
        self.tried: set[int] = set()
        self.failed_classes: set[str] = set()
        self.combination_failed = False
        self.n_failed = 0
        self.n_first_line = 0
        self.tramadol_tried = False
        self.strong_tried = False
        self.checks: set[str] = set()
        self.protocol_step = 0
        self.relieved_from = ""  # the treating state relief was reached in (maintenance, issue 10)
        self.n_relapses = 0
        self._topical_ok = (ctx.policy.topicals != "never"
                            and contraindication(drugs[ctx.topical], facts) is None)

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
        """P6: the policy uses topicals and the topical is not excluded for this patient."""
        return self._topical_ok

    def first_line_available(self) -> bool:
        """P1/P5: an eligible, untried first-line drug of a class that has not failed."""
        drugs = self.ctx.tables.drugs
        return any(j not in self.tried and drugs[j].drug_class not in self.failed_classes for j in self.eligible)

    def can_add_on(self) -> bool:
        """P4: exactly one first-line oral drug running, no failed combination, another class available."""
        drugs = self.ctx.tables.drugs
        oral = [d for d in self.active if drugs[d].drug_class in FIRST_LINE_CLASSES]
        if len(oral) != 1 or self.combination_failed:
            return False
        if self.ctx.policy.topicals == "add_on" and self.facts.localized and self.ctx.topical not in self.tried:
            return True
        cls = drugs[oral[0]].drug_class
        return any(j not in self.tried and drugs[j].drug_class != cls and drugs[j].drug_class not in self.failed_classes
                   for j in self.eligible)

    def has_untried_first_line(self) -> bool:
        """P4: an alternative first-line class is left, within the policy's number of regimens."""
        if self.n_first_line >= self.ctx.policy.max_first_line_regimens:
            return False
        return self.first_line_available()

    def tramadol_allowed(self) -> bool:
        """P7: tramadol only after documented failure of a first-line agent, if the policy uses it."""
        ctx = self.ctx
        if ctx.policy.tramadol == "never" or self.tramadol_tried:
            return False
        if self.n_failed < 1 and "tramadol_first_line" not in ctx.policy.declared_departures:
            return False
        return contraindication(ctx.tables.drugs[ctx.tramadol], self.facts) is None

    def strong_opioid_gate(self) -> bool:
        """P8: two first-line classes and a combination failed, tramadol tried, misuse risk screened."""
        ctx = self.ctx
        gate = ctx.policy.strong_opioid
        if not gate.allowed or self.strong_tried:
            return False
        first_failed = sum(1 for c in self.failed_classes if c in FIRST_LINE_CLASSES)
        if first_failed < gate.require_failed_classes:
            return False
        if gate.require_combination and not self.combination_failed:
            return False
        if gate.require_tramadol and not self.tramadol_tried and self._tramadol_possible():
            return False
        if gate.misuse_screen and gate.exclude_high_misuse_risk and self.misuse_high:
            return False
        return contraindication(ctx.tables.drugs[ctx.strong], self.facts) is None

    def _tramadol_possible(self) -> bool:
        ctx = self.ctx
        return ctx.policy.tramadol != "never" and contraindication(ctx.tables.drugs[ctx.tramadol], self.facts) is None

    def referral_allowed(self) -> bool:
        """P9: referral is always possible; capacity decides how long it takes."""
        return True
