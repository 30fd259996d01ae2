"""The pathway drawn from the machine the engine runs: Mermaid text, or SVG/PNG through Graphviz.

The states and edges are read from a ``transitions`` ``GraphMachine`` (the library's diagram extension)
built from :data:`simulator.model.pathway.STATES` and :func:`simulator.model.pathway.transitions_spec`, the same
definition the engine compiles. transitions' own Mermaid output is a flat ``stateDiagram-v2`` with guard
names on the edges; teaching needs more (states grouped by line of therapy, the rule id on every edge,
how many patients took each edge, a highlighted path), so this module writes the Mermaid ``flowchart``
(and the Graphviz DOT source) itself from the machine's edge list, joining each edge to its rule id in
:data:`simulator.model.pathway.TRANSITIONS`.

Typical use::

    text = to_mermaid()                                   # whole pathway
    counts = edge_counts(read_run("results/x")["events"])  # patients per edge in a run
    text = to_mermaid(counts=counts)
    svg = render_graphviz(to_dot(), "svg")                # needs Graphviz's `dot`
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..inputs.errors import InputError
from ..model import pathway

EdgeKey = tuple[str, str, str]
"""(source state, trigger, destination state)."""

FORMATS: tuple[str, ...] = ("mermaid", "svg", "png")
GRAPHVIZ_HELP = ("install Graphviz so that the 'dot' program is on PATH (Debian/Ubuntu: apt-get install graphviz; "
                 "macOS: brew install graphviz; conda: conda install graphviz; note that 'pip install graphviz' "
                 "installs only the Python wrapper, not 'dot'), or use --format mermaid, which needs nothing installed")


@dataclass(frozen=True)
class DiagramEdge:
    source: str
    trigger: str
    dest: str
    rule: str
    conditions: tuple[str, ...]

    @property
    def key(self) -> EdgeKey:
        return (self.source, self.trigger, self.dest)


def graph_machine() -> Any:
    """The pathway as a ``transitions`` GraphMachine (diagram extension), from the engine's definition."""
    from transitions.extensions.diagrams import GraphMachine

    return GraphMachine(model=None, states=list(pathway.STATES), transitions=pathway.transitions_spec(),
                        initial="assessment", auto_transitions=False, graph_engine="mermaid", show_conditions=True)


def pathway_edges() -> list[DiagramEdge]:
    """Every (source, trigger, dest) edge of the machine, in definition order, with its rule id."""
    rules: dict[EdgeKey, str] = {}
    for e in pathway.TRANSITIONS:
        for s in e.source:
            rules.setdefault((s, e.trigger, e.dest), e.rule)
    machine = graph_machine()
    out: list[DiagramEdge] = []
    seen: set[EdgeKey] = set()
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            for t in transitions:
                key = (source, trigger, t.dest)
                if key in seen:
                    continue
                seen.add(key)
                conds = tuple(c.func if isinstance(c.func, str) else getattr(c.func, "__name__", "?")
                              for c in t.conditions)
                out.append(DiagramEdge(source, trigger, t.dest, rules.get(key, ""), conds))
    order = {k: i for i, k in enumerate(rules)}
    out.sort(key=lambda d: order.get(d.key, len(order)))
    return out


def machine_states() -> list[str]:
    return list(graph_machine().states)


def edge_counts(events: pd.DataFrame) -> dict[EdgeKey, int]:
    """How many patients took each edge in an event log (``events.parquet``).

    Transitions are consecutive states per (replication, patient): the first one leaves ``assessment``.
    A drop-out row counts as the ``drop_out`` edge. A patient who takes the same edge twice counts once.
    """
    need = {"replication", "patient", "event", "state", "trigger"}
    missing = need - set(events.columns)
    if missing:
        raise InputError(f"the event log lacks column(s) {', '.join(sorted(missing))}", field="events.parquet",
                         fix="give a run folder written by 'painpath run'")
    ev = events[events["event"].astype(str).isin(["transition", "dropout"])]
    patients: dict[EdgeKey, set[tuple[int, int]]] = {}
    for (rep, pat), rows in ev.groupby(["replication", "patient"], sort=False, observed=True):
        prev = "assessment"
        for event, state, trigger in zip(rows["event"].astype(str), rows["state"].astype(str),
                                         rows["trigger"].astype(object), strict=True):
            trig = "drop_out" if event == "dropout" else str(trigger)
            patients.setdefault((prev, trig, state), set()).add((int(rep), int(pat)))
            prev = state
    return {k: len(v) for k, v in patients.items()}


def disabled_by_policy(policy: Any) -> set[str]:
    """Triggers a scenario's policy never fires (drawn dashed): tramadol never, no strong opioids, no topicals."""
    off: set[str] = set()
    if policy is None:
        return off
    if policy.tramadol == "never":
        off.add("escalate_tramadol")
    if not policy.strong_opioid.allowed:
        off.add("escalate_strong_opioid")
    if policy.topicals == "never":
        off.add("start_topical")
    return off


def _label(e: DiagramEdge, counts: Mapping[EdgeKey, int] | None) -> str:
    text = f"{e.trigger} [{e.rule}]" if e.rule else e.trigger
    if counts is not None:
        text += f" n={counts.get(e.key, 0)}"
    return text


def _node_id(state: str) -> str:
    return f"s_{state}"  # avoids Mermaid keywords (a state called 'end' would break the chart)


def _state_label(state: str) -> str:
    return state.replace("_", " ")


