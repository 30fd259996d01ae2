"""Hypothesis profiles.

The default profile ("ci") is derandomized: every run of the suite draws the same examples, so CI on a
clean clone is reproducible and a red run can be replayed exactly. New counter-examples are hunted on
purpose with the "explore" profile (fresh random examples on every run; run it repeatedly), for instance::

    for i in $(seq 20); do HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest -q tests/test_invariants_property.py; done

A counter-example it finds is fixed and then pinned as an ordinary test (or with ``@example``), so that the
deterministic run protects it from then on.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
