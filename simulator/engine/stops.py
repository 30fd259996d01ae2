"""Stopping drugs: one line (tapered when its catalogue entry has a taper), the regimen, opioids, leaving care.

Owns :class:`Stopping`, the mixin of :class:`simulator.engine.simulation.Simulation` that stops a drug
(P5.taper_step: a taper's rows are logged when it starts, up to loss to follow-up or the horizon, with no
SimPy process per taper), stops a regimen for a decision (keeping the classes it names), stops the opioids
that did not work (P8.stop_ineffective), finishes tapers cut at loss to follow-up, says whether the next drug
must wait for a taper (P5), and ends care at a drop-out. A mixin, so these stay plain method calls of the one
simulation object on the hot path.
"""

from __future__ import annotations

import math

from ..model.pathway import fire
from ..model.patient import PatientModel
from ..model.safety import taper_doses
from .events import E_DOSE, E_DROPOUT, E_LIMIT, E_STOP, E_TAPER, NCOL
from .lines import Line


def _taper_step_at(plan: tuple, now: float) -> float:
    """The dose of the taper step the patient is on at day ``now``, from a ``taper_plans`` entry ``(line start,
    taper start day, step doses, interval in days, row of its taper_start)``."""
    _start, began, steps, interval, _row = plan
    return steps[min(int((now - began) / interval + 1e-9), len(steps) - 1)]


OPIOID_TRIGGER = {"weak_opioid": "escalate_tramadol", "strong_opioid": "escalate_strong_opioid"}
"""The opioid classes and the trigger that starts each (P7, P8)."""


