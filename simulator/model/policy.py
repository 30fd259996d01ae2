"""Policies: the clinician's choices the seeds leave open, as validated data, and the decisions they make.

A :class:`Policy` lives in a scenario's YAML under ``policy:``. Every field has the guideline default and
names the rule it parameterises. The decision functions at the bottom (:func:`first_choice`,
:func:`next_step`) turn a policy and a patient's history into the next pathway trigger, the drugs to
start and stop, and the rule id that justifies it. They never bypass the pathway's guards: the engine
fires the trigger through the compiled pathway, which refuses what the safety rules forbid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..inputs.schema import Strict
from .care import Maintenance, UsualCare
from .catalog import FIRST_LINE_CLASSES, load_catalog

if TYPE_CHECKING:  # pragma: no cover
    from .clinical import ModelTables

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

    @model_validator(mode="after")
    def _pair(self) -> Referral:
        if (self.pain_above is None) != (self.after_days is None):
            raise ValueError("pain_above and after_days go together: give both or neither")
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
    cipn_exclusions: bool = Field(
        True, description="P11.cipn_no_efficacy: no tricyclic or gabapentinoid in chemotherapy-induced neuropathy (S000, S001)")
    order: list[str] = Field(
        default_factory=lambda: ["pregabalin", "duloxetine", "gabapentin", "nortriptyline", "venlafaxine"],
        description="P1.next_in_order: alternatives in order of preference; one tricyclic, the policy's `tca` "
        "(S000: secondary amines over tertiary; amitriptyline is nortriptyline's parent drug)")
    on_partial: Literal["add", "switch"] = Field("add", description="P4.partial_add / P4.partial_switch")
    max_first_line_regimens: int = Field(4, ge=1, le=8)
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
    declared_departures: list[str] = []
    protocol: Protocol | None = Field(None, description="a fixed protocol replaces the guideline's choices")
    maintenance: Maintenance = Maintenance()
    usual_care: UsualCare = UsualCare()

    @field_validator("declared_departures")
    @classmethod
    def _known_departures(cls, v: list[str]) -> list[str]:
        for d in v:
            if d not in DEPARTURES:
                raise ValueError(f"unknown departure '{d}'; known: {', '.join(DEPARTURES)}")
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
        for dep, why in self.usual_care.departures_needed():
            if dep not in self.declared_departures:
                raise ValueError(f"usual_care: {why}; declare '{dep}' in declared_departures to simulate it on purpose")
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


# ------------------------------------------------------------------------------------------------
# Compiled policy: plain values the engine and guards read.
# ------------------------------------------------------------------------------------------------


@dataclass
class PolicyContext:
    """The policy, compiled against the model tables, as plain attributes."""

    policy: Policy
    tables: ModelTables
    order: tuple[int, ...] = ()
    trial_days: dict[str, int] = field(default_factory=dict)
    topical: int = -1  # the one topical of the policy; -1 with topical_drug: per_patient
    lidocaine: int = -1
    capsaicin: int = -1
    tramadol: int = -1
    strong: int = -1
    by_name: dict[str, int] = field(default_factory=dict)
    target_doses: dict[int, float] = field(default_factory=dict)
    start_doses: dict[int, float] = field(default_factory=dict)
    on_intolerance: dict[int, int] = field(default_factory=dict)
    renal_threshold: float = 0.0  # CrCl below which some drug is not given at all (renal cap 0)
    eligibility: dict[tuple, tuple] = field(default_factory=dict)  # per-patient eligibility cache (patient.py)

    @classmethod
    def build(cls, policy: Policy, tables: ModelTables) -> PolicyContext:
        by_name = {d.name: d.index for d in tables.drugs}
        trial = {}
        for d in tables.drugs:
            override = getattr(policy.trial_days, d.drug_class)
            trial[d.name] = override if override is not None else d.adequate_trial_days
        tram = next(d.index for d in tables.drugs if d.drug_class == "weak_opioid")
        names = list(policy.order)
        if policy.tca == "amitriptyline":  # P1.amitriptyline_tca: the policy's tricyclic takes the TCA's place
            names = ["amitriptyline" if n == "nortriptyline" else n for n in policy.order]
        order = tuple(by_name[n] for n in dict.fromkeys(names))
        return cls(policy=policy, tables=tables, order=order, trial_days=trial,
                   topical=by_name[policy.topical_drug] if policy.topical_drug != "per_patient" else -1,
                   lidocaine=by_name["lidocaine_5pct"], capsaicin=by_name["capsaicin_8pct"], tramadol=tram,
                   strong=by_name[policy.strong_opioid.drug], by_name=by_name,
                   target_doses={by_name[n]: v for n, v in policy.target_doses.items()},
                   start_doses={by_name[n]: v for n, v in policy.start_doses.items()},
                   on_intolerance={by_name[a]: by_name[b] for a, b in policy.on_intolerance.items()},
                   renal_threshold=max((b for d in tables.drugs for b, cap in d.renal_caps if cap <= 0), default=0.0))


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided: fire ``trigger``, stop and start drugs, cite ``rule``.

    Triggers are the pathway's, plus ``optimise`` (raise the newest drug's dose, P3.dose_optimisation),
    ``continue`` (a protocol keeps the regimen) and ``stay`` (nothing more is done)."""

    trigger: str
    start: tuple[int, ...] = ()
    stop_all: bool = False
    rule: str = ""
    eval_after: float = 0.0  # > 0: evaluate this many days after the decision (protocols), not after P3's trial
    target: float = 0.0  # > 0: titrate the started drug to this daily dose (protocols)
    keep: tuple[str, ...] = ()  # drug classes that keep running through stop_all
    notes: tuple[tuple[int, str], ...] = ()  # (drug, rule): 'excluded' rows logged with the decision
    fails_class: bool = True  # the stopped drugs' classes count as failed (not offered again) after no relief
    adjust: tuple[tuple[int, float], ...] = ()  # running drugs re-dosed: (drug, new daily dose; 0 stops it) (tutor)
    departure: str = ""  # a declared departure (DEPARTURES): the pathway's guard or a named check is bypassed (tutor)
    also: tuple[int, ...] = ()  # topicals added alongside this step at the same visit (P6.topical_add, S004)
    stop_rule: str = ""  # the rule the stops of ``stop_all`` cite when it is not ``rule`` (the start's)


