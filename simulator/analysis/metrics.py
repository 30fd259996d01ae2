"""The metric registry: a human label and a unit for every dotted summary metric, and how to print it.

Every table a person reads (CLI, HTML reports, ``replication_metrics.csv``) takes its labels and units
from here, so a metric is named the same way everywhere. Keys are the dotted paths of the numeric
leaves of ``summary.json`` (:func:`simulator.analysis.summary.flat_metrics`); ``*`` stands for one path segment
(a day, a state, a drug, an adverse-event type) and ``{0}`` in the label is replaced by it.

Numbers are printed in fixed notation with a number of decimals fixed per kind of metric (never in
scientific notation): shares as percentages (differences in percentage points), days with one decimal,
NRS with two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One family of metrics: ``pattern`` (dotted, ``*`` = one segment), label, unit and display kind."""

    pattern: str
    label: str
    unit: str
    kind: str  # share | days | nrs | rate | per100 | count | per_patient


KINDS_DECIMALS = {"share": 1, "days": 1, "nrs": 2, "rate": 3, "per100": 2, "count": 0, "per_patient": 2}

REGISTRY: tuple[Metric, ...] = (
    Metric("time_to_relief.rmst_days", "restricted mean time to relief (RMST) to the horizon", "days", "days"),
    Metric("time_to_relief.relieved_by_horizon", "relieved by the horizon, KM", "fraction", "share"),
    Metric("time_to_relief.median_days", "median time to relief, KM", "days", "days"),
    Metric("time_to_relief.relieved_by_day.*", "relieved by day {0}, KM", "fraction", "share"),
    Metric("pain.mean_nrs_by_day.*", "mean pain on day {0}", "NRS 0-10", "nrs"),
    Metric("adverse_events.per_patient_year", "adverse events per patient-year", "events per patient-year", "rate"),
    Metric("adverse_events.patients_with_any", "patients with any adverse event", "fraction", "share"),
    Metric("adverse_events.discontinuations_per_100_patients", "discontinuations for adverse events",
           "per 100 patients", "per100"),
    Metric("adverse_events.serious_per_100_patients", "serious adverse events", "per 100 patients", "per100"),
    Metric("adverse_events.by_type.*", "adverse events: {0}", "per 100 patients", "per100"),
    Metric("adverse_events.by_drug.*.events_per_100_patients", "adverse events on {0}", "per 100 patients", "per100"),
    Metric("adverse_events.by_drug.*.serious_per_100_patients", "serious adverse events on {0}", "per 100 patients",
           "per100"),
    Metric("adverse_events.by_drug.*.discontinuations_per_100_patients", "discontinuations of {0} for adverse events",
           "per 100 patients", "per100"),
    Metric("pathway.reached.*", "reached {0}", "fraction", "share"),
    Metric("pathway.final_state.*", "at the horizon: {0}", "fraction", "share"),
    Metric("specialist.referred", "referred to a specialist", "fraction", "share"),
    Metric("specialist.wait_days_median", "median wait for a specialist consult", "days", "days"),
    Metric("specialist.wait_days_p90", "90th centile wait for a specialist consult", "days", "days"),
    Metric("specialist.seen", "patients seen by a specialist", "patients", "count"),
    Metric("specialist.left_queue", "patients who left the specialist queue", "patients", "count"),
    Metric("specialist.still_waiting_at_horizon", "still waiting for a specialist at the horizon", "patients", "count"),
    Metric("pathway.awaiting_re_referral_at_horizon", "in primary care at the horizon, waiting out the re-referral "
           "interval", "patients", "count"),
    Metric("specialist.seen_by_day.*", "seen by a specialist within {0} days of referral", "fraction", "share"),
    Metric("specialist.left_by_day.*", "left the specialist queue within {0} days of referral", "fraction", "share"),
    Metric("specialist.backlog_at_horizon_per_1000_patients", "specialist backlog at the horizon",
           "patients per 1,000 patients", "per100"),
    Metric("specialist.backlog_at_horizon_per_100k_population", "specialist backlog at the horizon",
           "patients per 100,000 people", "per100"),
    Metric("specialist.mean_queue_length_per_1000_patients", "mean specialist queue length",
           "patients per 1,000 patients", "per100"),
    Metric("specialist.mean_queue_length_per_100k_population", "mean specialist queue length",
           "patients per 100,000 people", "per100"),
    Metric("specialist.referrals_per_week_per_100k_population", "referrals to the specialist",
           "referrals per week per 100,000 people", "rate"),
    Metric("specialist.utilisation", "specialist clinic utilisation (consults started / offered)", "fraction",
           "share"),
    Metric("specialist.consults_per_week", "specialist consults offered", "consults per week", "rate"),
    Metric("specialist.left_queue_relieved", "referrals that left the queue relieved while waiting", "patients",
           "count"),
    Metric("specialist.tramadol_bridge", "given tramadol as a bridge while queued", "fraction", "share"),
    # issue 10: the year after the first answer (simulator.analysis.persistence; docs/summary-schema.md)
    Metric("maintenance.relieved_on_day.*", "relieved on day {0}", "fraction", "share"),
    Metric("maintenance.sustained_relief", "sustained relief (relieved on days 182 and 365)", "fraction", "share"),
    Metric("maintenance.relapses_per_patient", "relapses per patient", "relapses per patient", "per_patient"),
    Metric("maintenance.relapsed_among_relieved", "relieved patients who relapsed", "fraction", "share"),
    Metric("maintenance.maintenance_visits_per_patient", "maintenance visits per patient", "visits per patient",
           "per_patient"),
    Metric("maintenance.regimens.regimens_per_patient", "regimens per patient", "regimens per patient",
           "per_patient"),
    Metric("maintenance.regimens.mean_days_on_regimen", "mean time on a regimen", "days", "days"),
    Metric("maintenance.regimens.median_days_on_regimen", "median time on a regimen", "days", "days"),
    Metric("maintenance.persistence.index_drug_share.*", "index drug {0}", "fraction", "share"),
    Metric("maintenance.persistence.on_index_drug_at_month.*", "still on the index drug at month {0}", "fraction",
           "share"),
    Metric("maintenance.persistence.on_index_drug_at_month_by_drug.*.3", "still on index drug {0} at month 3",
           "fraction", "share"),
    Metric("maintenance.persistence.on_index_drug_at_month_by_drug.*.6", "still on index drug {0} at month 6",
           "fraction", "share"),
    Metric("maintenance.persistence.on_index_drug_at_month_by_drug.*.12", "still on index drug {0} at month 12",
           "fraction", "share"),
    Metric("maintenance.persistence.discontinued_all_index_1y", "all index treatment stopped within a year",
           "fraction", "share"),
    Metric("maintenance.persistence.of_which_within_3_months", "of those, stopped within 3 months", "fraction",
           "share"),
    Metric("maintenance.persistence.switched_within_12_months_of_discontinuation",
           "of those, another drug started within 12 months", "fraction", "share"),
    Metric("maintenance.drug_changes.reached_stable_regimen", "reached a stable regimen", "fraction", "share"),
    Metric("maintenance.drug_changes.drug_changes_before_stable_mean",
           "mean drug changes before a stable regimen, first prescription counted", "drug changes", "per_patient"),
    Metric("maintenance.drug_changes.drug_changes_before_stable_median",
           "median drug changes before a stable regimen, first prescription counted", "drug changes", "per_patient"),
    Metric("maintenance.drug_changes.drug_changes_after_index_mean",
           "mean drug changes after the first drug before a stable regimen", "drug changes", "per_patient"),
    Metric("maintenance.drug_changes.drug_changes_after_index_median",
           "median drug changes after the first drug before a stable regimen", "drug changes", "per_patient"),
    Metric("population.steady_state.patients", "patients entering after the warm-up", "patients", "count"),
    Metric("population.steady_state.referred", "steady state: referred to a specialist", "fraction", "share"),
    Metric("resources.visits_per_patient", "visits per patient", "visits per patient", "per_patient"),
    Metric("resources.ecgs_per_patient", "ECGs per patient", "ECGs per patient", "per_patient"),
    Metric("resources.consults_per_patient", "specialist consults per patient", "consults per patient", "per_patient"),
    Metric("resources.drug_days_per_patient", "drug-days per patient (all drugs)", "drug-days per patient", "days"),
    Metric("resources.drug_days_by_drug.*", "days on {0} per patient", "drug-days per patient", "days"),
)

