"""A narrated journey rendered for a reader: plain text (:func:`journey_text`), the rich terminal
(:func:`print_journey`) and a self-contained HTML page with the clinical flowchart beside the timeline
(:func:`journey_html`, template ``journey.html.j2``; :func:`diagram_for` gives the developer view's Mermaid
source and SVG). The journey itself (who is simulated, what happened, in words) is :mod:`.narrate`'s."""

from __future__ import annotations

from typing import Any

from ..model.rules import SEED_LABELS
from . import diagram
from .narrate import NOT_CLINICAL, Journey


def journey_text(j: Journey) -> str:
    """Plain text: profile, then one line per step (decisions followed by the rule in words)."""
    out = [f"Journey of {j.setup.label}", ""]
    if j.setup.case is not None:
        out += [f"Teaching point: {j.setup.case.teaching_point.strip()}", ""]
    out += [f"  {k}: {v}" for k, v in j.profile] + [""]
    for s in j.steps:
        out.append(s.line())
        if s.kind == "decision" and s.rule_text:
            out.append(f"    {s.rule_text}")
    out += ["", f"Path: {' -> '.join(j.path)}", "", j.setup.caveat, NOT_CLINICAL]
    return "\n".join(out) + "\n"


_KIND_STYLE = {"decision": "bold", "adverse_event": "red", "stop": "red", "dropout": "red", "evaluation": "cyan",
               "excluded": "magenta", "check": "magenta", "dose": "dim", "referral": "blue", "end": "bold"}


def print_journey(j: Journey, console: Any) -> None:
    """Rich terminal rendering."""
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"Journey of {j.setup.label}", style="bold underline"))
    if j.setup.case is not None:
        console.print(Text(f"Teaching point: {j.setup.case.teaching_point.strip()}", style="italic"))
    t = Table(show_header=False, box=None, padding=(0, 2))
    for k, v in j.profile:
        t.add_row(Text(k, style="dim"), Text(v))
    console.print(t)
    for s in j.steps:
        console.print(Text(s.line(), style=_KIND_STYLE.get(s.kind, "")), soft_wrap=True)
        if s.kind == "decision" and s.rule_text:
            console.print(Text(f"    {s.rule_text}", style="dim"), soft_wrap=True)
    console.print(Text(f"Path: {' -> '.join(j.path)}", style="bold"))
    console.print(Text(j.setup.caveat, style="dim"), soft_wrap=True)
    console.print(Text(NOT_CLINICAL, style="dim"), soft_wrap=True)


_CSS = """
body{font-family:system-ui,Helvetica,Arial,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.3rem} .note{color:#555;font-size:.9rem}
.layout{display:grid;grid-template-columns:minmax(22rem,1fr) minmax(22rem,1.3fr);gap:1.5rem;align-items:start}
table.profile td{padding:.1rem .8rem .1rem 0} table.profile td:first-child{color:#666}
ol.timeline{list-style:none;padding-left:0;border-left:3px solid #c05600;margin-left:.4rem}
ol.timeline li{margin:.25rem 0 .25rem -.55rem;padding-left:1rem;position:relative}
ol.timeline li::before{content:"";position:absolute;left:0;top:.45rem;width:.6rem;height:.6rem;border-radius:50%;background:#bbb}
ol.timeline li.decision::before{background:#c05600} ol.timeline li.decision{font-weight:600}
ol.timeline li.adverse_event,ol.timeline li.stop,ol.timeline li.dropout{color:#a00}
ol.timeline li.dose{color:#777;font-size:.9rem}
.why{display:block;font-weight:400;color:#555;font-size:.88rem}
.cite{color:#c05600;font-family:monospace}
ol.path{display:flex;flex-wrap:wrap;list-style:none;padding:0;gap:.3rem}
ol.path li{background:#ffe08a;border:2px solid #c05600;border-radius:1rem;padding:.1rem .6rem}
ol.path li+li::before{content:"\\2192  ";color:#c05600}
.diagram svg{max-width:100%;height:auto} pre{background:#f6f6f6;padding:.6rem;overflow:auto;font-size:.75rem}
"""


def diagram_for(j: Journey) -> tuple[str, str]:
    """(Mermaid text with the path highlighted, inline SVG of it or '' when Graphviz is not installed)."""
    kw: dict[str, Any] = {"visited_states": j.states, "visited_edges": j.edges}
    mermaid = diagram.to_mermaid(**kw)
    svg = ""
    if diagram.graphviz_available():
        raw = diagram.render_graphviz(diagram.to_dot(**kw), "svg").decode()
        svg = raw[raw.find("<svg"):]
    return mermaid, svg


def journey_html(j: Journey) -> str:
    """A self-contained page (no network): the timeline beside the clinical flowchart (trainee view,
    :mod:`simulator.teaching.flowchart`) with the states the patient visited highlighted; the state-machine Mermaid
    source (developer view) is folded below it."""
    import jinja2

    from .flowchart import flowchart_svg

    mermaid, _ = diagram_for(j)
    svg = flowchart_svg(j.setup.ctx.policy, current=j.states)  # the clinical flowchart, visited states highlighted
    env = jinja2.Environment(loader=jinja2.PackageLoader("simulator", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    seeds = sorted({sd for s in j.steps for sd in s.seeds})
    case = j.setup.case
    return env.get_template("journey.html.j2").render(
        label=j.setup.label, css=_CSS, note=NOT_CLINICAL, caveat=j.setup.caveat,
        teaching_point=case.teaching_point.strip() if case is not None else "",
        profile=j.profile, steps=j.steps, seeds=[(sd, SEED_LABELS.get(sd, "")) for sd in seeds],
        states=j.path, svg=svg, mermaid=mermaid)