# ------------------------------------------------------------------------------------------------
# Decisions. ``p`` is the engine's patient model (simulator.model.patient.PatientModel).
# ------------------------------------------------------------------------------------------------

_STRATEGY_DRUG = {"pregabalin_first": ("pregabalin", "P1.pregabalin_first"),
                  "duloxetine_first": ("duloxetine", "P1.duloxetine_first"),
                  "gabapentin_first": ("gabapentin", "P1.gabapentin_cost"),
                  "tca_first": ("nortriptyline", "P1.tca_first")}
CIPN = (2, 3)  # etiology codes of chemotherapy-induced neuropathy
RADICULOPATHY = 4
HIV = 5
ANTIDEPRESSANTS = ("snri", "tca")
RENAL_IMPAIRED_CRCL = 60.0  # CKD stage 3 (calibration.md 9), as TopicalPreferred.crcl_below


def _preferred_first(p, ctx: PolicyContext) -> tuple[str, str]:
    """The drug the strategy prefers for this patient, before safety exclusions (P1, P11).

    ``comorbidity_guided`` (S004: "choose based on comorbidities, age, pain location"; the mapping is a named
    assumption, rule P1.comorbidity_choice): cardiovascular disease -> duloxetine (S000); depression,
    radiculopathy or renal impairment -> duloxetine (an antidepressant without renal dose reduction), or
    the policy's tricyclic for depression when duloxetine is excluded; otherwise pregabalin."""
    strategy = ctx.policy.first_line
    if strategy == "tca_first":
        tca = ctx.policy.tca
        return tca, "P1.amitriptyline_tca" if tca == "amitriptyline" else "P1.tca_first"
    if strategy in _STRATEGY_DRUG:
        return _STRATEGY_DRUG[strategy]
    if p.etiology in CIPN:
        return "duloxetine", "P1.duloxetine_cipn"
    if strategy == "comorbidity_guided":
        flags = p.facts.flags
        if "cardiovascular_disease" in flags:
            return "duloxetine", "P5.cardiac_prefer_duloxetine"
        if "depression" in flags or p.etiology == RADICULOPATHY or p.facts.crcl < RENAL_IMPAIRED_CRCL:
            if ctx.by_name["duloxetine"] in p.eligible or "depression" not in flags:
                return "duloxetine", "P1.comorbidity_choice"
            return ctx.policy.tca, "P1.comorbidity_choice"
        return "pregabalin", "P1.comorbidity_choice"
    return "pregabalin", "P1.pregabalin_first"


