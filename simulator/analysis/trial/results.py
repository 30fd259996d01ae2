"""Trial results: per-arm summaries, NNT/NNH and the per-patient table of a virtual trial.

Owns :class:`ArmResult` and :class:`TrialResult` (responder rates, mean change, withdrawals, adverse events
by grade, time-to-onset Kaplan-Meier medians) built from the :class:`~simulator.analysis.trial.group.GroupOutcome`
of every group, :func:`nnt`, and the per-patient frame written by ``painpath trial --patients-out``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .courses import DROPOUT, EXCLUDED, GRADES, STATUS_NAMES, WITHDRAWN_AE, GroupOutcome, TrialPopulation
from .protocol import Protocol


def nnt(p_drug: float, n_drug: int, p_pbo: float, n_pbo: int) -> dict[str, float | None]:
    """NNT = 1 / risk difference with a 95% CI from the Wald CI of the difference (None = not bounded).
    Used for NNH as well (risk of harm)."""
    rd = p_drug - p_pbo
    se = math.sqrt(p_drug * (1 - p_drug) / max(n_drug, 1) + p_pbo * (1 - p_pbo) / max(n_pbo, 1))
    lo, hi = rd - 1.959964 * se, rd + 1.959964 * se

    def inv(x: float) -> float | None:
        return None if x <= 0 else 1.0 / x

    return {"nnt": inv(rd), "ci_low": inv(hi), "ci_high": inv(lo) if lo > 0 else None}


def _km_median(durations: np.ndarray, events: np.ndarray) -> float | None:
    """Kaplan-Meier median (first time survival <= 0.5), None when not reached."""
    if durations.size == 0:
        return None
    times = np.unique(durations[events])
    surv = 1.0
    for t in times:
        at_risk = np.count_nonzero(durations >= t)
        d = np.count_nonzero((durations == t) & events)
        surv *= 1.0 - d / at_risk
        if surv <= 0.5:
            return float(t)
    return None


@dataclass
class ArmResult:
    """Summary of one arm or branch (``n`` = patients analysed; exclusions are counted apart)."""

    label: str
    n: int
    responders30: float
    responders50: float
    any_reduction: float
    mean_change: float
    mean_pain_end: float
    ae_incidence: dict[str, float]
    ae_withdrawal: float
    onset_median_days: float | None
    ae_moderate_severe: dict[str, float] = field(default_factory=dict)
    any_ae: float = 0.0
    any_ae_moderate_severe: float = 0.0
    withdrawn: float = 0.0
    dropped_out: float = 0.0
    excluded: dict[str, int] = field(default_factory=dict)
    escalated: float = 0.0
    dose_capped: float = 0.0
    mean_change_since_entry: float | None = None
    onset_30_median_days: float | None = None
    eval_mean_change: dict[int, float] = field(default_factory=dict)
    sd: dict[str, float] = field(default_factory=dict)  # SDs of mean metrics (Monte-Carlo CIs of the calibration report)
    nnt50: dict[str, float | None] = field(default_factory=dict)
    nnt30: dict[str, float | None] = field(default_factory=dict)
    nnh_ae_withdrawal: dict[str, float | None] = field(default_factory=dict)
    nnh_any_ae: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm": self.label, "n": self.n, "responders_30": self.responders30,
            "responders_50": self.responders50, "any_reduction": self.any_reduction,
            "mean_nrs_change": self.mean_change, "mean_nrs_change_since_entry": self.mean_change_since_entry,
            "mean_pain_end": self.mean_pain_end,
            "nnt_50_vs_placebo": self.nnt50 or None, "nnt_30_vs_placebo": self.nnt30 or None,
            "nnh_ae_withdrawal_vs_placebo": self.nnh_ae_withdrawal or None,
            "nnh_any_ae_vs_placebo": self.nnh_any_ae or None,
            "ae_incidence": self.ae_incidence, "ae_moderate_severe": self.ae_moderate_severe, "any_ae": self.any_ae,
            "any_ae_moderate_severe": self.any_ae_moderate_severe,
            "ae_withdrawal": self.ae_withdrawal, "withdrawn": self.withdrawn, "dropped_out": self.dropped_out,
            "excluded": self.excluded, "escalated": self.escalated, "dose_capped": self.dose_capped,
            "median_days_to_sustained_1pt": self.onset_median_days,
            "median_days_to_30pct": self.onset_30_median_days,
            "mean_nrs_change_by_day": {str(k): v for k, v in self.eval_mean_change.items()},
        }


@dataclass
class TrialResult:
    spec: Any
    arms: list[ArmResult]
    patients: Any = None  # pandas DataFrame, one row per patient and period
    screened: int = 0
    lead_in_excluded: int = 0
    analysis: str = ""

    def arm(self, label: str) -> ArmResult:
        for a in self.arms:
            if a.label == label:
                return a
        raise KeyError(label)

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "cohort": s.cohort, "design": s.design, "period_days": s.days, "patients": s.patients,
                "seed": s.seed, "screened": self.screened, "lead_in_not_randomised": self.lead_in_excluded,
                "analysis": self.analysis, "arms": [a.as_dict() for a in self.arms]}


def merge_outcomes(parts: list[GroupOutcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("rows", "baseline", "pain_end", "status", "stop_day", "intolerable", "onset_1pt", "onset_30", "branch",
                "branch_entry_nrs", "escalated", "exclusion", "capped", "completed_pain"):
        out[key] = np.concatenate([getattr(p, key) for p in parts])
    days = sorted({d for p in parts for d in p.evals})
    out["evals"] = {d: np.concatenate([p.evals.get(d, np.full(p.rows.size, np.nan)) for p in parts]) for d in days}
    names = {nm for p in parts for nm in p.ae_grade}
    out["ae_grade"] = {nm: np.concatenate([p.ae_grade.get(nm, np.zeros(p.rows.size, int)) for p in parts])
                       for nm in sorted(names)}
    return out


def summarise_arm(label: str, o: dict[str, Any], since_entry: bool = False) -> ArmResult:
    ok = o["status"] != EXCLUDED
    analysed = ok & np.isfinite(o["pain_end"])
    base, pain = o["baseline"][analysed], o["pain_end"][analysed]
    red = np.where(base > 0, (base - pain) / np.where(base > 0, base, 1.0), 0.0)
    n = int(np.count_nonzero(analysed))
    n_ok = max(int(np.count_nonzero(ok)), 1)
    grades = {k: v[ok] for k, v in o["ae_grade"].items()}
    excl: dict[str, int] = {}
    for r in o["exclusion"][~ok]:
        excl[str(r)] = excl.get(str(r), 0) + 1

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else math.nan

    completers = o["completed_pain"][ok]
    completers = completers[np.isfinite(completers)]
    e1 = o["onset_1pt"][ok]
    e3 = o["onset_30"][ok]
    entry = o["branch_entry_nrs"][analysed]
    return ArmResult(
        label=label, n=n,
        responders30=mean((red >= 0.3 - 1e-9).astype(float)), responders50=mean((red >= 0.5 - 1e-9).astype(float)),
        any_reduction=mean((pain < base).astype(float)), mean_change=mean(pain - base),
        mean_pain_end=mean(completers),
        ae_incidence={k: float(np.count_nonzero(v > 0) / n_ok) for k, v in grades.items()},
        ae_moderate_severe={k: float(np.count_nonzero(v >= 2) / n_ok) for k, v in grades.items()},
        any_ae=float(np.count_nonzero(np.any(np.stack(list(grades.values())) > 0, axis=0)) / n_ok) if grades else 0.0,
        any_ae_moderate_severe=float(np.count_nonzero(np.any(np.stack(list(grades.values())) >= 2, axis=0)) / n_ok)
        if grades else 0.0,
        ae_withdrawal=float(np.count_nonzero(o["intolerable"][ok]) / n_ok),
        withdrawn=float(np.count_nonzero(o["status"][ok] == WITHDRAWN_AE) / n_ok),
        dropped_out=float(np.count_nonzero(o["status"][ok] == DROPOUT) / n_ok),
        excluded=excl, escalated=float(np.count_nonzero(o["escalated"][ok]) / n_ok),
        dose_capped=float(np.count_nonzero(o["capped"][ok] != "") / n_ok),
        mean_change_since_entry=mean(pain - entry) if since_entry else None,
        onset_median_days=_km_median(np.abs(e1), e1 > 0),
        onset_30_median_days=_km_median(np.abs(e3), e3 > 0),
        eval_mean_change={d: float(np.nanmean(v[ok] - o["baseline"][ok])) for d, v in o["evals"].items()
                          if np.any(np.isfinite(v[ok]))},
        sd={"mean_nrs_change": _sd(pain - base), "mean_pain_end": _sd(completers),
            "mean_nrs_change_since_entry": _sd(pain - entry) if since_entry else math.nan,
            **{f"mean_nrs_change_day_{d}": _sd(v[ok] - o["baseline"][ok]) for d, v in o["evals"].items()}},
    )


def _sd(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if x.size > 1 else math.nan


def patients_frame(pop: TrialPopulation, proto: Protocol, parts: list[tuple[str, int, GroupOutcome]]) -> Any:
    import pandas as pd

    from ...population.cohort_spec import ETIOLOGIES

    frames = []
    for arm, period, g in parts:
        rows = g.rows
        data: dict[str, Any] = {
            "patient": rows, "arm": arm, "period": period, "period_start_day": g.start_day,
            "branch": g.branch.astype(str),
            "age": pop.cohort.age[rows], "etiology": [ETIOLOGIES[e] for e in pop.etiology[rows]],
            "baseline_nrs": g.baseline, "endpoint_nrs": g.pain_end,
            "status": [STATUS_NAMES[s] for s in g.status], "left_on_day": g.stop_day,
            "exclusion": g.exclusion.astype(str), "dose_capped": g.capped.astype(str), "intolerable_ae": g.intolerable, "escalated": g.escalated,
            "branch_entry_nrs": g.branch_entry_nrs,
            "onset_1pt_day": np.where(g.onset_1pt > 0, g.onset_1pt, np.nan),
            "onset_30pct_day": np.where(g.onset_30 > 0, g.onset_30, np.nan),
        }
        for day, v in sorted(g.evals.items()):
            data[f"nrs_day_{day}"] = v
        for name, dose in g.final_dose.items():
            data[f"dose_end_{name}"] = dose
        for name, grade in g.ae_grade.items():
            data[f"ae_{name}"] = [GRADES[x] for x in grade]
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
