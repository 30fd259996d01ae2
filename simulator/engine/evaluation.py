"""Judging a line: the trial run to its evaluation visit, the observed pain, the response, the next decision.

Owns :class:`Evaluation`, the mixin of :class:`simulator.engine.simulation.Simulation` that runs a line's
adequate trial (P3; a strong opioid's time-limited trial and titration to response, P8) up to its evaluation
visit or an interruption (adverse event, the patient's own stop, loss to follow-up), observes the pain at a
visit, judges it (P4: relief, partial, none), counts failed agents and combinations (P4, P8) and asks the
policy for the next decision. A mixin, so the trial loop, the hottest code of the engine, calls the other
concerns as plain methods of the one simulation object.
"""

from __future__ import annotations

import math

from ..model import streams
from ..model.catalog import FIRST_LINE_CLASSES
from ..model.decisions import next_step
from ..model.patient import PatientModel
from ..model.policy_context import Decision
from ..model.response import effect_terms, observed_pain
from .events import E_EVAL, OUTCOME_CODE
from .lines import Line
from .maintenance import MAX_RELAPSES, MAX_RETURNS

_OPTIMISABLE = ("gabapentinoid", "snri", "tca", "weak_opioid")  # P3.dose_optimisation applies to these
FAILED_OUTCOMES = ("partial", "none")
"""Outcomes of an evaluation that count as a failed line (P4)."""


