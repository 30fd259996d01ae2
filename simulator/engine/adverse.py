"""Adverse events: the serious events a drug exposure may bring, and what an adverse event does to a line.

Owns :class:`AdverseEvents`, the mixin of :class:`simulator.engine.simulation.Simulation` that schedules a
line's serious events (falls, serotonin syndrome, misuse, respiratory depression, TCA cardiac events; rates
from the clinical model) and handles an adverse event when it comes: logged, then the dose lowered to the
last tolerated effective step (P4.intolerance_reduce) or the drug stopped (P4.intolerance_stop,
P4.addon_not_tolerated, X.serious_event) with the trial's withdrawal rate. A mixin, so the hot path calls
``self._adverse_event(...)`` as a plain method of the one simulation object.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from ..model.catalog import FIRST_LINE_CLASSES
from ..model.clinical_tables import SERIOUS_TYPES, interp
from ..model.patient import PatientModel
from ..model.safety import reduced_dose
from .events import E_AE, E_DOSE
from .lines import Line

N_SERIOUS = len(SERIOUS_TYPES)


class AdverseEvents:
    """Mixin: serious events of an exposure and the consequences of an adverse event."""

    def _serious_events(self, p: PatientModel, d, line: Line, adv: np.ndarray, serotonergic_with: bool) -> None:
        t = self.tables
        s = t.serious
        cls = d.drug_class
        rates: tuple[tuple[int, float], ...] = ()  # (serious index, rate per year); none for most starts
        if d.sedating and p.facts.age >= s["falls_min_age"]:
            rates = ((0, s["falls_per_year"]),)
        if cls == "strong_opioid":
            mult = s["misuse_high_mult"] if p.misuse_high else 1.0
            rates += ((2, t.misuse_per_year[p.etiology] * mult), (3, s["resp_depression_per_year"]))
        elif cls == "tca" and "cardiovascular_disease" in p.facts.flags:
            rates += ((4, s["tca_cardiac_per_year"]),)
        base = 2 * t.n_ae_slots + N_SERIOUS * d.index
        for k, rate in rates:
            if rate > 0:
                day = line.start - math.log1p(-adv.item(base + k)) / rate * 365.0
                line.aes.append((day, self._serious_codes[k], 0.0, k))
        if serotonergic_with and cls == "weak_opioid" and d.serotonergic:
            if adv.item(base + 1) < s["serotonin_per_exposure"]:
                line.aes.append((line.start + s["serotonin_onset_days"], self._serious_codes[1], 0.0, 1))

    @cached_property
    def _serious_codes(self) -> tuple[int, ...]:
        """The adverse-event type code of each of :data:`SERIOUS_TYPES` (found once: a drug start needs them)."""
        return tuple(self.tables.ae_types.index(name) for name in SERIOUS_TYPES)

    def _adverse_event(self, p: PatientModel, line: Line, ae: tuple, now: float, lines: list[Line]) -> bool:
        """Log an adverse event; lower the dose or stop the drug when it is dose-limiting (P4).

        Returns True when the drug is stopped (the caller removes the line)."""
        t = self.tables
        line.aes.pop(0)
        d = t.drugs[line.drug]
        _, code, u_inc, serious = ae
        dose = line.dose_at(now)
        exposure = dose / line.factor
        self._log(p.idx, now, E_AE, p.state, line.drug, dose, -1.0, code,  # positional (see _log)
                  "X.serious_event" if serious >= 0 else "X.adverse_event")
        if serious >= 0:
            self._stop_line(p, line, now, "X.serious_event", code, abrupt=True)
            p.failed_agent_classes = p.failed_agent_classes | {d.drug_class}
            if d.drug_class == "weak_opioid":  # tramadol not tolerated has failed (a bridge too; P8 gate)
                p.tramadol_tried = p.tramadol_failed = True
            return True
        key = (line.drug, code, exposure)
        threshold = self._stop_cache.get(key)
        if threshold is None:
            # The event ends the drug with a probability that reproduces the trial's withdrawal rate:
            # incidence(type) * min(1, withdrawal / sum of incidences), all at the current exposure.
            total = sum(interp(c, exposure) for c in d.ae_incidence)
            wd = interp(d.ae_withdrawal, exposure)
            inc = interp(d.ae_incidence[d.ae_types.index(code)], exposure)
            threshold = inc * min(1.0, wd / total) if total > 0 else 0.0
            self._stop_cache[key] = threshold
        if u_inc >= threshold:
            return False
        # Dose-limiting: back to the last tolerated step if it is still effective (P4.intolerance_reduce).
        lower = reduced_dose(line.steps[:line.next_step], dose, self.extras[line.drug].min_effective * line.factor)
        if lower > 0:
            kept = tuple(s for s in line.steps[:line.next_step] if s[1] <= lower + 1e-9)
            line.set_steps(kept, len(kept))
            line.target = lower
            line.reduced = True
            self._log(p.idx, now, E_DOSE, p.state, drug=line.drug, dose=lower, detail=code,
                      rule="P4.intolerance_reduce")
            low = lower / line.factor
            line.aes = [a for a in line.aes if a[3] >= 0 or a[2] < interp(d.ae_incidence[d.ae_types.index(a[1])], low)]
            return False
        addon = p.state == "add_on" and len(lines) > 1 and line is not lines[0] and d.drug_class in FIRST_LINE_CLASSES
        self._stop_line(p, line, now, "P4.addon_not_tolerated" if addon else "P4.intolerance_stop", code)
        p.failed_agent_classes = p.failed_agent_classes | {d.drug_class}
        if d.drug_class == "weak_opioid":  # tramadol not tolerated has failed (a bridge too; P8 gate)
            p.tramadol_tried = p.tramadol_failed = True
        return True
