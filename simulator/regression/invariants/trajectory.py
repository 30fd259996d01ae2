"""The trajectory being replayed: the patients table read as :class:`~.rules.Facts`, a drug being taken
(:class:`Line`, from its start to its stop) and what one patient's history tells the guideline so far
(:class:`Trajectory`). Plain state, no checks (they are in the Checker's mixins)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ...model.catalog import Drug
from .rules import Facts

PATIENT_FLAGS: tuple[str, ...] = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block",
                                  "cardiovascular_disease", "glaucoma", "orthostatic_hypotension", "ssri_use",
                                  "depression", "localized", "allodynia")
"""The boolean columns of the patients table the guideline reads (:class:`~.rules.Facts` ``flags``)."""


def column(df: pd.DataFrame, name: str) -> list[Any]:
    if name not in df.columns:
        return [None] * len(df)
    s = df[name]
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    return s.where(s.notna(), None).tolist()


def patient_facts(patients: pd.DataFrame) -> dict[tuple[int, int], Facts]:
    """Facts per (replication, patient) from a run's patients table."""
    out: dict[tuple[int, int], Facts] = {}
    flag_cols = [f for f in PATIENT_FLAGS if f in patients.columns]
    reps = patients["replication"].astype(int).tolist()
    pats = patients["patient"].astype(int).tolist()
    ages = patients["age"].astype(float).tolist()
    crcl = patients["crcl"].astype(float).tolist()
    etio = patients["etiology"].astype(str).tolist() if "etiology" in patients.columns else [""] * len(reps)
    flag_vals = [patients[f].fillna(False).astype(bool).tolist() for f in flag_cols]
    cache: dict[tuple[bool, ...], frozenset[str]] = {}
    for k in range(len(reps)):
        bits = tuple(vals[k] for vals in flag_vals)
        flags = cache.get(bits)
        if flags is None:
            flags = cache[bits] = frozenset(f for f, v in zip(flag_cols, bits, strict=True) if v)
        out[(reps[k], pats[k])] = Facts(ages[k], crcl[k], flags, etio[k])
    return out


class Line:
    """One drug being taken, from its start to its stop."""

    __slots__ = ("name", "drug", "start", "doses", "peak", "ceiling", "last_outcome", "relieved", "taper_day",
                 "tapered", "stop_rule", "level_day", "failed", "taper_from",
                 "step_judged", "aim", "restart_from")

    def __init__(self, name: str, drug: Drug, start: float, dose: float) -> None:
        self.name = name
        self.drug = drug
        self.start = start
        self.doses: list[tuple[float, float]] = [(start, dose)]
        self.peak = dose
        self.ceiling = math.inf  # the highest tolerated dose, after an intolerance reduction
        self.last_outcome: str | None = None  # of the last evaluation while this line ran
        self.relieved = False  # a relief evaluation while this line ran (strong opioids: smallest dose)
        self.failed = False  # judged failed while it ran (a later relief with an added drug does not undo it)
        self.taper_day: float | None = None  # day of the taper_start row
        self.taper_from = 0  # index in ``doses`` of the first taper step (set at the taper_start row)
        self.tapered = False  # a dose was lowered (not for intolerance) since the last increase
        self.stop_rule: str | None = None  # why it is stopped (taper_start or drug_stop rule)
        self.level_day = start  # the day the current dose level was reached (titration pace)
        self.step_judged = False  # a titration-to-response evaluation without relief since the last rise (P8)
        # P4.restart_dose: a drug restarted after the patient's own stop while relieved aims at the dose he stopped
        # at (its adequate trial is judged there) and may start from a reversed taper's step or, under
        # restart_dose 'relieving_dose', at that dose (its titration counts from there)
        self.aim = math.inf
        self.restart_from: float | None = None

    @property
    def dose(self) -> float:
        return self.doses[-1][1]


class Trajectory:
    """What one patient's history tells the guideline so far."""

    def __init__(self) -> None:
        self.active: dict[str, Line] = {}  # running drugs, a tapering drug included
        self.ended: list[Line] = []
        self.first_line_failure = False
        self.combination_failed = False
        self.tramadol_failed = False  # S004 "strong opioids only if tramadol fails" (P8 gate; see CourseChecks)
        self.checks: list[tuple[str, str | None, float]] = []  # (check, drug, day)
        self.last_nrs: float | None = None
        self.visit_outcome: str | None = None  # of the last maintenance visit (issue 10)
        self.bridge: Line | None = None  # a tramadol bridge running (P9.tramadol_bridge)
        self.own_stop: tuple[float, str] | None = None  # (day, drug) of an own stop in relief, until a visit
        # P4.restart_dose: drug -> the dose of its own stop while relieved (until it starts again), and drug ->
        # (day, dose) of its taper stopped for the restart (P4.taper_reversed)
        self.relieved_stop: dict[str, float] = {}
        self.reversed_stop: dict[str, tuple[float, float]] = {}
        self.restart_from: float | None = None  # the drug starting now is restarted from this dose (or None)
