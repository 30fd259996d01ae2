"""Interrupt safety: SIGTERM behaves like Ctrl-C (clean-up code runs), and pool workers die with their parent.

* :func:`install_signal_handlers` (called by the CLI) turns SIGTERM into ``SystemExit(143)`` in the main
  thread, so ``finally`` blocks and :func:`simulator.output.results.atomic_folder` remove their temporary folders
  exactly as they do on Ctrl-C (``KeyboardInterrupt``).
* :func:`worker_pool` gives a process pool whose workers ignore Ctrl-C (the parent handles it and ends them),
  and on Linux ask the kernel to kill them when their parent dies (``PR_SET_PDEATHSIG``), so a SIGKILL to
  the parent leaves no orphan holding the terminal. Leaving the ``with`` block (normally or by an
  exception) terminates the workers.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
from typing import Any

EXIT_SIGTERM = 128 + signal.SIGTERM


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(EXIT_SIGTERM)


def install_signal_handlers() -> None:
    """Make SIGTERM raise ``SystemExit(143)`` in the main thread (Ctrl-C already raises KeyboardInterrupt).
    Does nothing when called outside the main thread (Python allows signal handlers only there)."""
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (the CLI embedded in a server, say)
        pass


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die when the parent dies
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def worker_pool(workers: int) -> multiprocessing.pool.Pool:
    """A process pool for replications; use it as a context manager (exit terminates the workers)."""
    return multiprocessing.Pool(processes=workers, initializer=_worker_init, initargs=(os.getpid(),))
