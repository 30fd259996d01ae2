"""The compiled engine (setup.py, ``simulator.inputs.compiled``): the engine's hot modules compiled with Cython give
the same results as their Python sources, and a compiled module runs only while its source is the one it was built
from (an edited or newly checked-out source runs as Python, with a warning), so a stale build never runs old code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader
from pathlib import Path

import pytest

import simulator.engine.lines
from simulator.inputs.compiled import PURE_ENV, FreshBuildFinder, StaleBuildWarning, is_compiled, source_of

ROOT = Path(__file__).resolve().parents[1]

# One process per build: the event table and summary of three scenarios (CRN: same seed, same patients), and
# which file each engine module was imported from.
_RUN = """
import hashlib, json, sys
import pandas as pd
import simulator
from simulator.analysis.runner import simulate
from simulator.scenario import load_scenario
out = {}
for name, n in (("guideline", 600), ("escalation-s002", 400), ("usual-care", 400)):
    r = simulate(load_scenario(f"scenarios/{name}.yaml").with_overrides(patients=n, seed=5))
    rows = pd.util.hash_pandas_object(r.events, index=True).to_numpy()
    out[name] = [len(r.events), hashlib.sha256(rows.tobytes()).hexdigest(),
                 json.dumps(r.summary, sort_keys=True, default=str)]
out["files"] = {m: sys.modules[m].__file__ for m in sorted(sys.modules) if m.startswith("simulator.engine.")}
print(json.dumps(out))
"""


def _run(pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    if pure:
        env[PURE_ENV] = "1"
    r = subprocess.run([sys.executable, "-c", _RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_compiled_and_python_builds_give_identical_results() -> None:
    """Protects: the compiled engine is the same engine (event tables and summaries byte-identical on three
    scenarios), and PAINPATH_PURE_PYTHON=1 really runs the sources."""
    if not is_compiled(simulator.engine.lines):
        pytest.skip("no compiled build in this checkout (pip install -e . builds it; the sources run)")
    compiled, pure = _run(False), _run(True)
    assert any(not f.endswith(".py") for f in compiled["files"].values())
    assert all(f.endswith(".py") for f in pure["files"].values())
    for name in ("guideline", "escalation-s002", "usual-care"):
        assert compiled[name] == pure[name], name


def _package(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A package ``pkgx`` with ``mod.py``, beside it an "extension" named as the build names it and a leftover
    named as Python's own import would take it, neither importable (if either were imported, the import would
    fail); and the build's record of ``mod`` (its source's digest and extension file)."""
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("WHO = 'source'\n")
    (pkg / ("mod.compiled" + EXTENSION_SUFFIXES[0])).write_bytes(b"not an extension")
    (pkg / ("mod" + EXTENSION_SUFFIXES[0])).write_bytes(b"not an extension either")
    return pkg, {"sha256": hashlib.sha256((pkg / "mod.py").read_bytes()).hexdigest(),
                 "file": "mod.compiled" + EXTENSION_SUFFIXES[0]}


def _import_with(finder: FreshBuildFinder, tmp_path: Path):
    sys.path.insert(0, str(tmp_path))
    sys.meta_path.insert(0, finder)
    try:
        import pkgx.mod

        return pkgx.mod
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(tmp_path))
        for m in ("pkgx.mod", "pkgx"):
            sys.modules.pop(m, None)


def test_an_edited_source_runs_instead_of_its_stale_build(tmp_path: Path) -> None:
    """Protects: a source changed since the build (digest not the recorded one) is imported as Python, with a
    StaleBuildWarning naming the module and the rebuild; no extension beside it is imported."""
    _, built = _package(tmp_path)
    finder = FreshBuildFinder("pkgx", {"pkgx.mod": {**built, "sha256": "0" * 64}})
    with pytest.warns(StaleBuildWarning, match=r"pkgx\.mod changed since it was compiled.*pip install -e \."):
        mod = _import_with(finder, tmp_path)
    assert mod.WHO == "source" and mod.__file__.endswith("mod.py")
    assert finder.stale == ["pkgx.mod"]


