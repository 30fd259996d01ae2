"""The protocol policy: the decisions of a trial-style fixed sequence of drugs (rule ``X.protocol_step``).

Owns :func:`protocol_start` and :func:`protocol_next`, which :mod:`simulator.model.decisions` calls while a
policy's :class:`~simulator.model.policy.Protocol` governs (its schema is in :mod:`simulator.model.policy`).
Opioids still go through their own triggers, so the pathway's guards (P7, the P8 gate) apply.
"""

from __future__ import annotations

from .catalog import FIRST_LINE_CLASSES
from .policy_context import Decision, PolicyContext, decision

_TRIGGER_BY_CLASS = {"gabapentinoid": "start_first_line", "snri": "start_first_line", "tca": "start_first_line",
                     "topical": "start_topical", "weak_opioid": "escalate_tramadol",
                     "strong_opioid": "escalate_strong_opioid"}
_ADD_TRIGGER = {"topical": "add_topical", "weak_opioid": "escalate_tramadol",
                "strong_opioid": "escalate_strong_opioid"}


def protocol_start(p, ctx: PolicyContext, k: int, how: str) -> Decision:
    """Start step ``k``'s drug: at the first visit (``start``), added to the regimen, or switched to.

    Opioids go through their own triggers whatever the protocol says, so P7 and the P8 gate apply
    (a strong opioid before the prerequisites needs the declared departure ``early_strong_opioid``)."""
    steps = ctx.policy.protocol.steps
    step = steps[k]
    p.protocol_step = k
    j = ctx.by_name[step.drug]
    drug = ctx.tables.drugs[j]
    if how == "add":
        trigger = _ADD_TRIGGER.get(drug.drug_class, "add_on")
    elif how == "switch":
        trigger = "switch" if drug.drug_class in FIRST_LINE_CLASSES else _TRIGGER_BY_CLASS[drug.drug_class]
    else:
        trigger = _TRIGGER_BY_CLASS[drug.drug_class]
    if step.dose == "max_tolerated":
        target = drug.max_dose
    elif step.dose == "target":
        target = 0.0
    else:
        target = float(step.dose)
    return decision(trigger, (j,), stop_all=how == "switch", rule="X.protocol_step", eval_after=7.0 * step.weeks,
                    target=target)


def protocol_next(p, ctx: PolicyContext, outcome: str, pain: float) -> Decision:
    """End of a protocol step: move to the next step when NRS is above the threshold, else continue."""
    steps = ctx.policy.protocol.steps
    k = p.protocol_step
    if k + 1 >= len(steps):
        return decision("stay", rule="X.protocol_step")
    step = steps[k]
    if outcome == "intolerable":
        return protocol_start(p, ctx, k + 1, "switch")
    if pain > step.next_if_nrs_above:
        return protocol_start(p, ctx, k + 1, step.action)
    p.protocol_step = k + 1
    return decision("continue", rule="X.protocol_step", eval_after=7.0 * steps[k + 1].weeks)
