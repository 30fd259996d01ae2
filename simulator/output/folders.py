"""Comparison, sweep and tornado folders: what ``painpath compare``, ``sweep`` and ``tornado`` write.

Each folder is written atomically (:func:`simulator.output.results.atomic_folder`): the analysis results as JSON
and CSV, every scenario's run under ``runs/`` (tables and manifest, no per-run report) and the folder's
``report.html``. The analyses themselves (:mod:`simulator.analysis.compare`, :mod:`simulator.analysis.sweep`) compute; this
module only writes, so the analysis side never imports the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.compare import Comparison, comparison_dict, comparison_frame, replication_frame
from ..analysis.runner import RunResult
from ..scenario import Scenario
from .report import write_comparison_report, write_sensitivity_report
from .results import atomic_folder, default_dest, folder_name, write_json, write_tables


def write_run_files(res: RunResult, folder: Path) -> None:
    """One scenario's run inside a comparison, sweep or tornado folder: its tables and manifest.

    Raises FileExistsError if ``folder`` exists (it is always inside a fresh temporary folder)."""
    folder.mkdir(parents=True)
    write_tables(res, folder)
    write_json(folder / "manifest.json", res.manifest)


def write_comparison(c: Comparison, dest: str | Path, report: bool = True, overwrite: bool = False,
                     unique: bool = False) -> Path:
    """Write ``comparison.json``, ``comparison.csv``, ``replication_metrics.csv``/``.parquet`` (all scenarios,
    long), each scenario's run under ``runs/`` and ``report.html``."""

    def fill(tmp: Path) -> None:
        write_json(tmp / "comparison.json", comparison_dict(c))
        comparison_frame(c).to_csv(tmp / "comparison.csv", index=False)
        long = replication_frame(c)
        long.to_csv(tmp / "replication_metrics.csv", index=False)
        long.to_parquet(tmp / "replication_metrics.parquet", index=False)
        for i, res in enumerate(c.results):
            write_run_files(res, tmp / "runs" / f"{i:02d}-{folder_name(res.scenario.name)}")
        if report:
            write_comparison_report(tmp, tmp / "report.html")

    return atomic_folder(dest, fill, overwrite=overwrite, unique=unique)


def default_compare_dir(root: str | Path = "results") -> Path:
    """``results/compare-<timestamp>/`` (not created)."""
    return default_dest("compare", root)


def rows_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write sweep or tornado rows as CSV (list cells, such as CIs, as their text)."""
    pd.DataFrame([{k: (str(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]).to_csv(path, index=False)


def write_sweep(data: dict[str, Any], runs: Sequence[RunResult], dest: str | Path, report: bool = True,
                overwrite: bool = False, unique: bool = False) -> Path:
    """Write ``sweep.json``, ``sweep.csv``, each value's run under ``runs/`` and ``report.html``."""

    def fill(tmp: Path) -> None:
        write_json(tmp / "sweep.json", data)
        rows_csv(data["rows"], tmp / "sweep.csv")
        for i, r in enumerate(runs):
            write_run_files(r, tmp / "runs" / f"{i:02d}-value")
        if report:
            write_sensitivity_report(tmp)

    return atomic_folder(dest, fill, overwrite=overwrite, unique=unique)


def write_tornado(data: dict[str, Any], base: RunResult, dest: str | Path, report: bool = True,
                  overwrite: bool = False, unique: bool = False) -> Path:
    """Write ``tornado.json``, ``tornado.csv``, the base run under ``runs/00-base`` and ``report.html``."""

    def fill(tmp: Path) -> None:
        write_json(tmp / "tornado.json", data)
        rows_csv(data["rows"], tmp / "tornado.csv")
        write_run_files(base, tmp / "runs" / "00-base")
        if report:
            write_sensitivity_report(tmp)

    return atomic_folder(dest, fill, overwrite=overwrite, unique=unique)


def default_dir(kind: str, scenario: Scenario, root: str | Path = "results") -> Path:
    """``results/<kind>-<scenario>-<timestamp>/`` (not created)."""
    return default_dest(f"{kind}-{scenario.name}", root)
