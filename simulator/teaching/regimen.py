"""What runs, read from the event log as the narration walks it (:class:`Regimen`), and why a patient left care
(:func:`leaving_reason`).

A drug runs from its ``drug_start`` row to its ``drug_stop`` row: a drug being tapered off (``taper_start``,
then ``P5.taper_step`` dose changes) still runs, at its taper dose, until the ``P5.taper_complete`` stop; it is no
longer part of the regimen the patient continues. The narration says what runs from here, so that it never
says "no drug running" while a taper goes on, nor names one drug of a combination as the whole regimen.
Imports nothing of simulator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SAME_DAY = 1e-6
"""Two rows are on the same moment when their days differ by less than this (the log's days are rounded to
1e-3 d, and rows of one decision share the same day)."""


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass
class Regimen:
    """The drugs running at a row of the event log: taken (in start order) and, among them, those tapering off,
    with the dose each runs at."""

    taken: list[str] = field(default_factory=list)
    tapering: set[str] = field(default_factory=set)
    dose: dict[str, float] = field(default_factory=dict)

    def apply(self, row: dict[str, Any]) -> None:
        """Update with one event-log row (a dict of the readable log's columns)."""
        ev, drug = str(row["event"]), row.get("drug")
        if ev == "dropout":
            self.taken.clear()
            self.tapering.clear()
            return
        if _is_missing(drug) or ev not in ("drug_start", "dose_change", "taper_start", "drug_stop"):
            return
        drug = str(drug)
        if ev == "drug_start":
            if drug not in self.taken:
                self.taken.append(drug)
            self.tapering.discard(drug)
        elif ev == "taper_start":
            self.tapering.add(drug)
        elif ev == "drug_stop":
            self.taken = [d for d in self.taken if d != drug]
            self.tapering.discard(drug)
            self.dose.pop(drug, None)
            return
        if not _is_missing(row.get("dose")) and (ev != "taper_start"):
            self.dose[drug] = float(row["dose"])

    @property
    def continuing(self) -> list[str]:
        """The drugs taken that are not being tapered off (the regimen the patient goes on with)."""
        return [d for d in self.taken if d not in self.tapering]

    @property
    def tapering_off(self) -> list[str]:
        return [d for d in self.taken if d in self.tapering]

    def copy(self) -> Regimen:
        return Regimen(list(self.taken), set(self.tapering), dict(self.dose))

    def words(self, name: Callable[[str, float | None], str], with_dose: bool = True) -> str:
        """'pregabalin 300 mg/day + duloxetine 60 mg/day', '..., with nortriptyline tapering off', or '' when
        nothing runs. ``name(drug, dose)`` gives a drug's words (with its dose when given)."""
        def one(d: str) -> str:
            return name(d, self.dose.get(d) if with_dose else None)

        on = " + ".join(one(d) for d in self.continuing)
        off = " and ".join(name(d, None) for d in self.tapering_off)
        if on and off:
            return f"{on}, with {off} tapering off"
        if off:
            return f"{off} tapering off"
        return on


@dataclass(frozen=True)
class Leaving:
    """Why a patient leaves care: ``kind`` (a key of :data:`simulator.teaching.words.LEAVING_WORDS`), the
    ``cause`` before it (an ``after_*`` kind, or ``"lost"`` when nothing was decided) and the ``drug`` of that
    cause's row (an own stop, a stop for intolerance), '' if none."""

    kind: str
    cause: str
    drug: str = ""


def leaving_reason(rows: list[dict[str, Any]], at: int) -> Leaving:
    """Why the patient leaves care at row ``at`` (a row of the leaving: a ``drug_stop`` or the ``dropout`` row,
    rule X.dropout or X.left_treatment). One of:

    * ``"left_treatment"``: usual care's X.left_treatment, the patient did not come back for another pain drug;
    * ``"after_own_stop"``, ``"after_intolerance"``, ``"after_failed_line"``, ``"after_relapse"``: the patient
      decided to leave at the decision that followed the own stop of a drug, a drug stopped as not tolerated, an
      evaluation without relief, or relief lost at a maintenance visit (the engine's named assumption
      dropout_after_failed_line, engine/evaluation.py ``_decide_after``): the leaving falls on that decision's
      day, or on the day a taper under way then completes (the taper completes as prescribed, engine/stops.py
      ``_drop_out``);
    * ``"lost"``: lost to follow-up, on a day of its own drawn from the follow-up rate (during a trial,
      maintenance, a taper or the wait for the specialist).

    The trigger is the last such row since the last transition (a relapse transition is looked through to its
    cause on the same day)."""
    cause, drug = _cause(rows, at)
    kind = "left_treatment" if str(rows[at]["rule"]) == "X.left_treatment" else cause
    return Leaving(kind, cause, drug)


def _cause(rows: list[dict[str, Any]], at: int) -> tuple[str, str]:
    day = float(rows[at]["day"])
    taper_done = any(str(x["event"]) == "drug_stop" and str(x["rule"]) == "P5.taper_complete"
                     and abs(float(x["day"]) - day) < SAME_DAY for x in rows[:at])
    relapse_day = None
    for x in reversed(rows[:at]):
        ev, rule = str(x["event"]), str(x["rule"])
        if relapse_day is not None and abs(float(x["day"]) - relapse_day) >= SAME_DAY:
            return ("after_relapse" if abs(relapse_day - day) < SAME_DAY or taper_done else "lost"), ""
        if ev == "transition":
            if str(x["trigger"]) != "relapse":
                break
            relapse_day = float(x["day"])
            continue
        if ev == "dose_change" and rule == "P3.dose_optimisation":
            break  # the failed evaluation was answered by raising the dose: no decision to leave followed
        if ev in ("evaluation", "maintenance_visit"):
            outcome = str(x["outcome"])
            if outcome == "relief" and relapse_day is None:
                break  # relief: nothing was decided
            trigger = "after_failed_line" if ev == "evaluation" else "after_relapse"
        elif ev in ("drug_stop", "taper_start") and rule == "X.patient_stop":
            trigger = "after_own_stop"
        elif ev in ("drug_stop", "taper_start") and not _is_missing(x.get("adverse_event")):
            trigger = "after_intolerance"
        else:
            continue
        if abs(float(x["day"]) - day) < SAME_DAY or taper_done:
            return trigger, ("" if _is_missing(x.get("drug")) else str(x["drug"]))
        return "lost", ""
    if relapse_day is not None:
        return ("after_relapse" if abs(relapse_day - day) < SAME_DAY or taper_done else "lost"), ""
    return "lost", ""