def _topical_first(p, ctx: PolicyContext) -> str | None:
    """Rule id when this patient should start with a topical (P5, P6), else None."""
    mode = ctx.policy.topicals
    if mode in ("never", "add_on") or not p.facts.localized or not p.topical_allowed():
        return None
    if mode == "first":
        return "P6.topical_localized"
    pref = ctx.policy.topical_preferred
    if p.facts.crcl < pref.crcl_below:
        return "P5.renal_topical"
    if p.facts.age >= pref.min_age:
        return "P5.older_topical"
    return None


def first_oral(p, ctx: PolicyContext) -> tuple[int, str] | None:
    """The first oral first-line drug for the patient, with its rule, or None if none is eligible.

    A tricyclic the patient should only get as a last resort (cardiovascular disease, glaucoma,
    orthostatic hypotension; P5) is replaced by the first other eligible drug (duloxetine under CVD)."""
    name, rule = _preferred_first(p, ctx)
    idx = ctx.by_name[name]
    if idx in p.last_resort:
        dul = ctx.by_name["duloxetine"]
        if p.last_resort[idx] == "P5.cardiac_prefer_duloxetine" and dul in p.eligible and dul not in p.tried:
            return dul, "P5.cardiac_prefer_duloxetine"
        for j in p.eligible:
            if j not in p.tried and j not in p.last_resort:
                return j, p.last_resort[idx]
    if idx in p.eligible and idx not in p.tried:
        return idx, rule
    for j in p.eligible:
        if j not in p.tried and ctx.tables.drugs[j].drug_class not in p.failed_classes:
            return j, "P1.next_in_order"
    return None


def serotonin_blocked(p, ctx: PolicyContext, j: int, running: bool = True) -> bool:
    """Policy ``serotonin: avoid``: a serotonergic drug is not combined with an SSRI or another one (P5)."""
    if ctx.policy.serotonin != "avoid" or not ctx.tables.drugs[j].serotonergic:
        return False
    if "ssri_use" in p.facts.flags:
        return True
    drugs = ctx.tables.drugs
    return running and any(drugs[d].serotonergic for d in p.active)


def pick_add(p, ctx: PolicyContext) -> int | None:
    """A first-line drug to add (P4): a gabapentinoid to an antidepressant or an antidepressant to a
    gabapentinoid (S000, S002: different mechanisms), of a class that has not failed."""
    drugs = ctx.tables.drugs
    active_classes = {drugs[d].drug_class for d in p.active}
    want = ANTIDEPRESSANTS if "gabapentinoid" in active_classes else ("gabapentinoid",)
    for j in p.eligible:
        c = drugs[j].drug_class
        if j not in p.tried and c in want and c not in p.failed_classes and not serotonin_blocked(p, ctx, j):
            return j
    return None


