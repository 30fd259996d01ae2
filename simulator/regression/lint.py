"""Static checks of the pathway definition and of a policy, before any simulation (``painpath lint``).

Every function takes the definition as arguments (states, transitions, ...) so a test can feed a
broken pathway; :func:`lint_pathway` with no arguments checks the packaged one
(:data:`simulator.model.pathway.STATES` / :data:`~simulator.model.pathway.TRANSITIONS`).

Pathway checks: every state reachable from ``assessment``; no dead end except the terminal states;
every treating state has an exit for every evaluation outcome; escalation order (P7, P8); every rule id
in the transitions and in the decision code resolvable in ``rules.yaml``. Policy checks: relaxations of a
guard (opioid gate, misuse screen, trial length, titration speed) that are not declared as departures.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from ..inputs.compiled import source_of
from ..model.pathway import OUTCOMES, STATES, TERMINAL, TRANSITIONS, TREATING, Edge
from ..model.rules import load_rules

ERROR, WARNING, INFO = "error", "warning", "info"
RULE_ID = re.compile(r"^(P\d{1,2}|X)(\.[a-z][a-z0-9_]*)*$")
# Line of therapy of each state, for the escalation order (P7: tramadol after first line; P8: strong
# opioids after two first-line classes and a combination, i.e. from add_on/switch or later).
ESCALATION_RANK: dict[str, int] = {"assessment": 0, "topical": 1, "first_line": 1, "add_on": 2, "switch": 2,
                                   "tramadol": 3, "strong_opioid": 4,
                                   # after a failed specialist consult the remaining options resume behind
                                   # their own guards (P9.discharge_plan)
                                   "specialist_care": 2}
STRONG_MIN_RANK = 2  # P8: earliest line from which the prerequisites can have been met
TRAMADOL_MIN_RANK = 1  # P7: after a first-line (or topical) trial
MAINTENANCE_EXITS = frozenset({"relapse", "drop_out"})  # how a relieved patient leaves maintenance (issue 10)
GATE_GUARDS: dict[str, str] = {"strong_opioid": "strong_opioid_gate", "tramadol": "tramadol_allowed"}


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # error | warning | info
    subject: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def reachable(transitions: Iterable[Edge], initial: str = "assessment") -> set[str]:
    """States reachable from ``initial`` over the transition graph."""
    out: dict[str, set[str]] = {}
    for e in transitions:
        for s in e.source:
            out.setdefault(s, set()).add(e.dest)
    seen = {initial}
    todo = [initial]
    while todo:
        s = todo.pop()
        for d in out.get(s, ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def lint_pathway(states: Sequence[str] = STATES, transitions: Sequence[Edge] = TRANSITIONS, *,
                 initial: str = "assessment", terminal: Iterable[str] = TERMINAL,
                 treating: Iterable[str] = TREATING, outcomes: Sequence[str] = OUTCOMES,
                 rule_modules: Sequence[ModuleType] | None = None) -> list[Finding]:
    """All static findings about a pathway definition (errors, warnings and explanatory notes)."""
    terminal = frozenset(terminal)
    treating = tuple(treating)
    found: list[Finding] = []
    known = set(states)
    for e in transitions:
        for s in (*e.source, e.dest):
            if s not in known:
                found.append(Finding("unknown_state", ERROR, e.trigger, f"edge '{e.trigger}' names unknown state '{s}'"))

    # Reachability
    if initial not in known:
        found.append(Finding("reachable", ERROR, initial, f"initial state '{initial}' is not a state"))
    seen = reachable(transitions, initial)
    for s in states:
        if s not in seen:
            found.append(Finding("reachable", ERROR, s, f"state '{s}' cannot be reached from '{initial}'"))

    # Dead ends
    exits: dict[str, list[Edge]] = {s: [] for s in states}
    for e in transitions:
        for s in e.source:
            exits.setdefault(s, []).append(e)
    for s in states:
        if s in terminal:
            if exits.get(s) and {e.trigger for e in exits[s]} <= MAINTENANCE_EXITS:
                found.append(Finding("dead_end", INFO, s, f"maintenance: '{s}' is left only by "
                                     f"{', '.join(sorted({e.trigger for e in exits[s]}))} (P4.relapse, X.dropout)"))
            elif exits.get(s):
                found.append(Finding("dead_end", WARNING, s,
                                     f"terminal state '{s}' has exits: {', '.join(e.trigger for e in exits[s])}"))
            continue
        if not exits.get(s):
            found.append(Finding("dead_end", ERROR, s, f"state '{s}' has no exit and is not terminal"))
    if "specialist_care" in known and "specialist_care" not in terminal and exits.get("specialist_care"):
        trig = ", ".join(sorted({e.trigger for e in exits["specialist_care"]}))
        found.append(Finding("dead_end", INFO, "specialist_care",
                             f"not a dead end: it leaves by {trig}; a successful intervention leads to 'relieved', a "
                             "failed consult to the pathway's remaining options or 'discharged' (P9.discharge_plan)"))

    # Every treating state answers every evaluation outcome
    for s in treating:
        for o in outcomes:
            if not any(s in e.source and o in e.outcomes and e.dest != s for e in transitions):  # a self-loop is no exit
                found.append(Finding("outcome_exits", ERROR, s, f"treating state '{s}' has no exit for outcome '{o}'"))

    # Escalation order (P7, P8)
    for e in transitions:
        if e.dest not in GATE_GUARDS or e.trigger == "relapse":  # a relapse returns to a line already entered
            continue
        guard = GATE_GUARDS[e.dest]
        min_rank = STRONG_MIN_RANK if e.dest == "strong_opioid" else TRAMADOL_MIN_RANK
        rule = "P8" if e.dest == "strong_opioid" else "P7"
        for s in e.source:
            if s == e.dest:  # a self-loop (a topical added in this line) escalates nothing
                continue
            rank = ESCALATION_RANK.get(s)
            if rank is None:
                found.append(Finding("escalation", ERROR, f"{s}->{e.dest}",
                                     f"edge '{e.trigger}' enters '{e.dest}' from '{s}', which is not a line of therapy ({rule})"))
            elif rank >= ESCALATION_RANK[e.dest]:
                found.append(Finding("escalation", ERROR, f"{s}->{e.dest}",
                                     f"edge '{e.trigger}' enters '{e.dest}' from a later line '{s}' ({rule})"))
            elif guard not in e.conditions:
                found.append(Finding("escalation", ERROR, f"{s}->{e.dest}",
                                     f"edge '{e.trigger}' enters '{e.dest}' from '{s}' without the '{guard}' guard ({rule})"))
            elif rank < min_rank:
                found.append(Finding("escalation", WARNING, f"{s}->{e.dest}",
                                     f"edge '{e.trigger}' enters '{e.dest}' from '{s}', earlier than {rule} allows; only "
                                     f"its '{guard}' guard stops it, so it can fire only under a declared departure"))
    if "tramadol" in known and "strong_opioid" in known:
        into_strong = [e for e in transitions if e.dest == "strong_opioid"]
        if into_strong and not any("tramadol" in e.source for e in into_strong):
            found.append(Finding("escalation", ERROR, "tramadol->strong_opioid",
                                 "no edge from 'tramadol' to 'strong_opioid': P7 puts tramadol before any strong opioid"))

    # Rule ids
    rules = load_rules()
    for e in transitions:
        if not e.rule:
            found.append(Finding("rule_ids", ERROR, e.trigger, f"edge '{e.trigger}' -> {e.dest} cites no rule"))
        elif not rules.is_resolvable(e.rule):
            found.append(Finding("rule_ids", ERROR, e.trigger, f"edge '{e.trigger}' cites unknown rule '{e.rule}'"))
    if rule_modules is None:
        from ..engine import adverse, evaluation, lines, maintenance, process, referral, simulation, stops
        from ..model import patient, policy, safety

        engine = (simulation, process, evaluation, lines, stops, adverse, maintenance, referral)
        rule_modules = (policy, *engine, safety, patient)
    for mod in rule_modules:
        for rid, line in rule_ids_in_source(source_of(mod)):
            if not rules.is_resolvable(rid):
                found.append(Finding("rule_ids", ERROR, f"{mod.__name__}:{line}",
                                     f"rule id '{rid}' used in {mod.__name__} line {line} is not in rules.yaml"))
    return found


def rule_ids_in_source(source: str) -> list[tuple[str, int]]:
    """String constants in Python source that look like rule ids (``P4.partial_add``, ``X.dropout``)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and RULE_ID.match(node.value):
            out.append((node.value, node.lineno))
    return out


