"""Run folders: preflighted, written atomically and exclusively, read back for reports and comparisons.

A run folder holds ``summary.json``, ``patients.parquet``, ``events.parquet`` and ``manifest.json``,
the tidy tables ``resource_use.parquet`` and ``replication_metrics.parquet``/``.csv`` (plus whatever
reports are rendered into it). Writing one follows four rules:

* **Preflight** (:func:`preflight_out`): before any simulation, the destination is checked (not an existing
  folder unless ``--force``, not below a file, in a writable place, a name the file system accepts), so a
  long simulation is never thrown away at the end.
* **Atomic**: files are written into a hidden temporary folder ``.NAME.PID.TOKEN.tmp`` beside the
  destination and renamed into place only when every file is complete, so an interrupted run (Ctrl-C,
  SIGTERM: :mod:`simulator.analysis.interrupts`) leaves no half-written folder; one killed outright (SIGKILL) leaves
  its temporary folder, which the next write into the same parent removes (its PID is gone).
* **Exclusive**: the destination is claimed with an exclusive ``mkdir``; a run never replaces another run's
  folder. Default names (``results/NAME-YYYYmmdd-HHMMSS``) get a ``-2``, ``-3``... suffix when taken; an
  explicit ``--out`` taken meanwhile by another run is an error (nothing is replaced).
* **Names are labels**: a scenario name becomes a folder name only through :func:`folder_name`, which keeps
  letters, digits, ``.``, ``_`` and ``-``; it can never be a path.

Folders get the usual permissions (``0777`` less the umask), not the ``0700`` of ``tempfile.mkdtemp``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..inputs.errors import InputError
from ..inputs.schema import check_path_text

RUN_FILES = ("summary.json", "patients.parquet", "events.parquet", "manifest.json")
RESULT_MARKERS = ("manifest.json", "summary.json", "comparison.json", "sweep.json", "tornado.json")
"""Files that mark a folder as painpath output (only such a folder, or an empty one, is replaced by --force)."""
_TMP = re.compile(r"^\..*\.(\d+)\.[0-9a-f]{8}(\.old)?\.tmp$")


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


# ---- names ----------------------------------------------------------------------------------------

def folder_name(label: str, max_len: int = 60) -> str:
    """A safe folder name for a label: letters, digits, '.', '_' and '-' only (no '..'), never empty."""
    slug = re.sub(r"[^A-Za-z0-9._-]+|\.{2,}", "-", label)
    slug = re.sub(r"-{2,}", "-", slug).strip("-.")[:max_len].strip("-.")
    return slug or "run"


def default_dest(prefix: str, root: str | Path = "results") -> Path:
    """``root/PREFIX-YYYYmmdd-HHMMSS`` with PREFIX made safe (:func:`folder_name`); made unique when written."""
    return Path(root) / f"{folder_name(prefix)}-{time.strftime('%Y%m%d-%H%M%S')}"


# ---- preflight ----------------------------------------------------------------------------------

def _is_result_folder(path: Path) -> bool:
    return path.is_dir() and (not any(path.iterdir()) or any((path / m).exists() for m in RESULT_MARKERS))


def preflight_out(dest: str | Path, *, force: bool = False, option: str = "--out", kind: str = "folder",
                  unique: bool = False) -> Path:
    """Check before simulating that ``dest`` can be written; raise InputError naming ``option`` otherwise.

    ``kind`` is ``"folder"`` (a run/comparison folder: must not exist unless ``force``, and then only a
    painpath output folder or an empty one is replaced) or ``"file"`` (an output file: may be replaced,
    must not be a folder). ``unique``: a default name, made unique when written, so it may exist now.
    """
    check_path_text(dest, field=option)
    dest = Path(dest)
    if (dest.exists() or dest.is_symlink()) and not unique:
        if kind == "file":
            if dest.is_dir():
                raise InputError(f"'{dest}' is a folder", field=option, fix="name a file")
        elif not force:
            raise InputError(f"the output folder '{dest}' already exists", field=option,
                             fix="name a new folder, or add --force to replace it")
        elif not _is_result_folder(dest):
            raise InputError(f"'{dest}' exists and is not a painpath output folder, so --force does not replace it",
                             field=option, fix="name a new folder")
    probe = dest.parent
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(f"'{probe}' is a file, so '{dest}' cannot be created below it", field=option,
                         fix="name a path whose parent folders are folders")
    if probe.exists():
        test = probe / f".painpath-write-test.{os.getpid()}.{secrets.token_hex(4)}"
        try:  # a real write test: os.access says yes to root on read-only or virtual file systems
            os.mkdir(test)
            os.rmdir(test)
        except OSError as exc:
            raise InputError(f"cannot write in '{probe}' ({exc.strerror or exc})", field=option,
                             fix="name a place you can write to") from None
    return dest


# ---- temporary folders --------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(parent: Path) -> list[Path]:
    """Remove temporary folders left in ``parent`` by a writer that no longer runs (e.g. after SIGKILL)."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _temp_name(dest: Path, suffix: str = "") -> str:
    return f".{dest.name[:80]}.{os.getpid()}.{secrets.token_hex(4)}{suffix}.tmp"


