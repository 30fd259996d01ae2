"""The what-if scenarios: every file loads and runs, and each moves the metric its rationale names in the
expected direction against the guideline (same patients, same seed: common random numbers)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simulator import load_scenario, simulate
from simulator.analysis.compare import compare, replication_metrics

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
OPEN = {"open-population"}  # open populations: not a what-if of the closed guideline cohort (tests/test_open_population.py)
WHAT_IFS = [p for p in SCENARIOS if p.stem != "guideline" and p.stem not in OPEN]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_loads_runs_and_explains_itself(path: Path) -> None:
    """Protects: a scenario file that fails validation or crashes the engine, or lacks description/rationale."""
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert len(sc.description) > 30 and len(sc.rationale) > 30
    if sc.population is not None:  # an open population: a small one, patients entering over the run
        sc = sc.with_overrides(population={**sc.population.model_dump(), "size": 4000})
        res = simulate(sc, seed=2, replications=1)
        assert res.summary["n_patients"] == len(res.patients) > 0
        return
    res = simulate(sc, patients=40, seed=2, replications=1)
    assert res.summary["n_patients"] == 40
    assert len(res.patients) == 40


def test_at_least_ten_what_ifs() -> None:
    """Protects: the issue's list of ten named what-ifs."""
    names = {p.stem for p in WHAT_IFS}
    assert {"pregabalin-first", "duloxetine-first", "comorbidity-guided", "switch-on-partial", "six-week-trials",
            "no-strong-opioids", "no-tramadol", "early-referral", "double-specialist-capacity",
            "topical-first"} <= names


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[dict[str, float], pd.DataFrame]]:
    """Every scenario on 600 patients x 2 replications, seed 11: (mean metrics, events). Scenarios on the
    guideline's cohort run together (the same patients); a scenario on a population of its own (usual-care-uk)
    runs alone."""
    scs = [load_scenario(p) for p in SCENARIOS if p.stem not in OPEN]
    cohort = next(s.cohort for s in scs if s.name == "guideline")
    c = compare([s for s in scs if s.cohort == cohort], patients=600, replications=2, seed=11)
    results = list(c.results) + [simulate(s, patients=600, replications=2, seed=11) for s in scs if s.cohort != cohort]
    return {r.scenario.name: (replication_metrics(r).mean().to_dict(), r.events) for r in results}


def _first_drug_share(events: pd.DataFrame, drugs: tuple[str, ...]) -> float:
    starts = events[events["event"] == "drug_start"].groupby(["replication", "patient"])["drug"].first()
    return float(starts.astype(str).isin(drugs).mean())


def _started_share(events: pd.DataFrame, drugs: tuple[str, ...]) -> float:
    ev = events[(events["event"] == "drug_start") & events["drug"].astype(str).isin(drugs)]
    n = events[["replication", "patient"]].drop_duplicates().shape[0]
    return ev[["replication", "patient"]].drop_duplicates().shape[0] / n


def m(runs: dict, name: str, key: str) -> float:
    return runs[name][0].get(key, 0.0)


