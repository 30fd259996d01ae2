"""Decisions are built once per distinct value and shared (policy_context.decision/revised, a speed measure):
a shared decision must be exactly the one a fresh build gives, field types included."""

from dataclasses import replace

from simulator.model.policy_context import Decision, decision, revised


def test_shared_decision_is_the_fresh_one() -> None:
    """An equal-but-differently-typed argument (1 for True) must not hand back the other's decision."""
    assert decision("refer", stop_all=1).stop_all == 1
    d = decision("refer", stop_all=True)
    assert d == Decision("refer", stop_all=True)
    assert d.stop_all is True  # an untyped cache would return the decision built with stop_all=1
    assert decision("refer", stop_all=True) is d  # built once, shared


def test_revised_is_replace_and_leaves_the_original() -> None:
    d = decision("switch", (3,), stop_all=True, rule="P4.switch_no_response")
    r = revised(d, also=(7,))
    assert r == replace(d, also=(7,))
    assert d.also == () and r.also == (7,)
    assert revised(d, also=(7,)) is r
