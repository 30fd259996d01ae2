"""An interactive case tutor on plain stdin/stdout: the trainee chooses each step, the pathway answers.

The patient first walks the pathway under the guideline policy; every point where the policy decides
(the assessment, each evaluation, each intolerable adverse event) becomes a question. Options come from
the pathway's edges (start, add, switch, tramadol, strong opioid, refer, continue) crossed with the
candidate drugs, tempting wrong ones included. Each answer is judged against the policy's decision
(same trigger and drug, or an equally conformant alternative: another first-line class for an add-on or
a switch, duloxetine for pregabalin at the start outside chemotherapy-induced neuropathy). Then the
consequence is simulated twice with the same seed (common random numbers): the trainee's branch forces
the trainee's decision at that point through ``Simulation(decide=...)`` and follows the guideline after
it. A choice the pathway refuses (a contraindicated drug, a gate not passed, no such edge) is not
simulated: the tutor says which rule refuses it. The session then continues along the guideline's path.

    session = Tutor(setup_from_case(load_case("arrhythmia-no-tca")))
    result = session.run(answers=[2, 5], echo=print)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .catalog import FIRST_LINE_CLASSES
from .errors import InputError
from .narrate import NOT_CLINICAL, Setup, drug_name, narrate, profile, simulate
from .pathway import compile_table
from .patient import PatientModel
from .policy import CIPN, Decision
from .rules import load_rules
from .safety import contraindication

REFUSAL_RULE = {"escalate_tramadol": "P7.tramadol_after_first_line", "escalate_strong_opioid": "P8.prerequisites",
                "add_topical": "P6.topical_add",
                "add_on": "P4.partial_add", "switch": "P4.no_response_switch", "start_topical": "P6.topical_localized",
                "start_first_line": "P1.next_in_order", "refer": "P9.refractory_referral", "relief": "P4.relief"}
STRONG_FIRST = ("pregabalin", "duloxetine")  # P1: the strongest initial choices (S000, S001, S002)


@dataclass
class Option:
    label: str
    decision: Decision | None
    refused: str = ""  # rule id that makes the pathway refuse it ("" = allowed)
    refusal: str = ""  # why, in words

    @property
    def simulable(self) -> bool:
        return self.decision is not None and not self.refused


@dataclass
class Point:
    """One decision point of the guideline's path."""

    n: int
    day: float
    outcome: str | None
    pain: float
    state: str
    regimen: list[str]
    proposed: Decision
    options: list[Option]
    conformant: list[int]  # indices (0-based) of options that follow the guideline
    guideline: int  # the option equal to the policy's decision (-1 if none matches)


@dataclass
class Answer:
    point: Point
    choice: int
    ok: bool
    explanation: str
    consequence: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Result:
    answers: list[Answer]

    @property
    def score(self) -> int:
        return sum(a.ok for a in self.answers)

    @property
    def total(self) -> int:
        return len(self.answers)

    @property
    def mistakes(self) -> list[Answer]:
        return [a for a in self.answers if not a.ok]


def _cite(rule: str) -> str:
    book = load_rules()
    if not book.is_resolvable(rule):
        return rule
    seeds = book.seeds_of(rule)
    return f"{book.text_of(rule)} [{rule}" + (f"; {', '.join(seeds)}]" if seeds else "]")


