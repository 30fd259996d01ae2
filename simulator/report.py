"""Self-contained HTML reports for run, comparison, sweep and tornado folders.

One HTML file, no external resources: figures are matplotlib PNGs (Agg backend) embedded as base64,
tables are HTML. The page is rendered by the jinja2 template ``templates/report.html.j2`` with
autoescaping on: this module builds plain data (blocks of text, tables, figures), never HTML strings, so a
name or label such as ``<script>`` is shown as text wherever it appears. A report has the sections a reader needs to judge a result: scenario description and
rationale, summary tables, Kaplan-Meier curves of time-to-relief with 95% CIs (drawn as the share
relieved by each day, 1 - S(t)), adverse-event burden by type, the share of patients at each pathway
step over time, the specialist queue and waits over time, the parameters with their sources (policy
fields with their rules, clinical parameters with source and evidence tag), a reproducibility block
(versions, hashes, seed, command) and the not-for-clinical-use statement.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError

NOT_FOR_CLINICAL_USE = ("Not for clinical use. painpath is for health-policy analysis and teaching. It is not a "
                        "clinical decision tool and must not be used to treat a patient.")
STATE_LABELS = {
    "assessment": "assessment", "topical": "topical", "first_line": "first-line drug", "add_on": "add-on combination",
    "switch": "switched drug", "tramadol": "tramadol", "strong_opioid": "strong opioid",
    "specialist_referral": "waiting for specialist", "specialist_care": "specialist care", "relieved": "relieved",
    "dropped_out": "dropped out", "discharged": "back in primary care after the specialist",
}
SECTIONS = ("statement", "scenarios", "summary", "time-to-relief", "adverse-events", "pathway-occupancy",
            "specialist-queue", "parameters", "reproducibility")


@dataclass
class RunData:
    """What a report needs of one run (from a RunResult or a run folder)."""

    name: str
    description: str
    rationale: str
    summary: dict[str, Any]
    manifest: dict[str, Any]
    patients: pd.DataFrame
    events: pd.DataFrame

    @property
    def horizon(self) -> float:
        return float(self.summary.get("horizon_days") or self.manifest.get("horizon_days") or 730)

    @property
    def n(self) -> int:
        return max(1, len(self.patients))


def run_data_from_result(result: Any) -> RunData:
    sc = result.scenario
    return RunData(sc.name, sc.description, sc.rationale, result.summary, result.manifest, result.patients,
                   result.events)


def run_data_from_folder(folder: str | Path) -> RunData:
    from .results import read_run

    d = read_run(folder)
    resolved = d["manifest"].get("scenario_resolved", {})
    return RunData(d["summary"].get("scenario", Path(folder).name), resolved.get("description", ""),
                   resolved.get("rationale", ""), d["summary"], d["manifest"], d["patients"], d["events"])


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"text.parse_math": False, "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
                         "xtick.labelsize": 10, "ytick.labelsize": 10})
    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---- blocks: the plain data the template renders (simulator/templates/report.html.j2) -----------
Block = dict[str, Any]


def _img(b64: str, alt: str) -> Block:
    return {"kind": "img", "b64": b64, "alt": alt}


def _p(text: str) -> Block:
    return {"kind": "p", "text": text}


def _h3(text: str) -> Block:
    return {"kind": "h3", "text": text}


def _pre(text: str) -> Block:
    return {"kind": "pre", "text": text}


def _details(summary: str, blocks: list[Block]) -> Block:
    return {"kind": "details", "summary": summary, "blocks": blocks}


def _scenario(name: str, description: str, rationale: str, note: str = "") -> Block:
    return {"kind": "scenario", "name": name, "description": description, "rationale": rationale, "note": note}


def _bold(text: str) -> dict[str, str]:
    """A table cell shown in bold."""
    return {"bold": text}


def km_figure(runs: Sequence[RunData]) -> str:
    """Share relieved by each day (1 - Kaplan-Meier survival) with its 95% CI band, one curve per run."""
    from .outcomes import kaplan_meier

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for r in runs:
        kmf = kaplan_meier(r.patients["time_days"].to_numpy(float), r.patients["relieved"].to_numpy(bool))
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_
        t = sf.index.to_numpy()
        line, = ax.step(t, 100 * (1 - sf.to_numpy()), where="post", label=r.name, lw=1.8)
        ax.fill_between(t, 100 * (1 - ci.iloc[:, 1].to_numpy()), 100 * (1 - ci.iloc[:, 0].to_numpy()), step="post",
                        alpha=0.2, color=line.get_color())
    ax.set_xlabel("days since assessment")
    ax.set_ylabel("patients relieved (%)")
    ax.set_title("Time to relief: share relieved by each day (Kaplan-Meier, 95% CI)")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, max(r.horizon for r in runs))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _png(fig)


def ae_figure(runs: Sequence[RunData]) -> str:
    """Adverse events per 100 patients by type, grouped bars per run."""
    plt = _plt()
    by = [r.summary["adverse_events"]["by_type"] for r in runs]
    types = sorted({t for b in by for t in b}, key=lambda t: -max(b.get(t, 0.0) for b in by))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.32 * len(types) * max(1, len(runs)) ** 0.5 + 1.2)))
    y = np.arange(len(types))
    h = 0.8 / max(1, len(runs))
    for i, (r, b) in enumerate(zip(runs, by, strict=True)):
        ax.barh(y + i * h - 0.4 + h / 2, [b.get(t, 0.0) for t in types], height=h, label=r.name)
    ax.set_yticks(y, [t.replace("_", " ") for t in types])
    ax.invert_yaxis()
    ax.set_xlabel("events per 100 patients over the horizon")
    ax.set_title("Adverse-event burden by type")
    ax.grid(axis="x", alpha=0.3)
    if len(runs) > 1:
        ax.legend(loc="lower right")
    return _png(fig)


def occupancy(events: pd.DataFrame, n_patients: int, horizon: float, step: float = 7.0) -> pd.DataFrame:
    """Share of patients in each pathway state on days 0, step, 2*step, ... (rows: day, columns: state).

    Shares are of the patients who have entered by that day (all ``n_patients`` from day 0 in a closed
    cohort; in an open population, those assessed so far), so every row sums to 1 once anyone has entered.
    """
    from .pathway import STATES

    key = ["replication", "patient"]
    tr = events.loc[events["event"] == "transition", [*key, "day", "state"]].copy()
    tr["state"] = tr["state"].astype(str)
    start = events.loc[events["event"] == "assessment", [*key, "day"]].assign(state="assessment")
    drop = events.loc[events["event"] == "dropout", [*key, "day"]].assign(state="dropped_out")
    seq = pd.concat([start, tr, drop], ignore_index=True)
    seq["order"] = seq["state"].map({"assessment": 0}).fillna(1)
    seq = seq.sort_values([*key, "day", "order"], kind="stable")
    end = seq.groupby(key)["day"].shift(-1).fillna(np.inf)
    grid = np.arange(0.0, horizon + step / 2, step)
    out = {}
    for s in STATES:
        m = (seq["state"] == s).to_numpy()
        st = np.searchsorted(grid, seq["day"].to_numpy()[m], side="left")
        en = np.searchsorted(grid, end.to_numpy()[m], side="left")
        diff = np.zeros(len(grid) + 1)
        np.add.at(diff, st, 1)
        np.add.at(diff, en, -1)
        out[s] = np.cumsum(diff)[:-1]
    entered = np.searchsorted(np.sort(start["day"].to_numpy(float)), grid, side="right")
    denom = np.maximum(entered, 1) if len(start) else np.full(len(grid), max(1, n_patients))
    return pd.DataFrame({s: v / denom for s, v in out.items()}, index=pd.Index(grid, name="day"))


def occupancy_figure(runs: Sequence[RunData]) -> str:
    """Stacked areas of the share of patients at each pathway step over time, one panel per run."""
    plt = _plt()
    k = len(runs)
    cols = 1 if k == 1 else 2
    rows = (k + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(8 if cols == 1 else 11, 4.2 * rows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    color = {s: cmap(i % 20) for i, s in enumerate(STATE_LABELS)}
    shown: list[str] = []
    for i, r in enumerate(runs):
        ax = axes[i // cols][i % cols]
        occ = occupancy(r.events, r.n, r.horizon)
        occ = occ.loc[:, occ.max() > 0]
        shown.extend(c for c in occ.columns if c not in shown)
        ax.stackplot(occ.index, *(100 * occ[c] for c in occ.columns), colors=[color[c] for c in occ.columns],
                     alpha=0.9)
        ax.set_xlim(0, r.horizon)
        ax.set_ylim(0, 100)
        if r.summary.get("population"):  # open population: run days; shares of the patients entered so far
            ax.set_xlabel("day of the run")
            ax.set_ylabel("patients who have entered (%)")
        else:
            ax.set_xlabel("days since assessment")
            ax.set_ylabel("patients (%)")
        ax.set_title(f"Pathway step over time: {r.name}")
    from matplotlib.patches import Patch

    order = [s for s in STATE_LABELS if s in shown]
    fig.legend([Patch(color=color[s]) for s in order], [STATE_LABELS[s] for s in order], loc="center left",
               bbox_to_anchor=(1.0, 0.5), frameon=False, title="pathway step")
    fig.tight_layout(h_pad=2.0)
    for j in range(k, rows * cols):
        axes[j // cols][j % cols].axis("off")
    return _png(fig)


def queue_series(events: pd.DataFrame, horizon: float, step: float = 7.0, wait_bin: float = 28.0) -> pd.DataFrame:
    """Per grid day: patients in the clinic's queue (``waiting``: summed over replications; ``mean``, ``lo``,
    ``hi``: mean over replications and its 95% CI), counted as joined - seen - left (leavers are not
    waiting; :mod:`simulator.queue_stats`); and the Kaplan-Meier median wait (days) of referrals made in
    the ``wait_bin`` days starting on that day, with its 95% CI (NaN between bins)."""
    from .queue_stats import episodes, queue_length, wait_km
    from .stats import mean_ci

    grid = np.arange(0.0, horizon + step / 2, step)
    ep = episodes(events, horizon)
    reps = sorted(int(r) for r in events["replication"].unique()) or [0]
    per = np.array([queue_length(ep[ep["replication"] == r], grid) for r in reps], dtype=float)
    band = np.array([mean_ci(list(per[:, k])) for k in range(len(grid))])
    out = pd.DataFrame({"waiting": per.sum(axis=0).astype(int), "mean": band[:, 0], "lo": np.maximum(band[:, 1], 0),
                        "hi": band[:, 2]}, index=pd.Index(grid, name="day"))
    med = np.full(len(grid), np.nan)
    lo = np.full(len(grid), np.nan)
    hi = np.full(len(grid), np.nan)
    for start in np.arange(0.0, horizon, wait_bin):
        sub = ep[(ep["queued"] >= start) & (ep["queued"] < start + wait_bin)]
        if len(sub) < 5:
            continue
        km = wait_km(sub)
        k = int(np.searchsorted(grid, start))
        med[k] = np.nan if km["median"] is None else km["median"]
        lo[k] = np.nan if km["median_ci95"][0] is None else km["median_ci95"][0]
        hi[k] = np.nan if km["median_ci95"][1] is None else km["median_ci95"][1]
    out["median_wait_days"], out["wait_lo"], out["wait_hi"] = med, lo, hi
    return out


def _queue_base(r: RunData) -> tuple[float, str]:
    """(people per which queue length is shown, its label): 100,000 people served in an open population,
    1,000 patients in a closed cohort."""
    pop = (r.manifest.get("scenario_resolved") or {}).get("population")
    if pop:
        return float(pop["size"]) / 100000.0, "per 100,000 people served"
    return r.n / max(1, int(r.summary.get("replications", 1))) / 1000.0, "per 1,000 patients"


def utilisation_series(events: pd.DataFrame, clinic: Any, horizon: float, step: float = 28.0) -> pd.DataFrame:
    """Per ``step``-day bin (index: its first day): consults started / consults the clinic could start,
    mean over replications with its 95% CI (``mean``, ``lo``, ``hi``)."""
    from .queue_stats import episodes
    from .stats import mean_ci

    ep = episodes(events, horizon)
    seen = ep[ep["status"] == "seen"]
    reps = sorted(int(r) for r in events["replication"].unique()) or [0]
    starts = np.arange(0.0, horizon, step)
    rows = []
    for t0 in starts:
        t1 = min(t0 + step, horizon)
        offered = clinic.offered(t0, t1)
        per = [float(((seen["replication"] == r) & (seen["end"] >= t0) & (seen["end"] < t1)).sum()) / offered
               if offered > 0 else np.nan for r in reps]
        rows.append(mean_ci(per))
    return pd.DataFrame(rows, columns=["mean", "lo", "hi"], index=pd.Index(starts, name="day"))


def _clinic_of(r: RunData) -> Any:
    """The run's clinic settings, rebuilt from its manifest (None if the manifest lacks them)."""
    from .clinic import CapacitySpec

    res = r.manifest.get("scenario_resolved") or {}
    if "specialist" not in res:
        return None
    spec = CapacitySpec(**res["specialist"])
    pop = res.get("population")
    return spec.config(population=pop["size"]) if pop else spec.config(patients=int(res.get("patients", r.n)))


