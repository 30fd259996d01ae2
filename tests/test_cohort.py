"""Tests for simulator.population.cohort: reproducible, evidence-calibrated synthetic cohorts and their input errors."""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.inputs.errors import InputError
from simulator.population.cohort import CARDIAC, Cohort, _truncated_normal, generate_cohort
from simulator.population.cohort_spec import ETIOLOGIES, CohortSpec, load_cohort_spec

COHORTS = Path(__file__).resolve().parent.parent / "cohorts"
COHORT_FILES = ["mixed-primary-care", "diabetic-neuropathy", "chemotherapy-induced",
                "lumbosacral-radiculopathy", "older-renal"]
MIXED = COHORTS / "mixed-primary-care.yaml"


@pytest.fixture(scope="module")
def mixed() -> CohortSpec:
    return load_cohort_spec(MIXED)


def _assert_same(a: Cohort, b: Cohort) -> None:
    for f in fields(Cohort):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)


def _differs(a: Cohort, b: Cohort) -> bool:
    return not np.array_equal(a.age, b.age) or not np.array_equal(a.crcl, b.crcl)


# --- reproducibility (common random numbers depend on it) ----------------------------------------------

def test_same_seed_gives_identical_cohort(mixed: CohortSpec) -> None:
    """Protects reproducibility: the same (spec, n, seed, replication) always yields the same patients."""
    _assert_same(generate_cohort(mixed, 500, seed=11), generate_cohort(mixed, 500, seed=11))


def test_different_seed_gives_different_cohort(mixed: CohortSpec) -> None:
    """Protects against a seed that is ignored: another seed must give other patients."""
    assert _differs(generate_cohort(mixed, 500, seed=11), generate_cohort(mixed, 500, seed=12))


def test_replication_changes_cohort(mixed: CohortSpec) -> None:
    """Protects independent replications: replication 1 draws other patients than replication 0."""
    assert _differs(generate_cohort(mixed, 500, seed=11, replication=0),
                    generate_cohort(mixed, 500, seed=11, replication=1))


def test_prefix_stability_100_of_1000(mixed: CohortSpec) -> None:
    """Protects prefix stability: patient i is the same person whether 100 or 1000 patients are drawn."""
    small = generate_cohort(mixed, 100, seed=3)
    large = generate_cohort(mixed, 1000, seed=3)
    _assert_same(small, large.take(np.arange(100)))


@settings(max_examples=25, deadline=None)
@given(n1=st.integers(1, 300), extra=st.integers(0, 300), seed=st.integers(0, 2**32 - 1),
       replication=st.integers(0, 20), which=st.sampled_from(COHORT_FILES))
def test_prefix_stability_property(n1: int, extra: int, seed: int, replication: int, which: str) -> None:
    """Protects prefix stability for any n, seed, replication and cohort file."""
    spec = load_cohort_spec(COHORTS / f"{which}.yaml")
    small = generate_cohort(spec, n1, seed, replication)
    large = generate_cohort(spec, n1 + extra, seed, replication)
    _assert_same(small, large.take(np.arange(n1)))


# --- the cohort matches its spec and reality ---------------------------------------------------------------

def test_etiology_mix_and_localized_share_match_spec(mixed: CohortSpec) -> None:
    """Protects calibration: etiology shares and the localized share are within sampling error of the spec."""
    n = 20_000
    c = generate_cohort(mixed, n, seed=2024)
    probs = mixed.etiology_probabilities()
    observed = np.bincount(c.etiology, minlength=len(ETIOLOGIES)) / n
    tolerance = 4.5 * np.sqrt(probs * (1 - probs) / n) + 1e-9
    assert np.all(np.abs(observed - probs) <= tolerance), (observed, probs)
    loc = mixed.localized
    p_loc = sum(p * loc.by_etiology.get(e, loc.probability) for e, p in zip(ETIOLOGIES, probs, strict=True))
    assert abs(c.localized.mean() - p_loc) <= 4.5 * np.sqrt(p_loc * (1 - p_loc) / n)


