"""Run folders: written atomically, read back for reports and comparisons.

A run folder holds ``summary.json``, ``patients.parquet``, ``events.parquet`` and ``manifest.json``,
the tidy tables ``resource_use.parquet`` and ``replication_metrics.parquet``/``.csv`` (plus whatever
reports are rendered into it). It is written into a hidden temporary folder beside the
destination and renamed into place only when every file is complete, so an interrupted run leaves no
half-written folder behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputError

RUN_FILES = ("summary.json", "patients.parquet", "events.parquet", "manifest.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
        fh.write("\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_folder(dest: str | Path, fill: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Create ``dest`` by letting ``fill`` write into a temporary folder, then renaming it into place."""
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise InputError(f"the output folder '{dest}' already exists", field="--out",
                         fix="name a new folder, or remove the old one first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        fill(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def write_tables(result: Any, folder: Path) -> None:
    """The tables of a run: summary.json, patients/events/resource_use.parquet and the per-replication
    metrics as a long table (replication_metrics.parquet and .csv: scenario, replication, metric, value,
    unit)."""
    write_json(folder / "summary.json", result.summary)
    result.patients.to_parquet(folder / "patients.parquet", index=False)
    result.events.to_parquet(folder / "events.parquet", index=False)
    if getattr(result, "resources", None) is not None:
        result.resources.to_parquet(folder / "resource_use.parquet", index=False)
    if hasattr(result, "replication_table"):
        long = result.replication_table()
        long.to_parquet(folder / "replication_metrics.parquet", index=False)
        long.to_csv(folder / "replication_metrics.csv", index=False)


def write_run(result: Any, dest: str | Path, extra: Callable[[Path], None] | None = None) -> Path:
    """Write a :class:`~simulator.runner.RunResult` as a run folder; ``extra`` may add files (reports)."""

    def fill(tmp: Path) -> None:
        write_tables(result, tmp)
        if extra is not None:
            extra(tmp)
        manifest = dict(result.manifest)
        manifest["files"] = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json(tmp / "manifest.json", manifest)

    return atomic_folder(dest, fill)


def read_run(folder: str | Path) -> dict[str, Any]:
    """Read a run folder back: ``{"summary", "manifest", "patients", "events"}``."""
    folder = Path(folder)
    missing = [f for f in RUN_FILES if not (folder / f).exists()]
    if missing:
        raise InputError(f"'{folder}' is not a complete run folder (missing {', '.join(missing)})",
                         file=str(folder), fix="give a folder written by 'painpath run'")
    return {
        "summary": json.loads((folder / "summary.json").read_text()),
        "manifest": json.loads((folder / "manifest.json").read_text()),
        "patients": pd.read_parquet(folder / "patients.parquet"),
        "events": pd.read_parquet(folder / "events.parquet"),
    }
