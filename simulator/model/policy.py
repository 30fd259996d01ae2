"""Policies: the clinician's choices the seeds leave open, as validated data (the schema of ``policy:``).

A :class:`Policy` lives in a scenario's YAML under ``policy:``. Every field has the guideline default and
names the rule it parameterises; :class:`Protocol` is a trial-style fixed sequence of drugs. This module owns
the schema only: the policy compiled against the model tables and the decision record are in
:mod:`simulator.model.policy_context`, the guideline's decisions in :mod:`simulator.model.decisions`, a
protocol's in :mod:`simulator.model.protocol`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..inputs.schema import Strict
from .care import Maintenance, UsualCare
from .catalog import FIRST_LINE_CLASSES, load_catalog

FirstLine = Literal["guideline", "pregabalin_first", "duloxetine_first", "gabapentin_first", "tca_first",
                    "comorbidity_guided"]
DEPARTURES: tuple[str, ...] = (
    "early_strong_opioid",  # strong opioid before the P8 prerequisites
    "tramadol_first_line",  # tramadol before any first-line failure (P7)
    "fast_titration",  # titration faster than the catalogue schedule (P13)
    "short_trial",  # evaluation before the adequate trial (P3, P13)
    "no_misuse_screen",  # strong opioid without the misuse-risk screen (P8)
    "no_serotonin_check",  # a serotonergic drug with another without the serotonin check (P5; tutor)
    "guard_bypass",  # a step the pathway's guard refuses, taken on purpose (tutor: the trainee meets the consequence)
    "usual_care_index",  # the index drug drawn from usual care's observed mix, not P1 (simulator.model.care)
    "under_titration",  # drugs left below their recommended dose (P2, P13; simulator.model.care)
    "usual_care_leaves_care",  # a patient who leaves care stops his drugs at once, untapered (P5; simulator.model.care)
)


class ResponseRule(Strict):
    """How an evaluation is judged (P4; S001: >=30% reduction is success)."""

    relief_min_reduction: float = Field(0.30, ge=0, le=1, description="P4.relief")
    relief_max_nrs: float = Field(4.0, ge=0, le=10, description="P4.relief: NRS must also be below this")
    partial_min_reduction: float = Field(0.30, ge=0, le=1, description="P4.partial_add: some relief")


class TrialDays(Strict):
    """Days at target dose before judging, per class (P3); None keeps the catalogue's value."""

    gabapentinoid: int | None = Field(None, ge=1)
    snri: int | None = Field(None, ge=1)
    tca: int | None = Field(None, ge=1)
    weak_opioid: int | None = Field(None, ge=1)
    strong_opioid: int | None = Field(None, ge=1)
    topical: int | None = Field(None, ge=1)


class StrongOpioidGate(Strict):
    """P8: strong opioids only after two first-line classes and a combination failed, after a screen."""

    allowed: bool = True
    drug: str = "morphine"
    require_failed_classes: int = Field(2, ge=0, le=3)
    require_combination: bool = True
    require_tramadol: bool = True
    misuse_screen: bool = True
    exclude_high_misuse_risk: bool = True
    max_trial_days: int = Field(84, ge=1, description="P8.time_limited")
    min_nrs: float = Field(4.0, ge=0, le=10, description="P8.nrs_threshold: only at moderate-to-severe pain (S004)")
    hiv: Literal["avoid", "caution"] = Field(
        "avoid", description="P8.hiv_caution: opioids may worsen pain in HIV neuropathy (S004); caution allows them")
    keep_gabapentinoid: bool = Field(
        True, description="a running gabapentinoid continues with the strong opioid (morphine + gabapentin, S000, S004)")


