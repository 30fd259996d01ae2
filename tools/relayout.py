"""Move the flat ``simulator/`` folder into the layered package of ``tools/layer_map.py``, in one go.

    python tools/relayout.py            # on a clean checkout of main; then run the suite and commit
    python tools/relayout.py --dry-run  # print the moves and the rewritten imports, change nothing

What it does, in this order:

1. checks that every ``simulator/*.py`` has a row in ``MODULES`` (a module merged since the map was written
   must be placed first) and that the layered package does not exist yet;
2. rewrites every relative import of ``simulator/*.py`` (module level and function level) to the module's
   new place (``from .clinical import X`` in ``engine.py`` becomes ``from ..model.clinical import X`` in
   ``engine/simulation.py``; ``from . import engine`` becomes ``from ..engine import simulation as engine``);
3. rewrites dotted names ``simulator.<module>`` (imports, ``mock.patch`` targets, ``:mod:`` references,
   strings) and paths ``simulator/<module>.py`` in ``simulator/``, ``tests/``, ``benchmarks/``, ``tools/``
   (but not the layer map itself), ``docs/`` (but not ``docs/architecture.md``, which shows old and new
   names), ``README.md`` and ``pyproject.toml``, each in one pass so no name is rewritten twice; the
   packaged data (``simulator/data/``) are left byte for byte (they are hashed into every manifest's
   ``model_hash``): the comments in them that name a moved module are listed, to update separately;
4. moves the files (``git mv`` in a git checkout, so history follows) and writes each subpackage's
   ``__init__.py`` with its docstring (``SUBPACKAGE_DOCS``: what it owns and what it must not import);
5. lists the new subpackages in ``pyproject.toml`` (``[tool.setuptools] packages``); the entry point
   ``simulator.cli:main`` and the package data (``simulator/data``, ``simulator/templates``) do not move;
6. sorts the rewritten imports (``ruff check --fix --select I``).

``simulator.load_scenario``, ``simulator.simulate``, ``simulator.InputError`` and ``simulator.testing``
keep their import paths (``FACADES``); the ``painpath`` command is unchanged. After the move,
``tests/test_layers.py`` runs the layered-package contract (it switches on when ``simulator/engine/``
exists).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.layer_map import FACADES, MODULES, SUBPACKAGE_DOCS  # noqa: E402

SUBPACKAGE_DOCS_EXTRA = {
    "analysis.trial": None,  # its __init__ is trial.py (the trial runner and the public names)
    "cli": None,  # its __init__ is cli.py (the click group: ``simulator.cli:main`` is unchanged)
    "teaching.tutor": "The counterfactual case tutor: the options and their verdicts (``options``), the session "
                      "that replays the trainee's choices with the same luck (``session``) and the terminal front "
                      "end (``terminal``). Part of simulator.teaching: never imports regression or cli.",
}
FIXUPS: tuple[tuple[str, str, str], ...] = (
    # cli.py loads the command modules by name (each adds its commands to ``main``): their new names
    ("cli", '("cli_trial", "cli_policy", "cli_teach", "cli_regress")', '("trial", "policy", "teach", "regress")'),
)
"""Dynamic imports the import rewriter cannot see: (module, exact text, replacement); the move stops if
the text is not found (the module changed since: look again)."""
TEXT_DIRS = ("simulator", "tests", "benchmarks", "tools", "docs")
TEXT_FILES = ("README.md", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".j2", ".html", ".toml", ".yaml", ".txt", ".cfg"}
SKIP = ("tools/layer_map.py", "tools/relayout.py", "docs/architecture.md")
HASHED = "simulator/data/"
"""The packaged data are hashed into every run's ``model_hash``: the move leaves their bytes alone (results stay
byte-identical) and lists the comments in them that name a moved module, to update in a commit of their own."""


# ---- where everything goes -----------------------------------------------------------------------------------
def packages() -> set[str]:
    """Every (sub)package of the layered layout, dotted below ``simulator`` (e.g. ``analysis.trial``)."""
    out = set()
    for new in MODULES.values():
        parts = new.split(".")
        for k in range(1, len(parts)):
            out.add(".".join(parts[:k]))
    return out


def new_file(old: str) -> Path:
    """Path below ``simulator/`` of module ``old`` after the move."""
    new = MODULES[old]
    if old in FACADES or new in FACADES:
        return Path(f"{new}.py")
    if new in packages():
        return Path(*new.split(".")) / "__init__.py"
    return Path(*new.split(".")).with_suffix(".py")


def package_of(old: str) -> list[str]:
    """The package (dotted parts below ``simulator``) a module sits in after the move."""
    new = MODULES[old]
    if old == "__init__":
        return []
    if new in packages():
        return new.split(".")
    return new.split(".")[:-1]


def relative(importer: str, target: list[str]) -> str:
    """The relative module text that reaches ``target`` (parts below ``simulator``) from ``importer``."""
    here = package_of(importer)
    common = 0
    while common < min(len(here), len(target)) and here[common] == target[common]:
        common += 1
    return "." * (len(here) - common + 1) + ".".join(target[common:])


def _names(aliases: list[ast.alias]) -> list[str]:
    return [a.name + (f" as {a.asname}" if a.asname else "") for a in aliases]


def _statement(indent: str, module: str, names: list[str]) -> str:
    one = f"{indent}from {module} import {', '.join(names)}"
    if len(one) <= 110:
        return one + "\n"
    inner = "".join(f"{indent}    {n},\n" for n in names)
    return f"{indent}from {module} import (\n{inner}{indent})\n"


def rewrite_relative_imports(old: str, source: str) -> tuple[str, list[str]]:
    """``source`` of module ``old`` with its relative imports pointing at the new places; and a log."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    log: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        if node.level != 1:
            raise SystemExit(f"simulator/{old}.py:{node.lineno}: a relative import of level {node.level} in the flat "
                             "layout; run relayout on the flat layout only")
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)
        if node.module:  # from .X import a, b
            target = node.module.split(".")[0]
            if target not in MODULES:
                raise SystemExit(f"simulator/{old}.py:{node.lineno}: imports unknown module '{node.module}'")
            rest = node.module.split(".")[1:]
            text = _statement(indent, relative(old, MODULES[target].split(".") + rest), _names(node.names))
        else:  # from . import X, Y: one statement per package reached
            groups: dict[str, list[str]] = {}
            for a in node.names:
                if a.name not in MODULES:
                    raise SystemExit(f"simulator/{old}.py:{node.lineno}: imports unknown module '{a.name}'")
                parts = MODULES[a.name].split(".")
                leaf = parts[-1]
                name = leaf + (f" as {a.asname or a.name}" if (a.asname or a.name) != leaf else "")
                groups.setdefault(relative(old, parts[:-1]), []).append(name)
            text = "".join(_statement(indent, mod, names) for mod, names in groups.items())
        end = node.end_lineno or node.lineno
        comment = re.search(r"\s+#.*$", lines[end - 1][node.end_col_offset:].rstrip("\n"))
        if comment:  # keep a trailing comment (noqa, reason) on the last line
            text = text.rstrip("\n") + comment.group(0) + "\n"
        edits.append((node.lineno, end, text))
        log.append(f"  {old}.py:{node.lineno}: {text.strip()}")
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1:end] = [text]
    return "".join(lines), log


