"""Build of painpath: the package is plain Python; the modules the engine runs for every simulated event are also
compiled, as they are, with Cython (a C extension per module, built from the same ``.py``: no Cython syntax, no
types added), which runs the engine about 1.3x faster with byte-identical results (``tests/test_compiled.py``).

The compiled modules are optional: without a C compiler the build warns and the package runs from its sources.
Each compiled module is used only while its source is the one it was built from: the build records the sha256 of
every source it compiled in ``simulator/_compiled.json``, and ``simulator.inputs.compiled`` (installed first by
``import simulator``) imports the ``.py`` of a module edited since (``pip install -e .`` rebuilds). Everything else
of the build is in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import json
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED = (
    # engine: the patient process, its trial and maintenance loops, drug lines, stops, adverse events, the log
    "simulator.engine.simulation", "simulator.engine.process", "simulator.engine.evaluation",
    "simulator.engine.maintenance", "simulator.engine.lines", "simulator.engine.stops", "simulator.engine.adverse",
    "simulator.engine.referral", "simulator.engine.events",
    # model: what the engine calls per decision or visit (no pydantic model is defined in these)
    "simulator.model.decisions", "simulator.model.patient", "simulator.model.safety", "simulator.model.response",
    "simulator.model.streams", "simulator.model.pathway", "simulator.model.clinical_tables",
    "simulator.model.policy_context",
)
"""Dotted names of the compiled modules (each ``simulator/<path>.py``)."""

MANIFEST = "_compiled.json"


def source(module: str) -> str:
    return os.path.join(*module.split(".")) + ".py"


class BuildExt(build_ext):
    """build_ext that records, beside the built package, the sha256 of each source it compiled."""

    def run(self) -> None:
        super().run()
        built = {}
        for ext in self.extensions:
            if os.path.exists(self.get_ext_fullpath(ext.name)):  # (an optional extension may have failed)
                with open(source(ext.name), "rb") as f:
                    built[ext.name] = hashlib.sha256(f.read()).hexdigest()
        folders = [os.path.join(self.build_lib, "simulator")]
        if self.inplace:  # editable install (pip install -e): the extensions are copied beside their sources
            folders.append("simulator")
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, MANIFEST), "w") as f:
                json.dump(built, f, indent=1, sort_keys=True)


def extensions() -> list[Extension]:
    """The compiled modules (C sources generated under build/cython), or none when Cython is missing (a build
    without isolation: pyproject.toml's build requirements list it)."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("painpath: Cython is not installed; the engine runs from its Python sources")
        return []
    exts = [Extension(m, [source(m)], optional=True) for m in COMPILED]
    return cythonize(exts, language_level=3, nthreads=os.cpu_count() or 1, quiet=True, build_dir="build/cython")


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt}, options={"build_ext": {"parallel": os.cpu_count() or 1}})