class Referral(Strict):
    """P9: when a patient is referred to the specialist service."""

    when_exhausted: bool = True
    after_failed_lines: int | None = Field(None, ge=1)
    pain_above: float | None = Field(None, ge=0, le=10)
    after_days: int | None = Field(None, ge=0)
    while_waiting: Literal["continue", "stop"] = Field(
        "continue", description="P9.care_while_waiting: the regimen continues while queued and is reviewed at the "
        "maintenance intervals (an opioid that failed still stops, P8.stop_ineffective); 'stop' reproduces v0.1's "
        "treatment gap")
    bridge_tramadol: bool = Field(
        False, description="P9.tramadol_bridge: start tramadol while awaiting the specialist (NICE CG173), stopped "
        "at the consult")
    relieved_while_waiting: Literal["leave_queue", "keep_appointment"] = Field(
        "leave_queue", description="P9.relieved_while_waiting: a patient whom the regimen relieves at a review while "
        "queued leaves the queue (assumption: referral is for persistent refractory pain, S002, S004, which no longer "
        "holds; a relapse may refer him again), or keeps the appointment, where the specialist confirms the regimen "
        "(relief is then dated at the consult)")
    max_consults: int = Field(
        2, ge=1, le=6, description="P9.re_referral: specialist consults per patient at most; a patient whose pain is "
        "refractory again after a consult (its plan and the pathway's remaining options failed, or relief lost) is "
        "referred again until this many consults (assumption: S002/S004 refer persistent refractory pain whenever it "
        "is found; 2 keeps one re-referral; 1 is v0.2's single consult)")
    re_referral_after_days: int = Field(
        91, ge=0, le=3650, description="P9.re_referral: a patient is referred again no sooner than this many days "
        "after his last consult started; refractory again before that, he goes on with his regimen in primary care, "
        "reviewed every deferral_review_days (P9.re_referral_deferred), and is queued when the interval ends. Assumption: the specialist's plan and the pathway's remaining options get "
        "three months before the clinic is asked again (one maintenance interval, P4.maintenance_visit's 91 days; "
        "S004 reassesses every 1-3 months; SCS relief is judged at 3 months in SENZA-PDN, calibration.md 6); no "
        "source gives a re-referral interval (calibration.md 6: referral [NF]). 0: referred again at once (v0.2)")
    deferral_review_days: int = Field(
        28, ge=1, le=365, description="P9.re_referral_deferred: while a re-referral is deferred, the refractory "
        "patient is reviewed in primary care every this many days (no later than "
        "maintenance.opioid_visit_interval_days while an opioid runs) and on the day the interval ends. Assumption: "
        "his pain is uncontrolled, so the frequent end of S004's 'regular monitoring (every 1-3 months)', monthly, "
        "not the 91-day interval of a relieved patient's maintenance visits (v0.2 used that one: with the default "
        "intervals a deferral had a single review, at its end)")

    @model_validator(mode="after")
    def _pair(self) -> Referral:
        if (self.pain_above is None) != (self.after_days is None):
            raise ValueError("pain_above and after_days go together: give both or neither")
        if self.max_consults == 1 and self.re_referral_after_days != type(self).model_fields["re_referral_after_days"].default:
            raise ValueError("re_referral_after_days does nothing with max_consults 1 (no patient is referred again); "
                             "remove re_referral_after_days, or raise max_consults")
        return self


class ProtocolStep(Strict):
    """One step of a protocol: a drug at a dose for a number of weeks, then a threshold rule."""

    drug: str
    dose: float | Literal["target", "max_tolerated"] = Field(
        "target", description="daily dose, the catalogue target, or the patient's maximum (titrated up to it)")
    weeks: int = Field(ge=1, le=520)
    next_if_nrs_above: float | None = Field(
        None, ge=0, le=10, description="at the end of the step, go to the next step's drug when NRS is above this")
    action: Literal["add", "switch"] = Field("add", description="how the next step's drug is introduced")

    @field_validator("drug")
    @classmethod
    def _known(cls, v: str) -> str:
        cat = load_catalog()
        if v not in cat.drugs:
            raise ValueError(f"unknown drug '{v}'; use drugs of the catalogue: {', '.join(cat.drugs)}")
        return v

    @field_validator("dose")
    @classmethod
    def _dose(cls, v: float | str, info: ValidationInfo) -> float | str:
        name = info.data.get("drug")
        if isinstance(v, float | int) and name is not None:
            drug = load_catalog().drugs[name]
            if not 0 < v <= drug.max_dose:
                raise ValueError(f"{name}: dose {v:g} {drug.unit} is outside (0, {drug.max_dose:g}] (P2); "
                                 f"use a dose above 0 and at most {drug.max_dose:g}")
        return v