def rewrite_from_simulator(source: str) -> str:
    """``from simulator import streams, load_scenario`` (tests, benchmarks): module names go to their new
    package (``from simulator.model import streams``), other names (the facade's) stay."""
    if "from simulator import" not in source:
        return source
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "simulator"):
            continue
        mods = [a for a in node.names if a.name in MODULES and a.name not in FACADES]
        if not mods:
            continue
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)
        keep = [a for a in node.names if a not in mods]
        text = _statement(indent, "simulator", _names(keep)) if keep else ""
        groups: dict[str, list[str]] = {}
        for a in mods:
            parts = MODULES[a.name].split(".")
            alias = a.asname or a.name
            groups.setdefault(".".join(["simulator", *parts[:-1]]), []).append(
                parts[-1] + (f" as {alias}" if alias != parts[-1] else ""))
        text += "".join(_statement(indent, mod, names) for mod, names in groups.items())
        edits.append((node.lineno, node.end_lineno or node.lineno, text))
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1:end] = [text]
    return "".join(lines)


def rebase_file_paths(text: str, depth: int, old: str, log: list[str]) -> str:
    """``Path(__file__).resolve().parent`` (the ``simulator/`` folder in the flat layout) becomes the
    ``parents[k]`` that still reaches it from the module's new folder (data, cases, templates, checkout)."""
    def fix(m: re.Match[str]) -> str:
        k = m.group(2).count(".parent") - 1 + depth
        new = f"Path(__file__){m.group(1) or ''}.parents[{k}]"
        log.append(f"  {old}.py: {m.group(0)} -> {new}")
        return new

    if depth == 0:
        return text
    return re.sub(r"Path\(__file__\)(\.resolve\(\))?((?:\.parent)+)(?![\w\[])", fix, text)


def dotted_and_path_rewriter() -> tuple[re.Pattern[str], dict[str, str]]:
    """One regex for ``simulator.<old>`` and ``simulator/<old>.py``, with the replacement of each match."""
    moved = {k: v for k, v in MODULES.items() if k not in FACADES and v != k}
    repl: dict[str, str] = {}
    for old, new in moved.items():
        repl[f"simulator.{old}"] = f"simulator.{new}"
        repl[f"simulator/{old}.py"] = "simulator/" + new_file(old).as_posix()
    keys = sorted(repl, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w])")
    return pattern, repl


