"""Teaching: the diagram is drawn from the engine's machine, journeys cite rules and seeds, cases teach."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.analysis.outcomes import events_frame
from simulator.cli import main
from simulator.engine.simulation import EngineConfig, Simulation
from simulator.inputs.errors import InputError
from simulator.model import pathway
from simulator.model.clinical_tables import compile_model
from simulator.model.policy_context import PolicyContext
from simulator.population.cohort import generate_cohort
from simulator.scenario import load_scenario
from simulator.teaching import diagram
from simulator.teaching.cases import all_cases, load_case
from simulator.teaching.journey import journey_html
from simulator.teaching.narrate import setup_from_case, setup_from_scenario, simulate, trace

ROOT = Path(__file__).resolve().parents[1]
GUIDELINE = ROOT / "scenarios" / "guideline.yaml"


def _engine_edges() -> set[tuple[str, str, str]]:
    return {(s, e.trigger, e.dest) for e in pathway.TRANSITIONS for s in e.source}


def test_mermaid_names_every_state_and_edge_of_the_engine() -> None:
    """Protects: the diagram shows every state and (source, trigger, dest) edge the engine can fire."""
    text = diagram.to_mermaid()
    for s in pathway.STATES:
        assert f"s_{s}([" in text, s
    for src, trig, dst in _engine_edges():
        rule = next(e.rule for e in pathway.TRANSITIONS if e.trigger == trig and src in e.source and e.dest == dst)
        assert f's_{src} -->|"{trig} [{rule}]"| s_{dst}' in text, (src, trig, dst)
    dot = diagram.to_dot()
    for src, _trig, dst in _engine_edges():
        assert f'"{src}" -> "{dst}"' in dot


def test_diagram_follows_a_new_state_added_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects: the diagram is computed from pathway's definition, so a new state or edge appears in it."""
    new = pathway.Edge("escalate_ketamine", ("tramadol",), "ketamine_trial", (), "P9")
    monkeypatch.setattr(pathway, "STATES", pathway.STATES + ("ketamine_trial",))
    monkeypatch.setattr(pathway, "TRANSITIONS", pathway.TRANSITIONS + (new,))
    text = diagram.to_mermaid()
    assert 's_tramadol -->|"escalate_ketamine [P9]"| s_ketamine_trial' in text
    assert "s_ketamine_trial([" in text  # drawn although no STATE_GROUP lists it


def test_mermaid_is_a_plausible_flowchart() -> None:
    """Protects: the Mermaid text starts like a flowchart and its subgraphs are closed (renders in Mermaid)."""
    out = CliRunner().invoke(main, ["diagram", "--format", "mermaid"])
    assert out.exit_code == 0, out.output
    body = out.output.split("---\n")[-1]  # after the title front matter
    assert body.startswith("flowchart LR")
    assert body.count("subgraph ") == len(pathway.STATE_GROUPS) == body.count("\n  end")
    assert not re.search(r"\bs_end\b", body)


def test_edge_counts_of_a_run_are_pathway_edges_and_label_the_diagram(tmp_path: Path) -> None:
    """Protects: --run counts only edges the pathway has; every patient leaves assessment once."""
    from simulator.analysis.runner import simulate as run_scenario
    from simulator.output.results import write_run

    res = run_scenario(load_scenario(GUIDELINE), patients=60, seed=3)
    counts = diagram.edge_counts(res.events)
    assert set(counts) <= _engine_edges()
    leaving = sum(n for (src, _t, _d), n in counts.items() if src == "assessment")
    started = res.events[res.events["event"].isin(["transition", "dropout"])]["patient"].nunique()
    assert leaving == started > 0
    folder = write_run(res, tmp_path / "run")
    out = CliRunner().invoke(main, ["diagram", "--run", str(folder)])
    assert out.exit_code == 0, out.output
    n_first = counts[("assessment", "start_first_line", "first_line")]
    assert f'"start_first_line [P1] n={n_first}"' in out.output