class Protocol(Strict):
    """A trial-style fixed sequence of drugs (no guideline choices in between); rule X.protocol_step."""

    steps: list[ProtocolStep] = Field(min_length=1, max_length=12)

    @model_validator(mode="after")
    def _thresholds(self) -> Protocol:
        for k, step in enumerate(self.steps[:-1]):
            if step.next_if_nrs_above is None:
                raise ValueError(f"step {k + 1} needs next_if_nrs_above (when to move to step {k + 2}); "
                                 "give an NRS threshold")
        regimen = {self.steps[0].drug}
        for k, step in enumerate(self.steps[1:], start=1):
            prev = self.steps[k - 1]
            # A step of a drug already held only continues it; adding it (NRS above a threshold below 10) cannot be.
            if prev.action == "add" and step.drug in regimen and (prev.next_if_nrs_above or 0.0) < 10:
                raise ValueError(f"step {k + 1} adds {step.drug}, which the regimen already holds (a drug cannot be "
                                 f"added to itself); use action: switch at step {k}, another drug, or "
                                 f"next_if_nrs_above: 10 at step {k} to continue {step.drug} for another step")
            regimen = regimen | {step.drug} if prev.action == "add" else {step.drug}
        return self


class TopicalPreferred(Strict):
    """P5 (S000, S001): topicals first for localized pain in older adults and in renal impairment.

    The thresholds are the conventional definitions: 65 years for an older adult (as the catalogue's
    older-adult adjustments) and creatinine clearance below 60 mL/min for renal impairment (CKD stage 3,
    calibration.md section 9)."""

    min_age: float = Field(65, ge=0, le=120)
    crcl_below: float = Field(60, ge=0, le=200)