def queue_figure(runs: Sequence[RunData]) -> str:
    """Specialist queue length over time (mean and 95% CI band over replications), the median wait of
    referrals by the day they were made (Kaplan-Meier, censored at the horizon, 95% CI band), and the
    clinic's utilisation over time (consults started / consults it could start, 4-week bins)."""
    plt = _plt()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.2))
    label = ""
    for r in runs:
        qs = queue_series(r.events, r.horizon)
        scale, label = _queue_base(r)
        line = a1.plot(qs.index, qs["mean"] / scale, label=r.name, lw=1.8)[0]
        a1.fill_between(qs.index, qs["lo"] / scale, qs["hi"] / scale, color=line.get_color(), alpha=0.2, lw=0)
        w = qs.dropna(subset=["median_wait_days"])
        a2.plot(w.index, w["median_wait_days"], marker="o", ms=2.5, lw=1.0, label=r.name, color=line.get_color())
        a2.fill_between(w.index, w["wait_lo"], w["wait_hi"], color=line.get_color(), alpha=0.2, lw=0)
        clinic = _clinic_of(r)
        if clinic is not None:
            u = utilisation_series(r.events, clinic, r.horizon)
            a3.step(u.index, u["mean"], where="post", color=line.get_color(), lw=1.5, label=r.name)
            a3.fill_between(u.index, u["lo"].clip(lower=0), u["hi"], step="post", color=line.get_color(), alpha=0.2, lw=0)
    for r in runs:
        warm = ((r.manifest.get("scenario_resolved") or {}).get("population") or {}).get("warmup_days")
        if warm:
            for a in (a1, a2, a3):
                a.axvline(warm, color="grey", ls="--", lw=1)
    a1.set_xlabel("day of the run")
    a1.set_ylabel(f"waiting {label}")
    a1.set_title("Specialist queue length (95% CI band)")
    a2.set_xlabel("day the referral was made (4-week bins)")
    a2.set_ylabel("median wait (days, Kaplan-Meier)")
    a2.set_title("Waits for a consult by referral date")
    a3.set_xlabel("day of the run (4-week bins)")
    a3.set_ylabel("consults started / offered")
    a3.set_title("Clinic utilisation")
    a3.set_ylim(0, 1.1)
    for a in (a1, a2, a3):
        a.grid(alpha=0.3)
        a.set_xlim(0, max(r.horizon for r in runs))
    a1.legend(loc="upper left")
    return _png(fig)


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
           _p("Waits are Kaplan-Meier estimates: a consult is the event; patients who left the queue (drop-out, "
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
    return [_h3("Outcomes by entry cohort"),
            table(["scenario", "entered", "patients", "relieved by day 84", "by day 182", "by day 365", "referred"],
                  rows),
            _p("Days since each patient's own entry; Kaplan-Meier, censored at the horizon (late cohorts are followed "
               "for less time).")]


# ------------------------------------------------------------------------------------------------
# Tables and blocks
# ------------------------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, float):  # fixed notation, never scientific (1.2e-05 -> 0.000012)
        return np.format_float_positional(v, precision=digits, unique=False, fractional=False, trim="-") \
            if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> Block:
    """A table block; cells are text (numbers formatted by _fmt) or _bold(text)."""
    return {"kind": "table", "cls": cls, "header": [str(h) for h in header],
            "rows": [[c if isinstance(c, dict | str) else _fmt(c) for c in r] for r in rows]}


def summary_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """Rows (label with unit, value [95% CI], note) of every metric (the metric registry's labels)."""
    from .metrics import summary_rows as rows

    return [[lab, text, note] for _k, lab, text, note in rows(summary)]


def _flatten_policy(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.extend(_flatten_policy(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
            if isinstance(v, dict) and not v:
                out.append((f"{prefix}{k}", "{}"))
    else:
        out.append((prefix, d))
    return out


def policy_rows(resolved: dict[str, Any]) -> list[list[Any]]:
    """Policy, capacity and override settings with the rule each parameterises and whether it departs from
    the guideline default."""
    from .policy import Policy

    default = dict(_flatten_policy(Policy().model_dump(mode="json"), "policy."))
    rows = []
    for k, v in _flatten_policy({kk: resolved.get(kk) for kk in ("policy", "specialist", "clinical_overrides",
                                                                 "horizon_days") if kk in resolved}):
        rule = _field_rule(k)
        changed = k in default and default[k] != v
        rows.append([k, json.dumps(v), rule,
                     _bold("changed") if changed or (k.startswith("clinical_overrides") and v != "{}") else ""])
    return rows


def _field_rule(path: str) -> str:
    from .policy import Policy

    parts = path.split(".")
    if parts[0] != "policy" or len(parts) < 2:
        return {"specialist": "P9 (capacity)", "clinical_overrides": "sensitivity override (simulator/overrides.py)",
                "horizon_days": ""}.get(parts[0], "")
    model: Any = Policy
    desc = ""
    for p in parts[1:]:
        f = getattr(model, "model_fields", {}).get(p)
        if f is None:
            break
        desc = f.description or desc
        model = f.annotation
    return desc or ""


def clinical_rows(overrides: dict[str, float] | None = None) -> list[list[Any]]:
    """Every clinical parameter (as run, with overrides applied) with unit, evidence tag and source."""
    from .overrides import apply_overrides

    model = apply_overrides(overrides or {})
    rows: list[list[Any]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and "source" in node and "value" in node:
            v = node["value"]
            if isinstance(v, list):
                val = "; ".join(f"{d:g}: {p:.3g}" for d, p in v)
            elif isinstance(v, dict):
                val = ", ".join(f"{e}: {p:.3g}" for e, p in v.items()) + f"; default {node.get('default', 0):.3g}"
            else:
                val = f"{v:.4g}"
            rows.append([path, val, node.get("unit", ""), node.get("tag", ""), node.get("source", "")])
            return
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}".strip("."))

    walk(model.model_dump(mode="python"), "")
    return rows


def reproducibility_block(manifests: Sequence[dict[str, Any]], extra: dict[str, Any] | None = None) -> list[Block]:
    keys = ("scenario", "painpath_version", "scenario_hash", "policy_hash", "cohort_hash", "model_hash", "seed",
            "patients", "replications", "horizon_days", "python", "platform")
    rows = [[str(m.get("scenario", "")), *[_fmt(m.get(k)) for k in keys[1:]]] for m in manifests]
    out = [table(keys, rows)]
    libs = manifests[0].get("libraries", {}) if manifests else {}
    out.append(_p("Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items())))
    cmds = {m.get("command", "") for m in manifests if m.get("command")}
    if extra and extra.get("command"):
        cmds = {extra["command"]}
    for c in sorted(cmds):
        out += [_p("Command:"), _pre(c)]
    if extra:
        out.append(_pre(json.dumps({k: v for k, v in extra.items() if k != "command"}, indent=1)))
    return out


@lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("simulator", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2")


def page(title: str, sections: Sequence[tuple[str, str, list[Block]]]) -> str:
    """The HTML document: ``sections`` are (id, heading, blocks); the statement comes first and last."""
    return _template().render(title=title, statement=NOT_FOR_CLINICAL_USE,
                              sections=[{"id": sid, "heading": h, "blocks": blocks} for sid, h, blocks in sections])


def write_html(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _scenario_block(runs: Sequence[RunData]) -> list[Block]:
    return [_scenario(r.name, r.description, r.rationale) for r in runs]


def _parameters_block(runs: Sequence[RunData]) -> list[Block]:
    out: list[Block] = []
    for r in runs:
        resolved = r.manifest.get("scenario_resolved", {})
        out.append(_h3(f"Policy and capacity: {r.name}"))
        out.append(table(["setting", "value", "rule / meaning", "vs guideline default"], policy_rows(resolved)))
    overrides = (runs[0].manifest.get("scenario_resolved", {}) or {}).get("clinical_overrides") or {}
    out.append(_details("Clinical model parameters (simulator/data/clinical.yaml"
                        + (", with this run's overrides" if overrides else "") + "): value, unit, evidence tag, source",
                        [table(["parameter", "value", "unit", "tag", "source"], clinical_rows(overrides))]))
    return out


def _figure_sections(runs: Sequence[RunData]) -> list[tuple[str, str, list[Block]]]:
    return [
        ("time-to-relief", "Time to relief",
         [_img(km_figure(runs), "Kaplan-Meier share relieved by day"),
          _p("Share of patients relieved by each day: 1 - S(t) of the Kaplan-Meier estimate over all patients of all "
             "replications, censored at drop-out and at the horizon; shaded: 95% CI. Relief seen at a visit is dated "
             "on the visit day, so the curve steps at visits; the restricted mean time to relief (RMST, the area "
             "above the curve to the horizon) in the summary does not depend on where a visit falls.")]),
        ("adverse-events", "Adverse-event burden", [_img(ae_figure(runs), "adverse events by type per 100 patients")]),
        ("pathway-occupancy", "Share of patients at each pathway step over time",
         [_img(occupancy_figure(runs), "pathway state occupancy over time")]),
        ("specialist-queue", "Specialist queue and waits over time",
         [_img(queue_figure(runs), "specialist queue length and waits"), *queue_table(runs)]),
    ]


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------


def run_report_html(run: RunData) -> str:
    s = run.summary
    title = f"painpath run: {run.name} ({s.get('n_patients')} patients x {s.get('replications')} replication(s), " \
            f"seed {s.get('seed')})"
    sections = [("scenarios", "Scenario", _scenario_block([run])),
                ("summary", "Summary", [table(["metric", "value [95% CI]", "note"], summary_rows(s))]),
                *_figure_sections([run]),
                ("parameters", "Parameters and their sources", _parameters_block([run])),
                ("reproducibility", "Reproducibility", reproducibility_block([run.manifest]))]
    return page(title, sections)


def write_run_report(result: Any, path: str | Path) -> Path:
    """Render the report of a :class:`~simulator.runner.RunResult` (used by ``painpath run``)."""
    return write_html(run_report_html(run_data_from_result(result)), path)


def _comparison_tables(comp: dict[str, Any]) -> list[Block]:
    from .compare import KEY_METRICS
    from .metrics import fmt_ci, label_with_unit

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
    out = [_h3("Each scenario: mean across replications [95% CI]; shares in %"),
           table(["metric", *names], rows[:n_key]),
           _details("All metrics", [table(["metric", *names], rows)])]
    diffs = comp["differences_vs_baseline"]
    out.append(_h3(f"Differences from {names[0]}: paired 95% CI (common random numbers) and unpaired; "
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
    out += [table(hdr, key_rows), _details("All differences", [table(hdr, drows)])]
    return out


def _width(ci: list[float | None]) -> float | None:
    return None if ci[0] is None or ci[1] is None else float(ci[1]) - float(ci[0])


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
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
    from .sweep import sweep_figure, tornado_figure

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
    sc_block = [_scenario(str(data["scenario"]), data.get("description") or "", data.get("rationale") or "",
                          data.get("semantics", ""))]
    sections = [("scenarios", "Scenario", sc_block),
                ("summary", "Results table", [table(header, [[_cell(r[h]) for h in header] for r in rows]),
                                              _img(_sens_figure(data), f"{kind} plot")]),
                *(_figure_sections(runs) if runs else []),
                ("parameters", "Parameters and their sources",
                 [table(["parameter", "values"], [[str(p["path"]), json.dumps(p["values"])] for p in data["params"]]),
                  _p(data.get("semantics", "")),
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