def test_crcl_falls_and_cardiac_disease_rises_with_age(mixed: CohortSpec) -> None:
    """Protects the age correlations the safety rules rely on: older patients have lower CrCl, more heart disease."""
    c = generate_cohort(mixed, 20_000, seed=5)
    assert np.corrcoef(c.age, c.crcl)[0, 1] < -0.2
    for name in CARDIAC:
        assert np.corrcoef(c.age, getattr(c, name).astype(float))[0, 1] > 0, name
    old, young = c.age >= 65, c.age < 50
    assert (c.crcl[old] < 60).mean() > (c.crcl[young] < 60).mean()


def test_diabetic_neuropathy_raises_cvd_and_renal_impairment(mixed: CohortSpec) -> None:
    """Protects the etiology correlations: in the mixed cohort, diabetic patients have more CVD and low CrCl."""
    c = generate_cohort(mixed, 40_000, seed=6)
    dpn = c.etiology == ETIOLOGIES.index("diabetic_neuropathy")
    radic = c.etiology == ETIOLOGIES.index("lumbosacral_radiculopathy")
    assert c.cardiovascular_disease[dpn].mean() > c.cardiovascular_disease[radic].mean() + 0.2
    assert (c.crcl[dpn] < 60).mean() > (c.crcl[radic] < 60).mean()


def test_diabetic_cohort_renal_impairment_matches_nhanes() -> None:
    """Protects the renal calibration against calibration.md §9 (T2DM eGFR<60: 22.0% overall, 43.1% at >=65)."""
    c = generate_cohort(load_cohort_spec(COHORTS / "diabetic-neuropathy.yaml"), 40_000, seed=9)
    assert abs((c.crcl < 60).mean() - 0.220) < 0.03
    assert abs((c.crcl[c.age >= 65] < 60).mean() - 0.431) < 0.03


def test_older_renal_cohort_is_old_renal_and_localized() -> None:
    """Protects the older-renal cohort's purpose: everyone >= 65, about half CrCl < 60, most pain localized."""
    c = generate_cohort(load_cohort_spec(COHORTS / "older-renal.yaml"), 20_000, seed=4)
    assert c.age.min() >= 65
    assert (c.crcl < 60).mean() > 0.4
    assert c.localized.mean() > 0.6


def test_ssri_use_more_common_with_depression(mixed: CohortSpec) -> None:
    """Protects the depression -> SSRI link (tramadol serotonin-syndrome check, P5)."""
    c = generate_cohort(mixed, 20_000, seed=8)
    assert c.ssri_use[c.depression].mean() > c.ssri_use[~c.depression].mean() + 0.2


def test_chemotherapy_cohort_is_platinum_or_taxane() -> None:
    """Protects the CIPN split: the chemotherapy cohort holds both CIPN types and nothing else."""
    c = generate_cohort(load_cohort_spec(COHORTS / "chemotherapy-induced.yaml"), 5_000, seed=1)
    codes = set(np.unique(c.etiology).tolist())
    assert codes == {ETIOLOGIES.index("cipn_platinum"), ETIOLOGIES.index("cipn_taxane")}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from(COHORT_FILES))
def test_attributes_valid_in_every_cohort(seed: int, which: str) -> None:
    """Protects the Cohort contract: dtypes, ranges, allodynia only where localized, CrCl >= 5."""
    spec = load_cohort_spec(COHORTS / f"{which}.yaml")
    c = generate_cohort(spec, 2_000, seed)
    assert not np.any(c.allodynia & ~c.localized)
    assert c.crcl.dtype == np.float64 and c.crcl.min() >= 5.0
    assert c.age.dtype == np.float64 and spec.age.min <= c.age.min() and c.age.max() <= spec.age.max
    nrs = spec.baseline_nrs
    assert nrs.min <= c.baseline_nrs.min() and c.baseline_nrs.max() <= nrs.max <= 10
    assert c.sex.dtype == np.int8 and set(np.unique(c.sex)) <= {0, 1}
    assert c.etiology.dtype == np.int8 and c.etiology.min() >= 0 and c.etiology.max() < len(ETIOLOGIES)
    assert c.misuse_risk.dtype == np.int8 and set(np.unique(c.misuse_risk)) <= {0, 1, 2}
    for f in fields(Cohort):
        arr = getattr(c, f.name)
        assert len(arr) == c.n == 2_000, f.name
        if f.name not in ("age", "sex", "etiology", "baseline_nrs", "crcl", "misuse_risk"):
            assert arr.dtype == np.bool_, f.name
    zero = [e for e in ETIOLOGIES if spec.etiology.get(e, 0.0) == 0.0]
    assert not np.isin(c.etiology, [ETIOLOGIES.index(e) for e in zero]).any()