class Evaluation:
    """Mixin: a line's trial to its evaluation, the pain observed, the response judged, the next decision."""

    def _trial(self, p: PatientModel, lines: list[Line], decision: Decision, obs: tuple, ltfu_day: float):
        """Run the newest line's trial up to its evaluation visit, or an interruption (P3, P8).

        Returns ``(outcome, pain, by_patient)`` for :meth:`_decide_after`, or None when the patient's process
        ends (horizon, drop-out). ``by_patient``: the line ended because the patient stopped (not judged)."""
        env = self.env
        t = self.tables
        policy = self.ctx.policy
        visit = float(policy.visit_interval_days)
        horizon = self.config.horizon_days
        i = p.idx
        log = self._log
        now = env.now
        newest = lines[-1]
        drug = t.drugs[newest.drug]
        if decision.eval_after > 0:  # protocols fix the step's length
            eval_day = now + decision.eval_after
        else:  # P3: adequate trial at target dose, at the next scheduled visit
            eval_day = self._trial_end(newest, visit)
            for ln in lines:  # drugs started together (a regimen restarted, P4.reoffer_own_stop): judged once each
                # has had its own adequate trial (a topical added alongside has its own trial: not waited for)
                if ln is not newest and ln.start == newest.start and not ln.topical_addon:
                    eval_day = max(eval_day, self._trial_end(ln, visit))
        # P8.reassessment: whatever the newest drug, a strong opioid still running is reassessed in time.
        eval_day = min(eval_day, self._reassess_by(p, lines))
        outcome = None
        pain = -1.0
        by_patient = False  # the line ended because the patient stopped (not judged)
        titrated = None  # P8.titrate_to_response: a line whose next step waits for its evaluation (Line.held)
        for ln in lines:
            if ln.held:
                titrated = ln
        while outcome is None:
            interim = False
            day_eval = eval_day
            if titrated is not None and titrated.held and not titrated.reduced and titrated in lines:
                # P8.titrate_to_response: judged the day before each titration step
                step_day = titrated.start + titrated.held[0][0] - 1.0
                if step_day < eval_day:
                    day_eval, interim = max(step_day, now), True
            nxt, kind, line, ae = self._next_event(lines, day_eval, ltfu_day)
            # a wait yields its days; the process resumes with the day it wakes on (simulation._Wake)
            if nxt >= horizon:
                yield horizon - now
                return
            if nxt > now:
                now = yield nxt - now
            self._log_doses(i, p, lines, now)
            if kind == "dropout":
                self._drop_out(p, lines, now)
                return
            if kind == "apply":  # P6.capsaicin_reapply, or stopped without benefit (P6.capsaicin_no_benefit)
                if self._reapply(p, line, now):
                    continue
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
                if not lines:  # the line ended: decided as when a drug cannot be continued (not a failed line)
                    outcome = "intolerable"
                    pain = -1.0
                    by_patient = True
                elif line is newest:  # judged, when due, on the newest drug still taken
                    newest = lines[-1]
                    drug = t.drugs[newest.drug]
                continue
            if kind == "ae":
                stop = self._adverse_event(p, line, ae, now, lines)
                if stop:
                    base_left = len(lines) > 1 and line is not lines[0]
                    lines.remove(line)
                    p.active = [ln.drug for ln in lines]
                    if line.topical_addon and lines:
                        # A topical added alongside stops alone; the trial goes on, judged (and logged)
                        # on the newest drug still taken.
                        if line is newest:
                            newest = lines[-1]
                            drug = t.drugs[newest.drug]
                        continue
                    outcome = "intolerable"
                    pain = -1.0
                    p.intolerant = line.drug
                    if base_left and p.state == "add_on":
                        p.n_failed -= 1  # P4.addon_not_tolerated: no failed line is counted
                continue
            if kind == "stop":  # stopped for reasons other than adverse events (persistence, issue 10)
                self._stop_line(p, line, now, "X.patient_stop")
                lines.remove(line)
                p.active = [ln.drug for ln in lines]
                if not lines:  # the line ended: decided as when a drug cannot be continued
                    outcome = "intolerable"
                    pain = -1.0
                    by_patient = True
                    p.n_self_stops += 1  # not a failed line (P7, P9.referral_criteria)
                elif line is newest:  # the regimen's remaining drugs are judged when due: the newest oral
                    # one, not a topical added alongside it (P6.topical_add; the topical has its own trial)
                    newest = next((ln for ln in reversed(lines) if not ln.topical_addon), lines[-1])
                    drug = t.drugs[newest.drug]
                    if newest.topical_addon:  # only the topical is left: judged after its own trial (P3)
                        eval_day = max(eval_day, self._trial_end(newest, visit))
                continue
            # evaluation visit (P3 adequate trial reached, or a strong-opioid titration step)
            pain = self._pain(p, lines, now, obs, 1.0)
            p.last_pain = pain
            p.assessed = now
            outcome = self._judge(p, pain)
            p.judged_day, p.judged_benefit = now, outcome != "none"  # P6.capsaicin_no_benefit
            if interim:
                rule = "P8.titrate_to_response"
            elif drug.drug_class == "tca":
                rule = "P3.tca_trial"
            else:
                rule = "P3.adequate_trial"
            judged = titrated if interim else newest
            log(i, now, E_EVAL, p.state, judged.drug, judged.dose_at(now), pain, OUTCOME_CODE[outcome], rule)
            if interim:
                if outcome == "relief":  # the smallest effective dose: titration stops here
                    titrated.held = ()
                    titrated.target = titrated.steps[-1][1]
                else:  # the step follows its evaluation, a day later (the rest shift when it was late)
                    late = round(max(now + 1.0 - titrated.start - titrated.held[0][0], 0.0), 3)
                    held = tuple((off + late, dose) for off, dose in titrated.held) if late else titrated.held
                    titrated.set_steps(titrated.steps + held[:1], titrated.next_step)
                    titrated.held = held[1:]
                    if late and titrated is newest:
                        eval_day = min(eval_day + late, newest.start + policy.strong_opioid.max_trial_days)
                    outcome = None
        return outcome, pain, by_patient

    def _decide_after(self, p: PatientModel, lines: list[Line], outcome: str, now: float, pain: float,
                      entry: float, by_patient: bool = False) -> Decision | None:
        """The policy's next decision after a line's outcome, or None when the patient leaves care.

        ``by_patient``: the line ended in maintenance (P4.relapse) or by the patient's own stop; no drug
        was judged at an evaluation, so no agent or combination is counted as failed (P8)."""
        t = self.tables
        p.close_own_stops(now)  # a stop on an earlier day: this decision is a later one (P4.reoffer_own_stop)
        if outcome in FAILED_OUTCOMES and not by_patient:
            self._judge_failure(p, lines)
        # P3: one oral drug judged on its own (a topical alongside does not count)
        optimisable = False
        if lines and not lines[-1].topical_addon and not lines[-1].reduced and not lines[-1].optimised:
            newest_line = lines[-1]
            oral = 0
            for ln in lines:  # a loop, not sum(generator): at every decision
                if not ln.topical_addon:
                    oral += 1
            optimisable = (oral == 1 and newest_line.dose_at(now) < newest_line.maximum - 1e-9
                           and t.drugs[newest_line.drug].drug_class in _OPTIMISABLE)
        p.optimisable = optimisable
        if outcome != "relief":
            p.n_failed += 1
        decision = next_step(p, self.ctx, outcome, now - entry, pain)
        if outcome != "relief" and decision.trigger in ("optimise", "continue"):
            # Not a failed line: the dose is optimised first (P3), or a protocol step continues.
            p.n_failed -= 1
        elif outcome != "relief" and not (outcome == "intolerable" and p.state == "add_on" and lines):
            # P4: a failed line or the patient's own stop may end care (named assumption:
            # dropout_after_failed_line), whatever drug stopped and whether a taper follows: a taper under
            # way then completes as prescribed (Stopping._drop_out, taper_completes).
            u = streams.slot_uniform(self.dropout_streams.item(p.idx), streams.day_slot(now - entry))  # keyed_uniform
            if u < t.follow_up["dropout_after_failed_line"]:
                self._drop_out(p, lines, now, taper_completes=True)
                return None
            if self.return_after_stop < 1.0:  # usual care: no scheduled visit brings the patient back
                col = 2 + 2 * len(t.drugs) + MAX_RELAPSES + min(max(p.n_failed - 1, 0), MAX_RETURNS - 1)
                if self.persist.item(p.idx, col) >= self.return_after_stop:
                    self._drop_out(p, lines, now, "X.left_treatment", taper_completes=True)
                    return None
        if self.decide is not None:
            decision = self.decide(p, outcome, now - entry, pain, decision)
        return decision

    def _judge_failure(self, p: PatientModel, lines: list[Line]) -> None:
        """An inadequate evaluation: the running first-line agents failed (P8 count), a gabapentinoid
        running with an antidepressant is a failed combination (P4, P8; S000, S002, S004), and a running
        tramadol has failed (P8: "strong opioids only if tramadol fails", S004). What it marks is recorded in
        ``p.failure_marks``: a later relief with these drugs running clears it (:meth:`_relief_clears`)."""
        drugs = self.tables.drugs
        judged = frozenset([ln.drug for ln in lines])
        p.failed_drugs = p.failed_drugs | judged  # judged inadequate: no re-offer (P4)
        classes = {drugs[j].drug_class for j in judged}
        new_classes = frozenset(classes.intersection(FIRST_LINE_CLASSES)) - p.failed_agent_classes
        p.failed_agent_classes = p.failed_agent_classes | new_classes
        combination = "gabapentinoid" in classes and ("snri" in classes or "tca" in classes)
        p.failure_marks = (*p.failure_marks, (judged, new_classes, combination and not p.combination_failed))
        if combination:
            p.combination_failed = True
        if "weak_opioid" in classes:  # tramadol judged inadequate after its adequate trial (P8 gate, S004)
            p.tramadol_failed = True

    def _relief_clears(self, p: PatientModel, lines: list[Line]) -> None:
        """P4.reoffer_own_stop: a regimen that relieved has not failed. At relief the drugs running are no longer
        failed drugs (if the patient stops one himself and relapses, it is restarted first); a tramadol running
        has not failed (P7, P8); and an earlier inadequate evaluation of only drugs still running has its marks
        undone: the combination it marked failed (then combined with a topical or tramadol that relieved), and
        the agent classes it marked failed when the same oral drugs relieved (a dose then optimised, P3, or a
        topical added). A drug judged inadequate alone and relieving only with another oral drug added stays a
        documented failure of its class (P7, P8); marks of regimens with a drug no longer running stay."""
        running = frozenset([ln.drug for ln in lines])
        if not running:
            return
        p.failed_drugs = p.failed_drugs - running
        if self.ctx.tramadol in running:  # relieving: not failed (a tramadol not tolerated is not running)
            p.tramadol_failed = False
        if not p.failure_marks or not any(m[0] <= running for m in p.failure_marks):
            return
        drugs = self.tables.drugs
        oral = frozenset(j for j in running if drugs[j].drug_class != "topical")
        kept = []
        for judged, classes, combination in p.failure_marks:
            if not judged <= running:
                kept.append((judged, classes, combination))
                continue
            if frozenset(j for j in judged if drugs[j].drug_class != "topical") == oral:
                p.failed_agent_classes = p.failed_agent_classes - classes
            if combination:
                p.combination_failed = False
        for judged, _, _ in kept:  # a kept regimen's marks hold whatever cleared beside them
            cls = {drugs[j].drug_class for j in judged}
            p.failed_agent_classes = p.failed_agent_classes | {c for c in cls if c in FIRST_LINE_CLASSES}
            if "gabapentinoid" in cls and ("snri" in cls or "tca" in cls):
                p.combination_failed = True
        p.failure_marks = tuple(kept)

    def _trial_due(self, line: Line) -> float:
        """P3: the day (simulation days) the line's adequate trial is complete: ``ctx.trial_days`` at its target
        dose, at least the drug's ``min_trial_days`` from its start (drugs.yaml; TCAs 6-8 weeks, S000, S002); a
        strong opioid's trial days at most the policy's ``strong_opioid.max_trial_days`` (P8.time_limited, S004).
        The one formula of the rule: the evaluation visit (:meth:`_trial_end`) and the tramadol bridge's
        judgement (:meth:`simulator.engine.referral.Referral._judge_bridge`) both read it."""
        drug = self.tables.drugs[line.drug]
        trial = self.ctx.trial_days[drug.name]
        if self.strong_opioid[line.drug]:
            trial = min(trial, self.ctx.policy.strong_opioid.max_trial_days)
        return max(line.target_day + trial, line.start + drug.min_trial_days)

    def _trial_end(self, line: Line, visit: float) -> float:
        """P3: the visit (every ``visit`` days from the line's start) that ends the line's adequate trial
        (:meth:`_trial_due`); a strong opioid is judged by the end of its trial period (P8.time_limited, policy
        ``strong_opioid.max_trial_days``)."""
        k = math.ceil((self._trial_due(line) - line.start) / visit - 1e-9)
        end = line.start + max(k, 1) * visit
        if self.strong_opioid[line.drug]:  # P8.time_limited: judged by the end of the trial period
            end = min(end, line.start + self.ctx.policy.strong_opioid.max_trial_days)
        return end

    def _pain(self, p: PatientModel, lines: list[Line], now: float, obs: tuple, retained: float) -> float:
        """Observed NRS at a visit: drug effects at their exposure, times adherence and, after a relapse, the
        share retained (clinical persistence block); visit noise keyed by the visit day."""
        t = self.tables
        drug_z, ns_onset, adherence, entry, noise = obs
        lat = self.latents
        i = p.idx
        scale = adherence * retained
        effects = []
        for n_line, ln in enumerate(lines):
            d = t.drugs[ln.drug]
            dose = ln.dose_at(now) / ln.factor
            days_on = now - ln.start
            if days_on <= 0 or dose <= 0:  # drug_effect with its day-to-day constants kept per dose (effect_terms)
                e = 0.0
            else:
                terms = ln.terms
                if terms is None or terms[0] != dose:
                    terms = ln.terms = (dose, *effect_terms(d, dose, p.etiology, drug_z.item(d.index),
                                                            p.facts.localized))
                # a responder probability of 0 (an etiology modifier of 0): the latent uniform, >= 0, cannot be
                # below it, so it is not computed (the same effect: the non-responder's)
                e = ((terms[2] if terms[1] > 0.0 and lat.u_scalar(i, d.index, now) < terms[1] else terms[3])
                     * (1.0 - math.exp(-days_on / d.onset_days))) * scale
            effects.append(e * t.combination_factor if n_line > 0 else e)
        since = now - entry
        return observed_pain(p.baseline, lat.ns_scalar(i, now), ns_onset, since, effects, t.noise_sd,
                             streams.visit_normal(noise, since))

    def _judge(self, p: PatientModel, pain: float) -> str:
        """P4: relief, partial or none, by the policy's response rule."""
        relief_min, relief_max, partial_min = self.response_rule
        red = (p.baseline - pain) / p.baseline if p.baseline > 0 else 0.0
        if red >= relief_min and pain < relief_max:
            return "relief"
        return "partial" if red >= partial_min else "none"