def text_files(root: Path) -> list[Path]:
    out = [root / f for f in TEXT_FILES if (root / f).exists()]
    for d in TEXT_DIRS:
        out += [p for p in sorted((root / d).rglob("*")) if p.is_file() and p.suffix in TEXT_SUFFIXES
                and ".venv" not in p.parts and "__pycache__" not in p.parts]
    return [p for p in out if p.relative_to(root).as_posix() not in SKIP
            and not p.relative_to(root).as_posix().startswith(HASHED)]


def pyproject_packages(text: str) -> str:
    """``[tool.setuptools] packages`` with every new subpackage listed."""
    m = re.search(r"^packages = \[(.*?)\]", text, flags=re.M | re.S)
    if not m:
        raise SystemExit("pyproject.toml: no '[tool.setuptools] packages = [...]' line to extend")
    have = re.findall(r'"([^"]+)"', m.group(1))
    new = [f"simulator.{p}" for p in sorted(packages())]
    listed = have[:1] + [p for p in new if p not in have] + have[1:]
    body = ", ".join(f'"{p}"' for p in listed)
    return text[:m.start()] + f"packages = [{body}]" + text[m.end():]


# ---- the move ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]), help="checkout to move")
    ap.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    ap.add_argument("--no-git", action="store_true", help="plain renames instead of git mv")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    pkg = root / "simulator"
    flat = sorted(p.stem for p in pkg.glob("*.py"))
    missing = sorted(set(flat) - set(MODULES))
    if missing:
        raise SystemExit(f"no row in tools/layer_map.py MODULES for: {', '.join(missing)} (place them, then rerun)")
    gone = sorted(set(MODULES) - set(flat))
    if gone:
        raise SystemExit(f"tools/layer_map.py lists modules that are not in simulator/: {', '.join(gone)}")
    if (pkg / "engine" / "__init__.py").exists():
        raise SystemExit("simulator/engine/ exists: the layout has already been moved")
    use_git = not args.no_git and (root / ".git").exists()

    # 2. relative imports, per module (in memory)
    new_text: dict[Path, str] = {}
    log: list[str] = []
    for old in flat:
        src = (pkg / f"{old}.py").read_text(encoding="utf-8")
        for mod, before, after in FIXUPS:
            if mod == old:
                if before not in src:
                    raise SystemExit(f"simulator/{old}.py: fix-up text not found: {before}")
                src = src.replace(before, after)
        text, lg = rewrite_relative_imports(old, src)
        depth = len(package_of(old))
        text = rebase_file_paths(text, depth, old, lg)
        new_text[pkg / f"{old}.py"] = text
        log += lg
    # 3. dotted names and paths everywhere else (and in the modules' docstrings and strings)
    pattern, repl = dotted_and_path_rewriter()
    changed_text = 0
    for path in text_files(root):
        src = new_text.get(path) or path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            src = rewrite_from_simulator(src)
        out = pattern.sub(lambda m: repl[m.group(1)], src)
        if path.name == "pyproject.toml":
            out = pyproject_packages(out)
        if out != path.read_text(encoding="utf-8"):
            new_text[path] = out
            changed_text += 1
    stale = [f"  {p.relative_to(root)}:{i}: {line.strip()}" for p in sorted((pkg / "data").rglob("*.yaml"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    moves = [(pkg / f"{old}.py", pkg / new_file(old)) for old in flat if new_file(old) != Path(f"{old}.py")]
    print(f"{len(moves)} modules move, {len(log)} relative imports rewritten, {changed_text} files edited")
    for a, b in moves:
        print(f"  {a.relative_to(root)} -> {b.relative_to(root)}")
    if args.dry_run:
        print("\n".join(log))
        return 0

    for path, text in new_text.items():
        path.write_text(text, encoding="utf-8")
    # 4. moves and __init__ files (packages made in order, parents first)
    for p in sorted(packages(), key=lambda s: s.count(".")):
        (pkg / Path(*p.split("."))).mkdir(parents=True, exist_ok=True)
    for a, b in moves:
        if use_git:
            subprocess.run(["git", "mv", str(a), str(b)], cwd=root, check=True)
        else:
            shutil.move(a, b)
    for p in sorted(packages()):
        init = pkg / Path(*p.split(".")) / "__init__.py"
        if init.exists():
            continue
        doc = SUBPACKAGE_DOCS_EXTRA.get(p) or SUBPACKAGE_DOCS[p]
        init.write_text(f'"""{_wrap(doc)}\n"""\n', encoding="utf-8")
        if use_git:
            subprocess.run(["git", "add", str(init)], cwd=root, check=True)
    # 6. import order
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    subprocess.run([ruff, "check", "--fix", "--select", "I,F401", "-q", "simulator", "tests", "benchmarks"], cwd=root,
                   check=False)
    if stale:
        print("left unchanged (hashed into model_hash; update in a separate commit, it changes the manifests):")
        print("\n".join(stale))
    print("moved; now: pytest -q, ruff check ., painpath run scenarios/guideline.yaml --patients 2000 --seed 7 (hashes)")
    return 0


def _wrap(text: str, width: int = 110) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    return "\n".join(lines + [line])


if __name__ == "__main__":
    raise SystemExit(main())
