"""Seeded, bounded fuzzing of malformed scenario and cohort files (issue 14).

A generator (``random.Random(seed)``) mutates a valid scenario or cohort with operators that each make it
invalid: a number replaced by NaN, an infinity, a huge or negative value, text, a boolean or a list; an
unknown, missing or duplicated key; a wrong type; an unknown name; deep nesting; an alias bomb; broken
syntax; bytes that are not UTF-8; a top level that is not a mapping; a cohort reference that is empty, a
folder, a FIFO, too long or missing. Every case goes through the CLI (``run``, ``check``, ``lint``, ``trace``,
``diff`` or ``compare`` for scenarios; ``cohort`` and ``run`` for cohorts) and must: exit 2; print one paragraph naming the file and (for a field mutation) the
field; raise no traceback; finish within a time limit (no hang); leave no folder behind.

The default suite runs FAST_CASES cases; ``-m slow`` runs SLOW_CASES (>= 1,000). The per-run figures
(cases, tracebacks, hangs, partial folders) are printed with ``-s``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
COHORT = ROOT / "cohorts" / "mixed-primary-care.yaml"
COHORT_DOC = yaml.safe_load(COHORT.read_text())
SCENARIO_DOC = {"name": "fuzz", "description": "fuzzed", "cohort": str(COHORT), "patients": 5, "replications": 1,
                "seed": 3, "horizon_days": 120, "specialist": {"slots_per_week_per_1000": 2},
                "policy": {"name": "p", "first_line": "guideline", "order": ["pregabalin", "duloxetine"],
                           "visit_interval_days": 14, "titration_speed": 1.5,
                           "target_doses": {"pregabalin": 300}, "response": {"relief_min_reduction": 0.3},
                           "strong_opioid": {"max_trial_days": 84}, "referral": {"pain_above": 6, "after_days": 90},
                           "trial_days": {"snri": 28}, "loss_to_follow_up_per_year": 0.1},
                "clinical_overrides": {"combination_factor": 0.8}}
FAST_CASES = 200
SLOW_CASES = 1200
TIME_LIMIT_S = 20
BAD_NUMBERS = [float("nan"), float("inf"), float("-inf"), -1e9, 1e300, "abc", True, [], {"x": 1}, "", "1e3x"]


def _leaves(doc: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _leaves(v, path + (k,))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _leaves(v, path + (i,))]
    return [path]


def _numeric(doc: Any) -> list[tuple]:
    return [p for p in _leaves(doc) if isinstance(_get(doc, p), int | float) and not isinstance(_get(doc, p), bool)]


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def _put(doc: Any, path: tuple, value: Any) -> Any:
    doc = _copy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10_000)


def _mappings(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path] if isinstance(doc, dict) else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _mappings(v, path + (k,))
    return out


def mutate(rng: random.Random, base: dict, kind: str, tmp: Path) -> tuple[str | bytes, str | None]:
    """One invalid variant of ``base``: (file content, the top-level field it breaks or None)."""
    op = rng.choice(["number", "number", "number", "unknown_key", "missing_key", "duplicate", "wrong_type",
                     "unknown_name", "deep", "syntax", "garbage", "not_mapping", "alias_bomb", "long_text"]
                    + (["cohort_ref", "contradiction"] if kind == "scenario" else ["sum"]))
    if op == "number":
        path = rng.choice(_numeric(base))
        return _dump(_put(base, path, rng.choice(BAD_NUMBERS))), str(path[0])
    if op == "unknown_key":
        path = rng.choice(_mappings(base))
        parent = _get(base, path)
        if path and any(k in path for k in ("by_etiology", "etiology", "odds_ratio_by_etiology", "shift_by_etiology",
                                              "target_doses", "clinical_overrides")) or path[-1:] == ("etiology",):
            path = ()
            parent = base
        new = dict(parent)
        new[rng.choice(["patiens", "Name", "x", "policyy", "mean_", "value"])] = 1
        doc = _put(base, path, new) if path else new
        return _dump(doc), (str(path[0]) if path else None)
    if op == "missing_key":
        required = ["name", "cohort"] if kind == "scenario" else ["name", "age", "sex", "etiology", "renal",
                                                                   "baseline_nrs", "misuse_risk", "sources"]
        key = rng.choice(required)
        return _dump({k: v for k, v in base.items() if k != key}), key
    if op == "duplicate":
        key = rng.choice(list(base))
        text = _dump(base) + _dump({key: base[key]})
        return text, None
    if op == "wrong_type":
        key = rng.choice([k for k in base if k not in ("description",)])
        value = rng.choice([[1, 2], {"a": 1}, 3.5, "text"] if not isinstance(base[key], str) else [[1, 2], {"a": 1}])
        if isinstance(base[key], int | float) and isinstance(value, float):
            value = "text"
        return _dump({**base, key: value}), key
    if op == "unknown_name":
        if kind == "scenario":
            field, value = rng.choice([("policy", {"order": ["pregabalin", "aspirin"]}),
                                       ("policy", {"first_line": "homeopathy"}),
                                       ("policy", {"target_doses": {"unobtainium": 10}}),
                                       ("clinical_overrides", {"drugs.aspirin.effect_mean": 0.5}),
                                       ("policy", {"tramadol": "always"})])
            return _dump({**base, field: {**(base.get(field) or {}), **value}}), field
        return _dump(_put(base, ("etiology",), {**base["etiology"], "gout": 0.0})), "etiology"
    if op == "sum":
        e = dict(base["etiology"])
        k = rng.choice(list(e))
        e[k] = e[k] + rng.choice([0.1, 0.5])
        return _dump(_put(base, ("etiology",), e)), "etiology"
    if op == "deep":
        depth = rng.randint(45, 600)
        key = rng.choice(list(base))
        return _dump({k: v for k, v in base.items() if k != key}) + f"{key}: " + "[" * depth + "]" * depth + "\n", None
    if op == "syntax":  # a broken line between two top-level keys
        lines = _dump(base).splitlines()
        tops = [i for i, line in enumerate(lines) if line[:1].isalpha()]
        i = rng.choice(tops + [len(lines)])
        lines.insert(i, rng.choice(["x: [unclosed", "x: {a: 1", '"unterminated', "\tx: 1", "- item", "x: 'open",
                                    "x: *undefined_alias", "? [a", "x: !!python/object:os.system 1"]))
        return "\n".join(lines) + "\n", None
    if op == "garbage":
        raw = bytearray(_dump(base).encode())
        for _ in range(rng.randint(1, 5)):
            raw.insert(rng.randrange(len(raw)), rng.choice([0xff, 0xfe, 0xc3, 0x80]))
        return bytes(raw), None
    if op == "not_mapping":
        return rng.choice(["- a\n- b\n", "just text\n", "42\n", "[1, 2, 3]\n", "null\n"]), None
    if op == "alias_bomb":
        lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
        for i in range(1, 7):
            lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
        return _dump(base) + "\n".join(lines) + "\n", None
    if op == "long_text":
        return _dump({**base, "name": "n" * rng.randint(121, 50_000)}), "name"
    if op == "contradiction":
        field, value = rng.choice([
            ("policy", {"order": []}),
            ("policy", {"topicals": "never", "topical_drug": "capsaicin_8pct"}),
            ("policy", {"strong_opioid": {"allowed": False, "drug": "morphine", "misuse_screen": False}}),
            ("policy", {"protocol": {"steps": [{"drug": "gabapentin", "weeks": 4}]}, "first_line": "tca_first"}),
            ("policy", {"protocol": {"steps": [{"drug": "gabapentin", "weeks": 4, "next_if_nrs_above": 3},
                                               {"drug": "gabapentin", "weeks": 4}]}}),
            ("clinical_overrides", {"combination_factor": True}),
            ("policy", {"referral": {"pain_above": 6}})])
        pol = {k: v for k, v in (base.get("policy") or {}).items() if k not in ("order", "first_line")}
        return _dump({**base, field: {**(pol if field == "policy" else {}), **value}}), field
    # cohort_ref
    which = rng.choice(["empty", "folder", "fifo", "long", "missing", "nul"])
    value = {"empty": "  ", "folder": str(tmp), "long": "c" * 300 + ".yaml", "missing": str(tmp / "nope.yaml"),
             "nul": "a\x00b.yaml", "fifo": str(tmp / "fifo.yaml")}[which]
    if which == "fifo" and not (tmp / "fifo.yaml").exists():
        os.mkfifo(tmp / "fifo.yaml")
    return _dump({**base, "cohort": value}), "cohort"


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def fuzz(n: int, seed: int, tmp: Path) -> Counter:
    """Run ``n`` fuzz cases; return the tally (cases, tracebacks, hangs, partial folders, wrong exits, vague)."""
    rng = random.Random(seed)
    tally: Counter = Counter()
    failures: list[str] = []
    runner = CliRunner()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(n):
            kind = "scenario" if i % 2 == 0 else "cohort"
            base = SCENARIO_DOC if kind == "scenario" else COHORT_DOC
            content, field = mutate(rng, base, kind, tmp)
            f = tmp / f"case-{i}.yaml"
            f.write_bytes(content if isinstance(content, bytes) else content.encode())
            target = f
            if kind == "cohort" and rng.random() < 0.3:  # a bad cohort named by a good scenario
                sc = tmp / f"case-{i}-scenario.yaml"
                sc.write_text(_dump({**SCENARIO_DOC, "cohort": str(f)}))
                args = ["run", str(sc), "--out", str(tmp / "out"), "--quiet", "--no-report"]
            elif kind == "cohort":
                args = ["cohort", str(f), "--patients", "3"]
            else:  # the seven commands of the review read scenarios through the same loader
                guide = str(ROOT / "scenarios" / "guideline.yaml")
                args = rng.choice([["run", str(f), "--out", str(tmp / "out"), "--quiet", "--no-report"],
                                   ["check", str(f)], ["lint", str(f)], ["trace", str(f), "--patient", "0"],
                                   ["diff", guide, str(f)], ["compare", guide, str(f), "--out", str(tmp / "out")]])
            signal.alarm(TIME_LIMIT_S)
            try:
                res = runner.invoke(main, args)
            except _Hang:
                tally["hangs"] += 1
                failures.append(f"hang: {args}")
                continue
            finally:
                signal.alarm(0)
            tally["cases"] += 1
            text = " ".join(res.output.split())
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                tally["tracebacks"] += 1
                failures.append(f"traceback {type(res.exception).__name__}: {res.exception} in case {i}")
            elif res.exit_code != 2:
                tally["wrong_exit"] += 1
                failures.append(f"exit {res.exit_code} for case {i} ({field}): {text[:300]}")
            elif not (text.startswith("Error in ") and text.count("Fix:") == 1
                      and str(target) in res.output.replace("\n", "") and "Traceback" not in text):
                tally["vague"] += 1
                failures.append(f"message for case {i}: {text[:300]}")
            elif field is not None and f"'{field}" not in text and f"{field}." not in text and field not in text:
                tally["vague"] += 1
                failures.append(f"field {field} not named in case {i}: {text[:300]}")
            left = [p for p in tmp.iterdir() if p.is_dir() or p.name.startswith(".")]
            if left:
                tally["partial_folders"] += 1
                failures.append(f"folder left by case {i}: {[p.name for p in left]}")
                for p in left:
                    shutil.rmtree(p, ignore_errors=True)
            f.unlink()
    finally:
        signal.signal(signal.SIGALRM, old)
    tally["failures"] = len(failures)
    print(f"\nfuzz seed {seed}: {dict(tally)}")
    for line in failures[:15]:
        print("  ", line)
    return tally


def _check(tally: Counter, n: int) -> None:
    assert tally["cases"] == n, tally
    for k in ("tracebacks", "hangs", "partial_folders", "wrong_exit", "vague"):
        assert tally[k] == 0, tally


def test_fuzz_malformed_inputs(tmp_path: Path) -> None:
    """FAST_CASES malformed scenario and cohort files: exit 2, one paragraph naming file and field, no
    traceback, no hang, no folder left."""
    _check(fuzz(FAST_CASES, 14, tmp_path), FAST_CASES)


@pytest.mark.slow
def test_fuzz_malformed_inputs_many(tmp_path: Path) -> None:
    """The same with SLOW_CASES (>= 1,000) cases and another seed."""
    _check(fuzz(SLOW_CASES, 1014, tmp_path), SLOW_CASES)
