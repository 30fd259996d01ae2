"""The rulebook: every rule id the engine cites resolves to guideline text and to the seeds behind it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from simulator.inputs.errors import InputError
from simulator.model.rules import SEED_FILES, SEED_LABELS, RuleBook, load_rulebook, load_rules

ENGINE_IDS = """
P1.pregabalin_first P1.duloxetine_first P1.duloxetine_cipn P1.gabapentin_cost P1.comorbidity_choice
P1.tca_first P1.next_in_order
P2.titration_step P2.older_adult_slow P2.target_reached P2.max_dose_cap
P3.adequate_trial P3.tca_trial
P4.relief P4.partial_add P4.partial_switch P4.no_response_switch P4.intolerance_switch
P4.combination_judged P4.combination_failed
P5.tca_ecg P5.tca_cardiac_contraindicated P5.tca_cardiac_cap P5.duloxetine_hepatic P5.renal_cap
P5.serotonin_check P5.older_adult_cap P5.older_topical P5.renal_topical P5.cardiac_prefer_duloxetine
P6.topical_localized P6.topical_add
P7.tramadol_after_first_line P7.tramadol_before_strong
P8.prerequisites P8.misuse_screen P8.agreement P8.time_limited P8.stop_ineffective P8.hiv_caution
P9.refractory_referral P9.specialist_consult P9.referral_criteria
P10.non_drug
P11.radiculopathy_combination P11.cipn_duloxetine P11.hiv_refractory P11.etiology_modifier
P12.not_recommended
P13.pitfalls
X.dropout X.horizon
""".split()

SEEDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "seeds"  # ../shared beside the checkout


def _minimal() -> dict:
    """A small valid rulebook to mutate in rejection tests."""
    return {
        "rules": [
            {"id": "P1", "title": "First", "text": "Start somewhere.", "seeds": ["S000", "S001"]},
            {"id": "X", "title": "Outside the guideline", "text": "Not the guideline.", "seeds": []},
        ],
        "subrules": [
            {"id": "P1.a", "parent": "P1", "text": "Own seeds.", "seeds": ["S001"]},
            {"id": "P1.b", "parent": "P1", "text": "Inherits seeds."},
            {"id": "X.dropout", "parent": "X", "text": "Lost.", "seeds": []},
        ],
    }


def test_packaged_rulebook_loads_and_validates() -> None:
    """The shipped rules.yaml passes every RuleBook check, so the engine can start at all."""
    book = load_rules()
    assert isinstance(book, RuleBook)
    assert load_rules() is book  # cached: loaded once per process


def test_every_guideline_rule_p1_to_p13_exists_and_cites_seeds() -> None:
    """PATHWAY.md's thirteen rules are all present, titled, and each names the seeds it comes from."""
    book = load_rules()
    for n in range(1, 14):
        rule = book.get(f"P{n}")
        assert rule.title and rule.text
        assert rule.seeds, f"P{n} cites no seed"
        assert set(rule.seeds) <= set(SEED_FILES)


def test_every_id_the_engine_cites_resolves() -> None:
    """No decision the engine logs can carry a rule id that the report cannot explain."""
    book = load_rules()
    missing = [rid for rid in ENGINE_IDS if not book.is_resolvable(rid)]
    assert missing == []
    for rid in ENGINE_IDS:
        assert book.text_of(rid).strip()
        assert book.parent_of(rid) == rid.split(".")[0]


def test_guideline_subrules_cite_seeds_and_outside_events_do_not() -> None:
    """Every guideline decision is traceable to a seed; drop-out and horizon are not blamed on one."""
    book = load_rules()
    for rid in book.ids():
        if book.parent_of(rid) == "X":
            assert book.seeds_of(rid) == []
        else:
            assert book.seeds_of(rid), f"{rid} has no supporting seed"
    assert book.get("X").title == "Outside the guideline"


def test_subrule_text_is_one_sentence() -> None:
    """Sub-rule texts stay short enough to print beside each logged decision."""
    book = load_rules()
    for rid in book.ids():
        if "." in rid:
            text = book.text_of(rid)
            assert text.endswith("."), rid
            assert ". " not in text.rstrip("."), f"{rid} has more than one sentence"


