"""painpath: a simulator of the pharmacological treatment pathway for neuropathic pain.

For policy analysis and teaching; not for clinical use. The public API mirrors the CLI.
"""

from __future__ import annotations

from .analysis.runner import RunResult, simulate
from .inputs.errors import InputError
from .scenario import Scenario, load_scenario

__all__ = ["InputError", "RunResult", "Scenario", "load_scenario", "simulate"]
