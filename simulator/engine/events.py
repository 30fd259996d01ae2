"""The event log of a run: event codes, the columns of a row, and the flat buffer the engine writes into.

Owns what a row of the event log is (:data:`COLUMNS`, the event kinds :data:`EVENTS` and their codes, the
state, trigger, outcome and rule codes) and :class:`EventLog`, the mixin of
:class:`simulator.engine.simulation.Simulation` that appends one row per call to a flat ``array('d')``
(``self.buf``). It is a mixin, not a separate object, so the hot path's ``self._log(...)`` stays one plain
method call with no extra attribute hop per event. What each row means: ``docs/event-log.md``.
"""

from __future__ import annotations

import struct

import numpy as np

from ..model.pathway import OUTCOMES, STATES, TRIGGERS
from ..model.rules import load_rules
from ..population.cohort import Cohort

# Event codes (column ``event``).
EVENTS: tuple[str, ...] = ("assessment", "transition", "drug_start", "dose_change", "drug_stop", "evaluation",
                           "adverse_event", "safety_check", "excluded", "referral_queued", "consult",
                           "dropout", "dose_limit", "taper_start", "maintenance_visit", "queue_left")
(E_ASSESS, E_TRANSITION, E_START, E_DOSE, E_STOP, E_EVAL, E_AE, E_CHECK, E_EXCLUDE, E_QUEUE, E_CONSULT,
 E_DROPOUT, E_LIMIT, E_TAPER, E_MAINT, E_LEFT) = range(len(EVENTS))
"""Event kinds (docs/event-log.md); new kinds are appended so older codes keep their meaning."""
CHECKS: tuple[str, ...] = ("ecg", "serotonin_check", "misuse_screen", "treatment_agreement")
CONSULT_OUTCOMES: tuple[str, ...] = ("intervention_success", "intervention_failed", "conservative_relief",
                                     "conservative_no_relief")
COLUMNS: tuple[str, ...] = ("patient", "day", "event", "state", "drug", "dose", "pain", "detail", "rule")
NCOL = len(COLUMNS)
ROW = struct.Struct(f"{NCOL}d")  # one row of the event buffer: NCOL doubles in native order, as array("d")
_pack = ROW.pack
STATE_CODE = {s: i for i, s in enumerate(STATES)}
_STATE_COLUMN = {s: float(i) for s, i in STATE_CODE.items()}  # the codes as written (a double: no int conversion)
TRIGGER_CODE = {t: i for i, t in enumerate(TRIGGERS)}
OUTCOME_CODE = {o: i for i, o in enumerate(OUTCOMES)}


def rule_codes() -> tuple[tuple[str, ...], dict[str | None, float]]:
    """The rule ids of rules.yaml in order (column ``rule`` holds their index) and the index of each as the
    column's double (the row is packed without an int conversion); no rule (None or "") is -1 (one dict lookup
    per logged row, no test)."""
    ids = tuple(load_rules().ids())
    codes: dict[str | None, float] = {r: float(i) for i, r in enumerate(ids)}
    codes[None] = codes[""] = -1.0
    return ids, codes


def flag_sets(c: Cohort) -> list[frozenset[str]]:
    """Per patient, the set of true flags the safety rules read."""
    names = ("hepatic_disease", "recent_mi", "arrhythmia", "heart_block", "cardiovascular_disease", "glaucoma",
             "orthostatic_hypotension", "ssri_use", "depression", "allodynia")
    cols = [np.asarray(getattr(c, n), dtype=bool) for n in names]
    hiv = np.asarray(c.etiology) == 5
    high = np.asarray(c.misuse_risk) == 2
    cols += [hiv, high]
    names = names + ("hiv_neuropathy", "high_misuse_risk")
    packed = np.stack(cols, axis=1)
    cache: dict[bytes, frozenset[str]] = {}
    out: list[frozenset[str]] = []
    for row in packed:
        key = row.tobytes()
        fs = cache.get(key)
        if fs is None:
            fs = frozenset(n for n, v in zip(names, row, strict=True) if v)
            cache[key] = fs
        out.append(fs)
    return out


class EventLog:
    """Mixin: writes rows to the run's flat event buffer ``self.buf`` (set by ``Simulation.__init__``, with
    ``self.rule_code`` and ``self._append``, the buffer's ``frombytes`` bound once)."""

    def _log(self, i: int, day: float, ev: int, state: str, drug: int | float = -1.0, dose: float = -1.0,
             pain: float = -1.0, detail: int | float = -1.0, rule: str | None = None) -> None:
        # One call per log row (millions per run): struct packs the row in one C loop, several times faster than
        # array.extend/fromlist, which parse every item on its own. Codes it looks up and the defaults are doubles
        # already: packing an int as a double converts it through a temporary float object (-1 and -1.0 are the
        # same double). The hottest callers pass the columns positionally, in COLUMNS' order (keywords cost the call
        # ~10%). ``self._append`` read as an attribute, not called as a method: a bound method kept on the instance
        # is not a method of its class, which the interpreter's method-call path looks up first.
        append = self._append
        append(_pack(i, day, ev, _STATE_COLUMN[state], drug, dose, pain, detail, self.rule_code[rule]))