def test_seed_tables_cover_exactly_s000_to_s004() -> None:
    """Seed ids map to the seed files and to a human label, so citations can be shown and opened."""
    assert sorted(SEED_FILES) == ["S000", "S001", "S002", "S003", "S004"]
    assert SEED_LABELS.keys() == SEED_FILES.keys()
    if SEEDS_DIR.is_dir():
        for name in SEED_FILES.values():
            assert (SEEDS_DIR / name).is_file(), name


def test_parent_of_top_rule_is_itself_and_of_subrule_is_parent() -> None:
    """parent_of maps any cited id to its P-rule, so summaries can group decisions by guideline rule."""
    book = load_rules()
    assert book.parent_of("P4") == "P4"
    assert book.parent_of("P4.partial_add") == "P4"
    assert book.parent_of("X.horizon") == "X"
    assert "P4.partial_add" in book.children_of("P4")
    assert book.title_of("P4.partial_add") == book.get("P4").title


def test_seeds_of_uses_own_seeds_else_falls_back_to_parent() -> None:
    """A sub-rule with its own seeds cites only those; one without inherits its parent's."""
    book = RuleBook.model_validate(_minimal())
    assert book.seeds_of("P1.a") == ["S001"]
    assert book.seeds_of("P1.b") == ["S000", "S001"]
    assert book.seeds_of("P1") == ["S000", "S001"]
    assert book.seeds_of("X.dropout") == []


def test_unknown_id_raises_keyerror_naming_it() -> None:
    """A typo in a cited id fails loudly with the id (and a suggestion), not silently."""
    book = load_rules()
    assert not book.is_resolvable("P4.partial_ad")
    with pytest.raises(KeyError, match=r"P4\.partial_ad.*did you mean P4\.partial_add"):
        book.get("P4.partial_ad")
    with pytest.raises(KeyError, match="P99"):
        book.seeds_of("P99")


def test_ids_are_top_rules_then_subrules() -> None:
    """ids() lists every rule once, which the report uses to build its rule glossary."""
    book = load_rules()
    ids = book.ids()
    assert len(ids) == len(set(ids))
    assert ids[:14] == [f"P{n}" for n in range(1, 14)] + ["X"]
    assert set(ENGINE_IDS) <= set(ids)


def test_subrule_with_missing_parent_is_rejected() -> None:
    """A sub-rule cannot hang off a rule that does not exist."""
    data = _minimal()
    data["subrules"].append({"id": "P2.orphan", "parent": "P2", "text": "No parent.", "seeds": []})
    with pytest.raises(ValidationError, match="parent 'P2'"):
        RuleBook.model_validate(data)


def test_subrule_seed_outside_parent_is_rejected() -> None:
    """A sub-rule cannot claim support from a seed its parent rule does not cite."""
    data = _minimal()
    data["subrules"][0]["seeds"] = ["S001", "S004"]
    with pytest.raises(ValidationError, match=r"\['S004'\]"):
        RuleBook.model_validate(data)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["rules"][0].update(seeds=["S009"]), "unknown seed"),
        (lambda d: d["subrules"].append(dict(d["subrules"][0])), "more than once"),
        (lambda d: d["rules"][0].update(seeds=[]), "at least one seed"),
        (lambda d: d["subrules"][0].update(id="P3.a"), "must start with its parent"),
        (lambda d: d["subrules"][0].pop("parent"), "needs a parent"),
        (lambda d: d["rules"][0].pop("title"), "needs a title"),
        (lambda d: d["rules"][0].update(extra_key=1), "Extra inputs"),
    ],
    ids=["unknown-seed", "duplicate-id", "rule-without-seeds", "prefix-mismatch", "no-parent",
         "no-title", "unknown-key"],
)
def test_malformed_rulebook_is_rejected(mutate, message: str) -> None:
    """Each structural mistake in a rulebook is caught with a message that says what is wrong."""
    data = _minimal()
    mutate(data)
    with pytest.raises(ValidationError, match=message):
        RuleBook.model_validate(data)


def test_bad_rulebook_file_becomes_input_error(tmp_path: Path) -> None:
    """Loading a broken rules file gives the user a one-paragraph InputError naming the file."""
    data = _minimal()
    data["subrules"][0]["parent"] = "P7"
    data["subrules"][0]["id"] = "P7.a"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(InputError, match="rules.yaml") as info:
        load_rulebook(path)
    assert "P7" in str(info.value)
