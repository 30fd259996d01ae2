"""The terminal tutor (``painpath tutor``): a :class:`~simulator.teaching.tutor.session.Session` driven by the
keyboard or by scripted ``--answers``, and its printed debrief.
"""


from collections.abc import Callable, Iterator
from typing import Any

from ...inputs.errors import InputError
from ..narrate import NOT_CLINICAL, Setup, profile
from .options import GOOD
from .session import Session


class Tutor:
    """The terminal tutor (``painpath tutor``): a :class:`Session` driven by stdin or ``--answers``."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.session = Session(setup)

    def run(self, answers: list[int] | None = None, echo: Callable[[str], None] = print,
            ask: Callable[[str], str] = input) -> Session:
        it: Iterator[int] | None = iter(answers) if answers is not None else None
        s, setup = self.session, self.setup
        echo(f"Case: {setup.label}")
        if setup.case is not None:
            echo(f"Teaching points: {len(setup.case.teaching_points)} (revealed at the end)")
        for k, v in profile(setup):
            echo(f"  {k}: {v}")
        echo(NOT_CLINICAL)
        shown: set[str] = set()  # lines already printed (an evaluation is later merged into its decision's line)

        def new_lines() -> None:
            for line in s.timeline():
                if line not in shown:
                    shown.add(line)
                    echo(line)

        while s.point is not None:
            new_lines()
            pt = s.point
            echo("")
            echo(s.situation())
            for k, o in enumerate(pt.options, 1):
                echo(f"  {k}. {o.label}")
            choice = _read(it, ask, echo, len(pt.options))
            a = s.answer(choice)
            echo(f"You chose {choice + 1}: {a.option.label}")
            echo(("RIGHT: " if a.ok else "NOT THE GUIDELINE: ") + a.feedback())
        new_lines()
        _print_debrief(s.debrief(), echo)
        return s


def _print_debrief(d: dict[str, Any], echo: Callable[[str], None]) -> None:
    echo("")
    echo("=== Debrief ===")
    echo(f"Score: {d['score']}/{d['total']}")
    part = d["parted_on_day"]
    echo("Your course and the guideline's are identical." if part is None else
         f"Your course parted from the guideline's on day {part:.0f}.")
    cols = {"your course": d["yours"], "guideline's course": d["guideline"]}
    keys = list(d["yours"])
    w0 = max(len(k) for k in keys) + 2
    w = max(30, *(len(c[k]) + 2 for c in cols.values() for k in keys))
    echo(" " * w0 + "".join(c.ljust(w) for c in cols))
    for k in keys:
        echo((k.ljust(w0) + "".join(c[k].ljust(w) for c in cols.values())).rstrip())
    echo("Decisions:")
    for a in d["answers"]:
        echo(f"  Day {a['day']:.0f}: you chose '{a['choice']}' ({a['verdict']}); the guideline: '{a['guideline']}' "
             f"[{a['rule']}" + (f"; {', '.join(a['seeds'])}]" if a["seeds"] else "]"))
    echo("The guideline's course:")
    for g in d["guideline_steps"]:
        echo(f"  Day {g['day']:.0f}: {g['step']} [{g['rule']}" + (f"; {', '.join(g['seeds'])}]" if g["seeds"] else "]"))
    mistakes = [a for a in d["answers"] if a["verdict"] not in GOOD]
    if not mistakes:
        echo("No mistakes: every choice followed the guideline.")
    for tp in d["teaching_points"]:
        echo(f"Teaching point: {tp}")


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


def guideline_answers(setup: Setup) -> list[int]:
    """The 1-based option numbers of the guideline's own decisions, in order (for scripted sessions)."""
    s = Session(setup)
    out: list[int] = []
    while s.point is not None:
        out.append(s.point.guideline + 1)
        s.answer(s.point.guideline)
    return out
