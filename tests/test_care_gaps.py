"""The model gaps left by the review of issues 9 and 10, on simulated trajectories (read from the event log).

Protects: the capsaicin 8% patch re-applied when its effect wanes (P6.capsaicin_reapply; S002 "effect lasting up
to 90 days", S004 "up to 12 weeks"), with its application-site adverse events; a drug the patient stopped himself
offered once more, whatever its class (P4.reoffer_own_stop; tramadol's own P7.tramadol_reoffer); a second
referral after a consult (P9.re_referral, ``referral.max_consults``) with the queue's episodes closed one by one;
an early referral made on a regimen (P9.care_while_waiting: a failed opioid stopping at referral leaves no gap);
usual care declaring the re-offers off rather than inheriting them. Each test fails on the code before the fix.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd
import yaml

from simulator.analysis.queue_stats import episodes
from simulator.analysis.runner import simulate
from simulator.regression.invariants import check_run
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
CAPSAICIN = "capsaicin_8pct"
REAPPLY = "P6.capsaicin_reapply"
NO_BENEFIT = "P6.capsaicin_no_benefit"


@cache
def _run(name: str, patients: int, seed: int, **policy):
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    if policy:
        pol = sc.policy.model_dump(mode="json")
        for k, v in policy.items():
            if isinstance(v, tuple):  # nested: (("field", value), ...)
                pol[k].update(dict(v))
            else:
                pol[k] = v
        sc = sc.with_overrides(policy=pol)
    return simulate(sc, patients=patients, replications=1, seed=seed)


def _lines(ev: pd.DataFrame, drug: str) -> list[tuple[int, float, float, list[float]]]:
    """(patient, start, end, application days) per line of ``drug`` (end: its stop or the last row's day)."""
    rows = ev[ev["drug"].astype(str) == drug]
    last_day = float(ev["day"].max())
    out = []
    for pid, g in rows.groupby("patient"):
        start, apps = None, []
        for r in g.itertuples():
            if r.event == "drug_start":
                start, apps = r.day, [r.day]
            elif r.event == "dose_change" and r.rule == REAPPLY and start is not None:
                apps.append(r.day)
            elif r.event in ("drug_stop", "taper_start") and start is not None:
                out.append((pid, start, r.day, apps))
                start = None
        if start is not None:
            out.append((pid, start, last_day, apps))
    return out


def test_capsaicin_is_reapplied_every_90_days_while_continued():
    """A patch continued past 90 days is applied again every 90 days (v0.2: one application acted for ever),
    and re-applications bring application-site adverse events of their own."""
    res = _run("topical-first", 1000, 11)
    ev = res.events
    lines = [ln for ln in _lines(ev, CAPSAICIN) if ln[2] - ln[1] > 95]
    assert len(lines) > 30
    for pid, _start, end, apps in lines:
        gaps = [b - a for a, b in zip(apps, [*apps[1:], end], strict=True)]
        assert all(abs(g - 90) < 0.01 for g in gaps[:-1]), (pid, apps)
        assert gaps[-1] <= 90 + 0.01, (pid, apps, end)
    # adverse events after a re-application (its own draws), not only within days of the first application
    ae = ev[(ev["event"] == "adverse_event") & (ev["drug"].astype(str) == CAPSAICIN)]
    first = ev[(ev["event"] == "drug_start") & (ev["drug"].astype(str) == CAPSAICIN)].groupby("patient")["day"].min()
    late = ae[ae["day"].to_numpy() > first.reindex(ae["patient"]).to_numpy() + 90]
    assert len(late) > 10


def _patch_judgements(ev: pd.DataFrame) -> list[tuple[int, float, str, str | None, float]]:
    """Per capsaicin re-application or P6.capsaicin_no_benefit stop: (patient, day, rule, latest outcome of an
    evaluation or maintenance visit on a day after the patch's start, up to that row (None: none), day of the
    application it follows), read row by row in time order."""
    out = []
    for pid, g in ev.groupby("patient", sort=False):
        start = last_app = None
        latest: tuple[float, str] | None = None
        for r in g.sort_values("day", kind="stable").itertuples():
            if r.event in ("evaluation", "maintenance_visit") and pd.notna(r.outcome):
                latest = (r.day, str(r.outcome))
            if str(r.drug) != CAPSAICIN:
                continue
            if r.event == "drug_start":
                start = last_app = r.day
            elif r.rule in (REAPPLY, NO_BENEFIT) and start is not None:
                seen = latest[1] if latest is not None and latest[0] > start + 1e-9 else None
                out.append((pid, r.day, str(r.rule), seen, last_app))
                last_app = r.day
            if r.event in ("drug_stop", "taper_start"):
                start = None
    return out


def test_capsaicin_is_reapplied_only_after_benefit():
    """P6.capsaicin_no_benefit (fault F4: a patch added alongside another drug was re-applied for ever although
    every evaluation since found no response, 231 patients of guideline 3,000 seed 11): a re-application follows
    only relief or a partial response at the latest evaluation or visit since the patch's start; otherwise the
    patch stops exactly when the last application wears off (90 days), citing P6.capsaicin_no_benefit."""
    ev = _run("guideline", 2000, 7).events
    rows = _patch_judgements(ev)
    again = [r for r in rows if r[2] == REAPPLY]
    stops = [r for r in rows if r[2] == NO_BENEFIT]
    assert len(again) > 200 and len(stops) > 30
    assert all(seen in ("relief", "partial") for _pid, _d, _r, seen, _a in again), \
        [r for r in again if r[3] not in ("relief", "partial")][:5]
    for pid, day, _rule, seen, app in stops:
        assert seen in (None, "none"), (pid, day, seen)
        assert abs(day - (app + 90)) < 1e-6, (pid, day, app)
    by = ev[(ev["event"] == "drug_stop") & (ev["rule"] == NO_BENEFIT)]
    assert set(by["drug"].astype(str)) == {CAPSAICIN} and len(by) == len(stops)


def test_patch_that_never_worked_stops_when_it_wears_off():
    """Guideline seed 11, patient 408 (the reviewer's case): capsaicin 8% added on day 42, no response on day 126,
    was re-applied 7 times (days 132-672) through referral and discharge; now it stops on day 132."""
    from simulator.teaching.one_patient import setup_from_scenario
    from simulator.teaching.one_patient import simulate as simulate_one

    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    ev = simulate_one(setup_from_scenario(sc, 408, seed=11))
    patch = ev[ev["drug"].astype(str) == CAPSAICIN]
    assert not (patch["rule"] == REAPPLY).any()
    stop = patch[patch["event"] == "drug_stop"]
    assert list(zip(stop["day"], stop["rule"].astype(str), strict=True)) == [(132.0, NO_BENEFIT)]


def _own_stops_relieved(ev: pd.DataFrame) -> pd.DataFrame:
    stops = ev[ev["event"].isin(["drug_stop", "taper_start"]) & (ev["rule"] == "X.patient_stop")
               & (ev["state"].astype(str) == "relieved")]
    return stops[~stops["drug"].astype(str).isin(["morphine"])]


def test_a_drug_the_patient_stopped_is_offered_once_more_in_every_class():
    """A drug stopped by the patient himself has not failed: it is started again (P4.reoffer_own_stop), first on a
    relapse when it had relieved him; never a third time after a second own stop (v0.2: only tramadol)."""
    res = _run("guideline", 2000, 7)
    ev = res.events
    again = ev[(ev["event"] == "drug_start") & (ev["rule"] == "P4.reoffer_own_stop")]
    assert len(again) > 100
    classes = set(again["drug"].astype(str))
    assert {"pregabalin", "duloxetine", "nortriptyline"} <= classes  # not one class only
    own = ev[ev["event"].isin(["drug_stop", "taper_start"]) & (ev["rule"] == "X.patient_stop")]
    for r in again.itertuples():  # each re-offer follows the patient's own stop of that drug
        before = own[(own["patient"] == r.patient) & (own["drug"].astype(str) == r.drug) & (own["day"] <= r.day)]
        assert len(before), (r.patient, r.drug, r.day)
    assert again.groupby(["patient", "drug"], observed=True).size().max() == 1  # once more, not more
    # on a relapse after stopping the drug that relieved him, that drug comes back first (before anything untried)
    stops = _own_stops_relieved(ev)
    relapse = ev[(ev["event"] == "transition") & (ev["rule"] == "P4.relapse")
                 & ev["state"].astype(str).isin(["first_line", "switch", "add_on"])]
    starts = ev[ev["event"] == "drug_start"]
    first_back = 0
    for r in stops.itertuples():
        rel = relapse[(relapse["patient"] == r.patient) & (relapse["day"] >= r.day)]
        if rel.empty or r.drug not in ("pregabalin", "duloxetine", "gabapentin", "venlafaxine"):
            continue
        nxt = starts[(starts["patient"] == r.patient) & (starts["day"] >= rel["day"].iloc[0])]
        first_back += bool(len(nxt)) and str(nxt["drug"].iloc[0]) == r.drug
    assert first_back > 20


def test_reoffer_off_restores_the_single_offer():
    """``reoffer_own_stop: false`` (usual care's setting): no drug is offered again after the patient's own stop."""
    ev = _run("guideline", 800, 7, reoffer_own_stop=False).events
    assert not (ev["rule"] == "P4.reoffer_own_stop").any()


def test_re_referral_after_a_consult_within_max_consults():
    """Refractory again after a consult's plan and the remaining options: referred again (P9.re_referral) up to
    ``referral.max_consults`` consults (v0.2: one consult per patient, then discharge); the queue's episodes are
    closed one by one (no referral while still queued) and 1 restores the single consult. The oracle (its
    reoffer_own_stop, referral_accounting and capsaicin_reapplied included) holds on every trajectory."""
    res = _run("guideline", 2000, 7)
    ev = res.events
    consults = ev[(ev["event"] == "consult") & ev["consult_outcome"].notna()].groupby("patient").size()
    assert (consults == 2).sum() > 2 and consults.max() <= 2  # v0.2: none (5 patients of this run)
    assert (ev["rule"] == "P9.re_referral").any()
    ep = episodes(ev, 730.0)
    for _pid, g in ep.groupby("patient"):
        g = g.sort_values("queued")
        assert (g["queued"].to_numpy()[1:] >= g["end"].to_numpy()[:-1] - 1e-9).all()
    assert check_run(res).ok
    one = _run("guideline", 1000, 7, referral=(("max_consults", 1),)).events
    assert one[(one["event"] == "consult") & one["consult_outcome"].notna()].groupby("patient").size().max() == 1


def test_early_referral_is_made_on_a_regimen():
    """P9.referral_criteria refers while options remain and care goes on while queued: when the only drug running
    is an opioid that failed (stopped at referral, P8.stop_ineffective), the pathway's next step comes first
    (v0.2: 6 of 1,000 patients of this run queued with no drug after their failed tramadol stopped)."""
    ev = _run("early-referral", 1000, 7).events
    gaps = 0
    queued = 0
    for _pid, g in ev.groupby("patient"):
        running: set[str] = set()
        for r in g.itertuples():
            if r.event == "drug_start":
                running.add(str(r.drug))
            elif r.event in ("drug_stop", "taper_start"):
                running.discard(str(r.drug))
            elif r.event == "referral_queued" and r.rule == "P9.referral_criteria":
                queued += 1
                gaps += not running
    assert queued > 200 and gaps == 0


def test_usual_care_declares_the_reoffers_off():
    """Usual care states its choice (claims: 96.8% stop tramadol within a year, fewer than 35% of discontinuers
    get another pain drug): tramadol_reoffer and reoffer_own_stop are written in the scenario, false, and its runs
    re-offer nothing (v0.2 inherited the guideline's tramadol re-offer)."""
    for name in ("usual-care", "usual-care-uk"):
        raw = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())["policy"]
        assert raw.get("tramadol_reoffer") is False and raw.get("reoffer_own_stop") is False, name
        ev = _run(name, 600, 3).events
        assert not ev["rule"].isin(["P7.tramadol_reoffer", "P4.reoffer_own_stop"]).any(), name