@pytest.mark.parametrize("name", COHORT_FILES)
def test_all_cohort_files_load(name: str) -> None:
    """Protects the shipped cohort files: each loads, is named after its file and has a description."""
    spec = load_cohort_spec(COHORTS / f"{name}.yaml")
    assert spec.name == name
    assert spec.description.strip()
    assert generate_cohort(spec, 10, seed=1).n == 10


def test_cohort_arrays_are_read_only(mixed: CohortSpec) -> None:
    """Protects against a simulation step silently editing the shared cohort."""
    c = generate_cohort(mixed, 10, seed=1)
    with pytest.raises(ValueError):
        c.age[0] = 1.0


def test_to_frame_and_take(mixed: CohortSpec) -> None:
    """Protects the table view (patient column, names for etiology and misuse risk) and sub-cohorts."""
    c = generate_cohort(mixed, 50, seed=1)
    df = c.to_frame()
    assert list(df["patient"]) == list(range(50))
    assert set(df["etiology"]) <= set(ETIOLOGIES)
    assert set(df["misuse_risk"]) <= {"low", "moderate", "high"}
    assert df.loc[7, "etiology"] == ETIOLOGIES[c.etiology[7]]
    sub = c.take([7, 3])
    assert sub.n == 2 and sub.age[0] == c.age[7] and sub.crcl[1] == c.crcl[3]


def test_100k_patients_generate_fast(mixed: CohortSpec) -> None:
    """Protects performance: 100,000 patients must generate in well under a second (vectorised numpy)."""
    generate_cohort(mixed, 1_000, seed=1)
    start = time.perf_counter()
    generate_cohort(mixed, 100_000, seed=1)
    assert time.perf_counter() - start < 1.0


@settings(max_examples=100, deadline=None)
@given(mean=st.floats(-50, 150), sd=st.floats(0, 40), lo=st.floats(-50, 150), width=st.floats(0, 100))
def test_truncated_normal_stays_in_bounds(mean: float, sd: float, lo: float, width: float) -> None:
    """Protects the inverse-CDF transform: draws lie in [min, max] and rise with the uniform, even in far tails."""
    u = np.linspace(0.0, 0.999999, 101)
    x = _truncated_normal(u, mean, sd, lo, lo + width)
    assert np.all(np.isfinite(x))
    assert np.all((x >= lo) & (x <= lo + width))
    assert np.all(np.diff(x) >= -1e-9 * max(1.0, abs(lo) + width))


# --- bad input gives an InputError naming the file, the field and the fix ------------------------------

def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "bad-cohort.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data,
                    encoding="utf-8")
    return path


def _mixed_data() -> dict:
    return yaml.safe_load(MIXED.read_text(encoding="utf-8"))


def _load_error(tmp_path: Path, data: object) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_cohort_spec(path)
    message = str(info.value)
    assert str(path) in message, message
    assert "Fix:" in message, message
    return message


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    """Protects users from tracebacks on a YAML syntax error: the error names the file and the line."""
    message = _load_error(tmp_path, "name: x\nage: [1, 2\nsex: {male_share: 0.5}\n")
    assert "line" in message


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    """Protects against typos being silently ignored: an unknown key names its field."""
    data = _mixed_data()
    data["localized"]["alodynia_given_localized"] = 0.4
    assert "localized.alodynia_given_localized" in _load_error(tmp_path, data)


def test_unknown_etiology_lists_allowed_names(tmp_path: Path) -> None:
    """Protects the etiology vocabulary: an unknown name is an error that lists the allowed ones."""
    data = _mixed_data()
    data["etiology"]["sciatica"] = data["etiology"].pop("lumbosacral_radiculopathy")
    message = _load_error(tmp_path, data)
    assert "field 'etiology'" in message and "sciatica" in message and "lumbosacral_radiculopathy" in message