def to_mermaid(*, counts: Mapping[EdgeKey, int] | None = None, visited_states: Iterable[str] = (),
               visited_edges: Iterable[EdgeKey] = (), disabled: Iterable[str] = (), title: str = "") -> str:
    """A Mermaid ``flowchart``: one subgraph per line of therapy, edges labelled ``trigger [rule]``.

    ``counts`` adds ``n=`` patients to each edge; ``visited_states``/``visited_edges`` are highlighted
    (classDef / linkStyle); edges of ``disabled`` triggers are drawn dotted.
    """
    edges = pathway_edges()
    states = machine_states()
    vs, ve, off = set(visited_states), set(visited_edges), set(disabled)
    lines: list[str] = []
    if title:
        lines += ["---", f"title: {title}", "---"]
    lines.append("flowchart LR")
    grouped: set[str] = set()
    for gi, (group, members) in enumerate(pathway.STATE_GROUPS.items()):
        lines.append(f'  subgraph g{gi}["{group}"]')
        for s in members:
            if s in states:
                lines.append(f'    {_node_id(s)}(["{_state_label(s)}"])')
                grouped.add(s)
        lines.append("  end")
    for s in states:  # a state added to the machine but to no group is still drawn
        if s not in grouped:
            lines.append(f'  {_node_id(s)}(["{_state_label(s)}"])')
    visited_links: list[int] = []
    for i, e in enumerate(edges):
        arrow = "-.->" if e.trigger in off else "-->"
        lines.append(f'  {_node_id(e.source)} {arrow}|"{_label(e, counts)}"| {_node_id(e.dest)}')
        if e.key in ve:
            visited_links.append(i)
    lines.append("  classDef terminal fill:#eef6ee,stroke:#4a7a4a")
    lines.append(f"  class {','.join(_node_id(s) for s in states if s in pathway.TERMINAL)} terminal")
    if vs:
        lines.append("  classDef visited fill:#ffe08a,stroke:#c05600,stroke-width:3px,color:#000")
        lines.append(f"  class {','.join(_node_id(s) for s in states if s in vs)} visited")
    if visited_links:
        lines.append(f"  linkStyle {','.join(map(str, visited_links))} stroke:#c05600,stroke-width:4px")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(*, counts: Mapping[EdgeKey, int] | None = None, visited_states: Iterable[str] = (),
           visited_edges: Iterable[EdgeKey] = (), disabled: Iterable[str] = (), title: str = "") -> str:
    """The same diagram as Graphviz DOT (clusters per line of therapy)."""
    edges = pathway_edges()
    states = machine_states()
    vs, ve, off = set(visited_states), set(visited_edges), set(disabled)
    out = ["digraph pathway {", "  rankdir=LR; fontname=Helvetica; fontsize=12;",
           '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica, fontsize=11];',
           "  edge [fontname=Helvetica, fontsize=9, color=\"#555555\"];"]
    if title:
        out.append(f"  label={_dot_quote(title)}; labelloc=t;")

    def node(s: str) -> str:
        fill = "#ffe08a" if s in vs else ("#eef6ee" if s in pathway.TERMINAL else "white")
        pen = ', penwidth=3, color="#c05600"' if s in vs else ""
        return f"    {_dot_quote(s)} [label={_dot_quote(_state_label(s))}, fillcolor={_dot_quote(fill)}{pen}];"

    grouped: set[str] = set()
    for gi, (group, members) in enumerate(pathway.STATE_GROUPS.items()):
        out.append(f"  subgraph cluster_{gi} {{ label={_dot_quote(group)}; style=rounded; color=\"#999999\";")
        for s in members:
            if s in states:
                out.append(node(s))
                grouped.add(s)
        out.append("  }")
    out += [node(s) for s in states if s not in grouped]
    for e in edges:
        attrs = [f"label={_dot_quote(_label(e, counts))}"]
        if e.key in ve:
            attrs += ['color="#c05600"', "penwidth=3", 'fontcolor="#c05600"']
        if e.trigger in off:
            attrs.append("style=dashed")
        out.append(f"  {_dot_quote(e.source)} -> {_dot_quote(e.dest)} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def render_graphviz(dot_source: str, fmt: str) -> bytes:
    """Render DOT to ``svg`` or ``png`` with Graphviz's ``dot``; InputError with install help if missing."""
    if fmt not in ("svg", "png"):
        raise InputError(f"unknown image format '{fmt}'", field="--format", fix="use svg or png")
    exe = shutil.which("dot")
    if exe is None:
        raise InputError(f"--format {fmt} needs Graphviz's 'dot' program, which is not installed",
                         field="--format", fix=GRAPHVIZ_HELP)
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode(), capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise InputError(f"Graphviz failed to draw the diagram: {proc.stderr.decode(errors='replace').strip()}",
                         field="--format", fix="use --format mermaid, or check the Graphviz installation")
    return proc.stdout


def diagram(fmt: str = "mermaid", *, scenario: Any = None, run_dir: str | None = None) -> bytes:
    """The pathway diagram in ``fmt`` (mermaid text, svg, png), optionally with a run's edge counts."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'", field="--format", fix=f"use one of {', '.join(FORMATS)}")
    counts = None
    title = "Neuropathic pain pathway (painpath; teaching, not for clinical use)"
    if run_dir is not None:
        from ..output.results import read_run

        run = read_run(run_dir)
        counts = edge_counts(run["events"])
        n = int(run["summary"].get("n_patients", 0)) * int(run["summary"].get("replications", 1))
        title += f" - patients per edge in run {run['summary'].get('scenario', '')} (n={n})"
    elif scenario is not None:
        title += f" - scenario {scenario.name}"
    disabled = disabled_by_policy(getattr(scenario, "policy", None))
    if fmt == "mermaid":
        return to_mermaid(counts=counts, disabled=disabled, title=title).encode()
    return render_graphviz(to_dot(counts=counts, disabled=disabled, title=title), fmt)