def test_svg_without_graphviz_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Protects: --format svg without `dot` is one paragraph with install help and exit code 2."""
    monkeypatch.setattr(diagram.shutil, "which", lambda name: None)
    out = CliRunner().invoke(main, ["diagram", "--format", "svg", "--out", str(tmp_path / "p.svg")])
    assert out.exit_code == 2
    assert "apt-get install graphviz" in out.output and "Traceback" not in out.output


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_svg_with_graphviz(tmp_path: Path) -> None:
    """Protects: the Graphviz rendering names the states (SVG text)."""
    out = CliRunner().invoke(main, ["diagram", "--format", "svg", "--out", str(tmp_path / "p.svg")])
    assert out.exit_code == 0, out.output
    svg = (tmp_path / "p.svg").read_text()
    assert "<svg" in svg and "strong opioid" in svg


def test_trace_cites_rule_and_seed_on_every_decision() -> None:
    """Protects: the done-when example: every decision of patient 3 (seed 1) has a rule id and a seed."""
    out = CliRunner().invoke(main, ["trace", str(GUIDELINE), "--patient", "3", "--seed", "1"])
    assert out.exit_code == 0, out.output
    j = trace(setup_from_scenario(load_scenario(GUIDELINE), 3, seed=1))
    assert j.decisions
    for d in j.decisions:
        assert d.rule and d.seeds, d
        assert re.fullmatch(r"P\d+(\.\w+)?", d.rule)
        assert d.line() in out.output.replace("\n", " ") or d.line()[:60] in out.output
    assert "baseline pain" in out.output and "queues" in out.output  # profile and the queue caveat


def test_single_patient_equals_its_journey_in_the_full_cohort() -> None:
    """Protects: simulating only patient K reproduces K's journey in a full run (when not referred)."""
    sc = load_scenario(GUIDELINE).with_overrides(patients=40, seed=5)
    ctx = PolicyContext.build(sc.policy, compile_model())
    cohort = generate_cohort(sc.cohort_spec, 40, 5)
    cfg = EngineConfig(float(sc.horizon_days), sc.specialist.slots(40), 5)
    full = events_frame([Simulation(ctx, cohort, cfg, 0).run()], ctx.tables)
    checked = 0
    for k in range(12):
        mine = full[full["patient"] == k].reset_index(drop=True)
        if (mine["event"] == "referral_queued").any():
            continue
        alone = simulate(setup_from_scenario(sc, k))
        assert np.allclose(alone["day"], mine["day"]) and list(alone["rule"]) == list(mine["rule"])
        checked += 1
    assert checked >= 5


def test_html_trace_has_timeline_and_highlighted_path(tmp_path: Path) -> None:
    """Protects: the HTML page holds the timeline, the highlighted path and the highlighted diagram source."""
    page = tmp_path / "j.html"
    out = CliRunner().invoke(main, ["trace", str(GUIDELINE), "--patient", "3", "--seed", "1", "--html", str(page)])
    assert out.exit_code == 0, out.output
    html = page.read_text()
    assert '<ol class="timeline" id="timeline">' in html
    assert re.search(r'<li class="decision"[^>]*>Day 0: .*\[P\d', html)
    assert '<ol class="path" id="path"><li>assessment</li>' in html
    assert "classDef visited" in html and "linkStyle" in html
    assert not re.search(r'(src|href)="https?:', html) and "<script" not in html  # opens without a network
    # the clinical flowchart (no Graphviz needed), visited states highlighted
    assert 'id="diagram-svg"><svg' in html
    assert re.search(r'data-key="assessment"><rect[^>]*stroke="#c05600"', html)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Chromium not installed (apt-get install chromium)")
def test_html_trace_renders_in_headless_chromium(tmp_path: Path) -> None:
    """Protects: the page opens in headless Chromium with the timeline and the diagram in the DOM."""
    page = tmp_path / "j.html"
    j = trace(setup_from_scenario(load_scenario(GUIDELINE), 3, seed=1))
    page.write_text(journey_html(j))
    dom = subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'id="timeline"' in dom and 'id="path"' in dom and "<svg" in dom