class Stopping:
    """Mixin: stopping lines, regimens and opioids; tapers; drop-out."""

    def _stop_line(self, p: PatientModel, line: Line, now: float, rule: str, code: int = -1,
                   failed: bool = False, abrupt: bool = False) -> None:
        """Stop one drug: tapered when its catalogue entry has a taper (P5.taper_step, steps rounded to marketed
        doses by :func:`~simulator.model.safety.taper_doses`), else at once; a drug taken under ``taper.after_days``
        (P5.taper_short_use) or already at its smallest marketed dose (P5.taper_smallest_dose) stops at once,
        with a ``dose_limit`` row citing why.

        A taper is deterministic, so its rows are logged when it starts, with their own (future) days, up to
        the patient's loss to follow-up or the horizon (no SimPy process per taper)."""
        j = line.drug
        dose = line.dose_at(now)
        if failed:
            cls = self.tables.drugs[j].drug_class
            if cls in ("gabapentinoid", "snri", "tca", "topical"):
                p.failed_classes = p.failed_classes | {cls}
        if rule == "X.patient_stop":  # not offered at the decision taken at this stop (Patient.close_own_stops)
            p.close_own_stops(now)  # an earlier stop with no decision at it: open to the decisions from now on
            p.stopped_now = p.stopped_now | {j}
            p.stopped_day = now
            if self.reoffer_on and self.reofferable[j] and j not in p.reoffered and j not in p.failed_drugs:
                # P4.reoffer_own_stop: it has not failed, open once more to the later decisions
                p.reopen_next = p.reopen_next | {j}
                if p.state == "relieved":  # it was relieving him: restarted first on a relapse
                    p.reopen_first_next = p.reopen_first_next | {j}
            if p.state == "relieved":  # P4.restart_dose: a restart aims at the dose that relieved him
                p.relief_dose[j] = (dose, 0.0)
        x = self.extras[j]
        i = p.idx
        steps: tuple[float, ...] = ()
        why = ""
        if x.taper and not abrupt:
            if now - line.start < x.taper_after - 1e-9:
                why = "P5.taper_short_use"  # taken too briefly for discontinuation symptoms: stopped at once
            else:
                steps = taper_doses(dose, x.taper, x.givable)
                why = "" if steps else "P5.taper_smallest_dose"  # no lower marketed dose to step down to
        if steps:
            # for the visits (_newest_taken) and a reversal (_reverse_taper: the taper_start row's position)
            self.taper_plans[(i, j)] = (line.start, now, steps, x.taper_interval, len(self.buf) // NCOL)
            self._log(i, now, E_TAPER, p.state, j, dose, -1.0, code, rule)  # positional (see _log)
            limit = p.until
            day = now
            for k, td in enumerate(steps):
                if day >= limit:  # loss to follow-up first: the rest is logged only if the patient stays in care
                    p.taper_rest.append((j, dose, k, day))
                    break
                self._log(i, day, E_DOSE, p.state, j, td, -1.0, -1.0, "P5.taper_step")  # positional (see _log)
                day += x.taper_interval
            else:
                if day < limit:
                    self._log(i, day, E_STOP, p.state, drug=j, dose=steps[-1], rule="P5.taper_complete")
                else:
                    p.taper_rest.append((j, dose, len(steps), day))
            end = now + x.taper_interval * len(steps)
            p.tapering.append((j, end))
            if end > p.taper_end:
                p.taper_end = end
        else:
            self._log(i, now, E_STOP, p.state, j, dose, -1.0, code, rule)  # positional (see _log)
            if why:  # why a drug with a taper schedule stopped without one (its own rule id)
                self._log(i, now, E_LIMIT, p.state, drug=j, dose=dose, rule=why)

    def _stop_all(self, p: PatientModel, lines: list[Line], now: float, rule: str, failed: bool,
                  keep: tuple[str, ...] = (), everything: bool = False) -> None:
        """Stop the regimen for a decision; drugs of the ``keep`` classes and a topical added earlier
        alongside (not the one just judged) continue unless ``everything`` (referral)."""
        drugs = self.tables.drugs
        newest = lines[-1]
        kept: list[Line] = []
        for ln in lines:
            if not everything and (drugs[ln.drug].drug_class in keep or (ln.topical_addon and ln is not newest)):
                kept.append(ln)
                continue
            self._stop_line(p, ln, now, rule, failed=failed)
        lines[:] = kept
        p.active = [ln.drug for ln in kept]

    def _stop_opioids(self, p: PatientModel, lines: list[Line], now: float) -> None:
        """Opioids still running after an evaluation without relief when the pathway moves to the specialist
        (referral) or ends (discharge after the specialist) are tapered and stopped: "reassess necessity at each visit, discontinue if ineffective" (P8.stop_ineffective,
        S004), whether tramadol or a strong opioid."""
        drugs = self.tables.drugs
        for ln in [ln for ln in lines if drugs[ln.drug].drug_class in OPIOID_TRIGGER]:
            self._stop_line(p, ln, now, "P8.stop_ineffective", failed=True)
            lines.remove(ln)
        p.active = [ln.drug for ln in lines]

    def _drop_out(self, p: PatientModel, lines: list[Line], now: float, rule: str = "X.dropout",
                  taper_completes: bool = False) -> None:
        """The patient leaves care (``rule``: X.dropout, or X.left_treatment in usual care): every running drug
        stops at once, then the drop-out row. A taper under way is cut short at loss to follow-up (its rows
        were logged up to it). When the patient decides to leave at a decision (``taper_completes``: after a
        failed line or his own stop of a tapered drug) the taper completes as prescribed and care ends on its
        last day (P5.taper_step, S001 "must be tapered slowly"; assumption: the taper schedule given at the
        stop is followed); a loss to follow-up or the horizon before that day still comes first: the loss cuts the
        taper (X.dropout, whatever the patient had decided). A cut taper's ``drug_stop`` names the step the
        patient was on (the tapers cut at the loss to follow-up are those of ``p.taper_rest``)."""
        for ln in lines:
            self._log(p.idx, now, E_STOP, p.state, drug=ln.drug, dose=ln.dose_at(now), rule=rule)
        if taper_completes and p.taper_end > now:
            if p.taper_end < p.until:  # its rows, up to P5.taper_complete, are already logged
                now = p.taper_end
            elif p.until >= self.config.horizon_days:  # still tapering at the horizon: no drop-out row
                p.tapering.clear()
                p.taper_rest.clear()
                lines.clear()
                p.active = []
                return
            else:  # lost to follow-up during the taper: cut there, as below (the loss ends care: X.dropout)
                now = p.until
                rule = "X.dropout"
        cut = {j: (dose, k) for j, dose, k, _day in p.taper_rest}  # the tapers cut at loss to follow-up
        for j, end in p.tapering:  # a taper cut short (its rows were logged up to the drop-out)
            if end > now:  # stopped at the step the patient was on (the dose before it when none was given)
                before, k = cut[j]
                x = self.extras[j]
                on = taper_doses(before, x.taper, x.givable)[k - 1] if k > 0 else before
                self._log(p.idx, now, E_STOP, p.state, drug=j, dose=on, rule=rule)
        p.tapering.clear()
        p.taper_rest.clear()
        lines.clear()
        p.active = []
        fire(self.table, p, "drop_out")
        self._log(p.idx, now, E_DROPOUT, p.state, rule=rule)

    def _newest_taken(self, p: PatientModel, lines: list[Line], now: float) -> tuple[int, float]:
        """The drug and dose a maintenance visit row names (docs/event-log.md): the regimen's newest drug (as an
        evaluation's), or, when none is left but a drug is still being tapered (it runs until its drug_stop), the
        tapering drug at the step he is on (the one started last); (-1, -1.0) when nothing runs."""
        if lines:
            return lines[-1].drug, lines[-1].dose_at(now)
        best = (-math.inf, -1, -1.0)
        for j, end in p.tapering:
            plan = self.taper_plans.get((p.idx, j))
            if end > now + 1e-9 and plan is not None and plan[0] > best[0]:
                best = (plan[0], j, _taper_step_at(plan, now))
        return best[1], best[2]

    def _reverse_taper(self, p: PatientModel, j: int, now: float) -> None:
        """P4.taper_reversed: drug ``j``, which relieved the patient and which he stopped himself, is restarted on a
        relapse while it is still being tapered: the taper stops at the step he is on (a ``drug_stop`` citing
        P4.taper_reversed, at that step's dose, before the restart's ``drug_start``), its rows logged ahead for later
        days are withdrawn (their event code set to -1 in the buffer: ``events_frame`` drops them), and the restart
        climbs from that step (``p.relief_dose``, P4.restart_dose). Nothing is done when ``j`` is not tapering."""
        i = p.idx
        plan = self.taper_plans.get((i, j))
        end = next((e for k, e in p.tapering if k == j and e > now + 1e-9), None)
        if plan is None or end is None:
            return
        steps, row = plan[2], plan[4]
        on = _taper_step_at(plan, now)
        buf = self.buf
        n = len(buf) // NCOL
        for r in range(row + 1, min(row + 2 + len(steps), n)):  # its steps, then its P5.taper_complete row
            base = r * NCOL
            if buf[base] == i and buf[base + 4] == j and buf[base + 1] > now + 1e-9 \
                    and buf[base + 2] in (E_DOSE, E_STOP):
                buf[base + 2] = -1.0  # withdrawn: logged ahead for a day the taper no longer reaches
        p.tapering = [(k, e) for k, e in p.tapering if k != j]
        p.taper_end = max((e for _k, e in p.tapering), default=0.0)
        p.taper_rest = [t for t in p.taper_rest if t[0] != j]
        del self.taper_plans[(i, j)]
        self._log(i, now, E_STOP, p.state, drug=j, dose=on, rule="P4.taper_reversed")
        relief, _back = p.relief_dose.get(j, (on, 0.0))
        p.relief_dose[j] = (relief, on)

    def _finish_tapers(self, p: PatientModel) -> None:
        """Log the rest of tapers that were cut at the loss-to-follow-up day, for a patient who no longer
        leaves care that way (relief, discharge, nothing more to do): up to the horizon."""
        horizon = self.config.horizon_days
        for j, dose, k, day in p.taper_rest:
            x = self.extras[j]
            steps = taper_doses(dose, x.taper, x.givable)
            for td in steps[k:]:
                if day >= horizon:
                    break
                self._log(p.idx, day, E_DOSE, p.state, drug=j, dose=td, rule="P5.taper_step")
                day += x.taper_interval
            else:
                if day < horizon:
                    self._log(p.idx, day, E_STOP, p.state, drug=j, dose=steps[-1], rule="P5.taper_complete")
        p.taper_rest.clear()

    def _wait_for_taper(self, p: PatientModel, start: tuple[int, ...]) -> bool:
        """True when the next drug must wait for the running tapers to end (P5); a drug being tapered is never
        restarted during its own taper (e.g. P7 tramadol after a tramadol bridge tapered at the consult)."""
        pol = self.ctx.policy
        if not pol.cross_taper or any(j in start and end > self.env.now + 1e-9 for j, end in p.tapering):
            return True
        drugs = self.tables.drugs
        return pol.serotonin == "avoid" and any(drugs[j].serotonergic for j in start) \
            and any(drugs[j].serotonergic for j, _end in p.tapering)
