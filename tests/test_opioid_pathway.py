"""P7/P8 on simulated trajectories: a strong opioid only after tramadol failed, not after a tramadol the patient
stopped himself (S004: "strong opioids only if tramadol fails"; issue 9/10 review: 12-76 of ~220 morphine
starts of the guideline run followed a tramadol stopped while relieving or before it was judged).

The trajectories are read here with a small reader of the event log written for this test (not the engine's
flags, not the oracle's): tramadol failed = an evaluation of tramadol without relief, relief lost at a
maintenance visit while tramadol ran (P4.relapse), or tramadol stopped for intolerance.
"""

from __future__ import annotations

import functools

import pandas as pd

import simulator.model.patient as patient
from simulator.analysis.runner import simulate
from simulator.model.clinical_tables import compile_model
from simulator.model.decisions import referral_due
from simulator.model.policy import Policy
from simulator.model.policy_context import PolicyContext
from simulator.model.safety import PatientFacts
from simulator.regression.invariants import check_run
from simulator.scenario import load_scenario

INTOLERANCE = ("P4.intolerance_stop", "P4.addon_not_tolerated", "X.serious_event")
STRONG = ("morphine",)


@functools.cache
def _run():
    # the guideline's own cohort and horizon; 1,500 patients give ~100 strong-opioid starts and dozens of
    # tramadol stops by the patient
    return simulate(load_scenario("guideline"), patients=1500, seed=7)


def _tramadol_history(events: pd.DataFrame) -> pd.DataFrame:
    """One row per strong-opioid start or P7.tramadol_reoffer start: did a tramadol fail before it, and did the
    patient stop a tramadol himself before it."""
    ev = events.astype({c: object for c in ("event", "drug", "rule", "outcome")})
    out = []
    for (_rep, pid), g in ev.groupby(["replication", "patient"], sort=False):
        running = failed = self_stopped = False
        visit = None
        for r in g.itertuples(index=False):
            if r.event in ("evaluation", "maintenance_visit") and r.outcome == "relief" and running:
                failed = False  # a tramadol relieving has not failed: relief undoes an earlier judgement (P4)
            if r.event == "drug_start" and r.drug == "tramadol":
                if r.rule == "P7.tramadol_reoffer":
                    out.append(("reoffer", pid, failed, self_stopped))
                running = True
            elif r.event in ("taper_start", "drug_stop") and r.drug == "tramadol" and running:
                running = False
                failed |= r.rule in INTOLERANCE
                self_stopped |= r.rule == "X.patient_stop"
            elif r.event == "evaluation" and (r.drug == "tramadol" or running) and r.outcome in ("partial", "none"):
                # judged on tramadol, or on a drug restarted with it (started last, its own trial, P3)
                failed = True
            elif r.event == "maintenance_visit":
                visit = r.outcome
            elif r.event == "transition" and r.rule == "P4.relapse" and running and visit in ("partial", "none"):
                failed = True
            elif r.event == "drug_start" and r.drug in STRONG:
                out.append(("strong", pid, failed, self_stopped))
    return pd.DataFrame(out, columns=["start", "patient", "tramadol_failed", "self_stopped"])


def test_every_strong_opioid_follows_a_failed_tramadol():
    """Protects P8.prerequisites / P7.tramadol_before_strong (S004): each strong-opioid start of the guideline
    follows a tramadol judged failed; patients who stopped tramadol themselves are among them only after a
    tramadol that then failed. Before the fix 62 of 170 starts here followed a tramadol never judged failed."""
    h = _tramadol_history(_run().events)
    strong = h[h["start"] == "strong"]
    assert len(strong) >= 50
    assert strong["tramadol_failed"].all(), strong[~strong["tramadol_failed"]].head()


def test_a_tramadol_stopped_by_the_patient_is_offered_once_more():
    """Protects P7.tramadol_reoffer (S004: tramadol before any strong opioid, which comes only if it fails):
    the re-offer follows the patient's own stop of a tramadol that had not failed, at most once per patient."""
    h = _tramadol_history(_run().events)
    again = h[h["start"] == "reoffer"]
    assert len(again) >= 10
    assert again["self_stopped"].all() and not again["tramadol_failed"].any()
    assert again["patient"].is_unique


def test_check_holds_the_tramadol_failure_rule_itself(monkeypatch):
    """Protects the oracle's independence on this rule: an engine whose P8 gate opens on a tramadol merely
    started (the v0.1 reading) is reported by `check` (strong_opioid_prerequisites); the sound engine is not."""
    clean = check_run(_run()).by_invariant()["strong_opioid_prerequisites"]
    assert clean.applicable > 0 and not clean.violations, clean.violations[:3]
    original = patient.PatientModel._gate_block

    def tried_is_enough(self):
        saved = self.tramadol_failed
        self.tramadol_failed = saved or self.tramadol_tried
        try:
            return original(self)
        finally:
            self.tramadol_failed = saved

    monkeypatch.setattr(patient.PatientModel, "_gate_block", tried_is_enough)
    broken = check_run(simulate(load_scenario("guideline"), patients=1500, seed=7))
    viol = broken.by_invariant()["strong_opioid_prerequisites"].violations
    assert viol and all("tramadol has not failed" in v.detail for v in viol)


