"""Self-contained HTML reports for run, comparison, sweep and tornado folders.

One HTML file, no external resources: figures are matplotlib PNGs embedded as base64
(:mod:`simulator.output.figures`), tables and text are plain blocks rendered by the jinja2 template with
autoescaping on (:mod:`simulator.output.blocks`). This module owns the reports' sections: a report has
what a reader needs to judge a result: scenario description and rationale, summary tables, Kaplan-Meier
curves of time-to-relief with 95% CIs (drawn as the share relieved by each day, 1 - S(t)), adverse-event
burden by type, the share of patients at each pathway step over time, the specialist queue and waits over
time, the parameters with their sources (policy fields with their rules, clinical parameters with source
and evidence tag), a reproducibility block (versions, hashes, seed, command) and the not-for-clinical-use
statement. To add a section: build its blocks here and list its id in :data:`SECTIONS`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.metrics import KEY_METRICS, fmt_ci, label_with_unit
from ..analysis.stats import methods_note
from ..inputs.errors import InputError
from .blocks import (
    Block,
    clinical_rows,
    details,
    fmt_value,
    h3,
    img,
    page,
    para,
    policy_rows,
    reproducibility_block,
    scenario_card,
    summary_rows,
    table,
    write_html,
)
from .figures import (
    RunData,
    ae_figure,
    km_figure,
    occupancy_figure,
    queue_figure,
    run_data_from_folder,
    run_data_from_result,
    sweep_figure,
    tornado_figure,
)

SECTIONS = ("statement", "scenarios", "summary", "time-to-relief", "adverse-events", "pathway-occupancy",
            "specialist-queue", "parameters", "reproducibility")


def queue_table(runs: Sequence[RunData]) -> list[Block]:
    """Clinic figures per run: referrals, waits (KM, censored), competing exits, utilisation, backlog."""
    rows = []
    for r in runs:
        sp = r.summary["specialist"]
        ss = sp.get("steady_state") or {}
        backlog = next((v for k, v in sp.items() if k.startswith("backlog_at_horizon")), None)
        rows.append([r.name, sp.get("consults_per_week"), sp["referred"], sp["wait_days_median"],
                     sp.get("wait_days_p90"), sp["seen"], sp.get("left_queue"), sp["still_waiting_at_horizon"],
                     backlog, sp.get("utilisation"), ss.get("wait_days_median"), ss.get("utilisation")])
    out = [table(["scenario", "consults / week", "referred", "median wait (days, KM)", "90th centile wait",
                  "seen", "left the queue", "still waiting at horizon", "backlog at horizon (per base)",
                  "utilisation", "steady-state median wait", "steady-state utilisation"], rows),
           para("Waits are Kaplan-Meier estimates: a consult is the event; patients who left the queue (drop-out, "
              "loss to follow-up) and those still waiting at the horizon are censored, and leavers are never counted "
              "as waiting. Utilisation is consults started divided by the consults the clinic could start. Steady "
              "state: referrals after the warm-up of an open population.")]
    for r in runs:
        if r.summary.get("population"):
            out += _entry_cohort_table(r)
    return out


def _entry_cohort_table(r: RunData) -> list[Block]:
    """Open populations: time to relief by year of entry and for the steady state (entered after warm-up)."""
    pop = r.summary["population"]
    blocks = [(f"day {c['from_day']:.0f}-{c['to_day']:.0f}", c) for c in pop["by_entry_cohort"]]
    if pop.get("steady_state"):
        blocks.append((f"steady state (entered after day {pop['warmup_days']:.0f})", pop["steady_state"]))
    rows = [[r.name, label, b["patients"], *(b["time_to_relief"]["relieved_by_day"].get(d) for d in
                                             ("84", "182", "365")), b["referred"]] for label, b in blocks]
    return [h3("Outcomes by entry cohort"),
            table(["scenario", "entered", "patients", "relieved by day 84", "by day 182", "by day 365", "referred"],
                  rows),
            para("Days since each patient's own entry; Kaplan-Meier, censored at the horizon (late cohorts are followed "
               "for less time).")]


def _scenario_block(runs: Sequence[RunData]) -> list[Block]:
    return [scenario_card(r.name, r.description, r.rationale) for r in runs]


def _parameters_block(runs: Sequence[RunData]) -> list[Block]:
    out: list[Block] = []
    for r in runs:
        resolved = r.manifest.get("scenario_resolved", {})
        out.append(h3(f"Policy and capacity: {r.name}"))
        out.append(table(["setting", "value", "rule / meaning", "vs guideline default"], policy_rows(resolved)))
    overrides = (runs[0].manifest.get("scenario_resolved", {}) or {}).get("clinical_overrides") or {}
    out.append(details("Clinical model parameters (simulator/data/clinical.yaml"
                        + (", with this run's overrides" if overrides else "") + "): value, unit, evidence tag, source",
                        [table(["parameter", "value", "unit", "tag", "source"], clinical_rows(overrides))]))
    return out


def _figure_sections(runs: Sequence[RunData]) -> list[tuple[str, str, list[Block]]]:
    return [
        ("time-to-relief", "Time to relief",
         [img(km_figure(runs), "Kaplan-Meier share relieved by day"),
          para("Share of patients relieved by each day: 1 - S(t) of the Kaplan-Meier estimate over all patients of all "
             "replications, censored at drop-out and at the horizon; shaded: 95% CI. Relief seen at a visit is dated "
             "on the visit day, so the curve steps at visits; the restricted mean time to relief (RMST, the area "
             "above the curve to the horizon) in the summary does not depend on where a visit falls.")]),
        ("adverse-events", "Adverse-event burden", [img(ae_figure(runs), "adverse events by type per 100 patients")]),
        ("pathway-occupancy", "Share of patients at each pathway step over time",
         [img(occupancy_figure(runs), "pathway state occupancy over time")]),
        ("specialist-queue", "Specialist queue and waits over time",
         [img(queue_figure(runs), "specialist queue length and waits"), *queue_table(runs)]),
    ]


def run_report_html(run: RunData) -> str:
    s = run.summary
    title = f"painpath run: {run.name} ({s.get('n_patients')} patients x {s.get('replications')} replication(s), " \
            f"seed {s.get('seed')})"
    sections = [("scenarios", "Scenario", _scenario_block([run])),
                ("summary", "Summary", [table(["metric", "value [95% CI]", "note"], summary_rows(s)),
                                        para(methods_note(int(s.get("replications", 1))))]),
                *_figure_sections([run]),
                ("parameters", "Parameters and their sources", _parameters_block([run])),
                ("reproducibility", "Reproducibility", reproducibility_block([run.manifest]))]
    return page(title, sections)


def write_run_report(result: Any, path: str | Path) -> Path:
    """Render the report of a :class:`~simulator.analysis.runner.RunResult` (used by ``painpath run``)."""
    return write_html(run_report_html(run_data_from_result(result)), path)


def _comparison_tables(comp: dict[str, Any]) -> list[Block]:
    names = [str(n) for n in comp["scenarios"]]
    metrics = comp["metrics"]
    allm = [m for m in metrics[names[0]]]
    keys = [m for m in KEY_METRICS if m in allm] + [m for m in allm if m not in KEY_METRICS]

    def cell(m: str, d: dict[str, Any] | None) -> str:
        if not d:
            return "-"
        text = fmt_ci(m, d["mean"], *d["ci95"])
        return text + (f" ({d['note']})" if d.get("note") else "")

    rows = [[label_with_unit(m), *[cell(m, metrics[n].get(m)) for n in names]] for m in keys]
    n_key = len([m for m in KEY_METRICS if m in allm])
    out = [h3("Each scenario: estimate over all replications [95% CI]; shares in %"),
           table(["metric", *names], rows[:n_key]),
           details("All metrics", [table(["metric", *names], rows)])]
    diffs = comp["differences_vs_baseline"]
    out.append(h3(f"Differences from {names[0]}: paired 95% CI (common random numbers) and unpaired; "
                   "shares in percentage points"))
    drows, key_rows = [], []
    for n in names[1:]:
        for m in keys:
            d = diffs[n].get(m)
            if not d:
                continue
            pw = _width(d["paired_ci95"])
            uw = _width(d["unpaired_ci95"])
            row = [n, label_with_unit(m), fmt_ci(m, d["diff"], *d["paired_ci95"], diff=True),
                   fmt_ci(m, d["diff"], *d["unpaired_ci95"], diff=True),
                   "-" if pw is None or not uw else f"{pw / uw:.2f}", d.get("note", "")]
            drows.append(row)
            if m in KEY_METRICS:
                key_rows.append(row)
    hdr = ["scenario", "metric", "difference [paired 95% CI]", "difference [unpaired 95% CI]",
           "paired/unpaired width", "note"]
    out += [table(hdr, key_rows), details("All differences", [table(hdr, drows)]),
            para(methods_note(int(comp.get("replications", 0))))]
    return out


def _width(ci: list[float | None]) -> float | None:
    return None if ci[0] is None or ci[1] is None else float(ci[1]) - float(ci[0])


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v)
    return v


def _load_runs(folder: Path) -> list[RunData]:
    runs_dir = folder / "runs"
    if not runs_dir.is_dir():
        return []
    return [run_data_from_folder(p) for p in sorted(runs_dir.iterdir()) if p.is_dir()]


def comparison_report_html(folder: str | Path) -> str:
    from .results import read_json

    folder = Path(folder)
    comp = read_json(folder / "comparison.json", "comparison.json")
    try:
        runs = _load_runs(folder)
        title = (f"painpath comparison: {' vs '.join(map(str, comp['scenarios']))} ({comp['patients']} patients x "
                 f"{comp['replications']} replications, seed {comp['seed']})")
        sections = [("scenarios", "Scenarios", _scenario_block(runs)),
                    ("summary", "Summary tables", _comparison_tables(comp)),
                    *_figure_sections(runs),
                    ("parameters", "Parameters and their sources", _parameters_block(runs)),
                    ("reproducibility", "Reproducibility",
                     reproducibility_block([r.manifest for r in runs], {"command": comp.get("command", "")}))]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise _damaged(folder / "comparison.json", exc) from None
    return page(title, sections)


def _damaged(path: Path, exc: Exception) -> InputError:
    return InputError(f"the folder's results do not have the expected content ({type(exc).__name__}: {exc})",
                      file=str(path), fix="re-create the folder with painpath (the files were damaged or edited)")


def write_comparison_report(folder: str | Path, path: str | Path | None = None) -> Path:
    folder = Path(folder)
    return write_html(comparison_report_html(folder), path or folder / "report.html")


def _sens_figure(data: dict[str, Any]) -> str:
    return tornado_figure(data) if data["kind"] == "tornado" else sweep_figure(data)


def sensitivity_report_html(folder: str | Path) -> str:
    from .results import read_json

    folder = Path(folder)
    name = "sweep.json" if (folder / "sweep.json").exists() else "tornado.json"
    data = read_json(folder / name, name)
    try:
        return _sensitivity_page(folder, data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise _damaged(folder / name, exc) from None


def _sensitivity_page(folder: Path, data: dict[str, Any]) -> str:
    runs = _load_runs(folder)
    kind = data["kind"]
    rows = data["rows"]
    header = list(rows[0].keys()) if rows else []
    title = (f"painpath {kind}: {data['scenario']} — "
             + (str(data["param"]) if kind == "sweep" else f"{len(rows)} parameters, metric {data['metric']}"))
    base = data.get("base_manifest", {})
    sc_block = [scenario_card(str(data["scenario"]), data.get("description") or "", data.get("rationale") or "",
                          data.get("semantics", ""))]
    sections = [("scenarios", "Scenario", sc_block),
                ("summary", "Results table", [table(header, [[_cell(r[h]) for h in header] for r in rows]),
                                              img(_sens_figure(data), f"{kind} plot"),
                                              para(methods_note(int(data.get("replications") or 0)))]),
                *(_figure_sections(runs) if runs else []),
                ("parameters", "Parameters and their sources",
                 [table(["parameter", "values"], [[str(p["path"]), json.dumps(p["values"])] for p in data["params"]]),
                  para(data.get("semantics", "")),
                  *(_parameters_block([RunData(data["scenario"], "", "", {}, base, pd.DataFrame(), pd.DataFrame())])
                    if base else [])]),
                ("reproducibility", "Reproducibility",
                 reproducibility_block([base] if base else [], {"command": data.get("command", ""),
                                                               "seed": data.get("seed"),
                                                               "patients": data.get("patients"),
                                                               "replications": data.get("replications")}))]
    return page(title, sections)


def write_sensitivity_report(folder: str | Path, path: str | Path | None = None) -> Path:
    folder = Path(folder)
    return write_html(sensitivity_report_html(folder), path or folder / "report.html")


def folder_kind(folder: str | Path) -> str:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("the folder does not exist", file=str(folder),
                         fix="name a run, comparison, sweep or tornado folder (e.g. under results/)")
    for f, k in (("comparison.json", "comparison"), ("sweep.json", "sweep"), ("tornado.json", "tornado"),
                 ("summary.json", "run")):
        if (folder / f).exists():
            return k
    raise InputError("this is not a painpath results folder (no summary.json, comparison.json, sweep.json or "
                     "tornado.json)", file=str(folder), fix="name a folder written by painpath run, compare, "
                     "sweep or tornado")


def render_folder(folder: str | Path) -> Path:
    """(Re)render ``report.html`` for any run, comparison, sweep or tornado folder."""
    folder = Path(folder)
    kind = folder_kind(folder)
    if kind == "run":
        run = run_data_from_folder(folder)
        try:
            text = run_report_html(run)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise _damaged(folder / "summary.json", exc) from None
        return write_html(text, folder / "report.html")
    if kind == "comparison":
        return write_comparison_report(folder)
    return write_sensitivity_report(folder)