KEY_METRICS: tuple[str, ...] = (
    "time_to_relief.rmst_days",
    "time_to_relief.median_days",
    "time_to_relief.relieved_by_day.84",
    "time_to_relief.relieved_by_day.182",
    "time_to_relief.relieved_by_day.365",
    "maintenance.relieved_on_day.365",
    "maintenance.sustained_relief",
    "maintenance.relapses_per_patient",
    "maintenance.persistence.on_index_drug_at_month.3",
    "maintenance.persistence.on_index_drug_at_month.12",
    "pain.mean_nrs_by_day.182",
    "adverse_events.per_patient_year",
    "adverse_events.serious_per_100_patients",
    "adverse_events.discontinuations_per_100_patients",
    "pathway.reached.add_on",
    "pathway.reached.tramadol",
    "pathway.reached.strong_opioid",
    "pathway.reached.dropped_out",
    "specialist.referred",
    "specialist.wait_days_median",
    "resources.visits_per_patient",
)
"""The headline metrics of comparison tables, in the terminal and in reports (RMST first: it does not heap
on visit days)."""

ZERO_IF_MISSING: tuple[str, ...] = ("adverse_events.by_type.", "adverse_events.by_drug.", "pathway.final_state.",
                                    "resources.drug_days_by_drug.")
"""Metric families that are written only when non-zero: a missing key means 0."""


def _match(pattern: str, key: str) -> str | None:
    """The wildcard segment if ``key`` matches ``pattern`` ('' when there is none), else None."""
    pp, kk = pattern.split("."), key.split(".")
    if len(pp) != len(kk):
        return None
    wild = ""
    for p, k in zip(pp, kk, strict=True):
        if p == "*":
            wild = k
        elif p != k:
            return None
    return wild