def pick_switch(p, ctx: PolicyContext) -> int | None:
    """An untried first-line drug of a class that has not failed (P4: alternative class)."""
    active_classes = {ctx.tables.drugs[d].drug_class for d in p.active}
    for j in p.eligible:
        c = ctx.tables.drugs[j].drug_class
        if j not in p.tried and c not in p.failed_classes and c not in active_classes:
            return j
    return None


def first_choice(p, ctx: PolicyContext) -> Decision:
    """The decision at the assessment visit (P1, P5, P6)."""
    if ctx.policy.protocol is not None:
        return _protocol_start(p, ctx, 0, "start")
    rule = _topical_first(p, ctx)
    if rule is not None:
        return Decision("start_topical", (p.topical,), rule=rule)
    first = first_oral(p, ctx)
    if first is not None:
        return Decision("start_first_line", (first[0],), rule=first[1])
    if p.facts.localized and p.topical_allowed():
        return Decision("start_topical", (p.topical,), rule="P6.topical_localized")
    return Decision("refer", rule="P9.refractory_referral")


def _switch_rule(outcome: str, state: str) -> str:
    if state == "add_on":
        return "P4.combination_failed"
    return {"intolerable": "P4.intolerance_switch", "partial": "P4.partial_switch"}.get(
        outcome, "P4.no_response_switch")


def referral_due(p, ctx: PolicyContext, day: float, pain: float) -> bool:
    """Policy referral criteria (P9.referral_criteria): after N failed lines, or pain above X after Y days."""
    r = ctx.policy.referral
    if r.after_failed_lines is not None and p.n_failed >= r.after_failed_lines:
        return True
    return r.pain_above is not None and day >= r.after_days and pain > r.pain_above


def _topical_add_due(p, ctx: PolicyContext, state: str) -> bool:
    """P6.topical_add: a topical may be added to the oral regimen for localized pain (S004 any stage; S002 step 3)."""
    mode = ctx.policy.topical_add
    if mode == "never" or not p.topical_addable():
        return False
    if mode == "after_combination":
        return state == "add_on"
    return state in ("first_line", "switch", "add_on", "tramadol", "strong_opioid")


def _tramadol(p, ctx: PolicyContext, rule: str) -> Decision:
    """P7: tramadol added to the regimen (policy tramadol_mode: add, S002) or replacing it."""
    if ctx.policy.tramadol_mode == "add" and p.active:
        return Decision("escalate_tramadol", (ctx.tramadol,), rule="P7.tramadol_add")
    return Decision("escalate_tramadol", (ctx.tramadol,), stop_all=True, rule=rule)


def _strong(p, ctx: PolicyContext) -> Decision:
    keep = ("gabapentinoid", "topical") if ctx.policy.strong_opioid.keep_gabapentinoid else ("topical",)
    return Decision("escalate_strong_opioid", (ctx.strong,), stop_all=True, keep=keep, rule="P8.prerequisites")


def _exhausted(p, ctx: PolicyContext, notes: tuple[tuple[int, str], ...]) -> Decision:
    if p.consulted:  # seen by the specialist, nothing left: back to primary care on the current regimen
        return Decision("discharge", rule="P9.discharge_plan", notes=notes)
    if ctx.policy.referral.when_exhausted:
        return Decision("refer", stop_all=True, rule="P9.refractory_referral", notes=notes)
    return Decision("stay", stop_all=True, rule="P9.refractory_referral", notes=notes)