def test_check_catches_an_engine_that_skips_the_new_care(monkeypatch):
    """The oracle fails on simulated trajectories of a broken engine: capsaicin never re-applied (the
    re-application's row not logged) is reported by capsaicin_reapplied; one consult per patient (v0.2's guard)
    by referral_accounting (discharged although a second consult is allowed)."""
    from simulator.engine.simulation import Simulation
    from simulator.model.patient import PatientModel

    def no_row(self, p, line, now):  # the schedule moves on, nothing is applied or logged
        line.next_apply += self.extras[line.drug].reapply
        return True  # the patch continues

    monkeypatch.setattr(Simulation, "_reapply", no_row)
    monkeypatch.setattr(PatientModel, "referral_allowed", lambda self: not self.consulted)
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml")
    names = {v.invariant for v in check_run(simulate(sc, patients=1000, replications=1, seed=7)).violations()}
    assert {"capsaicin_reapplied", "referral_accounting"} <= names


REOFFERS = ("P4.reoffer_own_stop", "P7.tramadol_reoffer")
FIRST_LINE_DRUGS = ("pregabalin", "gabapentin", "duloxetine", "venlafaxine", "nortriptyline", "amitriptyline")


def _by_patient(ev: pd.DataFrame) -> dict[int, pd.DataFrame]:
    return {int(pid): g for pid, g in ev.groupby("patient", sort=False)}


