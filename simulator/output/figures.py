"""Report figures: matplotlib PNGs (Agg backend), base64-encoded for self-contained HTML.

Owns the figure helpers every report shares (:func:`pyplot`, :func:`png`), :class:`RunData` (what a
report needs of one run, from a RunResult or a run folder) and every figure of the reports: time to relief
(Kaplan-Meier), adverse-event burden, pathway occupancy, the specialist queue, and the sweep and tornado
charts, with the tables they are drawn from (:func:`occupancy`, :func:`queue_series`,
:func:`utilisation_series`). Figures are data in, base64 PNG text out: no HTML here (see
:mod:`simulator.output.blocks`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.metrics import label_with_unit


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


STATE_LABELS = {
    "assessment": "assessment", "topical": "topical", "first_line": "first-line drug", "add_on": "add-on combination",
    "switch": "switched drug", "tramadol": "tramadol", "strong_opioid": "strong opioid",
    "specialist_referral": "waiting for specialist", "specialist_care": "specialist care", "relieved": "relieved",
    "dropped_out": "dropped out", "discharged": "back in primary care after the specialist",
}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with the reports' font sizes and no mathtext."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"text.parse_math": False, "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
                         "xtick.labelsize": 10, "ytick.labelsize": 10})
    return plt


#: PNG text chunks written with every figure: none. matplotlib's default ``Software`` chunk names its version, so
#: the same report would differ between installs; reports are byte-identical for identical inputs.
PNG_METADATA: dict[str, None] = {"Software": None}


def png(fig: Any) -> str:
    """``fig`` as base64 PNG text (110 dpi, no metadata chunks: :data:`PNG_METADATA`); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata=PNG_METADATA)
    pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def km_figure(runs: Sequence[RunData]) -> str:
    """Share relieved by each day (1 - Kaplan-Meier survival) with its 95% CI band, one curve per run."""
    from ..analysis.summary import kaplan_meier

    plt = pyplot()
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
    return png(fig)


def ae_figure(runs: Sequence[RunData]) -> str:
    """Adverse events per 100 patients by type, grouped bars per run: most frequent first, equal rates by name
    (a set of names has no stable order between processes, PYTHONHASHSEED)."""
    plt = pyplot()
    by = [r.summary["adverse_events"]["by_type"] for r in runs]
    types = sorted({t for b in by for t in b}, key=lambda t: (-max(b.get(t, 0.0) for b in by), t))
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
    return png(fig)


def occupancy(events: pd.DataFrame, n_patients: int, horizon: float, step: float = 7.0) -> pd.DataFrame:
    """Share of patients in each pathway state on days 0, step, 2*step, ... (rows: day, columns: state).

    Shares are of the patients who have entered by that day (all ``n_patients`` from day 0 in a closed
    cohort; in an open population, those assessed so far), so every row sums to 1 once anyone has entered.
    """
    from ..model.pathway import STATES

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
    plt = pyplot()
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
    return png(fig)


def queue_series(events: pd.DataFrame, horizon: float, step: float = 7.0, wait_bin: float = 28.0) -> pd.DataFrame:
    """Per grid day: patients in the clinic's queue (``waiting``: summed over replications; ``mean``, ``lo``,
    ``hi``: mean over replications and its 95% CI), counted as joined - seen - left (leavers are not
    waiting; :mod:`simulator.analysis.queue_stats`); and the Kaplan-Meier median wait (days) of referrals made in
    the ``wait_bin`` days starting on that day, with its 95% CI (NaN between bins)."""
    from ..analysis.queue_stats import episodes, queue_length, wait_km
    from ..analysis.stats import level_ci

    grid = np.arange(0.0, horizon + step / 2, step)
    ep = episodes(events, horizon)
    reps = sorted(int(r) for r in events["replication"].unique()) or [0]
    per = np.array([queue_length(ep[ep["replication"] == r], grid) for r in reps], dtype=float)
    band = np.array([level_ci("count", list(per[:, k])) for k in range(len(grid))])
    out = pd.DataFrame({"waiting": per.sum(axis=0).astype(int), "mean": band[:, 0], "lo": band[:, 1],
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
    from ..analysis.queue_stats import episodes
    from ..analysis.stats import level_ci

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
        rows.append(level_ci("share", per))
    return pd.DataFrame(rows, columns=["mean", "lo", "hi"], index=pd.Index(starts, name="day"))


def _clinic_of(r: RunData) -> Any:
    """The run's clinic settings, rebuilt from its manifest (None if the manifest lacks them)."""
    from ..engine.clinic import CapacitySpec

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
    plt = pyplot()
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
    return png(fig)


def sweep_figure(data: dict[str, Any]) -> str:
    """The chosen metric (mean and 95% CI across replications) against the swept values."""
    plt = pyplot()
    rows = [r for r in data["rows"] if r["metric"] == data["metric"]]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    xs = list(range(len(rows)))
    means = [r["mean"] if r["mean"] is not None else math.nan for r in rows]
    lo = [m - (r["ci95_lo"] if r["ci95_lo"] is not None else m) for m, r in zip(means, rows, strict=True)]
    hi = [(r["ci95_hi"] if r["ci95_hi"] is not None else m) - m for m, r in zip(means, rows, strict=True)]
    ax.errorbar(xs, means, yerr=[lo, hi], marker="o", capsize=4, lw=1.8)
    ax.set_xticks(xs, [str(r["value"]) for r in rows])
    ax.set_xlabel(data["param"])
    ax.set_ylabel(label_with_unit(data["metric"]))
    ax.set_title(f"Sweep of {data['param']} (mean, 95% CI over {data['replications']} replications)")
    ax.grid(alpha=0.3)
    # Capacity sweeps: utilisation on a second axis shows where the waits' knee sits (utilisation near 1).
    util_key = next((k for k in ("specialist.steady_state.utilisation", "specialist.utilisation")
                     if data["metric"].startswith("specialist.") and any(r["metric"] == k for r in data["rows"])), None)
    if util_key is not None:
        util = [r["mean"] if r["mean"] is not None else math.nan for r in data["rows"] if r["metric"] == util_key]
        ax2 = ax.twinx()
        ax2.plot(xs, util, color="grey", ls="--", marker="s", ms=4, label="utilisation")
        ax2.set_ylabel("clinic utilisation (dashed)")
        ax2.set_ylim(0, 1.05)
    return png(fig)


def tornado_figure(data: dict[str, Any]) -> str:
    """Tornado chart: the chosen metric at each parameter's low and high value, around the base value."""
    plt = pyplot()
    rows = data["rows"]
    base = data["base"] or 0.0
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.6 * len(rows)))
    for i, r in enumerate(rows):
        for key, color, name in (("at_low", "#4a78b5", "low"), ("at_high", "#d9822b", "high")):
            v = r[key]
            if v is None:
                continue
            ax.barh(i, v - base, left=base, color=color, height=0.6, label=name if i == 0 else None)
            ax.text(v, i, f" {r[key.replace('at_', '')]}", va="center",
                    ha="left" if v >= base else "right", fontsize=10)
    ax.axvline(base, color="k", lw=1)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(label_with_unit(data["metric"]) + f" (base {base:.3g})")
    ax.set_title("One-way sensitivity (tornado)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)