def next_step(p, ctx: PolicyContext, outcome: str, day: float, pain: float) -> Decision:
    """The decision after an evaluation (or an intolerable adverse event) in a treating state."""
    protocol = ctx.policy.protocol
    if protocol is not None and (outcome != "relief" or p.protocol_step + 1 < len(protocol.steps)):
        return _protocol_next(p, ctx, outcome, pain)  # the protocol's rules govern until its last step
    if outcome == "relief":
        return Decision("relief", rule="P4.relief")
    pol = ctx.policy
    state = p.state
    inadequate = outcome in ("partial", "none")
    if state == "strong_opioid":  # not tolerated: the opioid has stopped for it; refer as refractory (P9)
        return Decision("refer", stop_all=True,
                        rule="P9.refractory_referral" if outcome == "intolerable" else "P8.stop_ineffective")
    if referral_due(p, ctx, day, pain) and p.referral_allowed():
        return Decision("refer", stop_all=True, rule="P9.referral_criteria")
    add_possible = state in ("first_line", "switch") and p.can_add_on()
    oral = _oral_step(p, ctx, outcome, state, inadequate, add_possible)
    if inadequate and _topical_add_due(p, ctx, state):
        if pol.topical_add == "after_combination":  # S002 step 3: the topical is the step after the combination
            return Decision("add_topical", (p.topical,), rule="P6.topical_add")
        # S004 "for localized pain at any stage: add topical": alongside the oral step the algorithm calls for
        # at this visit (optimise, add, switch, escalate), never in its place; with no such step left
        # (refer, stay), the topical is the step.
        if oral.trigger in WITH_TOPICAL:
            return replace(oral, also=(p.topical,))
        return Decision("add_topical", (p.topical,), rule="P6.topical_add")
    return oral


# Steps a topical may accompany at the same visit (P6.topical_add): the oral or opioid step goes on.
WITH_TOPICAL: tuple[str, ...] = ("optimise", "add_on", "switch", "start_first_line", "escalate_tramadol",
                                 "escalate_strong_opioid")


def _oral_step(p, ctx: PolicyContext, outcome: str, state: str, inadequate: bool, add_possible: bool) -> Decision:
    """The decision after an inadequate or intolerable evaluation, topicals at any stage aside (P3, P4, P7-P9)."""
    pol = ctx.policy
    # P3: ensure the dose is optimised before judging failure (S000, S001, S002, S004).
    if inadequate and p.optimisable and state in ("first_line", "switch", "tramadol"):
        mode = pol.dose_optimisation
        adding = add_possible and pol.on_partial == "add" and (
            outcome == "partial" or pol.on_no_response == "add" or p.etiology == RADICULOPATHY)
        if mode == "to_maximum" and not (p.etiology == RADICULOPATHY and adding):  # P11: combination earlier
            return Decision("optimise", rule="P3.dose_optimisation")
        if mode == "before_switch" and not adding:
            return Decision("optimise", rule="P3.dose_optimisation")
    # P4: an add-on that was not tolerated stopped alone; the base continues and another add may follow.
    if outcome == "intolerable" and state == "add_on" and p.active and p.can_add_on():
        add = pick_add(p, ctx)
        if add is not None:
            return Decision("add_on", (add,), rule="P4.addon_replaced")
    if state == "tramadol":
        if p.strong_opioid_gate():
            return _strong(p, ctx)
        return _exhausted(p, ctx, p.strong_opioid_notes())
    if state == "topical":
        first = first_oral(p, ctx)
        if first is not None:
            keep = outcome == "partial"
            return Decision("start_first_line", (first[0],), stop_all=not keep,
                            rule="P6.oral_after_topical" if keep else first[1],
                            stop_rule="" if keep else "P6.topical_stop")
    if add_possible:
        if outcome == "partial" and pol.on_partial == "add":
            if pol.topicals == "add_on" and p.topical_addable():
                return Decision("add_topical", (p.topical,), rule="P6.topical_add")
            add = pick_add(p, ctx)
            if add is not None:
                return Decision("add_on", (add,), rule="P4.partial_add")
        if outcome == "none" and pol.on_no_response == "add":
            add = pick_add(p, ctx)
            if add is not None:
                return Decision("add_on", (add,), rule="P4.add_after_no_response")
        if outcome == "none" and p.etiology == RADICULOPATHY and pol.on_partial == "add":
            add = pick_add(p, ctx)
            if add is not None:
                return Decision("add_on", (add,), rule="P11.radiculopathy_combination")
    if outcome == "intolerable" and p.intolerant in ctx.on_intolerance and p.has_untried_first_line():
        alt = ctx.on_intolerance[p.intolerant]
        if alt in p.eligible and alt not in p.tried and not serotonin_blocked(p, ctx, alt, running=False):
            return Decision("switch", (alt,), stop_all=True, rule="P4.intolerance_same_class")
    escalate = state == "add_on" and pol.after_combination == "escalate"
    if pol.tramadol == "second_line" and p.n_first_line >= 2 and p.tramadol_allowed():
        return _tramadol(p, ctx, "P7.tramadol_second_line")
    if not escalate and p.has_untried_first_line():
        venla = ctx.by_name["venlafaxine"]
        if p.etiology in CIPN and venla in p.eligible and venla not in p.tried:  # S002: venlafaxine next in CIPN
            return Decision("switch", (venla,), stop_all=True, rule="P11.cipn_venlafaxine", fails_class=False)
        nxt = pick_switch(p, ctx)
        if nxt is not None:
            return Decision("switch", (nxt,), stop_all=True, rule=_switch_rule(outcome, state))
    if p.tramadol_allowed():
        return _tramadol(p, ctx, "P7.tramadol_after_first_line")
    if p.strong_opioid_gate():
        return _strong(p, ctx)
    return _exhausted(p, ctx, p.strong_opioid_notes())


