"""Which build of a compiled module is imported: its C extension, or its Python source when that has changed.

setup.py compiles the modules the engine runs per simulated event (its ``COMPILED``) with Cython, from their ``.py``
files as they are, and records the sha256 of each source it compiled in ``simulator/_compiled.json``. Python's
own import would take an extension module over the ``.py`` beside it even after the ``.py`` was edited or checked
out anew (a stale build silently running old code); :class:`FreshBuildFinder`, installed first by
``import simulator``, imports the ``.py`` instead whenever the source's digest is not the one recorded, with one
warning naming the rebuild (``pip install -e .``). ``PAINPATH_PURE_PYTHON=1`` imports every module from its source
(profiling, debugging, checking that both builds agree: ``tests/test_compiled.py``). Both builds give identical
results; the compiled one is about 1.3x faster (``benchmarks/bench_engine.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType

PURE_ENV = "PAINPATH_PURE_PYTHON"
"""Environment variable: set to 1 to import every module of the package from its Python source."""

MANIFEST = "_compiled.json"
"""The build's record, in the package folder: ``{dotted module name: sha256 of the source compiled}``."""


class StaleBuildWarning(UserWarning):
    """A compiled module's source changed since the build: its source runs (same results, slower)."""


class FreshBuildFinder:
    """A meta path finder for the modules of ``package`` that have a compiled extension beside their source: it
    returns the source's spec when the extension was not built from that source (or ``pure``), and None otherwise
    (Python's own finder then imports the extension). Modules without an extension are left to Python."""

    def __init__(self, package: str, manifest: dict[str, str], pure: bool = False) -> None:
        self.prefix = package + "."
        self.manifest = manifest
        self.pure = pure
        self.stale: list[str] = []  # modules whose source ran because it changed since the build

    def find_spec(self, fullname: str, path, target=None) -> ModuleSpec | None:
        if not fullname.startswith(self.prefix) or not path:
            return None
        name = fullname.rpartition(".")[2]
        for folder in path:
            src = os.path.join(folder, name + ".py")
            if os.path.isfile(src):
                break
        else:
            return None
        if not any(os.path.isfile(os.path.join(folder, name + suffix)) for suffix in EXTENSION_SUFFIXES):
            return None  # not compiled
        if not self.pure:
            with open(src, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == self.manifest.get(fullname):
                    return None  # built from this very source: the extension is imported
            self.stale.append(fullname)
            warnings.warn(f"{fullname} changed since it was compiled: its Python source runs (same results, "
                          "slower). Rebuild with `pip install -e .` in the checkout.", StaleBuildWarning, stacklevel=2)
        return importlib.util.spec_from_file_location(fullname, src)


def install(package: str = "simulator") -> FreshBuildFinder:
    """Put a :class:`FreshBuildFinder` for ``package`` (reading its folder's manifest) first on ``sys.meta_path``,
    once; returns it."""
    for finder in sys.meta_path:
        if isinstance(finder, FreshBuildFinder) and finder.prefix == package + ".":
            return finder
    folder = Path(__file__).resolve().parents[1]
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    finder = FreshBuildFinder(package, manifest, os.environ.get(PURE_ENV, "") not in ("", "0"))
    sys.meta_path.insert(0, finder)
    return finder


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` runs from a compiled extension (not its Python source)."""
    return not str(getattr(module, "__file__", "")).endswith(".py")


def source_of(module: ModuleType) -> str:
    """The Python source of ``module``, compiled or not (``inspect.getsource`` cannot read an extension's)."""
    path = Path(module.__file__)
    if path.suffix != ".py":
        path = path.with_name(module.__name__.rpartition(".")[2] + ".py")
    return path.read_text()
