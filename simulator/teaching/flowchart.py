"""The clinical flowchart (trainee view): the guideline's decision points, criteria, drugs with doses, safety checks.

Drawn as a self-contained SVG with a layout this module controls (no Graphviz, no JavaScript, nothing to
install), from the same sources the engine runs:

* the pathway's one definition (:mod:`simulator.model.pathway`): every state is a box (a state the layout does not
  know is still drawn, in a row of its own) and every arrow is a set of the machine's edges;
* the scenario's policy (:class:`simulator.model.policy.Policy`): the first-line order and strategy, what a partial
  response does, when tramadol comes, the strong-opioid gate, topicals, response thresholds, trial lengths;
* the drug catalogue compiled by :func:`simulator.model.clinical_tables.compile_model` (doses, caps, checks,
  contraindications) and the rule book (rule ids on every criterion).

With a run's events (:func:`counts_from_events`), each box shows how many patients entered the state and
each arrow how many took it. The state-machine diagram (:mod:`simulator.teaching.diagram`) stays as the developer view.

    svg = flowchart_svg(policy)                       # str, about 1100 x 1500 px (A4 portrait proportions)
    svg = flowchart_svg(policy, counts=counts_from_events(read_run("results/x")["events"]))
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..inputs.errors import InputError
from ..model import pathway
from .words import FLAG_WORDS, drug_name

WIDTH = 1100
FONT = 14
LINE = 19
CHAR = 6.9  # average glyph width at FONT px (Helvetica/Arial/DejaVu Sans) for wrapping
EdgeKey = tuple[str, str, str]


@dataclass
class Box:
    key: str  # a pathway state, or "q:<name>" for a decision point, or "note:<name>"
    x: float
    w: float
    title: str
    lines: list[str]
    kind: str = "state"  # state, decision, note, outcome
    y: float = 0.0
    h: float = 0.0
    highlight: bool = False

    def wrapped(self) -> list[str]:
        width = max(int((self.w - 20) / CHAR), 10)
        out: list[str] = []
        for line in self.lines:
            out += textwrap.wrap(line, width, subsequent_indent="   ") or [""]
        return out

    def measure(self) -> None:
        self.h = 14 + LINE * (1 + len(self.wrapped())) + 8

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass
class Counts:
    """Patients per state entered and per edge taken in a run (:func:`counts_from_events`)."""

    states: dict[str, int] = field(default_factory=dict)
    edges: dict[EdgeKey, int] = field(default_factory=dict)
    patients: int = 0
    scenario: str = ""


def counts_from_events(events: pd.DataFrame, scenario: str = "") -> Counts:
    """Distinct (replication, patient) per state entered and per (source, trigger, dest) edge taken."""
    from .diagram import edge_counts

    need = {"replication", "patient", "event", "state"}
    if not need <= set(events.columns):
        raise InputError("the event log lacks the columns of a run", field="events.parquet",
                         fix="give a run folder written by 'painpath run'")
    ev = events[events["event"].astype(str).isin(["transition", "dropout"])]
    states = {str(s): int(len(g[["replication", "patient"]].drop_duplicates()))
              for s, g in ev.groupby(ev["state"].astype(str), sort=False)}
    n = int(len(events[["replication", "patient"]].drop_duplicates()))
    states["assessment"] = n
    return Counts(states, edge_counts(events), n, scenario)


def _doses(d: Any) -> str:
    start = d.titration[0][1]
    text = f"{start:g}" + (f" \u2192 {d.target_dose:g}" if d.target_dose > start else "")
    return f"{text} {d.unit} (max {d.max_dose:g})"


def _drug(tables: Any, name: str) -> Any:
    return tables.by_name[name]


def build(policy: Any, tables: Any) -> tuple[list[Box], list[tuple[str, str, str, set[EdgeKey]]]]:
    """Boxes (laid out) and arrows ``(from, to, label, edges)`` of the flowchart for ``policy``."""
    drugs = tables.drugs
    resp = policy.response
    gate = policy.strong_opioid
    L, C, R = (20, 310), (395, 310), (770, 310)

    def box(key: str, col: tuple[int, int], title: str, lines: list[str], kind: str = "state") -> Box:
        return Box(key, col[0], col[1], title, lines, kind)

    def title(state: str) -> str:
        return state.replace("_", " ").capitalize()

    # --- drugs from the policy and the catalogue --------------------------------------------------------
    first = [_drug(tables, n) for n in policy.order]
    strategy = {"guideline": "pregabalin (or duloxetine) first", "pregabalin_first": "pregabalin first",
                "duloxetine_first": "duloxetine first", "gabapentin_first": "gabapentin first (cost)",
                "tca_first": "a tricyclic first", "comorbidity_guided": "chosen by comorbidity"}[policy.first_line]
    first_lines = [f"Strategy: {strategy} (P1). Order of alternatives:"]
    first_lines += [f"{k}. {drug_name(d.name)} {_doses(d)}" for k, d in enumerate(first, 1)]
    others = [d for d in drugs if d.drug_class in ("gabapentinoid", "snri", "tca") and d.name not in policy.order]
    if others:
        first_lines.append("Not in this policy's order: " + ", ".join(drug_name(d.name) for d in others))
    topicals = [d for d in drugs if d.drug_class == "topical"]
    tram = next(d for d in drugs if d.drug_class == "weak_opioid")
    strong = _drug(tables, gate.drug)
    strong_others = [d for d in drugs if d.drug_class == "strong_opioid" and d.name != gate.drug]
    tca_ecg = sorted({d.ecg_min_age for d in drugs if "ecg" in d.safety_checks})
    contra: dict[tuple[str, ...], list[str]] = {}
    for d in drugs:
        if d.contraindications:
            contra.setdefault(tuple(FLAG_WORDS.get(f, f.replace("_", " ")) for f in d.contraindications),
                              []).append(drug_name(d.name))
    pref = policy.topical_preferred
    trial_lines = []
    for c, word in (("gabapentinoid", "gabapentinoids"), ("snri", "SNRIs"), ("tca", "TCAs")):
        members = [d for d in drugs if d.drug_class == c]
        days = getattr(policy.trial_days, c) or min(d.adequate_trial_days for d in members)
        total = min(d.titration[-1][0] for d in members) + days
        trial_lines.append(f"{word}: {days} d at target dose (about {total / 7:.0f} weeks with titration)")
    partial = ("add the other first-line class" if policy.on_partial == "add" else "switch class")

    boxes = [
        box("assessment", C, title("assessment"),
            [f"Neuropathic pain, NRS >= {resp.relief_max_nrs:g} (P1)",
             "Contraindications (P5):"] + [f"- no {' or '.join(v)} with {', '.join(k)}" for k, v in contra.items()]),
        box("note:etiology", R, "Etiology branches (P11)",
            ["Chemotherapy-induced: duloxetine first (P1.duloxetine_cipn); TCAs and gabapentinoids showed no "
             "efficacy", "Lumbosacral radiculopathy: add a second class even after no response (P11)",
             "HIV neuropathy: refractory; opioids with caution (P8.hiv_caution)"], "note"),
        box("q:topical", C, "Localized pain, and older or renal?",
            [f"Topical first if localized and age >= {pref.min_age:g} or CrCl < {pref.crcl_below:g} mL/min "
             f"(P5, P6; policy: topicals {policy.topicals})"], "decision"),
        box("topical", L, title("topical"),
            [", ".join(drug_name(d.name) for d in topicals) + " (patch or plaster)"]
            + ["Localized pain only (P6); lidocaine needs allodynia", "Can be added at any stage (P6)"]),
        box("first_line", C, title("first_line"), first_lines),
        box("note:checks", R, "Safety checks before starting",
            [f"ECG before a tricyclic over age {tca_ecg[0]:g} (P5.tca_ecg)" if tca_ecg else "ECG: none required",
             "Serotonin check: tramadol with an SNRI/SSRI/TCA, SNRI with an SSRI (P5.serotonin_check)",
             "Misuse screen and treatment agreement before "
             + (", ".join(drug_name(d.name) for d in drugs if "misuse_screen" in d.safety_checks) or "no drug") + " (P8)",
             "Renal and older-adult dose caps (P5); start low, go slow (P2)"], "note"),
        box("q:evaluation", C, "Evaluate after an adequate trial (P3)",
            trial_lines + [f"Visits every {policy.visit_interval_days} d",
             f"Relief: >= {100 * resp.relief_min_reduction:.0f}% reduction and NRS < {resp.relief_max_nrs:g}",
             f"Partial: >= {100 * resp.partial_min_reduction:.0f}% reduction but NRS >= {resp.relief_max_nrs:g}",
             "None: < 30% reduction; intolerance: a dose-limiting adverse event"]
            + (["Not enough at target dose: first raise toward the maximum (P3.dose_optimisation)"]
               if getattr(policy, "dose_optimisation", "off") != "off" else []), "decision"),
        box("relieved", R, title("relieved"), ["Continue as maintenance (P4.relief)"], "outcome"),
        box("add_on", L, title("add_on"),
            [f"Partial response: {partial} (P4.partial_add)", "Different mechanism, never two SNRIs",
             "Then evaluated again the same way"]),
        box("switch", C, title("switch"),
            ["No response or intolerance: an untried first-line class (P4)",
             f"At most {policy.max_first_line_regimens} first-line regimens", "Then evaluated again the same way"]),
        box("dropped_out", R, title("dropped_out"), ["Loss to follow-up is possible at any step (X.dropout)"],
            "outcome"),
        box("tramadol", C, title("tramadol"),
            [f"{drug_name(tram.name)} {_doses(tram)}",
             f"Only after documented first-line failure (P7; policy: {policy.tramadol.replace('_', ' ')})"
             + ("; added to the regimen" if getattr(policy, "tramadol_mode", "replace") == "add" else ""),
             "Serotonin check with an SNRI, SSRI or TCA (P5)"]),
        box("strong_opioid", C, title("strong_opioid"),
            [f"{drug_name(strong.name)} {_doses(strong)}"
             + (f"; alternatives: {', '.join(drug_name(d.name) for d in strong_others)}" if strong_others else ""),
             f"Gate (P8): >= {gate.require_failed_classes} first-line classes failed"
             + (", a combination failed" if gate.require_combination else "")
             + (", tramadol tried" if gate.require_tramadol else "") + f"; NRS >= {resp.relief_max_nrs:g}",
             "Misuse screen + treatment agreement first (P8)" if gate.misuse_screen else "No misuse screen (policy)",
             f"Time-limited: <= {gate.max_trial_days} d; stop if ineffective (P8)"
             + ("" if gate.allowed else " - NOT USED by this policy")]),
        box("specialist_referral", L, title("specialist_referral"),
            ["Refractory pain after the drug steps (P9)"
             + (f"; or after {policy.referral.after_failed_lines} failed lines" if policy.referral.after_failed_lines
                else "")]),
        box("specialist_care", L, title("specialist_care"),
            ["Interventions (spinal cord stimulation, PENS) or conservative care (P9)",
             "No relief: back to the remaining steps (P9.discharge_plan)"]),
        box("discharged", C, title("discharged"),
            ["Nothing left to try after the consult: primary care on the current regimen, if any drug still runs (P9.discharge_plan)"],
            "outcome"),
    ]
    rows = [["assessment", "note:etiology"], ["q:topical"], ["topical", "first_line", "note:checks"],
            ["q:evaluation", "relieved"], ["add_on", "switch", "dropped_out"], ["tramadol"],
            ["specialist_referral", "strong_opioid"], ["specialist_care", "discharged"]]
    boxes = [b for b in boxes if b.kind in ("decision", "note") or b.key in pathway.STATES]
    rows = [[k for k in row if k in {b.key for b in boxes}] for row in rows]
    rows = [row for row in rows if row]
    known = {b.key for b in boxes}
    extra = [s for s in pathway.STATES if s not in known]
    for k, s in enumerate(extra):  # a state added to the pathway is drawn even if this layout predates it
        boxes.append(box(s, (L, C, R)[k % 3], title(s), ["(a state of the pathway this layout does not place)"]))
    rows += [extra[i:i + 3] for i in range(0, len(extra), 3)]
    by = {b.key: b for b in boxes}
    y = 70.0
    for row in rows:
        for k in row:
            by[k].measure()
        h = max(by[k].h for k in row)
        for k in row:
            by[k].y = y
        y += h + 46

    def edges(trigger: str, dest: str, sources: Iterable[str] | None = None) -> set[EdgeKey]:
        return {(s, e.trigger, e.dest) for e in pathway.TRANSITIONS if e.trigger == trigger and e.dest == dest
                for s in e.source if sources is None or s in sources}

    arrows = [
        ("assessment", "q:topical", "", set()),
        ("q:topical", "topical", "yes", edges("start_topical", "topical")),
        ("q:topical", "first_line", "no", edges("start_first_line", "first_line", ["assessment"])),
        ("topical", "first_line", "oral", edges("start_first_line", "first_line", ["topical"])),
        ("first_line", "q:evaluation", "", set()),
        ("q:evaluation", "relieved", "relief", edges("relief", "relieved")),
        ("q:evaluation", "add_on", "partial", edges("add_on", "add_on")),
        ("q:evaluation", "switch", "none / intolerance", edges("switch", "switch")),
        ("switch", "tramadol", "first line failed", edges("escalate_tramadol", "tramadol")),
        ("tramadol", "strong_opioid", "gate passed", edges("escalate_strong_opioid", "strong_opioid")),
        ("strong_opioid", "specialist_referral", "refractory", edges("refer", "specialist_referral")),
        ("specialist_referral", "specialist_care", "seen", edges("consult", "specialist_care")),
        ("specialist_care", "discharged", "no relief", edges("discharge", "discharged")),
    ]
    return boxes, arrows


_STYLE = {"state": ("#ffffff", "#2f5d8a"), "decision": ("#fff7d6", "#b07d00"), "note": ("#f3f3f3", "#888888"),
          "outcome": ("#eef6ee", "#4a7a4a")}


def flowchart_svg(policy: Any, *, counts: Counts | None = None, current: Iterable[str] = (),
                  title: str = "") -> str:
    """The flowchart as a standalone SVG document (str).

    ``counts`` adds patients per box and per arrow; ``current`` highlights states (the tutor's position).
    """
    from ..model.clinical_tables import compile_model

    tables = compile_model()
    boxes, arrows = build(policy, tables)
    cur = set(current)
    by = {b.key: b for b in boxes}
    height = max(b.y + b.h for b in boxes) + 40
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
           f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="Helvetica, Arial, DejaVu Sans, sans-serif" '
           f'font-size="{FONT}">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>',
           f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>',
           f'<text x="20" y="30" font-size="20" font-weight="bold">'
           f'{e(title or "Neuropathic pain: clinical pathway (policy " + policy.name + ")")}</text>',
           '<text x="20" y="52" font-size="13" fill="#555">Teaching material from a simulation model; not clinical '
           'advice. Rule ids (P1-P13) cite the guideline seeds.'
           + (f' Counts: {counts.patients} patients of a run of {e(counts.scenario)}.' if counts else '')
           + '</text>']
    for a, b, label, keys in arrows:
        if a not in by or b not in by:
            continue
        s, t = by[a], by[b]
        if t.y > s.y + 1:  # downwards: bottom of the source to the top of the target
            x1 = s.cx if abs(s.cx - t.cx) < 1 else (s.x + s.w * (0.2 if t.cx < s.cx else 0.8))
            x2 = t.cx
            y1, y2 = s.y + s.h, t.y
            path = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{(y1 + y2) / 2:.0f} {x2:.0f},{(y1 + y2) / 2:.0f} {x2:.0f},{y2:.0f}"
            lx, ly, anchor = (x1 + x2) / 2 + 6, (y1 + y2) / 2 - 4, "start"
            if x2 < x1:  # a curve to the left rises to its source on the right: the label goes left of the middle
                lx, ly, anchor = (x1 + x2) / 2 - 6, (y1 + y2) / 2 - 6, "end"
        else:  # sideways in the same row
            x1 = s.x + s.w if t.x > s.x else s.x
            x2 = t.x if t.x > s.x else t.x + t.w
            y1 = y2 = s.y + min(s.h, t.h) / 2
            path = f"M{x1:.0f},{y1:.0f} L{x2:.0f},{y2:.0f}"
            lx, ly, anchor = min(x1, x2) + 4, y1 - 6, "start"
        n = f"n={sum(counts.edges.get(k, 0) for k in keys)}" if counts is not None and keys else ""
        sideways = t.y <= s.y + 1
        labels = [(label, lx, ly), (n, lx, ly + 22)] if sideways else [((label + " " + n).strip(), lx, ly)]
        out.append(f'<path d="{path}" fill="none" stroke="#444" stroke-width="1.6" marker-end="url(#arrow)"/>')
        for text, tx, ty in labels:
            if text:
                out.append(f'<text x="{tx:.0f}" y="{ty:.0f}" text-anchor="{anchor}" font-size="13" fill="#222" '
                           'font-style="italic" '
                           f'paint-order="stroke" stroke="white" stroke-width="4">{e(text)}</text>')
    for bx in boxes:
        fill, stroke = _STYLE[bx.kind]
        width = 1.5
        if bx.key in cur:
            fill, stroke, width = "#ffe08a", "#c05600", 4
        dash = ' stroke-dasharray="6 4"' if bx.kind == "note" else ""
        rx = 18 if bx.kind in ("outcome",) else 6
        cls = "state" if bx.key in pathway.STATES else bx.kind
        out.append(f'<g class="{cls}" data-key="{e(bx.key)}"><rect x="{bx.x}" y="{bx.y:.0f}" width="{bx.w}" '
                   f'height="{bx.h:.0f}" rx="{rx}" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}/>')
        ty = bx.y + 8 + LINE
        head = bx.title
        if counts is not None and bx.key in pathway.STATES:
            head += f" (n={counts.states.get(bx.key, 0)})"
        mark = "\u25C6 " if bx.kind == "decision" else ""
        out.append(f'<text x="{bx.x + 10}" y="{ty:.0f}" font-weight="bold" fill="{stroke}">{mark}{e(head)}</text>')
        for line in bx.wrapped():
            ty += LINE
            out.append(f'<text x="{bx.x + 10}" y="{ty:.0f}">{e(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def flowchart_html(svg: str, title: str) -> str:
    """A page holding the SVG, sized for screen and A4 printing."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            '<style>body{margin:0;background:#fff} svg{display:block;max-width:100%;height:auto}'
            '@page{size:A4 portrait;margin:8mm}</style></head><body>' + svg + "</body></html>\n")