# ---- protocols (trial-style fixed sequences; X.protocol_step) ------------------------------------
_TRIGGER_BY_CLASS = {"gabapentinoid": "start_first_line", "snri": "start_first_line", "tca": "start_first_line",
                     "topical": "start_topical", "weak_opioid": "escalate_tramadol",
                     "strong_opioid": "escalate_strong_opioid"}
_ADD_TRIGGER = {"topical": "add_topical", "weak_opioid": "escalate_tramadol",
                "strong_opioid": "escalate_strong_opioid"}


def _protocol_start(p, ctx: PolicyContext, k: int, how: str) -> Decision:
    """Start step ``k``'s drug: at the first visit (``start``), added to the regimen, or switched to.

    Opioids go through their own triggers whatever the protocol says, so P7 and the P8 gate apply
    (a strong opioid before the prerequisites needs the declared departure ``early_strong_opioid``)."""
    steps = ctx.policy.protocol.steps
    step = steps[k]
    p.protocol_step = k
    j = ctx.by_name[step.drug]
    drug = ctx.tables.drugs[j]
    if how == "add":
        trigger = _ADD_TRIGGER.get(drug.drug_class, "add_on")
    elif how == "switch":
        trigger = "switch" if drug.drug_class in FIRST_LINE_CLASSES else _TRIGGER_BY_CLASS[drug.drug_class]
    else:
        trigger = _TRIGGER_BY_CLASS[drug.drug_class]
    if step.dose == "max_tolerated":
        target = drug.max_dose
    elif step.dose == "target":
        target = 0.0
    else:
        target = float(step.dose)
    return Decision(trigger, (j,), stop_all=how == "switch", rule="X.protocol_step", eval_after=7.0 * step.weeks,
                    target=target)


def _protocol_next(p, ctx: PolicyContext, outcome: str, pain: float) -> Decision:
    """End of a protocol step: move to the next step when NRS is above the threshold, else continue."""
    steps = ctx.policy.protocol.steps
    k = p.protocol_step
    if k + 1 >= len(steps):
        return Decision("stay", rule="X.protocol_step")
    step = steps[k]
    if outcome == "intolerable":
        return _protocol_start(p, ctx, k + 1, "switch")
    if pain > step.next_if_nrs_above:
        return _protocol_start(p, ctx, k + 1, step.action)
    p.protocol_step = k + 1
    return Decision("continue", rule="X.protocol_step", eval_after=7.0 * steps[k + 1].weeks)
