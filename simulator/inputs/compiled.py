"""Which build of a compiled module is imported: its C extension, or its Python source when that has changed.

setup.py compiles the modules the engine runs per simulated event (its ``COMPILED``) with Cython, from their ``.py``
files as they are, names each extension ``<module>.compiled<EXT_SUFFIX>`` (a name Python's own import never takes)
and records, in ``simulator/_compiled.json``, the sha256 of each source it compiled. :class:`FreshBuildFinder`,
installed first by ``import simulator``, loads a module's extension only while the module's source is the one
recorded; an edited source runs as Python, with one warning naming the rebuild (``pip install -e .``). A commit
older than the compiled build has no such finder and its import never sees the extensions: its sources run.
``PAINPATH_PURE_PYTHON=1`` runs every module from its source (profiling, debugging, checking that both builds
agree: ``tests/test_compiled.py``). Both builds give identical results; the compiled one runs the engine about 1.3x
faster (``benchmarks/bench_engine.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from importlib.machinery import ExtensionFileLoader, ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

PURE_ENV = "PAINPATH_PURE_PYTHON"
"""Environment variable: set to 1 to import every module of the package from its Python source."""

MANIFEST = "_compiled.json"
"""The build's record, in the package folder: ``{dotted module name: {"sha256": of the source compiled, "file":
the extension's file name}}``."""


class StaleBuildWarning(UserWarning):
    """A compiled module's source changed since the build: its source runs (slower)."""


class FreshBuildFinder:
    """A meta path finder for the modules of ``package`` that have a ``.py``: the spec of the module's extension
    when it is in ``manifest`` and its source is the one it was built from (``pure``: never), else the spec of its
    ``.py`` (with a :class:`StaleBuildWarning` when the source changed since the build). Python's own finder is not
    asked for them, so no other extension file beside a source (one left by an older build) is ever imported."""

    def __init__(self, package: str, manifest: dict[str, dict[str, str]], pure: bool = False) -> None:
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
            return None  # a package, or not found here: Python's own finders
        built = self.manifest.get(fullname)
        ext = os.path.join(folder, built["file"]) if built else ""
        if self.pure or not built or not os.path.isfile(ext):  # (a failed optional compilation: not built)
            return spec_from_file_location(fullname, src)
        with open(src, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() == built["sha256"]:
                return spec_from_file_location(fullname, ext, loader=ExtensionFileLoader(fullname, ext))
        self.stale.append(fullname)
        message = (f"{fullname} changed since it was compiled: its Python source runs (slower than the compiled "
                   "build). Rebuild with `pip install -e .` in the checkout.")
        try:
            warnings.warn(message, StaleBuildWarning, stacklevel=2)
        except Warning:  # warnings turned into errors (-W error): said, not raised from inside an import
            print(f"painpath: {message}", file=sys.stderr)
        return spec_from_file_location(fullname, src)


def install(package: str = "simulator") -> FreshBuildFinder:
    """Put a :class:`FreshBuildFinder` for ``package`` (reading its folder's manifest) first on ``sys.meta_path``,
    once; returns it."""
    for finder in sys.meta_path:
        if isinstance(finder, FreshBuildFinder) and finder.prefix == package + ".":
            return finder
    try:
        manifest = json.loads((Path(__file__).resolve().parents[1] / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    if not isinstance(manifest, dict) or not all(isinstance(v, dict) for v in manifest.values()):
        manifest = {}  # (a record of another layout: nothing is loaded compiled until the next build)
    finder = FreshBuildFinder(package, manifest, os.environ.get(PURE_ENV, "") not in ("", "0"))
    sys.meta_path.insert(0, finder)
    return finder


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` runs from a compiled extension (not its Python source)."""
    return not str(getattr(module, "__file__", "")).endswith(".py")


def build_in_use(package: str = "simulator") -> str:
    """Which build runs the imported modules that have one: "compiled", "python" (none compiled: no build, or
    ``PAINPATH_PURE_PYTHON``), or "partly compiled (from source: ...)" naming those that are not."""
    finder = install(package)
    loaded = [m for m in finder.manifest if m in sys.modules]
    source = [m for m in loaded if not is_compiled(sys.modules[m])]
    if not loaded or len(source) == len(loaded):
        return "python"
    return "compiled" if not source else f"partly compiled (from source: {', '.join(sorted(source))})"


def source_of(module: ModuleType) -> str:
    """The Python source of ``module``, compiled or not (``inspect.getsource`` cannot read an extension's)."""
    path = Path(module.__file__)
    if path.suffix != ".py":
        path = path.with_name(module.__name__.rpartition(".")[2] + ".py")
    return path.read_text()