def test_unknown_etiology_in_override_is_an_error(tmp_path: Path) -> None:
    """Protects per-etiology overrides from typos (e.g. in comorbidity odds ratios)."""
    data = _mixed_data()
    data["comorbidities"]["glaucoma"]["odds_ratio_by_etiology"] = {"diabetes": 1.4}
    message = _load_error(tmp_path, data)
    assert "comorbidities.glaucoma.odds_ratio_by_etiology" in message and "diabetes" in message


def test_etiology_probabilities_must_sum_to_one(tmp_path: Path) -> None:
    """Protects the etiology mix: probabilities that do not sum to 1 are an error on that field."""
    data = _mixed_data()
    data["etiology"]["other"] = 0.5
    message = _load_error(tmp_path, data)
    assert "field 'etiology'" in message and "sum to 1" in message


def test_misuse_risk_must_sum_to_one(tmp_path: Path) -> None:
    """Protects the Opioid Risk Tool categories: they must sum to 1."""
    data = _mixed_data()
    data["misuse_risk"]["high"] = 0.3
    message = _load_error(tmp_path, data)
    assert "misuse_risk" in message and "sum to 1" in message


def test_probability_above_one_is_an_error(tmp_path: Path) -> None:
    """Protects probabilities: a value above 1 is an error naming the field."""
    data = _mixed_data()
    data["localized"]["probability"] = 1.2
    message = _load_error(tmp_path, data)
    assert "localized.probability" in message and "<= 1" in message


def test_negative_sd_is_an_error(tmp_path: Path) -> None:
    """Protects distributions: a negative standard deviation is an error naming the field."""
    data = _mixed_data()
    data["age"]["sd"] = -3
    message = _load_error(tmp_path, data)
    assert "age.sd" in message and ">= 0" in message


def test_min_above_max_is_an_error(tmp_path: Path) -> None:
    """Protects truncated distributions: min above max is an error naming the field."""
    data = _mixed_data()
    data["baseline_nrs"]["min"] = 8
    data["baseline_nrs"]["max"] = 5
    message = _load_error(tmp_path, data)
    assert "baseline_nrs" in message and "min" in message


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    """Protects traceability: every parameter group needs a citation or an explicit assumption."""
    data = _mixed_data()
    del data["sources"]["comorbidities.glaucoma"]
    message = _load_error(tmp_path, data)
    assert "field 'sources'" in message and "comorbidities.glaucoma" in message


def test_group_source_not_replaced_by_detail_source(tmp_path: Path) -> None:
    """Protects traceability: a source for one detail (renal.shift_by_etiology...) does not cover the group."""
    data = _mixed_data()
    del data["sources"]["renal"]
    assert "renal.shift_by_etiology.cipn_platinum" in data["sources"]
    message = _load_error(tmp_path, data)
    assert "field 'sources'" in message and "'renal'" in message


def test_source_for_unknown_parameter_is_an_error(tmp_path: Path) -> None:
    """Protects traceability: a source key that names no parameter (a typo) is an error."""
    data = _mixed_data()
    data["sources"]["renall"] = "assumption: typo"
    message = _load_error(tmp_path, data)
    assert "sources" in message and "renall" in message


@pytest.mark.parametrize("n", [0, -5])
def test_no_patients_is_an_error(mixed: CohortSpec, n: int) -> None:
    """Protects against an empty cohort: n < 1 raises InputError on field 'patients' with the fix."""
    with pytest.raises(InputError) as info:
        generate_cohort(mixed, n, seed=1)
    assert info.value.field == "patients"
    assert "field 'patients'" in str(info.value) and "use at least 1 patient" in str(info.value)


def test_negative_seed_is_an_error(mixed: CohortSpec) -> None:
    """Protects the random streams: a negative seed is an InputError, not a numpy traceback."""
    with pytest.raises(InputError) as info:
        generate_cohort(mixed, 10, seed=-1)
    assert info.value.field == "seed"
