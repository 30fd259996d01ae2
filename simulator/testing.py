"""Pytest helpers for guideline teams keeping their own regression tests (``simulator.testing``).

Use it as a plugin in your own repository's ``conftest.py``::

    pytest_plugins = ["simulator.testing"]

then, in a test::

    def test_new_order_keeps_relief(painpath_run):
        result = painpath_run("scenarios/our-guideline.yaml", patients=2000, seed=1, replications=4)
        assert_no_violations(result)
        assert_metric(result, "time_to_relief.median_days", between=(56, 98))

A scenario is simulated once per session for each (file, patients, seed, replications): tests that ask
for the same run share it. The helpers raise ``AssertionError`` with a message naming the scenario,
the run size, the metric, its value and the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from .analysis.summary import flat_metrics
from .regression.invariants import check_run


@lru_cache(maxsize=32)
def _cached_run(path: str, mtime: float, patients: int | None, seed: int | None, replications: int | None) -> Any:
    from .analysis.runner import simulate
    from .scenario import load_scenario

    del mtime  # part of the cache key only: an edited scenario file is simulated again
    return simulate(load_scenario(path), patients=patients, seed=seed, replications=replications)


def painpath_run(scenario_path: str | Path, *, patients: int | None = None, seed: int | None = None,
                 replications: int | None = None) -> Any:
    """Simulate a scenario file once per process for these settings; returns the cached RunResult."""
    p = Path(scenario_path).resolve()
    return _cached_run(str(p), p.stat().st_mtime if p.exists() else 0.0, patients, seed, replications)


def _describe(result: Any) -> str:
    sc = result.scenario
    return f"scenario '{sc.name}' ({sc.patients} patients x {sc.replications} replication(s), seed {sc.seed})"


def metric_value(result: Any, metric: str) -> float | None:
    """A dotted summary metric of a run (e.g. ``time_to_relief.median_days``); None when not reached."""
    flat = flat_metrics({k: v for k, v in result.summary.items() if k != "per_replication"})
    if metric in flat:
        return flat[metric]
    node: Any = result.summary
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            import difflib

            close = difflib.get_close_matches(metric, list(flat), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise AssertionError(f"{_describe(result)} has no metric '{metric}'{hint}")
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise AssertionError(f"'{metric}' of {_describe(result)} is not a number ({node!r})")
    return float(node)


def assert_metric(result: Any, metric: str, *, between: tuple[float, float] | None = None,
                  at_most: float | None = None, at_least: float | None = None) -> float:
    """Assert a summary metric lies within bounds; returns its value."""
    if between is None and at_most is None and at_least is None:
        raise TypeError("assert_metric needs between=, at_most= or at_least=")
    lo, hi = between if between is not None else (-math.inf, math.inf)
    if at_least is not None:
        lo = max(lo, at_least)
    if at_most is not None:
        hi = min(hi, at_most)
    value = metric_value(result, metric)
    bound = f"between {lo:g} and {hi:g}" if math.isfinite(lo) and math.isfinite(hi) else (
        f"at least {lo:g}" if math.isfinite(lo) else f"at most {hi:g}")
    if value is None:
        raise AssertionError(f"{metric} of {_describe(result)} is not available (e.g. a median not reached); "
                             f"expected {bound}")
    if not (lo <= value <= hi):
        raise AssertionError(f"{metric} = {value:g} in {_describe(result)}, expected {bound}")
    return value


def assert_no_violations(result: Any, show: int = 10) -> None:
    """Assert every trajectory obeys the guideline invariants (declared departures allowed)."""
    report = check_run(result)
    if report.ok:
        return
    lines = [f"{report.n_violations} guideline violation(s) in {_describe(result)}:"]
    for v in report.violations()[:show]:
        lines.append(f"  {v.invariant}: replication {v.replication} patient {v.patient} day {v.day:g} "
                     f"{v.event} {v.drug or ''} [{v.rule}] - {v.detail}")
    if report.n_violations > show:
        lines.append(f"  ... and {report.n_violations - show} more (painpath check SCENARIO --json FILE lists all)")
    raise AssertionError("\n".join(lines))


@pytest.fixture(scope="session", name="painpath_run")
def painpath_run_fixture() -> Callable[..., Any]:
    """Fixture: the session-cached :func:`painpath_run` (call it with a scenario path and overrides)."""
    return painpath_run
