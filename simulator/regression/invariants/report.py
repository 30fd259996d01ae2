"""The result of a check: :class:`Violation` (one flagged row), :class:`InvariantResult` (one invariant over a
run: trajectories checked and applicable, violations and declared departures) and :class:`CheckReport`
(every invariant, with ``to_dict`` for ``painpath check --json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .registry import Invariant


@dataclass(frozen=True)
class Violation:
    invariant: str
    replication: int
    patient: int
    day: float
    event: str
    drug: str | None
    rule: str | None
    detail: str
    declared: bool = False


@dataclass
class InvariantResult:
    invariant: Invariant
    checked: int = 0  # trajectories examined
    applicable: int = 0  # trajectories with at least one row this invariant tests
    violations: list[Violation] = field(default_factory=list)  # undeclared
    declared: list[Violation] = field(default_factory=list)  # excused by a declared departure

    @property
    def status(self) -> str:
        if self.violations:
            return "FAIL"
        return "declared departure" if self.declared else "ok"


@dataclass
class CheckReport:
    """The result of checking every trajectory of a run."""

    scenario: str
    trajectories: int
    declared_departures: tuple[str, ...]
    results: list[InvariantResult]

    @property
    def ok(self) -> bool:
        return all(not r.violations for r in self.results)

    @property
    def n_violations(self) -> int:
        return sum(len(r.violations) for r in self.results)

    @property
    def n_declared(self) -> int:
        return sum(len(r.declared) for r in self.results)

    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.violations]

    def by_invariant(self) -> dict[str, InvariantResult]:
        return {r.invariant.name: r for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "trajectories": self.trajectories,
            "declared_departures": list(self.declared_departures),
            "ok": self.ok,
            "violations": self.n_violations,
            "declared_departure_violations": self.n_declared,
            "invariants": [
                {"name": r.invariant.name, "rule": r.invariant.rule, "seeds": r.invariant.seeds,
                 "description": r.invariant.description, "reads": r.invariant.reads,
                 "departure": r.invariant.departure, "status": r.status, "checked": r.checked,
                 "applicable": r.applicable, "violations": [asdict(v) for v in r.violations],
                 "declared": [asdict(v) for v in r.declared]}
                for r in self.results
            ],
        }
