"""One patient's journey through the pathway, told in plain clinical language with the reason for each step.

The journey is made in three parts, one module each:

* who is simulated and how (alone, with the draws it has in the full cohort; the pain clinic's queue is the one
  thing that differs): :mod:`simulator.teaching.one_patient` (:class:`Setup`, :func:`setup_from_scenario`,
  :func:`setup_from_cohort`, :func:`setup_from_case`, :func:`simulate`, :func:`profile`);
* the event log told as steps: :mod:`simulator.teaching.steps` (:func:`narrate`, :class:`Step`), reading what
  runs and why a patient leaves care from the log (:mod:`simulator.teaching.regimen`), with the words of
  :mod:`simulator.teaching.words` and the rule texts of ``simulator/data/rules.yaml``;
* the journey itself, here: :func:`trace` (simulate, tell, the path of states and its words) and
  :func:`teaching_seeds`.

Rendering a journey for a reader (text, terminal, HTML page with the flowchart) is :mod:`simulator.teaching.journey`.
The names the other tools import from here (the setups, :func:`simulate`, :func:`narrate`, ...) are re-exported.

Typical use::

    setup = setup_from_scenario(load_scenario("scenarios/guideline.yaml"), patient=3, seed=1)
    journey = trace(setup)
    print(journey_text(journey)); Path("j.html").write_text(journey_html(journey))  # simulator.teaching.journey
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..model.pathway import TERMINAL
from . import diagram
from .cases import Case
from .one_patient import (
    CASE_NOTE,
    NOT_CLINICAL,
    QUEUE_CAVEAT,
    Setup,
    profile,
    setup_from_case,
    setup_from_cohort,
    setup_from_scenario,
    simulate,
)
from .regimen import Regimen
from .steps import OUTCOME_WORDS, Step, dose_words, narrate, unit_for
from .words import DEFERRED_END, LIMIT_WORDS, drug_name

__all__ = ["CASE_NOTE", "LIMIT_WORDS", "NOT_CLINICAL", "OUTCOME_WORDS", "QUEUE_CAVEAT", "Journey", "Setup", "Step",
           "dose_words", "drug_name", "narrate", "path_of", "path_words", "profile", "setup_from_case", "setup_from_cohort",
           "setup_from_scenario", "simulate", "teaching_seeds", "trace", "unit_for"]


@dataclass
class Journey:
    setup: Setup
    profile: list[tuple[str, str]]
    steps: list[Step]
    events: pd.DataFrame
    states: list[str]
    edges: list[diagram.EdgeKey]
    final_state: str
    relief_day: float | None
    path: list[str]
    """The visited states in words (the Path line): a state entered by a relapse is named by what ran."""

    @property
    def decisions(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "decision"]

    def rule_ids(self) -> set[str]:
        return {str(r) for r in self.events["rule"].dropna().astype(str)}


def teaching_seeds(case: Case, candidates: range = range(200), limit: int = 5) -> list[int]:
    """Simulation seeds under which the case's journey shows every rule it claims to teach.

    A case's recorded ``seed`` depends on the clinical model: after a recalibration, run
    ``painpath trace --case NAME --find-seeds`` and record one of these in the case file.
    """
    found: list[int] = []
    for s in candidates:
        j = trace(setup_from_case(case.model_copy(update={"seed": s})))
        if set(case.rules) <= j.rule_ids():
            found.append(s)
            if len(found) >= limit:
                break
    return found


def path_of(events: pd.DataFrame) -> tuple[list[str], list[diagram.EdgeKey]]:
    """Visited states (in order, from assessment) and the edges taken."""
    states = ["assessment"]
    edges: list[diagram.EdgeKey] = []
    for ev, state, trig in zip(events["event"].astype(str), events["state"].astype(str),
                               events["trigger"].astype(object), strict=True):
        if ev not in ("transition", "dropout"):
            continue
        t = "drop_out" if ev == "dropout" else str(trig)
        edges.append((states[-1], t, state))
        states.append(state)
    return states, edges


def path_words(events: pd.DataFrame) -> list[str]:
    """The visited states of :func:`path_of` in words. A relapse returns the patient to a pathway state (the one
    he was relieved in, or referred from when the specialist's care relieved him), which need not be what ran:
    it is named by the drugs taken when relief was lost ("relapse on nortriptyline", "relapse on no drug"),
    read from the log (a drug runs from its start row to its stop row)."""
    words = ["assessment"]
    regimen = Regimen()
    before = regimen.copy()  # what ran before the rows of the current day
    day = None
    for r in events.to_dict("records"):
        if day is None or float(r["day"]) > day + 1e-6:
            before, day = regimen.copy(), float(r["day"])
        regimen.apply(r)
        ev = str(r["event"])
        if ev not in ("transition", "dropout"):
            continue
        if ev == "transition" and str(r["trigger"]) == "relapse":
            ran = " + ".join(drug_name(d) for d in before.taken) or "no drug"
            words.append(f"relapse on {ran}")
        else:
            words.append(str(r["state"]).replace("_", " "))
    return words


def trace(setup: Setup) -> Journey:
    """Simulate the patient under the policy and tell the journey."""
    events = simulate(setup)
    steps = narrate(setup, events)
    states, edges = path_of(events)
    final = states[-1]
    relief = events[(events["event"] == "transition") & (events["state"] == "relieved")]["day"]
    horizon = setup.config.horizon_days
    if final not in TERMINAL:  # what still runs at the horizon, from the log
        regimen = Regimen()
        for r in events.to_dict("records"):
            regimen.apply(r)
        on = regimen.words(lambda d, x: dose_words(setup, d, x))
        steps.append(Step(horizon, "end", f"end of follow-up, still in {final.replace('_', ' ')}"
                          + (f", on {on}" if on else ", with no drug running")))
    last = events[events["event"] == "transition"].tail(1)
    if final == "discharged" and len(last) and str(last["rule"].iloc[0]) == "P9.re_referral_deferred" \
            and not (events["event"] == "dropout").any():  # the horizon came while the interval ran
        steps.append(Step(horizon, "end", DEFERRED_END))
    return Journey(setup, profile(setup), steps, events, states, edges, final,
                   float(relief.iloc[0]) if len(relief) else None, path_words(events))

