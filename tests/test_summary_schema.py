"""Issue 11: the summary schema is documented (docs/summary-schema.md, with a unit for every field) and the
documentation matches what `painpath run` writes, field for field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "summary-schema.md"
TYPES = {"integer": (int,), "number": (int, float), "string": (str,), "list": (list,)}


def _doc_rows() -> list[tuple[tuple[str, ...], str, str, str]]:
    """(path, type, unit, 'open' / 'closed' / '' for fields written only by that kind of run)."""
    rows = []
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([^`]+)` \| ([^|]+) \| ([^|]+) \| ([^|]*)", line)
        if m:
            meaning = m.group(4).strip()
            only = "open" if meaning.startswith("open populations only") else (
                "closed" if meaning.startswith("closed cohorts only") else "")
            rows.append((tuple(m.group(1).split(".")), m.group(2).strip(), m.group(3).strip(), only))
    return rows


def _leaves(d: dict, path: tuple[str, ...] = (), empty: set | None = None) -> dict[tuple[str, ...], object]:
    """Leaf paths of the summary; ``empty`` collects the paths of empty objects (families with no member)."""
    out: dict[tuple[str, ...], object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not v:
            if empty is not None:
                empty.add((*path, k))
        elif isinstance(v, dict):
            out.update(_leaves(v, (*path, k), empty))
        else:
            out[(*path, k)] = v
    return out


def _matches(pattern: tuple[str, ...], path: tuple[str, ...], kind: str = "") -> bool:
    """Does a documented path cover a written one? An ``object`` row covers everything below it."""
    if kind == "object" and len(path) > len(pattern):
        path = path[:len(pattern)]
    return len(pattern) == len(path) and all(p == k or (p.startswith("<") and p.endswith(">"))
                                             for p, k in zip(pattern, path, strict=True))


def _type_ok(kind: str, value: object) -> bool:
    nullable = kind.endswith(" or null")
    base = kind.removesuffix(" or null")
    if value is None:
        return nullable
    return isinstance(value, TYPES[base]) and not isinstance(value, bool)


def _run(tmp: Path, scenario: str, edits: dict[str, str], *args: str) -> Path:
    text = (ROOT / "scenarios" / scenario).read_text().replace("cohort: ../cohorts/", f"cohort: {ROOT}/cohorts/")
    for pattern, repl in edits.items():
        text = re.sub(pattern, repl, text)
    sc = tmp / scenario
    sc.write_text(text)
    out = tmp / f"run-{scenario}"
    res = CliRunner().invoke(main, ["run", str(sc), "--replications", "2", "--out", str(out), "--no-report",
                                    "--quiet", *args])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """A run folder written by `painpath run` on a 120-day variant (so some time points are null)."""
    return _run(tmp_path_factory.mktemp("schema"), "guideline.yaml", {r"(?m)^horizon_days: .*$": "horizon_days: 120"},
                "--patients", "300")


@pytest.fixture(scope="module")
def written_open(tmp_path_factory) -> Path:
    """An open-population run (a small population, so that it is quick)."""
    return _run(tmp_path_factory.mktemp("schema-open"), "open-population.yaml",
                {r"(?m)^  size: .*$": "  size: 40000", r"(?m)^horizon_days: .*$": "horizon_days: 1200",
                 r"(?m)^  warmup_days: .*$": "  warmup_days: 400"})


def _check(folder: Path, open_population: bool) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    rows = _doc_rows()
    assert len(rows) > 30
    version = int(re.search(r"schema version (\d+)", DOC.read_text()).group(1))
    assert summary["schema_version"] == version
    assert all(unit for _, _, unit, _ in rows)
    empty: set[tuple[str, ...]] = set()
    leaves = _leaves(summary, empty=empty)
    for path, value in leaves.items():
        hits = [r for r in rows if _matches(r[0], path, r[1])]
        assert len(hits) == 1, f"{'.'.join(path)} is written but documented {len(hits)} times in {DOC.name}"
        kind = hits[0][1]
        assert kind == "object" or _type_ok(kind, value), f"{'.'.join(path)} = {value!r} is not a {kind}"
    for pattern, kind, _, only in rows:
        if only and only != ("open" if open_population else "closed"):
            continue
        family_empty = any(_matches(pattern[:len(e)], e) for e in empty if len(e) < len(pattern))
        assert family_empty or any(_matches(pattern, p, kind) for p in leaves), \
            f"{'.'.join(pattern)} is documented but not written"


def test_doc_lists_every_field_with_type_and_unit_and_version(written: Path) -> None:
    """Every field `run` writes is documented with its type; every documented field is written; every row
    has a unit (or '-'); the documented version is the written one."""
    _check(written, open_population=False)


def test_doc_matches_an_open_population_run(written_open: Path) -> None:
    """The same for an open population, which writes the fields marked 'open populations only' too."""
    _check(written_open, open_population=True)


def test_horizon_nulls_have_reasons(written: Path) -> None:
    """v0.1 reported relief 'by day 182 / 365' for a 120-day horizon: now those are null, with the reason, in
    the summary and in every replication, and the long per-replication table has them empty."""
    s = json.loads((written / "summary.json").read_text())
    by_day = s["time_to_relief"]["relieved_by_day"]
    assert by_day["84"] is not None and by_day["182"] is None and by_day["365"] is None
    assert s["pain"]["mean_nrs_by_day"]["182"] is None
    assert "beyond the 120-day horizon" in s["not_estimable"]["time_to_relief.relieved_by_day.182"]
    assert "beyond" in s["not_estimable"]["pain.mean_nrs_by_day.365"]
    assert all(p["time_to_relief.relieved_by_day.365"] is None for p in s["per_replication"])
    assert s["time_to_relief"]["rmst_tau_days"] == 120.0
    assert max(s["time_to_relief"]["km_curve"]["day"]) == 120.0
    long = pd.read_csv(written / "replication_metrics.csv")
    assert list(long.columns) == ["scenario", "replication", "metric", "value", "unit"]
    row = long[(long["metric"] == "time_to_relief.relieved_by_day.182")]
    assert len(row) == 2 and row["value"].isna().all()
    rmst = long[long["metric"] == "time_to_relief.rmst_days"]
    assert len(rmst) == 2 and (rmst["unit"] == "days").all() and rmst["value"].between(0, 120).all()
    par = pd.read_parquet(written / "replication_metrics.parquet")
    assert len(par) == len(long) and list(par["metric"]) == list(long["metric"])


def test_every_metric_of_a_run_has_a_label_and_a_unit(written: Path) -> None:
    """Protects the tables people read (compare, run, reports, replication_metrics.csv): every numeric metric
    of summary.json, the issue-10 maintenance block included, is in the metric registry, so that a share
    prints as a share (in %, differences in points) under a human label, not as a raw fraction under its
    dotted key; and persistence on each index drug (issue 10) is a metric, not only a list in summary.json."""
    from simulator.analysis.metrics import lookup
    from simulator.analysis.summary import flat_metrics

    flat = flat_metrics(json.loads((written / "summary.json").read_text()))
    unlabelled = [k for k in flat if lookup(k)[0] is None]
    assert not unlabelled, unlabelled
    by_drug = [k for k in flat if k.startswith("maintenance.persistence.on_index_drug_at_month_by_drug.")]
    assert any(k.endswith(".3") for k in by_drug) and any(k.endswith(".12") for k in by_drug), by_drug
    assert lookup("maintenance.sustained_relief")[0].kind == "share"
