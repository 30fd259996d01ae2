"""Care after the first answer (maintenance, strong-opioid reassessment) and usual care, as policy data.

Two blocks of a scenario's ``policy:`` (issue 10):

* :class:`Maintenance` (``policy.maintenance``): relieved patients stay in care on their regimen and are
  seen every ``visit_interval_days`` (rule ``P4.maintenance_visit``), every ``opioid_visit_interval_days``
  while an opioid runs (``P8.reassessment``: "regular monitoring (every 1-3 months)", "reassess necessity at
  each visit, discontinue if ineffective", S004). At a visit the response is judged as at an evaluation;
  relief lost sends the patient back into the pathway from where he is (``P4.relapse``), through the
  policy's own decision (:func:`simulator.model.decisions.next_step`).
* :class:`UsualCare` (``policy.usual_care``): care as observed in claims data, each part a declared
  departure from the guideline (``declared_departures``) so that ``lint`` and ``check`` see it: the index
  drug drawn from an observed distribution (``usual_care_index``; tramadol and strong opioids there also
  need ``tramadol_first_line`` / ``early_strong_opioid``), drugs left below their recommended dose
  (``under_titration``), and patients not coming back after a regimen ends (``return_after_stop``;
  ``usual_care_leaves_care``: the patient stops the drugs still running himself, at once, untapered).

The plain functions at the bottom are what the engine calls per patient (no pydantic per event).
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from ..inputs.schema import Strict, check_shares
from .catalog import ALL_CLASSES, load_catalog


class Maintenance(Strict):
    """Maintenance visits after relief (P4.maintenance_visit) and opioid reassessment (P8.reassessment)."""

    visit_interval_days: int = Field(
        91, ge=7, le=365, description="P4.maintenance_visit: days between maintenance visits of a relieved patient "
        "(assumption: every 3 months, the longest interval S004 allows on opioids)")
    opioid_visit_interval_days: int = Field(
        56, ge=7, le=91, description="P8.reassessment: days between reassessments while an opioid runs (S004: every "
        "1-3 months; 8 weeks is the guideline default, an assumption within that range)")
    confirm_loss: bool = Field(
        True, description="P4.relapse: a visit without relief is confirmed at a visit one policy visit interval "
        "later before the regimen is changed (assumption: one noisy NRS rating does not end a working regimen)")
    relapse: bool = Field(True, description="P4.relapse: relief can be lost (clinical persistence.relapse_per_year); "
                          "false keeps v0.1's absorbing relief")
    discharge_after_days: int | None = Field(
        182, ge=91, le=3650, description="P4.stable_discharge: a patient whose relief has held at every maintenance "
        "visit for this many days, on no opioid, is discharged from scheduled follow-up to repeat prescribing "
        "(the regimen continues; a later relapse is a new episode, outside the run). Assumption: six months of "
        "stable relief, two quarterly visits after relief, as a stable regimen is defined for Hall 2006/2008 "
        "(simulator.analysis.persistence.STABLE_DAYS; no source in the evidence, calibration.md 6 [NF]); null keeps "
        "patients in maintenance to the horizon. Opioids are never discharged: P8 reassesses them every 1-3 months while they continue (S004)")


class UsualCare(Strict):
    """Usual care as observed in claims data; each option needs its declared departure (see module doc)."""

    index_drugs: dict[str, float] = Field(
        default_factory=dict, description="X.usual_care_choice: probability of each index drug (sums to 1); "
        "empty: the guideline's first choice (P1)")
    under_titration: dict[str, float] = Field(
        default_factory=dict, description="X.under_titration: per drug class, the probability that a drug of "
        "that class is never titrated above its start dose")
    stop_rate_ratio: float = Field(
        1.0, ge=0, le=50, description="multiplies the hazard of stopping a drug for reasons other than adverse "
        "events (clinical persistence.non_ae_stop_per_year): without scheduled early follow-up nobody addresses "
        "early problems (cost, doubts, mild effects); 1 under the guideline, calibrated in usual care")
    return_after_stop: float = Field(
        1.0, ge=0, le=1, description="probability that a patient whose treatment line ended without relief "
        "comes back for another pain drug (1: scheduled follow-up visits, the guideline's evaluation at 2-4 "
        "weeks, S001); otherwise he leaves treatment (X.left_treatment)")

    @field_validator("index_drugs")
    @classmethod
    def _mix(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            return v
        return check_shares(v, tuple(load_catalog().drugs), "drug", "index_drugs")

    @field_validator("under_titration")
    @classmethod
    def _classes(cls, v: dict[str, float]) -> dict[str, float]:
        return check_shares(v, ALL_CLASSES, "drug class", "under_titration", sums_to_one=False)

    def departures_needed(self) -> list[tuple[str, str]]:
        """(departure, why) pairs this block needs declared."""
        cat = load_catalog()
        need: list[tuple[str, str]] = []
        if self.index_drugs:
            need.append(("usual_care_index", "index_drugs replaces the guideline's first choice (P1)"))
        classes = {cat.drugs[n].drug_class for n, p in self.index_drugs.items() if p > 0}
        if "weak_opioid" in classes:
            need.append(("tramadol_first_line", "index_drugs starts tramadol first (P7)"))
        if "strong_opioid" in classes:
            need.append(("early_strong_opioid", "index_drugs starts a strong opioid first (P8)"))
        if any(p > 0 for p in self.under_titration.values()):
            need.append(("under_titration", "under_titration leaves drugs below their recommended dose (P2, P13)"))
        if self.return_after_stop < 1:
            need.append(("usual_care_leaves_care", "return_after_stop below 1: a patient who does not come back "
                         "(X.left_treatment) stops his drugs at once, without the taper P5 asks (S001)"))
        return need


# ------------------------------------------------------------------------------------------------
# Plain per-patient decisions (the engine calls these; no pydantic here).
# ------------------------------------------------------------------------------------------------


def index_drug(mix: tuple[tuple[int, float], ...], u: float) -> int:
    """The index drug for a patient with uniform ``u`` from a ``((drug index, share), ...)`` mix."""
    acc = 0.0
    for j, share in mix:
        acc += share
        if u < acc:
            return j
    return mix[-1][0]


def stop_day(start: float, rate_per_year: float, early_mult: float, early_days: float, u: float) -> float:
    """Day a drug started on ``start`` is stopped for reasons other than adverse events (inf: never).

    Piecewise-constant hazard: ``rate_per_year * early_mult`` for the first ``early_days``, ``rate_per_year``
    after (inverse of the cumulative hazard at ``-log(1 - u)``)."""
    if rate_per_year <= 0:
        return math.inf
    h = -math.log1p(-u)  # the cumulative hazard at which the stop happens
    early_rate = rate_per_year * early_mult / 365.0
    late_rate = rate_per_year / 365.0
    h_early = early_rate * early_days
    if h <= h_early:
        return start + h / early_rate
    return start + early_days + (h - h_early) / late_rate