class Tutor:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.ctx = setup.ctx
        self.drugs = setup.ctx.tables.drugs
        self.table = compile_table(PatientModel)
        self.points: list[Point] = []
        self.events = simulate(setup, decide=self._record)
        self.steps = narrate(setup, self.events)

    # ---- recording the guideline's decision points ------------------------------------------------
    def _record(self, p: PatientModel, outcome: str | None, day: float, pain: float, proposed: Decision) -> Decision:
        options = self._options(p, outcome)
        conformant = [k for k, o in enumerate(options) if self._conforms(p, o, proposed, outcome)]
        guideline = next((k for k, o in enumerate(options) if o.decision is not None and not o.refused
                          and o.decision.trigger == proposed.trigger
                          and set(o.decision.start) == set(proposed.start)
                          and o.decision.stop_all == proposed.stop_all), -1)
        if guideline >= 0 and guideline not in conformant:
            conformant.append(guideline)
        regimen = [drug_name(self.drugs[j].name) for j in p.active]
        self.points.append(Point(len(self.points), day, outcome, pain, p.state, regimen, proposed, options,
                                 sorted(conformant), guideline))
        return proposed

    def _allowed(self, p: PatientModel, trigger: str) -> bool:
        for guards, _dest in self.table.get((p.state, trigger), ()):
            if all(g(p) for g in guards):
                return True
        return False

    def _option(self, p: PatientModel, label: str, decision: Decision, drug: int | None = None) -> Option:
        if drug is not None:
            why = contraindication(self.drugs[drug], p.facts)
            if why is not None:
                return Option(label, decision, why, f"{drug_name(self.drugs[drug].name)} is contraindicated for "
                              f"this patient: {_cite(why)}")
        if decision.trigger == "relief" and p.state == "assessment":
            return Option(label, None, "P1", "treatment has not started yet: " + _cite("P1"))
        if not self._allowed(p, decision.trigger):
            rule = REFUSAL_RULE.get(decision.trigger, "P4")
            return Option(label, decision, rule, f"the pathway has no such step from '{p.state.replace('_', ' ')}' "
                          f"for this patient now: {_cite(rule)}")
        return Option(label, decision)

    def _options(self, p: PatientModel, outcome: str | None) -> list[Option]:
        ctx, drugs = self.ctx, self.drugs
        first_line = [j for j in ctx.order]
        opts: list[Option] = []
        if outcome is None:  # assessment visit
            topical = p.topical if p.topical >= 0 else ctx.capsaicin
            opts.append(self._option(p, f"Start a topical: {drug_name(drugs[topical].name)}",
                                     Decision("start_topical", (topical,), rule="P6.topical_localized"),
                                     topical))
            for j in first_line:
                opts.append(self._option(p, f"Start {drug_name(drugs[j].name)}",
                                         Decision("start_first_line", (j,), rule="P1"), j))
        else:
            if outcome == "relief":
                opts.append(Option("Continue the current regimen (maintenance)", Decision("relief", rule="P4.relief")))
            else:
                opts.append(Option("Continue the current regimen unchanged", None, REFUSAL_RULE["relief"],
                                   "an adequate trial has been judged and did not bring relief; the pathway acts on "
                                   "it (P4) rather than continuing unchanged: " + _cite("P4")))
            active = set(p.active)
            if outcome != "relief" and p.optimisable:  # P3: optimise the dose before judging failure
                opts.append(Option("Raise the dose toward the maximum and judge again",
                                   Decision("optimise", rule="P3.dose_optimisation")))
            if outcome != "relief" and p.topical >= 0 and p.state != "topical":  # P6: a topical at any stage
                opts.append(self._option(p, f"Add a topical: {drug_name(drugs[p.topical].name)}",
                                         Decision("add_topical", (p.topical,), rule="P6.topical_add"), p.topical))
            for j in first_line:
                if j in active:
                    continue
                name = drug_name(drugs[j].name)
                if p.state == "topical":
                    opts.append(self._option(p, f"Add oral {name} to the topical",
                                             Decision("start_first_line", (j,), rule="P6.oral_after_topical"), j))
                    opts.append(self._option(p, f"Stop the topical and start {name}",
                                             Decision("start_first_line", (j,), stop_all=True, rule="P1"), j))
                else:
                    opts.append(self._option(p, f"Add {name}", Decision("add_on", (j,), rule="P4.partial_add"), j))
                    opts.append(self._option(p, f"Switch to {name}",
                                             Decision("switch", (j,), stop_all=True, rule="P4.no_response_switch"), j))
        opts.append(self._option(p, f"{'Start' if outcome is None else 'Switch to'} tramadol",
                                 Decision("escalate_tramadol", (ctx.tramadol,), stop_all=True,
                                          rule="P7.tramadol_after_first_line"), ctx.tramadol))
        if outcome is not None and p.active:
            opts.append(self._option(p, "Add tramadol to the current regimen",
                                     Decision("escalate_tramadol", (ctx.tramadol,), rule="P7.tramadol_add"),
                                     ctx.tramadol))
        opts.append(self._option(p, f"Start a strong opioid ({drug_name(drugs[ctx.strong].name)})",
                                 Decision("escalate_strong_opioid", (ctx.strong,), stop_all=True, rule="P8.prerequisites"),
                                 ctx.strong))
        opts.append(self._option(p, "Refer to the pain specialist", Decision("refer", stop_all=True,
                                                                             rule="P9.refractory_referral")))
        return opts

    def _conforms(self, p: PatientModel, o: Option, proposed: Decision, outcome: str | None) -> bool:
        d = o.decision
        if d is None or o.refused or d.trigger != proposed.trigger:
            return False
        if set(d.start) == set(proposed.start):
            return True
        if len(d.start) != 1 or len(proposed.start) != 1:
            return False
        j, g = d.start[0], proposed.start[0]
        cls = self.drugs[j].drug_class
        if cls not in FIRST_LINE_CLASSES or j in p.tried:
            return False
        if d.trigger == "start_first_line" and outcome is None:
            # P1: pregabalin and duloxetine are both strongest initial choices, except in CIPN (P11: duloxetine).
            return (self.drugs[j].name in STRONG_FIRST and self.drugs[g].name in STRONG_FIRST
                    and p.etiology not in CIPN)
        if d.trigger in ("add_on", "switch"):
            # P4: another first-line class, not running and not failed.
            active_classes = {self.drugs[a].drug_class for a in p.active}
            return cls not in active_classes and cls not in p.failed_classes and self.drugs[g].drug_class != "topical"
        return False

    # ---- consequences -------------------------------------------------------------------------------
    def branch(self, point: Point, decision: Decision) -> pd.DataFrame:
        """Events when ``decision`` replaces the guideline's at ``point`` and the guideline follows it."""
        calls = {"n": 0}

        def force(p: PatientModel, outcome: str | None, day: float, pain: float, proposed: Decision) -> Decision:
            k = calls["n"]
            calls["n"] += 1
            return decision if k == point.n else proposed

        return simulate(self.setup, decide=force)

    def consequence(self, events: pd.DataFrame, day: float) -> dict[str, str]:
        after = events[events["day"] > day + 1e-9]
        ev = after[after["event"] == "evaluation"]
        base = float(self.setup.cohort.baseline_nrs[self.setup.index])
        if len(ev):
            e0 = ev.iloc[0]
            pain = float(e0["pain_nrs"])
            nxt = f"day {float(e0['day']):.0f}: pain {pain:.1f}/10 ({100 * (pain - base) / base:+.0f}%), {e0['outcome']}"
            until = float(e0["day"])
        else:
            nxt, until = "none", float("inf")
        aes = after[(after["event"] == "adverse_event") & (after["day"] <= until + 1e-9)]
        ae_text = ", ".join(f"{str(a).replace('_', ' ')} (day {float(d):.0f})"
                            for a, d in zip(aes["adverse_event"], aes["day"], strict=True)) or "none"
        tr = events[events["event"] == "transition"]
        relief = tr[tr["state"] == "relieved"]["day"]
        drop = events[events["event"] == "dropout"]["day"]
        states = tr["state"].astype(str).tolist()
        final = "dropped out" if len(drop) else (states[-1].replace("_", " ") if states else "assessment")
        started = events[(events["event"] == "drug_start") & (events["day"] >= day - 1e-9)]
        regimen = ", ".join(f"{drug_name(str(d))} (day {float(x):.0f})"
                            for d, x in zip(started["drug"], started["day"], strict=True)) or "none"
        return {"drugs started from here": regimen, "next evaluation": nxt, "adverse events until then": ae_text,
                "relief day": f"{float(relief.iloc[0]):.0f}" if len(relief) else "not relieved",
                "final state": final}

    def judge(self, point: Point, choice: int) -> Answer:
        o = point.options[choice]
        ok = choice in point.conformant
        gl = point.options[point.guideline].label if point.guideline >= 0 else point.proposed.trigger
        g_rule = _cite(point.proposed.rule)
        if ok:
            text = f"Follows the guideline. The guideline's step: {gl}. {g_rule}"
            if choice != point.guideline:
                text += " Your choice is an equally conformant alternative (another first-line class the rules allow)."
        elif o.refused:
            text = (f"Does not follow the guideline: the pathway refuses it, {o.refusal} "
                    f"The guideline's step: {gl}. {g_rule}")
        else:
            text = f"Does not follow the guideline. The guideline's step: {gl}. {g_rule}"
        answer = Answer(point, choice, ok, text)
        guide = self.consequence(self.events, point.day)
        if o.simulable and not (ok and choice == point.guideline):
            assert o.decision is not None
            answer.consequence = {"your choice": self.consequence(self.branch(point, o.decision), point.day),
                                  "guideline": guide}
        else:
            answer.consequence = {"guideline": guide}
        return answer

    # ---- the session -----------------------------------------------------------------------------------
    def run(self, answers: list[int] | None = None, echo: Callable[[str], None] = print,
            ask: Callable[[str], str] = input) -> Result:
        it: Iterator[int] | None = iter(answers) if answers is not None else None
        s = self.setup
        echo(f"Case: {s.label}")
        if s.case is not None:
            echo(f"Teaching point (revealed at the end): rules {', '.join(s.case.rules)}")
        for k, v in profile(s):
            echo(f"  {k}: {v}")
        echo(NOT_CLINICAL)
        shown = 0
        result = Result([])
        for point in self.points:
            while shown < len(self.steps) and self.steps[shown].day < point.day - 1e-9:
                if self.steps[shown].kind != "decision":
                    echo(self.steps[shown].line())
                shown += 1
            echo("")
            echo(self._situation(point))
            for k, o in enumerate(point.options, 1):
                echo(f"  {k}. {o.label}")
            choice = self._read(it, ask, echo, len(point.options))
            a = self.judge(point, choice)
            result.answers.append(a)
            echo(f"You chose {choice + 1}: {point.options[choice].label}")
            echo(("RIGHT: " if a.ok else "NOT THE GUIDELINE: ") + a.explanation)
            if not point.options[choice].simulable:
                echo("Not simulated: the pathway refuses this choice, so only the guideline's course is shown.")
            echo(self._side_by_side(a.consequence))
            while shown < len(self.steps) and self.steps[shown].day <= point.day + 1e-9:
                if self.steps[shown].kind == "decision":
                    echo("Guideline: " + self.steps[shown].line())
                shown += 1
        echo("")
        echo(f"Score: {result.score}/{result.total}")
        if result.mistakes:
            echo("Mistakes:")
            for m in result.mistakes:
                gl = m.point.options[m.point.guideline].label if m.point.guideline >= 0 else m.point.proposed.trigger
                why = m.point.options[m.choice].refused or m.point.proposed.rule
                echo(f"  Day {m.point.day:.0f}: you chose '{m.point.options[m.choice].label}', "
                     f"the guideline '{gl}' [{why}]")
        else:
            echo("No mistakes: every choice followed the guideline.")
        if s.case is not None:
            echo(f"Teaching point: {s.case.teaching_point.strip()}")
        return result

    def _situation(self, point: Point) -> str:
        base = float(self.setup.cohort.baseline_nrs[self.setup.index])
        if point.outcome is None:
            return f"Day {point.day:.0f}, first visit (pain {base:.1f}/10). What do you start?"
        reg = " + ".join(point.regimen) or "nothing running"
        if point.outcome == "intolerable":
            head = "an adverse event made the drug intolerable"
        else:
            pct = 100 * (point.pain - base) / base if base > 0 else 0.0
            words = {"relief": "relief", "partial": "partial response", "none": "no response"}[point.outcome]
            head = f"pain {point.pain:.1f}/10 ({pct:+.0f}% from baseline): {words}"
        return f"Day {point.day:.0f} ({point.state.replace('_', ' ')}; now on: {reg}): {head}. What next?"

    @staticmethod
    def _side_by_side(cons: dict[str, dict[str, str]]) -> str:
        cols = list(cons)
        keys = list(next(iter(cons.values())))
        w0 = max(len(k) for k in keys) + 2
        w = max(40, *(len(cons[c][k]) + 2 for c in cols for k in keys))
        lines = [" " * w0 + "".join(c.ljust(w) for c in cols)]
        lines += [k.ljust(w0) + "".join(cons[c][k].ljust(w) for c in cols) for k in keys]
        return "\n".join(x.rstrip() for x in lines)

    @staticmethod
    def _read(it: Iterator[int] | None, ask: Callable[[str], str], echo: Callable[[str], None], n: int) -> int:
        if it is not None:
            try:
                k = next(it)
            except StopIteration:
                raise InputError("the scripted answers ran out before the case ended", field="--answers",
                                 fix="give one answer per question, e.g. --answers 2,4,1") from None
            if not 1 <= k <= n:
                raise InputError(f"answer {k} is not an option (1-{n})", field="--answers",
                                 fix=f"use numbers from 1 to {n}")
            return k - 1
        while True:
            try:
                raw = ask(f"Your choice (1-{n}): ")
            except EOFError:
                raise InputError("no answer on standard input", field="stdin",
                                 fix="answer interactively, or pass --answers 1,2,...") from None
            if raw.strip().isdigit() and 1 <= int(raw) <= n:
                return int(raw) - 1
            echo(f"Please type a number from 1 to {n}.")


def parse_answers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise InputError(f"'{text}' is not a list of option numbers", field="--answers",
                         fix="give numbers separated by commas, e.g. --answers 2,4,1") from None


def guideline_answers(t: Tutor) -> list[int]:
    """The 1-based option numbers of the guideline's own decisions (for scripted sessions)."""
    return [p.guideline + 1 for p in t.points]


def describe(t: Tutor) -> list[dict[str, Any]]:
    return [{"day": p.day, "options": [o.label for o in p.options], "guideline": p.guideline} for p in t.points]