def lint_policy(policy: Any, catalog: Any = None) -> list[Finding]:
    """Guard relaxations in a policy that are not declared as departures."""
    from ..model.catalog import load_catalog

    cat = catalog or load_catalog()
    declared = set(policy.declared_departures)
    found: list[Finding] = []
    g = policy.strong_opioid
    if g.allowed:
        relaxed = []
        if g.require_failed_classes < 2:
            relaxed.append(f"require_failed_classes: {g.require_failed_classes} (P8: 2)")
        if not g.require_combination:
            relaxed.append("require_combination: false")
        if not g.require_tramadol:
            relaxed.append("require_tramadol: false")
        if relaxed:
            sev = INFO if "early_strong_opioid" in declared else ERROR
            found.append(Finding("policy_gate", sev, "policy.strong_opioid",
                                 f"the P8 gate is relaxed ({'; '.join(relaxed)})" +
                                 (": declared departure early_strong_opioid" if sev == INFO else
                                  " without declaring 'early_strong_opioid'")))
        if not g.misuse_screen:
            sev = INFO if "no_misuse_screen" in declared else ERROR
            found.append(Finding("policy_gate", sev, "policy.strong_opioid.misuse_screen",
                                 "strong opioids without the misuse-risk screen" +
                                 (" (declared no_misuse_screen)" if sev == INFO else " without declaring 'no_misuse_screen'")))
    for cls in ("gabapentinoid", "snri", "tca", "weak_opioid", "strong_opioid", "topical"):
        override = getattr(policy.trial_days, cls)
        if override is None:
            continue
        need = max(d.adequate_trial_days for d in cat.drugs.values() if d.drug_class == cls)
        if override < need:
            sev = INFO if "short_trial" in declared else ERROR
            found.append(Finding("policy_trial", sev, f"policy.trial_days.{cls}",
                                 f"{override} days at target dose is shorter than the catalogue's {need} (P3)" +
                                 ("" if sev == INFO else "; declare 'short_trial' to simulate it on purpose")))
    strong_need = cat.drugs[g.drug].adequate_trial_days if g.drug in cat.drugs else 0
    if g.allowed and g.max_trial_days < strong_need:
        sev = INFO if "short_trial" in declared else ERROR
        found.append(Finding("policy_trial", sev, "policy.strong_opioid.max_trial_days",
                             f"{g.max_trial_days} days is shorter than the adequate trial of {strong_need} (P3, P8)"))
    if policy.titration_speed < 1.0 and "fast_titration" not in declared:
        found.append(Finding("policy_titration", ERROR, "policy.titration_speed",
                             "titration faster than the schedule without declaring 'fast_titration' (P13)"))
    strong_steps = []
    if policy.protocol is not None:  # P8: a protocol step that adds a strong opioid goes through the gate
        for k, step in enumerate(policy.protocol.steps):
            if step.drug in cat.drugs and cat.drugs[step.drug].drug_class == "strong_opioid":
                strong_steps.append(k)
                sev = INFO if "early_strong_opioid" in declared else WARNING
                found.append(Finding(
                    "protocol_gate", sev, f"policy.protocol.steps[{k}]",
                    f"step {k + 1} starts {step.drug}: " + (
                        "declared departure early_strong_opioid, it starts without the P8 prerequisites"
                        if sev == INFO else "it must pass the P8 gate (two first-line classes and a combination "
                        "failed, tramadol, misuse screen, NRS >= 4); patients who fail it are referred instead. "
                        "Declare 'early_strong_opioid' to simulate the step without the prerequisites")))
    used = {
        "early_strong_opioid": bool(strong_steps) or g.allowed and (
            g.require_failed_classes < 2 or not g.require_combination or not g.require_tramadol),
        "no_misuse_screen": g.allowed and not g.misuse_screen,
        "fast_titration": policy.titration_speed < 1.0,
        "short_trial": any(f.check == "policy_trial" for f in found),
        "tramadol_first_line": policy.tramadol != "never",
        **{d: True for d, _ in policy.usual_care.departures_needed()},  # usual care (simulator/model/care.py)
    }
    why = dict(policy.usual_care.departures_needed())
    for d in sorted(declared):
        if not used.get(d, False):
            found.append(Finding("policy_departure", WARNING, "policy.declared_departures",
                                 f"'{d}' is declared but no setting of this policy uses it"))
        else:  # listed, so a reader of lint sees every departure the scenario takes on purpose
            found.append(Finding("policy_departure", INFO, "policy.declared_departures",
                                 f"declared departure {d}" + (f": {why[d]}" if d in why else "")))
    return found


def lint(scenario: Any = None) -> list[Finding]:
    """Pathway findings, plus the scenario's policy findings when a scenario is given."""
    found = lint_pathway()
    if scenario is not None:
        found += lint_policy(scenario.policy)
    return found


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)