class Policy(Strict):
    name: str = Field("guideline", min_length=1, max_length=120)
    first_line: FirstLine = Field("guideline", description="P1")
    tca: Literal["nortriptyline", "amitriptyline"] = Field(
        "nortriptyline", description="P1: the tricyclic used (S000/S002/S004 nortriptyline; S001 amitriptyline)")
    start_doses: dict[str, float] = Field(
        default_factory=dict, description="P2.start_dose_policy: first daily dose per drug (S001: duloxetine 60)")
    dose_optimisation: Literal["to_maximum", "before_switch", "off"] = Field(
        "to_maximum", description="P3.dose_optimisation: raise toward the maximum before add/switch (S000, S001, "
        "S002, S004), only before a switch, or never")
    on_no_response: Literal["switch", "add"] = Field(
        "switch", description="P4.no_response_switch (S002, S004) or P4.add_after_no_response (S002 algorithm)")
    after_combination: Literal["switch", "escalate"] = Field(
        "switch", description="after a failed combination: switch class (S004) or escalate to topical/tramadol (S002)")
    on_intolerance: dict[str, str] = Field(
        default_factory=lambda: {"duloxetine": "venlafaxine"},
        description="P4.intolerance_same_class: drug tried next when this one is not tolerated (S001)")
    cross_taper: bool = Field(
        True, description="P5.taper_step: the next drug starts while the old one is tapered (NICE CG173, "
        "calibration.md 7); false waits for the taper to end")
    serotonin: Literal["monitor", "avoid"] = Field(
        "monitor", description="P5.serotonin_check (check and monitor, S000, S004) or P5.serotonin_avoid")
    tramadol_mode: Literal["add", "replace"] = Field(
        "add", description="P7.tramadol_add ('while optimizing other treatments', S002) or replace the regimen")
    tramadol_reoffer: bool = Field(
        True, description="P7.tramadol_reoffer: a tramadol the patient stopped himself before it failed is offered "
        "once more (it has not failed, and S004 gives strong opioids 'only if tramadol fails'; assumption); false "
        "goes on to the remaining options (referral, P9)")
    reoffer_own_stop: bool = Field(
        True, description="P4.reoffer_own_stop: any other drug the patient stopped himself (not judged failed, not "
        "stopped for an adverse event) stays open once more: restarted first on a relapse when it had relieved him, "
        "otherwise offered after the untried alternatives of its step (it has not failed; assumption, as "
        "tramadol_reoffer); false closes it (v0.2)")
    restart_dose: Literal["retitrate", "relieving_dose"] = Field(
        "retitrate", description="P4.restart_dose: how a drug that relieved the patient is dosed when it is restarted "
        "after his own stop (P4.reoffer_own_stop, P7.tramadol_reoffer). The seeds are silent on it (assumption). "
        "'retitrate' (default): from its usual first dose (or, in a taper, the taper step he is on) by its usual "
        "schedule up to the dose that relieved him, not beyond until an evaluation there finds no relief; after a "
        "break tolerance to the start-up effects (dizziness, somnolence, nausea; respiratory depression for "
        "opioids) is lost, so the seeds' rule for any start applies (S000 'too rapid titration: start low and go slow, "
        "especially with gabapentin and TCAs'; S002 TCAs 'start with low doses and titrate slowly'). "
        "'relieving_dose': straight back at the dose that relieved him")
    cipn_exclusions: bool = Field(
        True, description="P11.cipn_no_efficacy: no tricyclic or gabapentinoid in chemotherapy-induced neuropathy (S000, S001)")
    order: list[str] = Field(
        default_factory=lambda: ["pregabalin", "duloxetine", "gabapentin", "nortriptyline", "venlafaxine"],
        description="P1.next_in_order: alternatives in order of preference; one tricyclic, the policy's `tca` "
        "(S000: secondary amines over tertiary; amitriptyline is nortriptyline's parent drug)")
    on_partial: Literal["add", "switch"] = Field("add", description="P4.partial_add / P4.partial_switch")
    max_first_line_regimens: int = Field(
        4, ge=1, le=8,
        description="P4: how many first-line regimens (starts of a gabapentinoid, SNRI or tricyclic; an add-on "
        "counts) are tried before the pathway moves on to tramadol (P7) or referral (P9). Assumption: the seeds "
        "say to try the first-line alternatives (S000, S002, S004) but give no number; 4 lets each first-line "
        "class of the default order be tried. The restart of a drug that relieved the patient before his own stop "
        "(P4.reoffer_own_stop) is not a new regimen: neither counted nor blocked")
    tramadol: Literal["second_line", "third_line", "never"] = Field("third_line", description="P7")
    strong_opioid: StrongOpioidGate = StrongOpioidGate()
    topicals: Literal["guideline", "first", "add_on", "never"] = Field("guideline", description="P6")
    topical_add: Literal["any_stage", "after_combination", "never"] = Field(
        "any_stage", description="P6.topical_add: for localized pain at any inadequate evaluation (S004) or after "
        "the combination (S002 step 3)")
    topical_drug: str = Field("per_patient", description="P6: 'per_patient' (lidocaine 5% with allodynia, "
                              "capsaicin 8% otherwise; S000) or one topical for everyone")
    topical_preferred: TopicalPreferred = TopicalPreferred()
    response: ResponseRule = ResponseRule()
    trial_days: TrialDays = TrialDays()
    visit_interval_days: int = Field(14, ge=1, le=180)
    titration_speed: float = Field(1.0, gt=0, le=10, description="multiplies titration intervals; >1 is slower")
    referral: Referral = Referral()
    target_doses: dict[str, Annotated[float, Field(gt=0, description="daily dose in the drug's unit")]] = Field(
        default_factory=dict,
        description="P2: titrate these drugs to this daily dose instead of the catalogue target (<= its maximum)")
    loss_to_follow_up_per_year: float | None = Field(None, ge=0, le=5)
    protocol: Protocol | None = Field(None, description="a fixed protocol replaces the guideline's choices")
    maintenance: Maintenance = Maintenance()
    usual_care: UsualCare = UsualCare()
    declared_departures: list[str] = []  # after usual_care: its validator reads the usual_care block

    @field_validator("declared_departures")
    @classmethod
    def _known_departures(cls, v: list[str], info: ValidationInfo) -> list[str]:
        for d in v:
            if d not in DEPARTURES:
                raise ValueError(f"unknown departure '{d}'; known: {', '.join(DEPARTURES)}")
        uc = info.data.get("usual_care")  # absent when the block itself failed validation
        for dep, why in uc.departures_needed() if uc is not None else ():
            if dep not in v:  # named as this field's error (policy.declared_departures), where the fix goes
                raise ValueError(f"usual_care: {why}, a departure this list does not declare; add '{dep}' to "
                                 "declared_departures to simulate it on purpose")
        return v

    @field_validator("order")
    @classmethod
    def _order_known(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("order is empty; list the first-line drugs in order of preference, e.g. [pregabalin, "
                             "duloxetine], or leave order out for the guideline default")
        if len(set(v)) != len(v):
            twice = next(n for n in v if v.count(n) > 1)
            raise ValueError(f"'{twice}' appears twice in order; list each drug once")
        cat = load_catalog()
        for name in v:
            if name not in cat.drugs:
                raise ValueError(f"unknown drug '{name}'; use drugs of the catalogue: {', '.join(cat.drugs)}")
            if cat.drugs[name].drug_class not in FIRST_LINE_CLASSES:
                raise ValueError(f"'{name}' is not a first-line drug; use only first-line drugs: "
                                 f"{', '.join(n for n, d in cat.drugs.items() if d.first_line)}")
        return v

    @field_validator("topical_drug")
    @classmethod
    def _topical_known(cls, v: str) -> str:
        cat = load_catalog()
        if v == "per_patient":
            return v
        if v not in cat.drugs or cat.drugs[v].drug_class != "topical":
            raise ValueError(f"'{v}' is not a topical of the catalogue; use one of: "
                             f"{', '.join(cat.of_class('topical'))}")
        return v

    @field_validator("on_intolerance")
    @classmethod
    def _intolerance_known(cls, v: dict[str, str]) -> dict[str, str]:
        cat = load_catalog()
        for a, b in v.items():
            for name in (a, b):
                if name not in cat.drugs or cat.drugs[name].drug_class not in FIRST_LINE_CLASSES:
                    raise ValueError(f"'{name}' is not a first-line drug of the catalogue; use first-line drugs: "
                                     f"{', '.join(n for n, d in cat.drugs.items() if d.first_line)}")
        return v

    @field_validator("target_doses", "start_doses")
    @classmethod
    def _doses_valid(cls, v: dict[str, float]) -> dict[str, float]:
        cat = load_catalog()
        for name, dose in v.items():
            if name not in cat.drugs:
                raise ValueError(f"unknown drug '{name}'; use drugs of the catalogue: {', '.join(cat.drugs)}")
            drug = cat.drugs[name]
            if dose <= 0:
                raise ValueError(f"{name}: {dose} is not a positive daily dose; use a dose above 0 {drug.unit}")
            if dose > drug.max_dose:
                raise ValueError(f"{name}: {dose:g} {drug.unit} is above its maximum of {drug.max_dose:g} {drug.unit}"
                                 f" (P2); use a dose of at most {drug.max_dose:g}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        cat = load_catalog()
        if self.strong_opioid.drug not in cat.drugs or cat.drugs[self.strong_opioid.drug].drug_class != "strong_opioid":
            raise ValueError(f"strong_opioid.drug '{self.strong_opioid.drug}' is not a strong opioid; use one of: "
                             f"{', '.join(cat.of_class('strong_opioid'))}")
        if self.titration_speed < 1.0 and "fast_titration" not in self.declared_departures:
            raise ValueError("titration_speed below 1 titrates faster than the schedule (P13); use 1 or more, "
                             "or declare 'fast_titration' in declared_departures to simulate it on purpose")
        if self.maintenance.opioid_visit_interval_days > self.strong_opioid.max_trial_days:
            raise ValueError(f"maintenance.opioid_visit_interval_days ({self.maintenance.opioid_visit_interval_days}) "
                             f"is longer than strong_opioid.max_trial_days ({self.strong_opioid.max_trial_days}): a "
                             "strong opioid would run beyond its trial period unassessed (P8.reassessment); use an "
                             "interval of at most the trial period")
        # Options that would do nothing are errors (compared with their defaults, so a dumped and
        # re-validated policy is judged the same as the one written).
        default = type(self).model_fields
        changed = {f for f in default if f != "name" and getattr(self, f) != default[f].get_default(call_default_factory=True)}
        if self.protocol is not None:
            idle = [f for f in ("first_line", "order", "on_partial", "max_first_line_regimens", "tramadol", "topicals")
                    if f in changed]
            if idle:
                raise ValueError(f"protocol replaces the guideline's choices, so {idle[0]} does nothing; remove "
                                 f"{idle[0]}, or remove the protocol")
        if self.topicals == "never" and "topical_drug" in changed:
            raise ValueError("topicals: never starts no topical, so topical_drug does nothing; remove topical_drug, "
                             "or choose another topicals mode")
        if self.topicals != "guideline" and "topical_preferred" in changed:
            raise ValueError(f"topical_preferred applies only with topicals: guideline (here {self.topicals}), so it "
                             "does nothing; remove topical_preferred, or use topicals: guideline")
        if not self.strong_opioid.allowed:
            gate = StrongOpioidGate(allowed=False)
            idle = [f for f in StrongOpioidGate.model_fields if getattr(self.strong_opioid, f) != getattr(gate, f)]
            if idle:
                raise ValueError(f"strong_opioid.allowed is false, so strong_opioid.{idle[0]} does nothing; remove "
                                 f"strong_opioid.{idle[0]}, or allow strong opioids")
        if self.response.partial_min_reduction > self.response.relief_min_reduction:
            raise ValueError("response.partial_min_reduction cannot exceed relief_min_reduction; use a value "
                             "at most relief_min_reduction")
        return self