def test_a_reoffer_answers_a_later_decision_than_the_patients_own_stop():
    """F2: a re-offer (P4.reoffer_own_stop, P7.tramadol_reoffer) is decided at a decision (transition or
    evaluation) on a later day than the patient's own stop of the drug: at the stop's own decision the drug just
    stopped is not a candidate (it is not tapered off and restarted at its start dose)."""
    ev = _run("guideline", 2000, 7).events
    groups = _by_patient(ev)
    again = ev[(ev["event"] == "drug_start") & ev["rule"].isin(REOFFERS)]
    assert len(again) > 50
    bad = []
    for idx, r in zip(again.index, again.itertuples(), strict=True):
        g = groups[int(r.patient)]
        g = g.loc[:idx]  # rows up to the start, in log order
        own = g[g["event"].isin(["drug_stop", "taper_start"]) & (g["rule"] == "X.patient_stop")
                & (g["drug"].astype(str) == str(r.drug))]
        decisions = g[g["event"].isin(["transition", "evaluation"])]
        if len(own) and float(decisions["day"].iloc[-1]) <= float(own["day"].iloc[-1]) + 1e-6:
            bad.append((r.patient, r.drug, r.day))
    assert not bad, bad[:10]


def test_no_reoffer_while_the_patient_is_still_tapering_off_his_own_stop():
    """F2's class: a re-offer is never decided while the patient is still tapering off the drug he chose to stop
    (six-week-trials 800 seed 13, patient 281: tramadol stopped by him on day 503.995, taper to day 510.995, a
    maintenance visit on day 504.000 re-offered it, restarted when the taper ended; `check` flagged it)."""
    ev = _run("six-week-trials", 800, 13).events
    groups = _by_patient(ev)
    again = ev[(ev["event"] == "drug_start") & ev["rule"].isin(REOFFERS)]
    assert len(again) > 10
    bad = []
    for idx, r in zip(again.index, again.itertuples(), strict=True):
        g = groups[int(r.patient)].loc[:idx]
        same = g["drug"].astype(str) == str(r.drug)
        own = g[same & g["event"].isin(["drug_stop", "taper_start"]) & (g["rule"] == "X.patient_stop")]
        if not len(own):
            continue
        off = g[same & (g["event"] == "drug_stop") & (g["day"] >= float(own["day"].iloc[-1]) - 1e-6)]
        decided = float(g[g["event"].isin(["transition", "evaluation"])]["day"].iloc[-1])
        if len(off) and decided < float(off["day"].iloc[0]) - 1e-6:
            bad.append((r.patient, r.drug, decided, float(off["day"].iloc[0])))
    assert not bad, bad[:10]


