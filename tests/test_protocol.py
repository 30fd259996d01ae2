"""Protocol-style policies: a fixed sequence of drugs with durations and threshold rules (issue #4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.analysis.runner import simulate
from simulator.inputs.errors import InputError
from simulator.model.catalog import load_catalog
from simulator.scenario import load_scenario

PROTOCOL = Path(__file__).parent / "data" / "protocol-gilron.yaml"


@pytest.fixture(scope="module")
def run():
    return simulate(load_scenario(PROTOCOL))


def test_step_one_titrates_gabapentin_to_maximum(run) -> None:
    """Step 1 starts gabapentin and titrates it to the patient's maximum (3600 mg unless capped)."""
    ev = run.events
    starts = ev[ev["event"] == "drug_start"]
    first = starts.groupby("patient").head(1)
    assert set(first["drug"].astype(str)) == {"gabapentin"}
    doses = ev[(ev["drug"] == "gabapentin") & (ev["event"] == "dose_change")]["dose"]
    assert doses.max() == load_catalog().drugs["gabapentin"].max_dose


def test_threshold_rule_adds_nortriptyline_only_above_3(run) -> None:
    """At week 6, nortriptyline is added exactly when NRS > 3; otherwise gabapentin continues to week 16."""
    ev = run.events
    evals = ev[(ev["event"] == "evaluation") & (ev["day"] == 42.0)].set_index("patient")["pain_nrs"]
    added = set(ev[(ev["event"] == "drug_start") & (ev["drug"] == "nortriptyline")]["patient"])
    relieved = set(ev[(ev["event"] == "transition") & (ev["state"] == "relieved") & (ev["day"] == 42.0)]["patient"])
    left = set(ev[(ev["event"] == "dropout") & (ev["day"] == 42.0)]["patient"])
    excluded = set(ev[(ev["event"] == "excluded") & (ev["drug"] == "nortriptyline")]["patient"])
    assert len(evals) > 100
    for patient, pain in evals.items():
        if patient in relieved | left | excluded:
            continue
        assert (patient in added) == (pain > 3), (patient, pain)
    assert added, "some patients must reach step 2"
    # Patients who continued are evaluated again at the end of step 2 (week 16 = day 112).
    cont = [pt for pt, pain in evals.items() if pain <= 3 and pt not in relieved | left]
    later = ev[(ev["event"] == "evaluation") & (ev["day"] == 112.0)]["patient"]
    assert set(cont) <= set(later) | set(ev[ev["event"].isin(["dropout", "drug_stop"])]["patient"])


def test_no_guideline_choices_in_between(run) -> None:
    """Every treatment decision of a protocol cites the protocol rule, never a guideline choice."""
    ev = run.events
    decisions = ev[ev["event"].isin(["drug_start"])]
    assert set(decisions["rule"].astype(str)) == {"X.protocol_step"}


def test_protocol_dose_above_maximum_is_refused(tmp_path: Path) -> None:
    """A protocol step dose above the drug's maximum is an input error naming the field."""
    bad = tmp_path / "p.yaml"
    bad.write_text(PROTOCOL.read_text().replace("dose: target", "dose: 500").replace(
        "cohort: ../../cohorts", f"cohort: {Path(__file__).parents[1] / 'cohorts'}"))
    with pytest.raises(InputError, match="at most 150"):
        load_scenario(bad)


def test_contraindicated_protocol_drug_is_not_given(run) -> None:
    """P5 holds under a protocol: a patient with a cardiac contraindication never starts nortriptyline."""
    pts = run.patients.set_index("patient")
    ev = run.events
    given = set(ev[(ev["event"] == "drug_start") & (ev["drug"] == "nortriptyline")]["patient"])
    blocked = pts[pts["recent_mi"] | pts["arrhythmia"] | pts["heart_block"]].index
    assert len(blocked) > 0
    assert not given & set(blocked)
