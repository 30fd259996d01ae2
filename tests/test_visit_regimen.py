"""What a maintenance visit row names while a drug is being tapered.

Protects simulator/engine/stops.py ``Stopping._newest_taken`` and docs/event-log.md (Event kinds, Maintenance):
a drug is running from its drug_start to its drug_stop, a drug being tapered included, and a visit row names the
regimen's newest drug, or, when no other drug is left, the drug still being tapered at the step he is on; only a
visit with nothing running names no drug. `painpath trace` already told such a visit "on pregabalin tapering off"
while the row named no drug (on main: ``painpath run scenarios/guideline.yaml --patients 3000 --seed 11``,
patient 237 day 217, patient 1645 day 147: a visit with no drug during the taper after his own stop).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator import load_scenario, simulate

ROOT = Path(__file__).resolve().parents[1]


def test_a_visit_names_the_drug_still_tapering_and_none_only_when_nothing_runs() -> None:
    """Replayed from the log alone (stable sort by day keeps the engine's same-day order): at every maintenance
    visit, the drug named runs (started, not yet stopped), at its last logged dose; a visit names no drug only
    when nothing runs. At least one visit names a drug that runs only as a taper (none on main)."""
    ev = simulate(load_scenario(ROOT / "scenarios" / "guideline.yaml"), patients=300, seed=11,
                  replications=1).events.sort_values(["patient", "day"], kind="stable")
    tapering_only = visits = 0
    for _, mine in ev.groupby("patient", sort=False):
        dose: dict[str, float] = {}  # running drugs and their last logged dose
        tapering: set[str] = set()
        for r in mine.itertuples():
            kind, drug = str(r.event), None if pd.isna(r.drug) else str(r.drug)
            if kind == "drug_start":
                dose[drug] = r.dose
                tapering.discard(drug)
            elif kind == "dose_change" and drug in dose:
                dose[drug] = r.dose
            elif kind == "taper_start":
                tapering.add(drug)
            elif kind == "drug_stop":
                dose.pop(drug, None)
                tapering.discard(drug)
            elif kind == "dropout":
                dose.clear()
            elif kind == "maintenance_visit" and str(r.rule) != "P8.reassessment":
                visits += 1
                if drug is None:
                    assert not dose, (r.patient, r.day, dose)  # a drug runs, the row names none
                    continue
                assert drug in dose and r.dose == dose[drug], (r.patient, r.day, drug, r.dose, dose)
                if set(dose) <= tapering:
                    tapering_only += 1
    assert visits > 100
    assert tapering_only >= 1