def test_cases_are_valid_and_their_journeys_teach_their_rules() -> None:
    """Protects: each curated case's recorded seed really produces the rules it claims to teach."""
    cases = all_cases()
    assert len(cases) >= 6
    for case in cases:
        j = trace(setup_from_case(case))
        missing = set(case.rules) - j.rule_ids()
        assert not missing, (f"case {case.name} (seed {case.seed}) does not show {missing}; if the clinical model "
                             f"changed, run `painpath trace --case {case.name} --find-seeds` and record a seed")
        c = case.to_cohort()
        ref = generate_cohort(load_scenario(GUIDELINE).cohort_spec, 1, 0)
        for f in ref.__dataclass_fields__:
            assert getattr(c, f).dtype == getattr(ref, f).dtype, f


def test_bad_case_file_is_one_paragraph(tmp_path: Path) -> None:
    """Protects: a case with an unknown etiology is an InputError naming the field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "simulator/data/cases/cipn-platinum.yaml").read_text().replace("cipn_platinum", "cipn_x"))
    with pytest.raises(InputError, match="etiology"):
        load_case(bad)
    out = CliRunner().invoke(main, ["trace", "--case", str(bad)])
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_find_seeds_lists_seeds_that_teach_the_case() -> None:
    """Protects the maintenance path for cases: the recorded seed is among the seeds found, and each found
    seed really teaches the case's rules."""
    from simulator.teaching.narrate import teaching_seeds

    case = load_case("arrhythmia-no-tca")
    found = teaching_seeds(case, candidates=range(case.seed, case.seed + 3), limit=2)
    assert found and found[0] == case.seed


def test_trace_tells_every_maintenance_visit_and_opioid_reassessment():
    """Protects the narrated journey (issue 10): a maintenance visit, a strong-opioid reassessment (P8, S004
    "monitoring every 1-3 months"), a review while queued and a stable discharge are documented decisions of
    the pathway; the trace must show each one with its day and rule, not only the relapse that follows some.
    Patients are found in a run of the guideline (any with such visits), so the test does not hang on one id."""
    from simulator.analysis.runner import simulate
    from simulator.scenario import load_scenario
    from simulator.teaching.narrate import setup_from_scenario, trace

    root = Path(__file__).resolve().parent.parent
    scenario = load_scenario(str(root / "scenarios" / "guideline.yaml"))
    ev = simulate(scenario, patients=400, seed=7, replications=1).events
    visits = ev[ev["event"] == "maintenance_visit"]
    wanted = {}
    for rule in ("P8.reassessment", "P4.maintenance_visit", "P4.stable_discharge"):
        rows = visits[visits["rule"].astype(str) == rule]
        assert len(rows), f"no {rule} visit in 400 patients"
        wanted[rule] = int(rows["patient"].iloc[0])
    for patient in wanted.values():
        j = trace(setup_from_scenario(scenario, patient, seed=7))
        own = j.events[j.events["event"] == "maintenance_visit"]
        told = {(round(s.day), s.rule) for s in j.steps}
        missing = [(round(d), str(r)) for d, r in zip(own["day"], own["rule"], strict=True)
                   if (round(d), str(r)) not in told]
        assert not missing, f"patient {patient}: visits not told {missing[:5]}"


