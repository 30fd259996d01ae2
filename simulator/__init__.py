"""painpath: a simulator of the pharmacological treatment pathway for neuropathic pain.

For policy analysis and teaching; not for clinical use. The public API mirrors the CLI.
"""

from __future__ import annotations

from .analysis.runner import RunResult, register_writers, simulate
from .inputs.errors import InputError
from .output.folders import save_run
from .output.report import write_run_report
from .scenario import Scenario, load_scenario

# RunResult.save()/.report() write through the output layer (analysis never imports it): wired here, the
# package's entry point, which runs before any of its modules.
register_writers(save=save_run, report=write_run_report)

__all__ = ["InputError", "RunResult", "Scenario", "load_scenario", "simulate"]