def test_early_referral_counts_no_patient_stop_as_a_failed_line():
    """Protects P9.referral_criteria ("after N failed lines") against counting the patient's own stops: a
    patient model with two lines stopped by himself and one failed is not due after 2 failed lines."""
    pol = Policy.model_validate({"name": "early", "referral": {"after_failed_lines": 2}})
    ctx = PolicyContext.build(pol, compile_model())
    facts = PatientFacts(age=50.0, etiology=0, localized=False, crcl=90.0, flags=frozenset())
    p = patient.PatientModel(0, facts, 7.0, False, ctx)
    p.n_failed, p.n_self_stops = 3, 2
    assert not referral_due(p, ctx, 100.0, 7.0)
    p.n_self_stops = 1
    assert referral_due(p, ctx, 100.0, 7.0)


OWN_STOPS = ("P4.intolerance_stop", "P4.addon_not_tolerated", "X.serious_event", "X.patient_stop", "X.dropout",
             "X.left_treatment", "P6.topical_stop", "P6.capsaicin_no_benefit")


def test_a_topical_goes_on_when_an_oral_drug_beside_it_is_not_tolerated():
    """Protects P4 ("intolerance of one drug does not stop another") for topicals (P6, S004 any stage): a
    topical is stopped for its own reasons (not tolerated, the patient's stop, drop-out, its own failed trial, a
    capsaicin patch without benefit when it wears off, P6.capsaicin_no_benefit) or with a regimen judged inadequate at an evaluation that day, never by the switch that follows another drug's
    intolerance (before the fix topicals here were stopped citing P4.intolerance_switch or _same_class)."""
    ev = _run().events.astype({c: object for c in ("event", "drug", "rule", "outcome")})
    topicals = ("lidocaine_5pct", "capsaicin_8pct")
    judged = {(r, p, round(d, 3)) for r, p, d, o in
              ev.loc[ev["event"].isin(("evaluation", "maintenance_visit")), ["replication", "patient", "day", "outcome"]]
              .itertuples(index=False) if o in ("partial", "none")}
    stops = ev[ev["drug"].isin(topicals) & ev["event"].isin(("drug_stop", "taper_start"))
               & ~ev["rule"].isin(OWN_STOPS)]
    assert len(ev[ev["drug"].isin(topicals) & (ev["event"] == "drug_start")]) >= 100
    bad = [(r.patient, r.day, r.rule) for r in stops.itertuples(index=False)
           if (r.replication, r.patient, round(r.day, 3)) not in judged]
    assert not bad, bad[:5]


def test_the_strong_opioid_step_keeps_the_gabapentinoid_and_names_its_stops():
    """Protects P8.opioid_regimen (S000, S004: morphine + gabapentin): at a strong-opioid start a running
    gabapentinoid or topical continues, and every drug stopped there (the failed antidepressant, tramadol)
    cites P8.opioid_regimen, not P8.prerequisites, whose text says nothing of stopping drugs."""
    ev = _run().events.astype({c: object for c in ("event", "drug", "rule")})
    starts = ev[(ev["event"] == "drug_start") & ev["drug"].isin(STRONG)]
    keys = set(zip(starts["replication"], starts["patient"], starts["day"].round(3), strict=True))
    at = ev[ev["event"].isin(("drug_stop", "taper_start"))
            & pd.Series([k in keys for k in zip(ev["replication"], ev["patient"], ev["day"].round(3), strict=True)],
                        index=ev.index)]
    regimen = at[at["rule"].isin(("P8.opioid_regimen", "P8.prerequisites"))]
    assert len(regimen) >= 50
    assert (regimen["rule"] == "P8.opioid_regimen").all()
    assert not regimen["drug"].isin(("pregabalin", "gabapentin", "lidocaine_5pct", "capsaicin_8pct")).any()


def test_conservative_consult_relief_needs_a_regimen_to_manage():
    """Protects P9.discharge_plan (issue 10: after the consult each outcome leads somewhere): conservative care is
    specialist-led drug management (clinical.yaml conservative_relief_prob), so a consult that relieves
    conservatively leaves the patient on a drug; a patient seen with no drug running is decided as after a
    consult without relief: the pathway's remaining options (a drug started) or a discharge, never "relieved"
    on nothing (before the fix 13 of 2,000 guideline patients were)."""
    ev = _run().events.astype({c: object for c in ("event", "drug", "rule", "consult_outcome", "trigger")})
    counts = {"managed relief": 0, "nothing to manage": 0}
    nxt: dict[str, int] = {}
    for _key, g in ev.groupby(["replication", "patient"], sort=False):
        taken: list[str] = []
        waiting = False  # a conservative consult found nothing to manage: what follows?
        for r in g.itertuples(index=False):
            if r.event == "drug_start":
                taken.append(r.drug)
            elif r.event in ("drug_stop", "taper_start", "dropout"):
                taken = [] if r.event == "dropout" else [d for d in taken if d != r.drug]
            if waiting and r.event in ("transition", "dropout") and r.trigger != "consult":
                nxt[str(r.trigger)] = nxt.get(str(r.trigger), 0) + 1
                waiting = False
            if r.event == "consult" and isinstance(r.consult_outcome, str) and r.consult_outcome.startswith("conserv"):
                if r.consult_outcome == "conservative_relief":
                    assert taken, f"patient {r.patient} relieved by conservative care on day {r.day} with no drug"
                    counts["managed relief"] += 1
                elif not taken:
                    counts["nothing to manage"] += 1
                    waiting = True
    assert counts["managed relief"] >= 5 and counts["nothing to manage"] >= 20, counts
    assert "relief" not in nxt and nxt.get("discharge", 0) >= 20, nxt
