"""``painpath teach``: the tutor and traces in the browser (Flask, served on 127.0.0.1, works offline).

An educator picks a packaged case or a patient of a cohort; the trainee decides step by step (one HTML
form per question, no JavaScript), sees the timeline so far as a chart (pain, doses, adverse events), the
clinical flowchart with the current position highlighted, and at the end the debrief: both courses side by
side, the score, each decision's rule and seeds. Everything is rendered on the server (matplotlib SVG
charts, the flowchart SVG of :mod:`simulator.teaching.flowchart`, Jinja2 templates with autoescaping in
``simulator/templates/teach_*.html``): the pages load nothing from the network.

Sessions live in memory for the life of the server. Typical use::

    app = create_app(cohorts_dir="cohorts")
    app.run(host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import io
import itertools
import threading
from pathlib import Path
from typing import Any

import pandas as pd
from flask import Flask, abort, redirect, render_template, request, url_for
from markupsafe import Markup

from ..inputs.errors import InputError
from .cases import case_names, load_case
from .flowchart import flowchart_svg
from .narrate import NOT_CLINICAL, Setup, drug_name, narrate, profile, setup_from_case, setup_from_cohort
from .tutor.options import GOOD
from .tutor.session import Session, guideline_run


def course_chart(setup: Setup, events: pd.DataFrame, title: str, until: float | None = None) -> str:
    """An inline SVG chart of one course: pain (NRS) at evaluations above, drug lanes with doses and
    adverse events below, in days. ``until`` fixes the right edge (to draw two courses on one scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = float(setup.cohort.baseline_nrs[setup.index])
    ev = events
    end = until if until is not None else (float(ev["day"].max()) + 28 if len(ev) else 28.0)
    drugs = list(dict.fromkeys(str(d) for d in ev[ev["event"] == "drug_start"]["drug"]))
    fig, (ax, lanes) = plt.subplots(2, 1, figsize=(8.5, 2.6 + 0.42 * max(len(drugs), 1)), sharex=True,
                                    gridspec_kw={"height_ratios": [2.2, 0.5 + 0.4 * max(len(drugs), 1)]})
    evals = ev[ev["event"] == "evaluation"]
    ax.axhline(base, color="#999", ls="--", lw=1)
    ax.text(end, base, " baseline", va="center", fontsize=8, color="#666")
    ax.axhline(base * 0.7, color="#4a7a4a", ls=":", lw=1)
    ax.text(end, base * 0.7, " -30%", va="center", fontsize=8, color="#4a7a4a")
    ax.plot([0, *evals["day"]], [base, *evals["pain_nrs"]], "-o", color="#2f5d8a", ms=4)
    ax.set_ylim(0, 10)
    ax.set_ylabel("pain NRS")
    ax.set_title(title, fontsize=10, loc="left")
    for k, name in enumerate(drugs):
        rows = ev[ev["drug"].astype(str) == name]
        start = None
        for day, kind, dose in zip(rows["day"], rows["event"].astype(str), rows["dose"], strict=True):
            if kind == "drug_start":
                start = float(day)
                lanes.text(float(day), k + 0.22, f"{dose:g}", fontsize=7)
            elif kind == "dose_change" and pd.notna(dose):
                lanes.text(float(day), k + 0.22, f"{dose:g}", fontsize=7)
            elif kind == "drug_stop" and start is not None:
                lanes.plot([start, float(day)], [k, k], lw=6, color="#9fb8d3", solid_capstyle="butt")
                start = None
            elif kind == "adverse_event":
                lanes.plot([float(day)], [k], "x", color="#b00", ms=7, mew=2)
        if start is not None:
            lanes.plot([start, end], [k, k], lw=6, color="#9fb8d3", solid_capstyle="butt")
    lanes.set_yticks(range(len(drugs)), [drug_name(d) for d in drugs], fontsize=8)
    lanes.set_ylim(-0.6, max(len(drugs), 1) - 0.4)
    lanes.set_xlim(0, end)
    lanes.set_xlabel("day (x: adverse event; numbers: daily dose)")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]