# Each what-if: the direction its rationale states (checked for every file in scenarios/ below).
CHECKS = {
    "no-strong-opioids": lambda r: m(r, "no-strong-opioids", "pathway.reached.strong_opioid") == 0
    < m(r, "guideline", "pathway.reached.strong_opioid")
    and m(r, "no-strong-opioids", "adverse_events.by_type.opioid_misuse") <= m(r, "guideline", "adverse_events.by_type.opioid_misuse")
    and m(r, "no-strong-opioids", "specialist.referred") > m(r, "guideline", "specialist.referred"),
    "no-tramadol": lambda r: m(r, "no-tramadol", "pathway.reached.tramadol") == 0
    < m(r, "guideline", "pathway.reached.tramadol")
    and m(r, "no-tramadol", "specialist.referred") > m(r, "guideline", "specialist.referred"),
    "switch-on-partial": lambda r: m(r, "switch-on-partial", "pathway.reached.add_on")
    < m(r, "guideline", "pathway.reached.add_on") - 0.1
    and m(r, "switch-on-partial", "pathway.reached.switch") > m(r, "guideline", "pathway.reached.switch"),
    "double-specialist-capacity": lambda r: m(r, "double-specialist-capacity", "specialist.wait_days_median")
    < m(r, "guideline", "specialist.wait_days_median")
    and m(r, "double-specialist-capacity", "specialist.still_waiting_at_horizon")
    <= m(r, "guideline", "specialist.still_waiting_at_horizon"),
    "topical-first": lambda r: _first_drug_share(r["topical-first"][1], ("lidocaine_5pct", "capsaicin_8pct"))
    > 2 * _first_drug_share(r["guideline"][1], ("lidocaine_5pct", "capsaicin_8pct"))
    and m(r, "topical-first", "adverse_events.by_type.dizziness") < m(r, "guideline", "adverse_events.by_type.dizziness"),
    "six-week-trials": lambda r: m(r, "six-week-trials", "time_to_relief.relieved_by_day.84")
    < m(r, "guideline", "time_to_relief.relieved_by_day.84") - 0.05,
    "early-referral": lambda r: m(r, "early-referral", "specialist.referred") > m(r, "guideline", "specialist.referred")
    and m(r, "early-referral", "pathway.reached.tramadol") < m(r, "guideline", "pathway.reached.tramadol"),
    "duloxetine-first": lambda r: _first_drug_share(r["duloxetine-first"][1], ("duloxetine",))
    > _first_drug_share(r["guideline"][1], ("duloxetine",)) + 0.5
    and m(r, "duloxetine-first", "adverse_events.by_type.nausea") > m(r, "guideline", "adverse_events.by_type.nausea")
    and m(r, "duloxetine-first", "adverse_events.by_type.dizziness") < m(r, "guideline", "adverse_events.by_type.dizziness"),
    "comorbidity-guided": lambda r: _first_drug_share(r["comorbidity-guided"][1], ("duloxetine",))
    > _first_drug_share(r["guideline"][1], ("duloxetine",)) + 0.2,
    "usual-care": lambda r: _first_drug_share(r["usual-care"][1], ("gabapentin",)) > 0.4
    and m(r, "usual-care", "maintenance.persistence.on_index_drug_at_month.12")
    < m(r, "guideline", "maintenance.persistence.on_index_drug_at_month.12")
    and m(r, "usual-care", "maintenance.relieved_on_day.365") < m(r, "guideline", "maintenance.relieved_on_day.365") - 0.1,
    "usual-care-uk": lambda r: _first_drug_share(r["usual-care-uk"][1], ("amitriptyline",)) > 0.4
    > _first_drug_share(r["guideline"][1], ("amitriptyline",))
    and _started_share(r["usual-care-uk"][1], ("lidocaine_5pct", "capsaicin_8pct")) == 0,
    "duloxetine-60-start": lambda r: m(r, "duloxetine-60-start", "adverse_events.by_type.nausea")
    > m(r, "duloxetine-first", "adverse_events.by_type.nausea")
    # "at least as many relieved by day 84": equal within noise (issue 9 leftovers, topicals alongside the oral
    # step: 61.4% vs 61.8% at 3000 x 2, paired difference -0.4 points [-2.2, 1.3]), so 2 points of slack
    and m(r, "duloxetine-60-start", "time_to_relief.relieved_by_day.84")
    >= m(r, "duloxetine-first", "time_to_relief.relieved_by_day.84") - 0.02,
    "escalation-s002": lambda r: m(r, "escalation-s002", "pathway.reached.switch")
    < m(r, "guideline", "pathway.reached.switch") - 0.07  # issue-16 model: about 0.095 fewer (was > 0.1)
    and m(r, "escalation-s002", "pathway.reached.add_on") > m(r, "guideline", "pathway.reached.add_on")
    and m(r, "escalation-s002", "pathway.reached.tramadol") > m(r, "guideline", "pathway.reached.tramadol"),
    "pregabalin-first": lambda r: _first_drug_share(r["pregabalin-first"][1], ("duloxetine",))
    < _first_drug_share(r["guideline"][1], ("duloxetine",))
    and _first_drug_share(r["pregabalin-first"][1], ("pregabalin",))
    > _first_drug_share(r["guideline"][1], ("pregabalin",)),
}


@pytest.mark.parametrize("path", WHAT_IFS, ids=lambda p: p.stem)
def test_what_if_moves_its_metric(path: Path, runs: dict) -> None:
    """Protects: a what-if whose setting has no effect, or the opposite effect to its stated rationale.
    A new scenario without a check here fails, so every what-if stays checked."""
    assert path.stem in CHECKS, f"add a direction check for scenarios/{path.name}"
    assert CHECKS[path.stem](runs), f"{path.stem} did not move its metric as its rationale says"
