"""`painpath lint`: static checks of the pathway and policy catch broken definitions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from simulator.cli import main
from simulator.model.pathway import STATES, TRANSITIONS, Edge
from simulator.model.policy import Policy, StrongOpioidGate
from simulator.regression.lint import ERROR, has_errors, lint_pathway, lint_policy, rule_ids_in_source

DATA = Path(__file__).parent / "data"


def _errors(findings, check):
    return [f for f in findings if f.severity == ERROR and f.check == check]


def test_packaged_pathway_has_no_errors():
    """Protects the shipped pathway: reachable, no dead end, every outcome answered, rule ids resolvable."""
    found = lint_pathway()
    assert not has_errors(found), [f for f in found if f.severity == ERROR]
    assert any(f.subject == "specialist_care" for f in found)  # lint explains why it is not a dead end


def test_unreachable_state_is_caught():
    """Protects reachability: a state no edge enters is reported."""
    states = (*STATES, "acupuncture")
    trans = (*TRANSITIONS, Edge("relief", ("acupuncture",), "relieved", (), "P10"))
    errs = _errors(lint_pathway(states, trans), "reachable")
    assert [f.subject for f in errs] == ["acupuncture"]


def test_dead_end_is_caught():
    """Protects dead ends: a non-terminal state without exits is reported."""
    states = (*STATES, "waiting_list")
    trans = (*TRANSITIONS, Edge("wait", ("assessment",), "waiting_list", (), "P9"))
    errs = _errors(lint_pathway(states, trans), "dead_end")
    assert [f.subject for f in errs] == ["waiting_list"]


def test_missing_outcome_exit_and_escalation():
    """Protects outcome exits and P7/P8 order: dropping 'refer' leaves strong_opioid without exits for
    failure; an ungated edge from assessment into strong_opioid is an escalation error."""
    trans = tuple(e for e in TRANSITIONS if e.trigger != "refer")
    errs = _errors(lint_pathway(STATES, trans), "outcome_exits")
    assert {(f.subject, f.message.split("'")[-2]) for f in errs} >= {("strong_opioid", "none")}
    bad = (*TRANSITIONS, Edge("opioid_now", ("assessment",), "strong_opioid", (), "P8"))
    assert any("assessment->strong_opioid" == f.subject for f in _errors(lint_pathway(STATES, bad), "escalation"))
    no_tram = tuple(e if e.dest != "strong_opioid" else replace(e, source=tuple(s for s in e.source if s != "tramadol"))
                    for e in TRANSITIONS)
    assert _errors(lint_pathway(STATES, no_tram), "escalation")


def test_unknown_rule_ids_are_caught():
    """Protects provenance: an edge citing an unknown rule and a rule-like literal in code are reported."""
    trans = (*TRANSITIONS[:-1], replace(TRANSITIONS[-1], rule="P99.nowhere"))
    assert _errors(lint_pathway(STATES, trans), "rule_ids")
    found = rule_ids_in_source("x = 'P4.partial_add'\ny = 'P4.not_a_rule'\nz = 'hello'\n")
    assert [r for r, _ in found] == ["P4.partial_add", "P4.not_a_rule"]


def test_policy_relaxations_need_declarations():
    """Protects declared departures: a relaxed gate is an error unless declared."""
    gate = StrongOpioidGate(require_failed_classes=1, require_combination=False)
    assert _errors(lint_policy(Policy(strong_opioid=gate)), "policy_gate")
    assert not has_errors(lint_policy(Policy(strong_opioid=gate, declared_departures=["early_strong_opioid"])))
    assert _errors(lint_policy(Policy(trial_days={"gabapentinoid": 14})), "policy_trial")
    assert not has_errors(lint_policy(Policy()))


def test_cli_lint_exit_codes():
    """Protects the CLI: guideline pathway exits 0, an undeclared relaxed policy exits 1."""
    r = CliRunner()
    assert r.invoke(main, ["lint"]).exit_code == 0
    res = r.invoke(main, ["lint", str(DATA / "early-opioid.yaml")])
    assert res.exit_code == 1 and "early_strong_opioid" in res.output
    assert r.invoke(main, ["lint", str(DATA / "early-opioid-declared.yaml")]).exit_code == 0
