"""The tutor's session: the trainee's course simulated with the same patient and the same luck.

Owns :class:`Session` (the patient simulated with the trainee's decisions so far replayed through the
engine's ``Simulation(..., decide=...)`` hook; the first decision after them is the next question),
:func:`replay` and :func:`guideline_run`, the trainee's :class:`Answer` and the :class:`Course` shown in the
debrief. How options are built and judged: :mod:`simulator.teaching.tutor.options`; the terminal front end:
:mod:`simulator.teaching.tutor.terminal`.
"""


from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from ...analysis.outcomes import events_frame
from ...engine.simulation import NCOL, Simulation
from ...inputs.errors import InputError
from ...model.decisions import REOFFER
from ...model.pathway import compile_table
from ...model.patient import PatientModel
from ...model.policy_context import Decision
from ..narrate import Setup, drug_name, narrate, unit_for
from ..regimen import Regimen
from ..steps import other_start_words
from .options import GOOD, Option, Point, build_options, cite, describe, same_step, seeds_of
from .verdicts import judge_all


@dataclass
class Answer:
    point: Point
    choice: int

    @property
    def option(self) -> Option:
        return self.point.options[self.choice]

    @property
    def ok(self) -> bool:
        return self.option.verdict in GOOD

    def feedback(self) -> str:
        o, g = self.option, self.point.guideline_option
        head = {"guideline": "Follows the guideline.", "acceptable": "Acceptable: an equally conformant step.",
                "other": "Not the guideline's step (simulated).",
                "departure": "Declared departure: unwise, but possible, so it is simulated and flagged.",
                "forbidden": "Not allowed: not simulated; choose again."}[o.verdict]
        reason = o.reason[:1].upper() + o.reason[1:]
        text = f"{head} {reason}".strip()
        if o.verdict != "guideline":
            text += f" The guideline's step: {g.label}. {cite(self.point.proposed.rule)}"
        return text


@dataclass
class Course:
    """One simulated course of the patient (the trainee's, or the guideline's) and what it came to."""

    events: pd.DataFrame
    decisions: list[tuple[float, str, str]]  # (day, label, verdict)

    def summary(self, base: float) -> dict[str, str]:
        ev = self.events
        starts = ev[ev["event"] == "drug_start"]
        drugs = ", ".join(f"{drug_name(str(d))} (day {float(x):.0f})"
                          for d, x in zip(starts["drug"], starts["day"], strict=True)) or "none"
        evals = ev[ev["event"] == "evaluation"]
        last = (f"{float(evals['pain_nrs'].iloc[-1]):.1f}/10 on day {float(evals['day'].iloc[-1]):.0f}"
                if len(evals) else "no evaluation")
        aes = ev[ev["event"] == "adverse_event"]
        ae_text = ", ".join(f"{str(a).replace('_', ' ')} (day {float(d):.0f})"
                            for a, d in zip(aes["adverse_event"], aes["day"], strict=True)) or "none"
        tr = ev[ev["event"] == "transition"]
        relief = tr[tr["state"] == "relieved"]["day"]
        dropped = (ev["event"] == "dropout").any()
        final = "dropped out" if dropped else (str(tr["state"].iloc[-1]).replace("_", " ") if len(tr) else "assessment")
        return {"drugs started": drugs, "last pain": last, "adverse events": ae_text,
                "relief": f"day {float(relief.iloc[0]):.0f}" if len(relief) else "not relieved",
                "final state": final, "decisions": str(len(self.decisions)),
                "declared departures": str(sum(v == "departure" for _, _, v in self.decisions))}


def first_difference(a: pd.DataFrame, b: pd.DataFrame) -> float | None:
    """The day of the first event where two courses differ (None when identical)."""
    cols = ["day", "event", "state", "drug", "dose", "pain_nrs", "adverse_event", "trigger"]
    ra = a[cols].astype(object).where(a[cols].notna(), None).itertuples(index=False)
    rb = b[cols].astype(object).where(b[cols].notna(), None).itertuples(index=False)
    for x, y in zip(ra, rb, strict=False):
        if tuple(x) != tuple(y):
            return float(min(x[0], y[0]))
    if len(a) != len(b):
        shorter = a if len(a) < len(b) else b
        longer = b if shorter is a else a
        return float(longer["day"].iloc[len(shorter)])
    return None


