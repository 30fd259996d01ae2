"""What every check of the :class:`~.checker.Checker` shares: the policy read as data, the catalogue and the
rulebook, the per-invariant results, and the two recorders: ``_flag`` (a violation, or a declared departure when
the policy declares it) and ``_touch`` (the trajectory is one the invariant applies to)."""

from __future__ import annotations

from typing import Any

from ...model.catalog import Catalog, load_catalog
from ...model.rules import load_rules
from .registry import BY_NAME, DEPARTURE_BY_RULE, INVARIANTS
from .report import InvariantResult, Violation
from .rules import PolicyView


class CheckerBase:
    """The state and recorders the Checker's mixins (doses, decisions, course) share, for one policy."""

    def __init__(self, policy: Any = None, catalog: Catalog | None = None) -> None:
        self.pol = PolicyView.of(policy)
        self.catalog = catalog or load_catalog()
        self.rules = load_rules()
        self.results = {inv.name: InvariantResult(inv) for inv in INVARIANTS}
        self._applicable: dict[str, set[tuple[int, int]]] = {inv.name: set() for inv in INVARIANTS}
        self._tramadol = [d for d in self.catalog.drugs.values() if d.drug_class == "weak_opioid"]
        # invariants a policy option turns off on purpose: reported as declared, never as failures
        self._excused = {name for name, off in (("cipn_no_tca_gabapentinoid", not self.pol.cipn_exclusions),
                                                ("strong_opioid_hiv", self.pol.hiv_strong_opioid_allowed)) if off}

    def _flag(self, name: str, key: tuple[int, int], day: float, event: str, drug: str | None,
              rule: str | None, detail: str) -> None:
        inv = BY_NAME[name]
        declared = ((inv.departure is not None and inv.departure in self.pol.declared) or name in self._excused
                    or DEPARTURE_BY_RULE.get((name, rule), DEPARTURE_BY_RULE.get((name, None))) in self.pol.declared)
        v = Violation(name, key[0], key[1], round(float(day), 3), event, drug, rule, detail, declared)
        res = self.results[name]
        (res.declared if declared else res.violations).append(v)

    def _touch(self, name: str, key: tuple[int, int]) -> None:
        self._applicable[name].add(key)