def check_run_matches(scenario: Any, run: Mapping[str, Any], run_dir: str) -> None:
    """InputError unless the run folder was written from the same scenario (name and policy)."""
    manifest = run.get("manifest", {})
    name = manifest.get("scenario", run.get("summary", {}).get("scenario"))
    if name != scenario.name:
        raise InputError(f"the run in '{run_dir}' is of scenario '{name}', not '{scenario.name}': its counts "
                         "would be drawn on another scenario's pathway", field="--run",
                         fix=f"give a run of '{scenario.name}' (painpath run {scenario.source_path or 'SCENARIO'} "
                         "--out DIR), or draw the run's own scenario")
    resolved = manifest.get("scenario_resolved", {}).get("policy")
    if resolved is not None and resolved != scenario.policy.model_dump(mode="json"):
        raise InputError(f"the run in '{run_dir}' used a different policy than scenario '{scenario.name}' has now",
                         field="--run", fix="re-run the scenario, or draw it without --run")


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER_HELP = ("install a Chromium browser (Debian/Ubuntu: apt-get install chromium), or write --out FILE.svg or "
                "FILE.html, which need nothing installed")


def browser() -> str | None:
    """Path of a headless-capable Chromium on PATH, or None."""
    import shutil

    return next((p for p in (shutil.which(b) for b in BROWSERS) if p), None)


def svg_size(svg: str) -> tuple[int, int]:
    import re

    m = re.search(r'<svg[^>]* width="(\d+)" height="(\d+)"', svg)
    if m is None:
        raise ValueError("not a flowchart SVG")
    return int(m.group(1)), int(m.group(2))


def render_png(svg: str, out: str) -> None:
    """Render the SVG to a PNG of its own size with headless Chromium (optional; InputError when absent)."""
    import subprocess
    import tempfile
    from pathlib import Path

    exe = browser()
    if exe is None:
        raise InputError("a PNG needs a Chromium browser, which is not installed", field="--out", fix=BROWSER_HELP)
    w, h = svg_size(svg)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "flowchart.html"
        page.write_text(flowchart_html(svg, "flowchart"))
        shot = Path(tmp) / "flowchart.png"
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
               f"--window-size={w},{h}", f"--screenshot={shot}", page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False, cwd=tmp)
        if not shot.exists():
            raise InputError(f"Chromium could not draw the flowchart: {proc.stderr.decode(errors='replace')[-300:]}",
                             field="--out", fix="write --out FILE.svg or FILE.html instead")
        Path(out).write_bytes(shot.read_bytes())
