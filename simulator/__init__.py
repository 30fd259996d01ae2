"""painpath: a simulator of the pharmacological treatment pathway for neuropathic pain.

For policy analysis and teaching; not for clinical use. The public API mirrors the CLI.
"""

from __future__ import annotations

from pathlib import Path

from .inputs import compiled

compiled.install()  # before any engine module is imported: a compiled module runs only if built from its source

from .analysis.runner import RunResult, register_writers, simulate  # noqa: E402
from .inputs.errors import InputError  # noqa: E402
from .scenario import Scenario, load_scenario  # noqa: E402

__all__ = ["InputError", "RunResult", "Scenario", "load_scenario", "simulate"]


# RunResult.save()/.report() write through the output layer, which analysis never imports: wired here, the
# package's entry point, which runs before any of its modules. The output modules (reports, figures) are
# imported when a run is first saved, not by every ``import simulator`` (worker processes included).
def _save_run(result: RunResult, dest: str | Path, report: bool = True) -> Path:
    from .output.folders import save_run

    return save_run(result, dest, report)


def _write_run_report(result: RunResult, path: str | Path) -> Path:
    from .output.report import write_run_report

    return write_run_report(result, path)


register_writers(save=_save_run, report=_write_run_report)
