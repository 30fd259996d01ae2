"""`check` invariant ``strong_opioid_reassessed`` (P8.time_limited, P8.reassessment; S004), as an oracle.

"No strong opioid beyond the trial period without a documented reassessment": while a strong opioid is
continued (from its ``drug_start`` to its ``drug_stop`` or the ``taper_start`` that stops it, or the
horizon), no stretch between two documented
assessments (its start, an ``evaluation`` or a ``maintenance_visit`` row of the patient) may exceed the
policy's ``strong_opioid.max_trial_days``. Reads only the event log, the drug catalogue (which drugs are
strong opioids) and the policy's numbers; it imports nothing from the engine. Written to plug into the
independent ``check`` oracle (``simulator.regression.invariants``) as one more invariant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..model.catalog import load_catalog

NAME = "strong_opioid_reassessed"
DEFAULT_MAX_TRIAL_DAYS = 84.0  # days: the policy's default strong_opioid.max_trial_days (S004 time-limited
# trial), held here so the oracle imports nothing from the policy module (a test pins it to the policy's default)
RULE = "P8.reassessment"
ASSESSMENTS = ("evaluation", "maintenance_visit")


@dataclass(frozen=True)
class Gap:
    replication: int
    patient: int
    drug: str
    from_day: float
    to_day: float

    @property
    def detail(self) -> str:
        return (f"{self.drug} ran {self.to_day - self.from_day:.0f} days without a documented reassessment "
                f"(days {self.from_day:g}-{self.to_day:g})")


def unreassessed_opioid_gaps(events: pd.DataFrame, policy: Any, horizon: float) -> list[Gap]:
    """Every stretch longer than ``policy.strong_opioid.max_trial_days`` a strong opioid ran unassessed."""
    gate = getattr(policy, "strong_opioid", None)
    # a policy read as data without the gate: the policy's default
    limit = float(getattr(gate, "max_trial_days", DEFAULT_MAX_TRIAL_DAYS)) + 1e-6
    strong = {n for n, d in load_catalog().drugs.items() if d.drug_class == "strong_opioid"}
    ev = events[events["event"].isin(("drug_start", "drug_stop", "taper_start", *ASSESSMENTS))]
    ev = ev.sort_values(["replication", "patient", "day"], kind="stable")
    gaps: list[Gap] = []
    running: dict[str, float] = {}  # strong opioid -> day of its last documented assessment
    key = None
    rows = zip(ev["replication"], ev["patient"], ev["day"], ev["event"].astype(str),
               ev["drug"].astype(object), strict=True)
    for rep, pat, day, kind, drug in rows:
        if (rep, pat) != key:
            if key is not None:
                gaps += [Gap(*key, d, last, horizon) for d, last in running.items() if horizon - last > limit]
            key, running = (rep, pat), {}
        if kind == "drug_start" and drug in strong:
            running[drug] = day
        elif kind in ASSESSMENTS or (kind in ("drug_stop", "taper_start") and drug in running):
            for d, last in list(running.items()):
                if day - last > limit:
                    gaps.append(Gap(rep, pat, d, last, day))
                running[d] = day
            if kind != "drug_start" and kind not in ASSESSMENTS:  # stopped, or its taper began (a stop)
                running.pop(drug, None)
    if key is not None:
        gaps += [Gap(*key, d, last, horizon) for d, last in running.items() if horizon - last > limit]
    return gaps