def test_a_drug_judged_inadequate_is_never_reoffered():
    """F3: "before it had failed": a drug that had an evaluation with no response or partial relief (judged
    inadequate) is not re-opened after the patient's own stop, whatever its class, unless a relief with it
    running followed that evaluation (a regimen that relieved has not failed: a dose then optimised, an add-on)."""
    ev = _run("guideline", 2000, 7).events
    groups = _by_patient(ev)
    again = ev[(ev["event"] == "drug_start") & ev["rule"].isin(REOFFERS)]
    bad = []
    for idx, r in zip(again.index, again.itertuples(), strict=True):
        g = groups[int(r.patient)].loc[:idx]
        judged = g[(g["event"] == "evaluation") & g["outcome"].astype(str).isin(["none", "partial"])
                   & (g["drug"].astype(str) == str(r.drug))]
        if not len(judged):
            continue
        later = g.loc[judged.index[-1]:]
        stops = later[later["event"].isin(["drug_stop", "taper_start"]) & (later["drug"].astype(str) == str(r.drug))]
        until = later.loc[:stops.index[0]] if len(stops) else later
        relieved = until["event"].isin(["evaluation", "maintenance_visit"]) & (until["outcome"].astype(str) == "relief")
        if not relieved.any():
            bad.append((r.patient, r.drug, r.day))
    assert not bad, bad[:10]