class _Snapshot:
    """The patient model's history at a decision, copied (the engine keeps mutating its own)."""

    def __init__(self, p: PatientModel, outcome: str | None, day: float, pain: float, proposed: Decision,
                 rows: int) -> None:
        self.p = PatientModel.__new__(PatientModel)
        for name in PatientModel.__slots__:
            v = getattr(p, name)
            setattr(self.p, name, v.copy() if isinstance(v, list | set | dict) else v)
        self.outcome, self.day, self.pain, self.proposed, self.rows = outcome, day, pain, proposed, rows
        self.visible = pd.DataFrame()  # the rows logged before the question, up to its day (set by replay)


def _run(setup: Setup, decide: Callable[[Simulation], Any]) -> tuple[pd.DataFrame, Any]:
    sim = Simulation(setup.ctx, setup.cohort, setup.config, setup.replication, only=[setup.index])
    sim.decide = decide(sim)
    raw = sim.run()
    return events_frame([raw], setup.ctx.tables).reset_index(drop=True), raw


def replay(setup: Setup, chosen: list[Decision]) -> tuple[pd.DataFrame, _Snapshot | None]:
    """Simulate the patient with ``chosen`` as its first decisions and the policy's after them.

    Returns the events and a snapshot of the first decision after ``chosen`` (None when the course ends
    first). Only the rows the engine had logged when the question was asked, and dated up to it, are
    visible (``snapshot.visible``); the rest of the course is simulated but never shown before the end.
    """
    snap: list[_Snapshot] = []

    def make(sim: Simulation) -> Callable[..., Decision]:
        calls = [0]

        def decide(p: PatientModel, outcome: str | None, day: float, pain: float, proposed: Decision) -> Decision:
            n = calls[0]
            calls[0] += 1
            if n < len(chosen):
                return chosen[n]
            if n == len(chosen):
                snap.append(_Snapshot(p, outcome, day, pain, proposed, len(sim.buf) // NCOL))
            return proposed
        return decide

    events, raw = _run(setup, make)
    if not snap:
        return events, None
    seen = events_frame([raw[:snap[0].rows]], setup.ctx.tables)
    snap[0].visible = seen[seen["day"] <= snap[0].day + 1e-6].reset_index(drop=True)
    return events, snap[0]


def guideline_run(setup: Setup) -> tuple[pd.DataFrame, list[tuple[float, Decision]]]:
    """The guideline's course and its decisions ``(day, decision)`` in order."""
    seen: list[tuple[float, Decision]] = []

    def make(sim: Simulation) -> Callable[..., Decision]:
        def decide(p: PatientModel, outcome: str | None, day: float, pain: float, proposed: Decision) -> Decision:
            seen.append((day, proposed))
            return proposed
        return decide

    return _run(setup, make)[0], seen


class Session:
    """One trainee working through one patient; see the module docstring."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.ctx = setup.ctx
        self.drugs = setup.ctx.tables.drugs
        self.table = compile_table(PatientModel)
        self.base = float(setup.cohort.baseline_nrs[setup.index])
        self.answers: list[Answer] = []
        self.chosen: list[Decision] = []
        self.labels: list[tuple[float, str, str]] = []
        self.point: Point | None = None
        self.events = pd.DataFrame()
        self._visible = pd.DataFrame()
        self._advance()

    # ---- simulation ----------------------------------------------------------------------------------
    def _simulate(self, chosen: list[Decision]) -> tuple[pd.DataFrame, _Snapshot | None]:
        return replay(self.setup, chosen)

    def _advance(self) -> None:
        self.events, snap = self._simulate(self.chosen)
        if snap is None:
            self.point = None
            return
        self._visible = snap.visible
        self.point = self._point(snap, snap.visible)

    @property
    def finished(self) -> bool:
        return self.point is None

    def visible_events(self) -> pd.DataFrame:
        """The trainee's course up to the current question (the whole course once the case has ended)."""
        if self.point is None:
            return self.events
        return self._visible

    # ---- the decision point --------------------------------------------------------------------------
    def _point(self, snap: _Snapshot, visible: pd.DataFrame) -> Point:
        p = snap.p
        doses: dict[int, float] = {}
        for d, x, e in zip(visible["drug"], visible["dose"], visible["event"], strict=True):
            if str(e) in ("drug_start", "dose_change") and pd.notna(x):
                doses[self.ctx.by_name[str(d)]] = float(x)
        regimen = [(self.drugs[j].name, doses.get(j, float("nan")), self.drugs[j].unit) for j in p.active]
        options = build_options(self, p, snap.outcome, doses)
        judge_all(self, p, snap.outcome, snap.proposed, options)
        guideline = next((k for k, o in enumerate(options) if same_step(o.decision, snap.proposed)), -1)
        if guideline < 0 and snap.proposed.trigger == "optimise" and p.active:
            # the policy's dose optimisation (P3) is the trainee's "raise the dose" of the newest drug
            key = f"raise:{self.drugs[p.active[-1]].name}"
            guideline = next((k for k, o in enumerate(options) if o.key == key), -1)
            if guideline >= 0:
                o = options[guideline]
                o.decision, o.verdict, o.rule = snap.proposed, "guideline", snap.proposed.rule
                o.reason = cite(snap.proposed.rule)
        if guideline >= 0 and snap.proposed.also:  # the policy adds a topical at the same visit (P6.topical_add)
            o = options[guideline]
            o.label += " and add " + " + ".join(drug_name(self.drugs[j].name) for j in snap.proposed.also) \
                + " alongside"
        if guideline < 0:  # a policy step no option expresses: offer it as it is
            options.append(Option("policy", "continue", "The policy's step: " + describe(self, snap.proposed),
                                  snap.proposed, "guideline", snap.proposed.rule, cite(snap.proposed.rule)))
            guideline = len(options) - 1
        again = [drug_name(self.drugs[j].name) for j in (*snap.proposed.start, *snap.proposed.also)
                 if j in p.reopen] if snap.proposed.rule != REOFFER else []
        if again:  # their starts cite P4.reoffer_own_stop, not the step's rule (the one the feedback cites)
            options[guideline].label += f" ({other_start_words(REOFFER, again, False, False)}; {REOFFER})"
        return Point(len(self.labels), snap.day, snap.outcome, snap.pain, p.state, regimen, snap.proposed,
                     options, guideline)

    # ---- answering -----------------------------------------------------------------------------------
    def answer(self, choice: int | str) -> Answer:
        """Answer the current question with an option index (0-based) or key; advance unless forbidden."""
        if self.point is None:
            raise InputError("the case has ended", field="answer", fix="start a new session")
        point = self.point
        if isinstance(choice, str):
            keys = [o.key for o in point.options]
            if choice not in keys:
                raise InputError(f"'{choice}' is not an option here", field="answer", fix=f"use one of {keys}")
            choice = keys.index(choice)
        if not 0 <= choice < len(point.options):
            raise InputError(f"answer {choice + 1} is not an option (1-{len(point.options)})", field="--answers",
                             fix=f"use numbers from 1 to {len(point.options)}")
        a = Answer(point, choice)
        self.answers.append(a)
        o = a.option
        if o.verdict == "forbidden":
            return a
        assert o.decision is not None
        self.chosen.append(o.decision)
        self.labels.append((point.day, o.label, o.verdict))
        self._advance()
        return a

    # ---- the debrief ---------------------------------------------------------------------------------
    @property
    def score(self) -> tuple[int, int]:
        return sum(a.ok for a in self.answers), len(self.answers)

    def guideline_course(self) -> Course:
        """The course had every decision been the guideline's (same patient, same luck)."""
        events, proposals = guideline_run(self.setup)
        return Course(events, [(day, describe(self, d), "guideline") for day, d in proposals])

    def trainee_course(self) -> Course:
        return Course(self.events, list(self.labels))

    def debrief(self) -> dict[str, Any]:
        """Both courses, where they part, the score and every answer with its rule and seeds (case ended)."""
        if self.point is not None:
            raise InputError("the debrief comes when the case has ended", field="debrief",
                             fix="answer the remaining questions first")
        g_events, proposals = guideline_run(self.setup)
        mine = self.trainee_course()
        guide = Course(g_events, [(day, describe(self, d), "guideline") for day, d in proposals])
        ok, total = self.score
        return {"score": ok, "total": total, "parted_on_day": first_difference(mine.events, guide.events),
                "yours": mine.summary(self.base), "guideline": guide.summary(self.base),
                "your_decisions": mine.decisions, "guideline_decisions": guide.decisions,
                "guideline_steps": self._guideline_steps(g_events, proposals),
                "answers": [{"day": a.point.day, "choice": a.option.label, "verdict": a.option.verdict,
                             "guideline": a.point.guideline_option.label, "rule": a.option.rule or
                             a.point.proposed.rule, "seeds": seeds_of(a.option.rule or a.point.proposed.rule),
                             "feedback": a.feedback()} for a in self.answers],
                "teaching_points": [tp.text for tp in self.setup.case.teaching_points]
                if self.setup.case is not None else []}

    def _guideline_steps(self, events: pd.DataFrame, proposals: list[tuple[float, Decision]]) -> list[dict[str, Any]]:
        """The guideline's course, one entry per decision (its words, rule and seeds), and after it one per rule
        that other drugs it started cite on their start rows in ``events`` (a drug the patient stopped himself
        offered once more, P4.reoffer_own_stop; a topical alongside, P6.topical_add): each start is told under
        the rule its row cites. A drug the log shows no start for on the decision's day (a start deferred by a
        taper) stays with the decision."""
        starts = events[events["event"] == "drug_start"]
        out: list[dict[str, Any]] = []
        for day, d in proposals:
            today = starts[(starts["day"] - day).abs() < 1e-3]  # the log's days are rounded to 1e-3 d
            cited = {self.ctx.by_name[str(x)]: str(r) for x, r in zip(today["drug"], today["rule"], strict=True)}
            others: dict[str, list[str]] = {}
            for j in (*d.start, *d.also):
                if cited.get(j, d.rule) != d.rule:
                    others.setdefault(cited[j], []).append(drug_name(self.drugs[j].name))
            moved = {j for j in (*d.start, *d.also) if cited.get(j, d.rule) != d.rule}
            own = replace(d, start=tuple(j for j in d.start if j not in moved),
                          also=tuple(j for j in d.also if j not in moved))
            out.append({"day": day, "step": describe(self, own), "rule": d.rule, "seeds": seeds_of(d.rule)})
            for rule, names in others.items():
                words = other_start_words(rule, names, False, False).removeprefix("and ")
                out.append({"day": day, "step": words[:1].upper() + words[1:], "rule": rule, "seeds": seeds_of(rule)})
        return out

    def situation(self) -> str:
        pt = self.point
        if pt is None:
            return "The case has ended."
        if pt.outcome is None:
            return f"Day {pt.day:.0f}, first visit (pain {self.base:.1f}/10). What do you start?"
        reg = " + ".join(f"{drug_name(n)} {d:g} {unit_for(u, d)}" for n, d, u in pt.regimen)
        visible = self.visible_events()
        running = Regimen()  # from the log: a drug being tapered off still runs until its stop row
        for r in visible.to_dict("records"):
            running.apply(r)
        off = " and ".join(drug_name(d) for d in running.tapering_off)
        reg = (f"{reg}, with {off} tapering off" if reg else f"{off} tapering off") if off else reg or "nothing running"
        if pt.outcome == "intolerable":
            today = visible[((visible["day"] - pt.day).abs() < 1e-3)  # the log's days are rounded to 1e-3 d
                            & visible["event"].isin(["drug_stop", "taper_start"])]
            own = today[today["rule"].astype(str) == "X.patient_stop"]
            if len(own) and not today["adverse_event"].notna().any():  # the line ended by the patient's own stop
                head = (f"the patient stopped {' and '.join(drug_name(str(d)) for d in own['drug'])} (not an adverse "
                        "event; no pain was measured today)")
            else:
                ae = today[today["adverse_event"].notna()]
                head = "; ".join(f"{drug_name(str(r['drug']))} was not tolerated ({str(r['adverse_event']).replace('_', ' ')})"
                                 f": {'being tapered off' if str(r['event']) == 'taper_start' else 'stopped'}"
                                 for r in ae.to_dict("records")) \
                    or "an adverse event made a drug intolerable; it has been stopped"
        else:
            pct = round(100 * (pt.pain - self.base) / self.base) if self.base > 0 else 0
            words = {"relief": "relief", "partial": "partial response", "none": "no response"}[pt.outcome]
            head = f"pain {pt.pain:.1f}/10 ({pct:+d}% from baseline): {words}"
        return f"Day {pt.day:.0f} (now on: {reg}): {head}. What next?"

    def timeline(self) -> list[str]:
        """What has happened so far, in words, with the trainee's decisions marked."""
        steps = narrate(self.setup, self.visible_events())
        lines = [st.line() for st in steps]
        days = [round(st.day, 3) for st in steps]
        kinds = [st.kind for st in steps]
        for d, label, v in self.labels:  # each mark goes before the narrated decision it made, else after its day
            mark = f"Day {d:.0f}: YOUR DECISION: {label}" + (" (declared departure)" if v == "departure" else "")
            day = round(d, 3)
            at = next((k for k in range(len(lines)) if kinds[k] == "decision" and days[k] == day), None)
            if at is None:
                at = next((k for k in range(len(lines)) if days[k] > day), len(lines))
            lines.insert(at, mark)
            days.insert(at, day)
            kinds.insert(at, "mark")
        return lines
