"""P3 for a topical left alone, on simulated trajectories (read here with a small reader of the event log written
for this test, not the engine's helpers).

A topical added alongside an oral step (P6.topical_add, S004 "at any stage") is judged on its own when the oral
drug it was added to stops for the patient's own reasons. It is then judged after its own adequate trial, as
every drug is (Evaluation._trial_due: ``trial_days`` at target dose, at least the drug's ``min_trial_days`` from
its start). The engine before computed that day by a second formula that left out ``min_trial_days``. No topical
of drugs.yaml has a ``min_trial_days`` (results are unchanged); the catalogue's rule holds for any drug, so the
test gives the topicals one (84 days, longer than lidocaine's 28 and capsaicin's 56 days at target dose).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from simulator.analysis import runner
from simulator.analysis.runner import simulate
from simulator.model.clinical_tables import compile_model
from simulator.scenario import load_scenario

MIN_TRIAL = 84.0  # days from the start: longer than any topical's target day + adequate trial days


def _tables_with_topical_min_trial():
    t = compile_model()
    drugs = tuple(dataclasses.replace(d, min_trial_days=int(MIN_TRIAL)) if d.drug_class == "topical" else d
                  for d in t.drugs)
    return dataclasses.replace(t, drugs=drugs, by_name={d.name: d for d in drugs})


def _topical_evaluations(ev: pd.DataFrame, topicals: set[str]) -> list[tuple[int, float, float, str]]:
    """(patient, evaluation day, days since the topical's latest start, start rule) of every evaluation that
    judges a topical."""
    out = []
    rows = ev[ev["drug"].isin(topicals) & ev["event"].isin(("drug_start", "evaluation"))]
    for pid, g in rows.groupby("patient", sort=False):
        start: dict[str, tuple[float, str]] = {}
        for r in g.itertuples(index=False):
            if r.event == "drug_start":
                start[r.drug] = (r.day, r.rule)
            elif r.drug in start:
                out.append((int(pid), float(r.day), float(r.day) - start[r.drug][0], start[r.drug][1]))
    return out


def test_topical_left_alone_is_judged_after_its_min_trial_days(monkeypatch) -> None:
    """Protects P3 (one formula for the evaluation day): no topical is judged before its ``min_trial_days``,
    including one added alongside and left alone by the patient's own stop of the oral drug (fails on the engine
    before: 18 of 302 topical evaluations of guideline 1,500 seed 11, 28 to 79 days after the topical's start)."""
    tables = _tables_with_topical_min_trial()
    monkeypatch.setattr(runner, "model_tables", lambda overrides: tables)
    ev = simulate(load_scenario("scenarios/guideline.yaml"), patients=1500, seed=11).events
    ev = ev.astype({c: object for c in ("event", "drug", "rule")})
    topicals = {d.name for d in tables.drugs if d.drug_class == "topical"}
    judged = _topical_evaluations(ev, topicals)
    left_alone = [j for j in judged if j[3] == "P6.topical_add"]
    assert left_alone, "the case does not happen: no topical added alongside was judged on its own"
    early = [j for j in judged if j[2] < MIN_TRIAL - 1e-6]
    assert not early, f"{len(early)} topicals judged before {MIN_TRIAL:g} days from their start, e.g. {early[:5]}"