def _mkdir_parents(dest: Path, option: str = "--out") -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"'{dest.parent}' cannot be created: a part of it is a file", field=option,
                         fix="name a path whose parent folders are folders") from None
    except PermissionError:
        raise InputError(f"cannot create '{dest.parent}' (permission denied)", field=option,
                         fix="name a place you can write to") from None
    except OSError as exc:
        raise InputError(f"cannot create '{dest.parent}' ({exc.strerror or exc})", field=option,
                         fix="name another place") from None


def _claim(dest: Path, unique: bool) -> Path:
    """Exclusively create ``dest`` (or, when ``unique``, the first free of dest-2, dest-3...)."""
    for k in range(1, 1000):
        cand = dest if k == 1 else dest.with_name(f"{dest.name}-{k}")
        try:
            os.mkdir(cand)
            return cand
        except FileExistsError:
            if not unique:
                raise InputError(f"the output folder '{dest}' was created by another run while this one was "
                                 "working; it was not replaced", field="--out",
                                 fix="run again with another --out") from None
    raise InputError(f"no free name for '{dest}'", field="--out", fix="clean up the results folder")  # pragma: no cover


def atomic_folder(dest: str | Path, fill: Callable[[Path], None], overwrite: bool = False,
                  unique: bool = False) -> Path:
    """Create ``dest`` by letting ``fill`` write into a temporary folder, then moving it into place.

    ``overwrite``: replace an existing painpath folder at ``dest`` (``--force``). ``unique``: when ``dest``
    is taken, use ``dest-2``, ``dest-3``... (default names). Returns the folder written.
    """
    dest = Path(dest)
    if not overwrite:
        if dest.exists() and not unique:
            raise InputError(f"the output folder '{dest}' already exists", field="--out",
                             fix="name a new folder, or add --force to replace it")
    else:
        preflight_out(dest, force=True)
    _mkdir_parents(dest)
    sweep_stale_temps(dest.parent)
    tmp = dest.parent / _temp_name(dest)
    old: Path | None = None
    claimed: Path | None = None
    try:
        os.mkdir(tmp)  # inside the try: a signal right after it still removes the folder
        fill(tmp)
        if overwrite and dest.exists():
            old = dest.parent / _temp_name(dest, ".old")
            os.rename(dest, old)
            final = dest
            os.rename(tmp, final)
        else:
            claimed = _claim(dest, unique)
            os.replace(tmp, claimed)  # replaces the empty folder just claimed
            final, claimed = claimed, None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if claimed is not None:
            try:
                claimed.rmdir()  # still the empty folder claimed: interrupted between claim and rename
            except OSError:
                pass
        if old is not None and old.exists() and not dest.exists():
            os.rename(old, dest)  # put the replaced folder back
            old = None
        raise
    if old is not None:  # the new folder is in place: the replaced one goes
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_file_atomic(path: str | Path, write: Callable[[Path], None], option: str = "--out") -> Path:
    """Write one output file through a temporary twin in the same folder, renamed into place when complete.

    Missing parent folders are created; a folder at ``path`` or a file among its parents is an InputError
    naming ``option``, as is a write the operating system refuses."""
    path = Path(path)
    check_path_text(path, field=option)
    if path.is_dir():
        raise InputError(f"'{path}' is a folder", field=option, fix="name a file")
    _mkdir_parents(path, option)
    tmp = path.with_name(_temp_name(path).removesuffix(".tmp") + ".part")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write '{path}' ({exc.strerror or exc})", field=option,
                         fix="name a file in a place you can write to") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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


def write_run(result: Any, dest: str | Path, extra: Callable[[Path], None] | None = None,
              overwrite: bool = False, unique: bool = False) -> Path:
    """Write a :class:`~simulator.analysis.runner.RunResult` as a run folder; ``extra`` may add files (reports)."""

    def fill(tmp: Path) -> None:
        write_tables(result, tmp)
        if extra is not None:
            extra(tmp)
        manifest = dict(result.manifest)
        manifest["files"] = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json(tmp / "manifest.json", manifest)

    return atomic_folder(dest, fill, overwrite=overwrite, unique=unique)


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file painpath wrote; InputError (not a traceback) when it is missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} is missing", file=str(path), fix="give a folder written by painpath") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON ({exc})", file=str(path),
                         fix="re-create the folder with painpath (the file was damaged or edited)") from None
    except OSError as exc:
        raise InputError(f"{what} cannot be read ({exc.strerror or exc})", file=str(path),
                         fix="check the file") from None


def read_run(folder: str | Path) -> dict[str, Any]:
    """Read a run folder back: ``{"summary", "manifest", "patients", "events"}``."""
    folder = Path(folder)
    missing = [f for f in RUN_FILES if not (folder / f).exists()]
    if missing:
        raise InputError(f"'{folder}' is not a complete run folder (missing {', '.join(missing)})",
                         file=str(folder), fix="give a folder written by 'painpath run'")
    out: dict[str, Any] = {"summary": read_json(folder / "summary.json", "summary.json"),
                           "manifest": read_json(folder / "manifest.json", "manifest.json")}
    for name in ("patients", "events"):
        try:
            out[name] = pd.read_parquet(folder / f"{name}.parquet")
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
            raise InputError(f"{name}.parquet cannot be read ({type(exc).__name__})", file=str(folder / f"{name}.parquet"),
                             fix="re-create the folder with painpath run") from None
    if not isinstance(out["summary"], dict) or not isinstance(out["manifest"], dict):
        raise InputError("summary.json or manifest.json is not a JSON object", file=str(folder),
                         fix="re-create the folder with painpath run")
    return out