# Steady-state families of open populations read as their whole-run metric: (prefix, same as, label prefix).
STEADY_STATE: tuple[tuple[str, str, str], ...] = (
    ("specialist.steady_state.", "specialist.", "steady state: "),
    ("population.steady_state.", "", "steady state (entered after the warm-up): "),
)


def _steady(key: str) -> tuple[str, str]:
    """(the key a steady-state metric reads as, the label prefix); (key, '') for any other key."""
    for prefix, same, lab in STEADY_STATE:
        if key.startswith(prefix):
            return same + key[len(prefix):], lab
    return key, ""


def lookup(key: str) -> tuple[Metric | None, str]:
    """(the registry entry of ``key``, its wildcard segment); (None, '') for an unknown key."""
    for k in dict.fromkeys((key, _steady(key)[0])):
        for m in REGISTRY:
            w = _match(m.pattern, k)
            if w is not None:
                return m, w
    return None, ""


def label(key: str) -> str:
    """The human label of a dotted metric (the key itself when unregistered)."""
    m, w = lookup(key)
    if m is None:
        return key
    prefix = "" if m.pattern == key or _match(m.pattern, key) is not None else _steady(key)[1]
    return prefix + m.label.format(w.replace("_", " "))


def unit(key: str) -> str:
    m, _ = lookup(key)
    return m.unit if m else ""


def kind(key: str) -> str:
    m, _ = lookup(key)
    return m.kind if m else "rate"


def label_with_unit(key: str) -> str:
    """'label (unit)', with shares shown as '%'."""
    k = kind(key)
    u = "%" if k == "share" else unit(key)
    lab = label(key)
    return f"{lab} ({u})" if u and u not in lab else lab


def fmt(key: str, value: float | None, diff: bool = False) -> str:
    """``value`` of metric ``key`` in fixed notation: shares in % (differences in points, signed)."""
    if value is None or not math.isfinite(value):
        return "-"
    k = kind(key)
    x = 100.0 * value if k == "share" else value
    dec = KINDS_DECIMALS.get(k, 3)
    if k == "count" and not float(x).is_integer():
        dec = 1
    s = f"{x:+.{dec}f}" if diff else f"{x:.{dec}f}"
    if float(s) == 0:  # no "-0.0" or "+0.0"
        s = f"{0:.{dec}f}"
    return s


def fmt_ci(key: str, value: float | None, lo: float | None = None, hi: float | None = None,
           diff: bool = False) -> str:
    """'value [lo, hi]' in the metric's display units; '-' for a missing value. A median whose Kaplan-Meier
    CI has one bound (the other curve does not cross one half by the horizon) shows the missing bound as
    'not reached' rather than hiding the CI; any other half-missing CI shows the value alone."""
    v = fmt(key, value, diff)
    have = [b is not None and math.isfinite(b) for b in (lo, hi)]
    if v == "-" or not any(have):
        return v
    if not all(have):
        if "median" not in key.rsplit(".", 1)[-1]:
            return v
        return f"{v} [{fmt(key, lo) if have[0] else 'not reached'}, {fmt(key, hi) if have[1] else 'not reached'}]"
    return f"{v} [{fmt(key, lo)}, {fmt(key, hi)}]"


# Families shown only in full tables (reports), not in the terminal's run summary.
DETAIL_FAMILIES: tuple[str, ...] = ("adverse_events.by_type.", "adverse_events.by_drug.", "pathway.final_state.",
                                    "resources.drug_days_by_drug.", "specialist.seen_by_day.",
                                    "specialist.left_by_day.", "specialist.steady_state.seen_by_day.",
                                    "specialist.steady_state.left_by_day.", "population.")
def summary_rows(summary: dict, detail: bool = True) -> list[tuple[str, str, str, str]]:
    """Rows (metric key, label with unit, value [95% CI], note) for a run's summary.

    The value is the pooled estimate of ``summary.json``; its CI is the one every command shows
    (:func:`simulator.analysis.stats.metric_level`): across replications when there are several and every
    replication has the metric, inside the metric's domain (shares in [0, 1], days and rates above 0);
    otherwise the summary's own Kaplan-Meier CI for time-to-relief metrics and median waits. ``note`` is the
    reason a metric is missing (beyond the horizon, not reached). ``detail=False`` leaves out the by-type /
    by-drug / final-state families."""
    from .stats import metric_level, summary_ci
    from .summary import flat_metrics

    flat = flat_metrics(summary)
    per = summary.get("per_replication") or []
    notes = summary.get("not_estimable", {})
    rows = []
    for key, v in flat.items():
        if not detail and key.startswith(DETAIL_FAMILIES):
            continue
        vals = [p.get(key, 0.0 if key.startswith(ZERO_IF_MISSING) else None) for p in per] if len(per) > 1 else []
        est = metric_level(kind(key), vals, v, summary_ci(summary, key))
        note = notes.get(key, "")
        text = fmt_ci(key, v, est.lo, est.hi) if v is not None else ("not reached" if key.endswith("median_days") else "-")
        rows.append((key, label_with_unit(key), text, note))
    return rows
