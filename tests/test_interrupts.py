"""Interrupted and concurrent runs (issue 14): no temporary folder, no half-written folder, no orphan process,
and a run never replaces another run's folder.

Each test starts the real CLI in a subprocess and signals it while it simulates or while it writes (the
temporary folder ``.NAME.PID.TOKEN.tmp`` exists then: the test waits for it to appear). Most are marked
slow (a few seconds each): run them with ``python -m pytest -m slow tests/test_interrupts.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "scenarios" / "guideline.yaml"


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", "from simulator.cli import main; main()", *map(str, args)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")] + [p for p in folder.rglob(".*.part")]


def _wait_for(cond, timeout: float = 60.0, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _simulating(proc: subprocess.Popen, workers: int = 0) -> bool:
    """True once the CLI is past its imports and simulating (its workers exist when asked for)."""
    if workers:
        return len(_children(proc.pid)) >= workers
    try:
        return float(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[11]) > 150  # utime ticks
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_simulation_leaves_nothing(tmp_path: Path, sig: int) -> None:
    """Ctrl-C or SIGTERM while simulating: the process ends, no folder and no temporary folder are left."""
    p = _start(["run", GUIDE, "--patients", 30000, "--out", tmp_path / "out", "--quiet", "--no-report"], tmp_path)
    assert _wait_for(lambda: _simulating(p) or p.poll() is not None)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode in (130, 143, -sig), (p.returncode, err)
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])
def test_signal_during_writing_leaves_nothing(tmp_path: Path, sig: int) -> None:
    """Ctrl-C or SIGTERM while the run folder is being written: the temporary folder is removed."""
    p = _start(["run", GUIDE, "--patients", 1000, "--out", tmp_path / "out", "--quiet"], tmp_path)
    assert _wait_for(lambda: bool(_temps(tmp_path)) or p.poll() is not None), p.communicate()
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:  # finished before the signal landed: then the folder is complete
        assert (tmp_path / "out" / "manifest.json").exists()
    else:
        assert p.returncode in (130, 143, -sig), (p.returncode, err)
        assert not (tmp_path / "out").exists()
    assert "Traceback" not in err
    assert _temps(tmp_path) == []


@pytest.mark.slow
def test_sigkill_during_writing_is_swept_by_the_next_run(tmp_path: Path) -> None:
    """SIGKILL while writing leaves the temporary folder; the next run into the same parent removes it."""
    p = _start(["run", GUIDE, "--patients", 1000, "--out", tmp_path / "out", "--quiet"], tmp_path)
    assert _wait_for(lambda: bool(_temps(tmp_path)) or p.poll() is not None)
    p.kill()
    p.communicate(timeout=60)
    left = _temps(tmp_path)
    assert left or (tmp_path / "out" / "manifest.json").exists()
    q = _start(["run", GUIDE, "--patients", 50, "--out", tmp_path / "second", "--quiet", "--no-report"], tmp_path)
    _, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert _temps(tmp_path) == []
    assert (tmp_path / "second" / "manifest.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_die_with_their_parent(tmp_path: Path, sig: int) -> None:
    """SIGKILL or SIGTERM to `compare --workers 2`: both pool workers end too (no orphan holds the terminal)."""
    p = _start(["compare", GUIDE, ROOT / "scenarios" / "switch-on-partial.yaml", "--patients", 40000, "--replications", 2, "--workers", 2,
                "--out", tmp_path / "cmp", "--quiet"], tmp_path)
    assert _wait_for(lambda: _simulating(p, workers=2) or p.poll() is not None)
    workers = _children(p.pid)
    assert len(workers) >= 2
    p.send_signal(sig)
    p.wait(timeout=60)  # not communicate(): orphaned workers would hold its pipes open
    # at once: a replication of 40,000 patients takes several seconds, so workers that merely notice a
    # broken pipe when they finish would still be alive after 1.5 s
    assert _wait_for(lambda: not any(_alive(w) for w in workers), timeout=1.5), [w for w in workers if _alive(w)]
    p.communicate(timeout=60)
    if sig != signal.SIGKILL:
        assert list(tmp_path.iterdir()) == []


def test_concurrent_runs_into_the_same_parent_keep_both(tmp_path: Path) -> None:
    """Two default runs started together (same scenario, same second): both exit 0 and both folders are kept;
    two runs with the same --out: one writes it, the other is refused and replaces nothing."""
    args = ["run", GUIDE, "--patients", 100, "--quiet", "--no-report"]
    a, b = _start(args, tmp_path), _start(args, tmp_path)
    for p in (a, b):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    made = sorted((tmp_path / "results").iterdir())
    assert len(made) == 2 and all((m / "manifest.json").exists() for m in made), made
    same = [*args, "--out", tmp_path / "same"]
    c, d = _start(same, tmp_path), _start(same, tmp_path)
    codes = sorted(p.wait(timeout=120) for p in (c, d))
    errs = [p.stderr.read() for p in (c, d)]
    assert codes == [0, 2], errs
    assert any("--out" in e and "Fix:" in e for e in errs)
    assert (tmp_path / "same" / "manifest.json").exists() and _temps(tmp_path) == []