def test_a_fresh_build_loads_its_extension_and_nothing_else_does(tmp_path: Path) -> None:
    """Protects: the recorded extension is loaded when the source is the one it was built from; asked to run pure
    Python, without a record (no build, or a failed compilation), or for an unrecorded module, the source runs and
    a leftover extension named as Python's import would take it is never imported."""
    pkg, built = _package(tmp_path)
    spec = FreshBuildFinder("pkgx", {"pkgx.mod": built}).find_spec("pkgx.mod", [str(pkg)])
    assert spec.origin == str(pkg / built["file"]) and isinstance(spec.loader, ExtensionFileLoader)
    for finder in (FreshBuildFinder("pkgx", {"pkgx.mod": built}, pure=True), FreshBuildFinder("pkgx", {})):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _import_with(finder, tmp_path).__file__.endswith("mod.py")
        assert finder.stale == []
    (pkg / built["file"]).unlink()  # recorded but not there: the source
    assert FreshBuildFinder("pkgx", {"pkgx.mod": built}).find_spec("pkgx.mod", [str(pkg)]).origin.endswith("mod.py")
    assert FreshBuildFinder("pkgx", {}).find_spec("json.decoder", [str(pkg)]) is None  # another package


def test_setup_keeps_every_extension_optional_and_regenerated(tmp_path: Path, monkeypatch) -> None:
    """Protects the no-compiler install (review rev15: cythonize returns new Extension objects, and the optional
    flag set on its input was lost, so a machine without gcc failed to install), builds from the current sources
    whatever their file times (cythonize's own cache goes by file times: ``force``, review rev15) and records the
    digest of each source as read before translation (review rev16): checked on setup.py's extensions()."""
    cython_build = pytest.importorskip("Cython.Build")
    calls = []
    real = cython_build.cythonize
    monkeypatch.setattr(cython_build, "cythonize", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    spec = importlib.util.spec_from_file_location("painpath_setup", ROOT / "setup.py")
    setup_mod = importlib.util.module_from_spec(spec)
    monkeypatch.chdir(ROOT)
    spec.loader.exec_module(setup_mod)  # (its setup() runs only as __main__)
    exts = setup_mod.extensions(str(tmp_path / "cython"))
    assert {e.name for e in exts} == set(setup_mod.COMPILED)
    assert all(e.optional for e in exts)
    assert calls and calls[0].get("force") is True
    for e in exts:
        src = ROOT.joinpath(*e.name.split(".")).with_suffix(".py")
        assert e.source_sha256 == hashlib.sha256(src.read_bytes()).hexdigest(), e.name


def test_a_stale_build_under_warnings_as_errors_is_said_not_raised(tmp_path: Path, capsys) -> None:
    """Protects `-W error` / PYTHONWARNINGS=error with a stale module (review rev15: a traceback from inside the
    import): the source runs and the warning's text goes to stderr."""
    _, built = _package(tmp_path)
    finder = FreshBuildFinder("pkgx", {"pkgx.mod": {**built, "sha256": "0" * 64}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mod = _import_with(finder, tmp_path)
    assert mod.WHO == "source"
    assert "pkgx.mod changed since it was compiled" in capsys.readouterr().err


def _compiled_names() -> tuple[str, ...]:
    """setup.py's COMPILED, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "COMPILED")
    return tuple(ast.literal_eval(node.value))


def test_compiled_modules_define_no_pydantic_model() -> None:
    """Protects the build: a pydantic model with methods cannot be compiled by Cython (its methods become compiled
    functions that pydantic takes for fields: the import fails; seen with model.care), so none of setup.py's
    COMPILED defines a pydantic model; and the build's record, when there is one, names only those modules, each
    with an extension named as the build names it."""
    names = _compiled_names()
    assert "simulator.engine.simulation" in names
    for name in names:
        tree = ast.parse(ROOT.joinpath(*name.split(".")).with_suffix(".py").read_text())
        bases = {b.id for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for b in c.bases if isinstance(b, ast.Name)}
        assert not bases & {"BaseModel", "Strict"}, name
    manifest_path = ROOT / "simulator" / "_compiled.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        assert set(manifest) <= set(names)
        assert all(v["file"].startswith(k.rpartition(".")[2] + ".compiled.") for k, v in manifest.items())


def test_source_of_reads_a_compiled_module() -> None:
    """Protects: `painpath lint` reads rule ids from engine sources whether or not they are compiled."""
    text = source_of(simulator.engine.lines)
    assert text == (ROOT / "simulator" / "engine" / "lines.py").read_text()