def create_app(cohorts_dir: str | Path = "cohorts") -> Flask:
    """The Flask application; sessions are kept in memory, keyed by a counter."""
    app = Flask(__name__, template_folder=str(Path(__file__).resolve().parents[1] / "templates"))
    sessions: dict[str, Session] = {}
    lock = threading.Lock()
    counter = itertools.count(1)
    cohorts = Path(cohorts_dir)

    def cohort_files() -> list[str]:
        return sorted(p.name for p in cohorts.glob("*.yaml")) if cohorts.is_dir() else []

    @app.errorhandler(InputError)
    def _input_error(err: InputError) -> tuple[str, int]:
        return render_template("teach_error.html", message=str(err), note=NOT_CLINICAL), 400

    @app.get("/")
    def index() -> str:
        cases = [(n, load_case(n).title) for n in case_names()]
        return render_template("teach_index.html", cases=cases, cohorts=cohort_files(), note=NOT_CLINICAL)

    def chosen_setup(form: Any) -> Setup:
        if form.get("case"):
            return setup_from_case(load_case(form["case"]))
        name = form.get("cohort", "")
        if name not in cohort_files():
            raise InputError(f"no cohort '{name}' in {cohorts}", field="cohort", fix="pick a cohort from the list")
        try:
            seed, patient = int(form.get("seed", "1")), int(form.get("patient", "0"))
        except ValueError:
            raise InputError("seed and patient must be whole numbers", field="seed",
                             fix="type numbers such as 1 and 0") from None
        if seed < 0:
            raise InputError(f"seed must be >= 0 (got {seed})", field="seed", fix="use a non-negative number")
        return setup_from_cohort(str(cohorts / name), patient, seed)

    @app.post("/start")
    def start() -> Any:
        setup = chosen_setup(request.form)
        with lock:
            sid = str(next(counter))
            sessions[sid] = Session(setup)
        return redirect(url_for("case", sid=sid))

    def _get(sid: str) -> Session:
        s = sessions.get(sid)
        if s is None:
            abort(404)
        return s

    @app.get("/s/<sid>")
    def case(sid: str) -> str:
        s = _get(sid)
        with lock:
            return _case_page(s, sid)

    @app.post("/s/<sid>/answer")
    def answer(sid: str) -> Any:
        s = _get(sid)
        with lock:
            if s.point is not None:
                s.answer(request.form.get("key", ""))
        return redirect(url_for("case", sid=sid))

    @app.get("/trace/<name>")
    def trace_case(name: str) -> str:
        return _trace_page(setup_from_case(load_case(name)))

    @app.get("/trace")
    def trace_cohort() -> str:
        return _trace_page(chosen_setup(request.args))

    def _trace_page(setup: Setup) -> str:
        events, _ = guideline_run(setup)
        steps = narrate(setup, events)
        states = [str(x) for x in events[events["event"] == "transition"]["state"]]
        return render_template(
            "teach_trace.html", title=setup.label, profile=profile(setup), steps=steps, note=NOT_CLINICAL,
            chart=Markup(course_chart(setup, events, "The guideline's course")),
            flowchart=Markup(flowchart_svg(setup.ctx.policy, current=["assessment", *states])),
            caveat=setup.caveat, teaching=[tp.text for tp in setup.case.teaching_points] if setup.case else [])

    def _case_page(s: Session, sid: str) -> str:
        setup = s.setup
        last = s.answers[-1] if s.answers else None
        feedback = None
        if last is not None:
            feedback = {"label": last.option.label, "ok": last.ok, "verdict": last.option.verdict,
                        "text": last.feedback()}
        ctx: dict[str, Any] = {"sid": sid, "title": setup.label, "profile": profile(setup), "note": NOT_CLINICAL,
                               "caveat": setup.caveat, "feedback": feedback, "timeline": s.timeline(),
                               "finished": s.finished}
        if not s.finished:
            pt = s.point
            assert pt is not None
            ctx.update(situation=s.situation(), options=[(o.key, o.label) for o in pt.options],
                       chart=Markup(course_chart(setup, s.visible_events(), "Your patient so far")),
                       flowchart=Markup(flowchart_svg(setup.ctx.policy, current=[pt.state])))
            return render_template("teach_case.html", **ctx)
        d = s.debrief()
        guide_events, _ = guideline_run(setup)
        end = max(float(s.events["day"].max()), float(guide_events["day"].max())) + 28
        final = [str(x) for x in s.events[s.events["event"] == "transition"]["state"]][-1:] or ["assessment"]
        ctx.update(debrief=d, good=GOOD,
                   rows=[(k, d["yours"][k], d["guideline"][k]) for k in d["yours"]],
                   chart=Markup(course_chart(setup, s.events, "Your course", until=end)),
                   guide_chart=Markup(course_chart(setup, guide_events, "The guideline's course", until=end)),
                   flowchart=Markup(flowchart_svg(setup.ctx.policy, current=final)))
        return render_template("teach_debrief.html", **ctx)

    return app


def serve(host: str = "127.0.0.1", port: int = 8765, cohorts_dir: str | Path = "cohorts",
          open_browser: bool = True) -> None:
    """Run the app with Werkzeug's server until interrupted; open the start page in the default browser."""
    import webbrowser

    from werkzeug.serving import make_server

    try:
        server = make_server(host, port, create_app(cohorts_dir), threaded=True)
    except OSError as err:
        raise InputError(f"cannot serve on {host}:{port} ({err.strerror or err})", field="--port",
                         fix="choose another port, e.g. --port 8780, or --port 0 for any free port") from None
    url = f"http://{host}:{server.server_port}/"
    print(f"painpath teach: serving on {url} (Ctrl+C to stop). {NOT_CLINICAL}")
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
