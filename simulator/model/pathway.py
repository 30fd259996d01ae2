"""The guideline pathway: its one definition, as a ``transitions`` state machine.

``STATES`` and ``TRANSITIONS`` below are the single definition of the pathway. The same definition:

* builds the ``transitions.Machine`` (:func:`build_machine`) used for diagrams and as the reference
  implementation in tests;
* is compiled by :func:`compile_table` into a ``(state, trigger) -> [(guards, dest)]`` table of plain
  functions that the engine fires on the hot path (``PERFORMANCE.md``: 25x cheaper per trigger than
  the Machine, and no Machine per patient). ``tests/test_pathway.py`` proves both give identical
  trajectories.

Guards are names of methods on the engine's patient model (``simulator.engine.simulation.PatientModel``); they read
the policy and the patient's history and encode the safety rules of P5, P7 and P8. Which trigger to fire
is the policy's choice (``simulator.model.policy``); whether it may fire is the pathway's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions import Machine

# ------------------------------------------------------------------------------------------------
# States, grouped by line of therapy (the diagram draws the groups).
# ------------------------------------------------------------------------------------------------
STATES: tuple[str, ...] = (
    "assessment",
    "topical",
    "first_line",
    "add_on",
    "switch",
    "tramadol",
    "strong_opioid",
    "specialist_referral",
    "specialist_care",
    "relieved",
    "dropped_out",
    "discharged",
)
STATE_GROUPS: dict[str, tuple[str, ...]] = {
    "Assessment": ("assessment",),
    "First line (P1-P6)": ("topical", "first_line", "add_on", "switch"),
    "Second and third line (P7, P8)": ("tramadol", "strong_opioid"),
    "Specialist (P9)": ("specialist_referral", "specialist_care"),
    "Outcome": ("relieved", "dropped_out", "discharged"),
}
TERMINAL: frozenset[str] = frozenset({"relieved", "dropped_out", "discharged"})
"""Outcome states: out of care; back in primary care after a specialist consult with no pathway option left
(on the current regimen, if any drug still runs); or relieved (maintenance, which only relapse and drop-out leave)."""

TREATING: tuple[str, ...] = ("topical", "first_line", "add_on", "switch", "tramadol", "strong_opioid")
"""States in which a drug trial runs and is evaluated."""

# Evaluation outcomes every treating state must be able to answer (used by `painpath lint`).
OUTCOMES: tuple[str, ...] = ("relief", "partial", "none", "intolerable", "dropout")


@dataclass(frozen=True)
class Edge:
    trigger: str
    source: tuple[str, ...]
    dest: str
    conditions: tuple[str, ...] = ()
    rule: str = ""
    outcomes: tuple[str, ...] = ()  # which evaluation outcomes this edge answers (for lint)


_ANY_ACTIVE = ("assessment",) + TREATING + ("specialist_referral", "specialist_care")

TRANSITIONS: tuple[Edge, ...] = (
    # P1, P5, P6: the first treatment.
    Edge("start_topical", ("assessment",), "topical", ("localized_pain", "topical_allowed"), "P6"),
    Edge("start_first_line", ("assessment",), "first_line", ("first_line_available",), "P1"),
    # P4: relief at any evaluation (also after a specialist intervention).
    Edge("relief", TREATING + ("specialist_care",), "relieved", (), "P4", ("relief",)),
    # Topical failed or partial: start an oral first-line drug (P6 then P1).
    Edge("start_first_line", ("topical",), "first_line", ("first_line_available",), "P6",
         ("partial", "none", "intolerable")),
    # P4: partial response -> add a second first-line class (different mechanism); after an add-on that was
    # not tolerated, another add-on to the same base drug.
    Edge("add_on", ("first_line", "switch", "add_on"), "add_on", ("can_add_on",), "P4", ("partial", "intolerable")),
    # P6: for localized pain a topical can be added to the running drugs at any stage (the state is kept).
    *(Edge("add_topical", (s,), s, ("localized_pain", "can_add_topical"), "P6", ("partial", "none"))
      for s in ("first_line", "add_on", "switch", "tramadol", "strong_opioid")),
    # P4: no response or intolerance -> switch to an alternative first-line class.
    # After a failed specialist consult the pathway's remaining options stay open (P9.discharge_plan).
    Edge("switch", ("first_line", "switch", "add_on", "specialist_care"), "switch", ("has_untried_first_line",),
         "P4", ("partial", "none", "intolerable")),
    # P7: tramadol only after documented failure of first-line agents; offered once more from its own state
    # when the patient stopped it before it failed (P7.tramadol_reoffer).
    Edge("escalate_tramadol", ("first_line", "switch", "add_on", "specialist_care", "tramadol"), "tramadol",
         ("tramadol_allowed",), "P7", ("partial", "none", "intolerable")),
    # P8: strong opioids only after two first-line classes and a combination failed, after a screen.
    Edge("escalate_strong_opioid", ("tramadol", "add_on", "switch", "first_line", "specialist_care"),
         "strong_opioid", ("strong_opioid_gate",), "P8", ("partial", "none", "intolerable")),
    # P9: referral for refractory pain (policy criteria).
    Edge("refer", TREATING, "specialist_referral", ("referral_allowed",), "P9",
         ("partial", "none", "intolerable")),
    Edge("consult", ("specialist_referral",), "specialist_care", (), "P9.specialist_consult"),
    # P9: the regimen that continues while queued relieves the pain; the patient leaves the queue (policy).
    Edge("relief", ("specialist_referral",), "relieved", (), "P9.relieved_while_waiting", ("relief",)),
    # P9: after a consult with nothing left to try, back to primary care (on the current regimen, if any).
    Edge("discharge", TREATING + ("specialist_care",), "discharged", ("seen_by_specialist",), "P9.discharge_plan"),
    # P9: refractory again sooner than referral.re_referral_after_days after the last consult: back to primary
    # care (discharged, reviewed at the visit interval) until the interval ends; relief at a review ends it, and
    # still refractory when it ends, the patient is referred again (P9.re_referral_deferred, assumption).
    Edge("relief", ("discharged",), "relieved", ("deferring_re_referral",), "P9.re_referral_deferred", ("relief",)),
    Edge("refer", ("discharged",), "specialist_referral", ("deferring_re_referral", "referral_allowed"),
         "P9.re_referral_deferred"),
    Edge("drop_out", ("discharged",), "dropped_out", ("deferring_re_referral",), "X.dropout"),
    # Drop-out and loss to follow-up can happen anywhere before an outcome.
    Edge("drop_out", _ANY_ACTIVE, "dropped_out", (), "X.dropout", ("dropout",)),
    # Maintenance (issue 10): relief lost at a maintenance visit (or the regimen stopped) sends the patient
    # back to the treating state he was relieved in, where the policy decides the next step (P4.relapse).
    *(Edge("relapse", ("relieved",), s, (f"relieved_in_{s}",), "P4.relapse") for s in TREATING),
    # A relieved patient can be lost to follow-up too.
    Edge("drop_out", ("relieved",), "dropped_out", (), "X.dropout"),
    # Usual care (declared departures tramadol_first_line / early_strong_opioid): an opioid as index drug.
    Edge("escalate_tramadol", ("assessment",), "tramadol", ("tramadol_allowed",), "P7"),
    Edge("escalate_strong_opioid", ("assessment",), "strong_opioid", ("strong_opioid_gate",), "P8"),
)

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(e.trigger for e in TRANSITIONS))


def transitions_spec() -> list[dict[str, Any]]:
    """The definition in the dict form ``transitions.Machine`` takes."""
    return [
        {"trigger": e.trigger, "source": list(e.source), "dest": e.dest, "conditions": list(e.conditions)}
        for e in TRANSITIONS
    ]


def build_machine(model: Any = None, **kwargs: Any) -> Machine:
    """One shared Machine for the pathway (never one per patient; ``PERFORMANCE.md``).

    With ``model=None`` no patient is registered; fire events for any object with a ``state``
    attribute and the guard methods through ``machine.events[trigger].trigger(patient)``.
    """
    return Machine(model=model, states=list(STATES), transitions=transitions_spec(), initial="assessment",
                   auto_transitions=False, ignore_invalid_triggers=True, **kwargs)


Guard = Callable[[Any], bool]
Table = dict[tuple[str, str], tuple[tuple[tuple[Guard, ...], str], ...]]


def compile_table(model_class: type) -> Table:
    """Compile the definition into ``(state, trigger) -> ((guards, dest), ...)`` for the hot path.

    Candidates keep the definition's order, as transitions evaluates them: the first whose guards all
    pass wins. Guards are looked up once, as plain functions of the patient.
    """
    table: dict[tuple[str, str], list[tuple[tuple[Guard, ...], str]]] = {}
    for e in TRANSITIONS:
        guards = tuple(getattr(model_class, c) for c in e.conditions)
        for s in e.source:
            table.setdefault((s, e.trigger), []).append((guards, e.dest))
    return {k: tuple(v) for k, v in table.items()}


def fire(table: Table, patient: Any, trigger: str) -> bool:
    """Fire ``trigger`` for ``patient`` using the compiled table; True if the state changed."""
    cands = table.get((patient.state, trigger))
    if cands is None:
        return False
    for guards, dest in cands:
        for g in guards:
            if not g(patient):
                break
        else:
            patient.state = dest
            return True
    return False


def can_fire(table: Table, patient: Any, trigger: str) -> str | None:
    """The state ``trigger`` would move ``patient`` to now, or None (the guards of :func:`fire`, no move)."""
    for guards, dest in table.get((patient.state, trigger), ()):
        for g in guards:
            if not g(patient):
                break
        else:
            return dest
    return None


def edges_from(state: str) -> list[Edge]:
    return [e for e in TRANSITIONS if state in e.source]


def definition_fingerprint() -> str:
    """A stable text of the definition, hashed into run manifests."""
    lines = [f"state {s}" for s in STATES]
    lines += [f"{e.trigger}: {','.join(e.source)} -> {e.dest} if {','.join(e.conditions)} [{e.rule}]"
              for e in TRANSITIONS]
    return "\n".join(lines)