def test_the_restart_of_a_relieving_drug_is_not_a_new_first_line_regimen():
    """F1: after the patient's own stop of a first-line drug that relieved him, a later relapse into the first-line
    steps restarts that drug before any other oral drug, tramadol or a refractory referral, however many first-line
    regimens he has had (``max_first_line_regimens`` neither counts nor blocks the restart)."""
    ev = _run("guideline", 2000, 7, max_first_line_regimens=2).events
    missed, n = [], 0
    for pid, g in _by_patient(ev).items():
        stops = g[g["event"].isin(["drug_stop", "taper_start"]) & (g["rule"] == "X.patient_stop")
                  & (g["state"].astype(str) == "relieved") & g["drug"].astype(str).isin(FIRST_LINE_DRUGS)]
        for s in stops.itertuples():
            later = g[g["day"] >= s.day]
            rel = later[(later["event"] == "transition") & (later["rule"] == "P4.relapse")]
            if rel.empty or float(rel["day"].iloc[0]) <= s.day + 1e-6 \
                    or str(rel["state"].iloc[0]) not in ("first_line", "switch", "add_on"):
                continue  # no relapse, the stop's own (decided at the stop), or one into a later step
            off = later[(later["event"] == "drug_stop") & (later["drug"].astype(str) == s.drug)]
            if len(off) and float(rel["day"].iloc[0]) < float(off["day"].iloc[0]) - 1e-6:
                continue  # decided while he still tapered off it: not open yet (P4.reoffer_own_stop)
            prior = g[g["day"] <= s.day]
            if ((prior["event"] == "evaluation") & prior["outcome"].astype(str).isin(["none", "partial"])
                    & (prior["drug"].astype(str) == s.drug)).any():
                continue  # judged inadequate before: not re-opened (F3)
            if ((prior["event"] == "drug_start") & (prior["rule"] == "P4.reoffer_own_stop")
                    & (prior["drug"].astype(str) == s.drug)).any():
                continue  # offered once more already
            after = later[later["day"] >= float(rel["day"].iloc[0])]
            nxt = after[((after["event"] == "drug_start") & (after["drug"].astype(str) != CAPSAICIN)
                         & (after["drug"].astype(str) != "lidocaine_5pct")) | (after["event"] == "referral_queued")]
            if nxt.empty:
                continue
            n += 1
            if not (nxt["event"].iloc[0] == "drug_start" and str(nxt["drug"].iloc[0]) == s.drug):
                missed.append((pid, s.drug, s.day))
    assert n > 20
    assert not missed, missed[:10]


def test_the_reoffer_oracle_passes_on_the_guideline():
    """The independent oracle (reoffer_own_stop: no re-offer at the stop's own decision, none of a failed drug, the
    restart not exempted at the first-line cap) finds nothing on simulated guideline trajectories."""
    found = [v for v in check_run(_run("guideline", 2000, 7)).violations() if v.invariant == "reoffer_own_stop"]
    assert not found, found[:5]
