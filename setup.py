"""Build of painpath: the package is plain Python; the modules the engine runs for every simulated event are also
compiled, as they are, with Cython (a C extension per module, built from the same ``.py``: no Cython syntax, no
types added), which runs the engine about 1.3x faster with byte-identical results (``tests/test_compiled.py``).

The compiled modules are optional: without a C compiler the build goes on without them and the package runs from
its sources. Each extension is named ``<module>.compiled<EXT_SUFFIX>`` (``lines.compiled.cpython-311-...so``), a
name Python's own import never takes, and the build records in ``simulator/_compiled.json`` the sha256 of each
source it compiled: ``simulator.inputs.compiled`` (installed first by ``import simulator``) loads an extension only
while its source is the one recorded. So an edited source, or a checkout of a commit older than the compiled build
(which has no such finder), runs its ``.py``, never old compiled code. Everything else of the build is in
pyproject.toml.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED = (
    # engine: the patient process, its trial and maintenance loops, drug lines, stops, adverse events, the log
    "simulator.engine.simulation", "simulator.engine.process", "simulator.engine.evaluation",
    "simulator.engine.maintenance", "simulator.engine.lines", "simulator.engine.stops", "simulator.engine.adverse",
    "simulator.engine.referral", "simulator.engine.events",
    # model: what the engine calls per decision or visit. A module defining a pydantic model with methods cannot be
    # listed: pydantic takes the compiled methods for fields (tests/test_compiled.py).
    "simulator.model.decisions", "simulator.model.patient", "simulator.model.safety", "simulator.model.response",
    "simulator.model.streams", "simulator.model.pathway", "simulator.model.clinical_tables",
    "simulator.model.policy_context",
)
"""Dotted names of the compiled modules (each ``simulator/<path>.py``)."""

MANIFEST = "_compiled.json"
TAG = ".compiled"  # between the module's name and the platform's extension suffix (simulator.inputs.compiled.TAG)


def source(module: str) -> str:
    return os.path.join(*module.split(".")) + ".py"


class BuildExt(build_ext):
    """build_ext that names each extension ``<module>.compiled<EXT_SUFFIX>`` and records, beside the built package,
    the sha256 of each source it compiled and its extension's file name."""

    def get_ext_filename(self, fullname: str) -> str:
        path = super().get_ext_filename(fullname)
        folder, name = os.path.split(path)
        module = fullname.rpartition(".")[2]
        return os.path.join(folder, module + TAG + name[len(module):])

    def run(self) -> None:
        built_path = {ext.name: os.path.join(self.build_lib, self.get_ext_filename(ext.name)) for ext in self.extensions}
        stale = list(built_path.values())  # an extension left by an earlier build is not this build's
        if self.inplace:  # ... nor one beside its source under Python's own name (the first compiled build's
            # naming): an older checkout, which has no finder, would import it
            stale += [os.path.splitext(source(ext.name))[0] + sysconfig.get_config_var("EXT_SUFFIX")
                      for ext in self.extensions]
        for path in stale:
            if os.path.exists(path):
                os.remove(path)
        super().run()
        built = {}
        for ext in self.extensions:
            path = built_path[ext.name]
            if os.path.exists(path):  # (an optional extension that failed to compile is left out)
                built[ext.name] = {"sha256": ext.source_sha256, "file": os.path.basename(path)}
        folders = [os.path.join(self.build_lib, "simulator")]
        if self.inplace:  # editable install (pip install -e): the extensions are copied beside their sources
            folders.append("simulator")
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, MANIFEST), "w") as f:
                json.dump(built, f, indent=1, sort_keys=True)


def extensions(build_dir: str = "build/cython") -> list[Extension]:
    """The compiled modules, each optional (a failed compilation leaves it out), their C sources generated anew at
    every build (``force``: a source whose file time went back, e.g. restored by ``cp -p``, is not skipped) under
    ``build_dir``; none when Cython is missing (a build without isolation: pyproject.toml's build requirements list
    it)."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("painpath: Cython is not installed; the engine runs from its Python sources")
        return []
    digests = {}
    for m in COMPILED:  # read before translation: an edit made while the build runs is not recorded as compiled
        with open(source(m), "rb") as f:
            digests[m] = hashlib.sha256(f.read()).hexdigest()
    exts = cythonize([Extension(m, [source(m)]) for m in COMPILED], language_level=3, nthreads=os.cpu_count() or 1,
                     quiet=True, force=True, build_dir=build_dir)
    for ext in exts:  # (cythonize returns new Extension objects: optional set on its input would be lost)
        ext.optional = True
        ext.source_sha256 = digests[ext.name]  # what BuildExt records
    return exts


if __name__ == "__main__":  # (setuptools runs setup.py as __main__; tests read COMPILED without building)
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt},
          options={"build_ext": {"parallel": os.cpu_count() or 1}})