def test_trace_tells_the_evaluation_before_the_stops_of_leaving_care():
    """Protects the order of the narrated journey: when a patient leaves treatment after an evaluation (usual
    care's X.left_treatment, as for X.dropout), the evaluation that came first is told first, then the stops."""
    from simulator.analysis.runner import simulate
    from simulator.scenario import load_scenario
    from simulator.teaching.narrate import setup_from_scenario, trace

    root = Path(__file__).resolve().parent.parent
    scenario = load_scenario(str(root / "scenarios" / "usual-care.yaml"))
    ev = simulate(scenario, patients=120, seed=13, replications=1).events
    left = ev[(ev["event"] == "drug_stop") & (ev["rule"].astype(str) == "X.left_treatment")][["patient", "day"]]
    evals = ev[ev["event"] == "evaluation"][["patient", "day"]]
    both = left.merge(evals, on=["patient", "day"])
    assert len(both), "no evaluation followed by leaving treatment in 120 patients"
    patient, day = int(both["patient"].iloc[0]), float(both["day"].iloc[0])
    steps = [s for s in trace(setup_from_scenario(scenario, patient, seed=13)).steps if abs(s.day - day) < 1e-6]
    kinds = [s.kind for s in steps]
    assert "evaluation" in kinds and "stop" in kinds, kinds
    assert kinds.index("evaluation") < kinds.index("stop"), [s.text for s in steps]


def _regimen_at_discharge(ev, patient: int) -> tuple[float, list[str], list[str]]:
    """(day, drugs that go on, drugs being tapered off) once the stops of the day of the patient's
    P9.discharge_plan transition are done, read from the event log here: a drug runs from its start to its stop
    row; from its taper start it is tapered off (it still runs, but does not go on)."""
    g = ev[ev["patient"] == patient].astype({"event": object, "drug": object, "trigger": object})
    day = float(g[(g["event"] == "transition") & (g["rule"] == "P9.discharge_plan")]["day"].iloc[0])
    taken: list[str] = []
    tapering: list[str] = []
    for r in g[g["day"] <= day + 1e-9].itertuples(index=False):
        if r.event == "drug_start":
            taken.append(r.drug)
        elif r.event == "taper_start" and r.drug in taken:
            taken.remove(r.drug)
            tapering.append(r.drug)
        elif r.event == "drug_stop":
            taken = [d for d in taken if d != r.drug]
            tapering = [d for d in tapering if d != r.drug]
    return day, taken, tapering


def test_discharge_is_narrated_with_the_regimen_that_runs_or_none():
    """Protects the narration of P9.discharge_plan: "back to primary care on the current regimen" names the
    drugs that go on; with every drug stopped it says no drug runs (it used to speak of a current regimen
    when nothing ran); a drug being tapered off still runs until its taper ends, so the discharge does not say
    "no drug running" then but names the taper (guideline seed 7 patient 248 on day 552 was told "no drug
    running" while nortriptyline was tapered to day 566). Discharged patients are found in a guideline run, then
    traced on their own."""
    from simulator.analysis.runner import simulate
    from simulator.teaching.narrate import setup_from_scenario, trace

    root = Path(__file__).resolve().parent.parent
    scenario = load_scenario(str(root / "scenarios" / "guideline.yaml"))
    ev = simulate(scenario, patients=1000, seed=7, replications=1).events
    discharged = ev[(ev["event"] == "transition") & (ev["rule"] == "P9.discharge_plan")]["patient"].unique()
    seen: set[tuple[bool, bool]] = set()
    for patient in list(discharged[:60]) + [248]:
        j = trace(setup_from_scenario(scenario, int(patient), seed=7))
        if not (j.events["rule"] == "P9.discharge_plan").any():  # not the deferral (P9.re_referral_deferred)
            continue
        day, taken, tapering = _regimen_at_discharge(j.events, int(patient))
        step = next(s for s in j.steps if s.rule == "P9.discharge_plan" and abs(s.day - day) < 1e-6)
        if taken:
            assert "current regimen" in step.text and all(d.split("_")[0] in step.text for d in taken), step.text
        else:
            assert "current regimen" not in step.text, step.text
        assert ("no drug running" in step.text) == (not taken and not tapering), step.text
        assert all(f"{d.split('_')[0]} tapering off" in step.text for d in tapering), step.text
        seen.add((bool(taken), bool(tapering)))
    assert {(True, False), (False, False), (False, True)} <= seen, seen
