"""Policies: the clinician's choices the seeds leave open, as validated data, and the decisions they make.

A :class:`Policy` lives in a scenario's YAML under ``policy:``. Every field has the guideline default and
names the rule it parameterises. The decision functions at the bottom (:func:`first_choice`,
:func:`next_step`) turn a policy and a patient's history into the next pathway trigger, the drugs to
start and stop, and the rule id that justifies it. They never bypass the pathway's guards: the engine
fires the trigger through the compiled pathway, which refuses what the safety rules forbid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from .care import Maintenance, UsualCare
from .catalog import FIRST_LINE_CLASSES, load_catalog
from .schema import Strict

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
    "usual_care_index",  # the index drug drawn from usual care's observed mix, not P1 (simulator.care)
    "under_titration",  # drugs left below their recommended dose (P2, P13; simulator.care)
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


class Referral(Strict):
    """P9: when a patient is referred to the specialist service."""

    when_exhausted: bool = True
    after_failed_lines: int | None = Field(None, ge=1)
    pain_above: float | None = Field(None, ge=0, le=10)
    after_days: int | None = Field(None, ge=0)

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

    @model_validator(mode="after")
    def _dose(self) -> ProtocolStep:
        drug = load_catalog().drugs[self.drug]
        if isinstance(self.dose, float | int) and not 0 < self.dose <= drug.max_dose:
            raise ValueError(f"{self.drug}: dose {self.dose:g} {drug.unit} is outside (0, {drug.max_dose:g}] (P2); "
                             f"use a dose of at most {drug.max_dose:g}")
        return self


class Protocol(Strict):
    """A trial-style fixed sequence of drugs (no guideline choices in between); rule X.protocol_step."""

    steps: list[ProtocolStep] = Field(min_length=1, max_length=12)

    @model_validator(mode="after")
    def _thresholds(self) -> Protocol:
        for k, step in enumerate(self.steps[:-1]):
            if step.next_if_nrs_above is None:
                raise ValueError(f"step {k + 1} needs next_if_nrs_above (when to move to step {k + 2}); "
                                 "give an NRS threshold")
        return self


class TopicalPreferred(Strict):
    """P5 (S000, S001): topicals first for localized pain in older adults and in renal impairment.

    The thresholds are the conventional definitions: 65 years for an older adult (as the catalogue's
    older-adult adjustments) and creatinine clearance below 60 mL/min for renal impairment (CKD stage 3,
    calibration.md section 9)."""

    min_age: float = Field(65, ge=0, le=120)
    crcl_below: float = Field(60, ge=0, le=200)


class Policy(Strict):
    name: str = "guideline"
    first_line: FirstLine = Field("guideline", description="P1")
    order: list[str] = Field(
        default_factory=lambda: ["pregabalin", "duloxetine", "gabapentin", "nortriptyline", "venlafaxine",
                                 "amitriptyline"],
        description="P1.next_in_order: alternatives in order of preference")
    on_partial: Literal["add", "switch"] = Field("add", description="P4.partial_add / P4.partial_switch")
    max_first_line_regimens: int = Field(4, ge=1, le=8)
    tramadol: Literal["second_line", "third_line", "never"] = Field("third_line", description="P7")
    strong_opioid: StrongOpioidGate = StrongOpioidGate()
    topicals: Literal["guideline", "first", "add_on", "never"] = Field("guideline", description="P6")
    topical_drug: str = "lidocaine_5pct"
    topical_preferred: TopicalPreferred = TopicalPreferred()
    response: ResponseRule = ResponseRule()
    trial_days: TrialDays = TrialDays()
    visit_interval_days: int = Field(14, ge=1, le=180)
    titration_speed: float = Field(1.0, gt=0, le=10, description="multiplies titration intervals; >1 is slower")
    referral: Referral = Referral()
    target_doses: dict[str, float] = Field(
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
        if v not in cat.drugs or cat.drugs[v].drug_class != "topical":
            raise ValueError(f"'{v}' is not a topical of the catalogue; use one of: "
                             f"{', '.join(cat.of_class('topical'))}")
        return v

    @field_validator("target_doses")
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
    topical: int = -1
    tramadol: int = -1
    strong: int = -1
    by_name: dict[str, int] = field(default_factory=dict)
    target_doses: dict[int, float] = field(default_factory=dict)

    @classmethod
    def build(cls, policy: Policy, tables: ModelTables) -> PolicyContext:
        by_name = {d.name: d.index for d in tables.drugs}
        trial = {}
        for d in tables.drugs:
            override = getattr(policy.trial_days, d.drug_class)
            trial[d.name] = override if override is not None else d.adequate_trial_days
        tram = next(d.index for d in tables.drugs if d.drug_class == "weak_opioid")
        return cls(policy=policy, tables=tables, order=tuple(by_name[n] for n in policy.order),
                   trial_days=trial, topical=by_name[policy.topical_drug], tramadol=tram,
                   strong=by_name[policy.strong_opioid.drug], by_name=by_name,
                   target_doses={by_name[n]: v for n, v in policy.target_doses.items()})


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided: fire ``trigger``, stop and start drugs, cite ``rule``."""

    trigger: str
    start: tuple[int, ...] = ()
    stop_all: bool = False
    rule: str = ""
    eval_after: float = 0.0  # > 0: evaluate this many days after the decision (protocols), not after P3's trial
    target: float = 0.0  # > 0: titrate the started drug to this daily dose (protocols)


# ------------------------------------------------------------------------------------------------
# Decisions. ``p`` is the engine's patient model (simulator.patient.PatientModel).
# ------------------------------------------------------------------------------------------------

_STRATEGY_DRUG = {"pregabalin_first": ("pregabalin", "P1.pregabalin_first"),
                  "duloxetine_first": ("duloxetine", "P1.duloxetine_first"),
                  "gabapentin_first": ("gabapentin", "P1.gabapentin_cost"),
                  "tca_first": ("nortriptyline", "P1.tca_first")}
CIPN = (2, 3)  # etiology codes of chemotherapy-induced neuropathy
RADICULOPATHY = 4


def _preferred_first(p, ctx: PolicyContext) -> tuple[str, str]:
    """The drug the strategy prefers for this patient, before safety exclusions (P1, P11)."""
    strategy = ctx.policy.first_line
    if strategy in _STRATEGY_DRUG:
        return _STRATEGY_DRUG[strategy]
    if p.etiology in CIPN:
        return "duloxetine", "P1.duloxetine_cipn"
    if strategy == "comorbidity_guided":
        if "cardiovascular_disease" in p.facts.flags:
            return "duloxetine", "P5.cardiac_prefer_duloxetine"
        if "depression" in p.facts.flags or p.etiology == RADICULOPATHY:
            return "duloxetine", "P1.comorbidity_choice"
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
    """The first oral first-line drug for the patient, with its rule, or None if none is eligible."""
    name, rule = _preferred_first(p, ctx)
    idx = ctx.by_name[name]
    if idx in p.eligible and idx not in p.tried:
        return idx, rule
    for j in p.eligible:
        if j not in p.tried and ctx.tables.drugs[j].drug_class not in p.failed_classes:
            return j, "P1.next_in_order"
    return None


def pick_add(p, ctx: PolicyContext) -> int | None:
    """A second first-line drug of another class to add (P4: different mechanisms)."""
    active_classes = {ctx.tables.drugs[d].drug_class for d in p.active}
    for j in p.eligible:
        c = ctx.tables.drugs[j].drug_class
        if j not in p.tried and c not in active_classes and c not in p.failed_classes:
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
        return Decision("start_topical", (ctx.topical,), rule=rule)
    first = first_oral(p, ctx)
    if first is not None:
        return Decision("start_first_line", (first[0],), rule=first[1])
    if p.facts.localized and p.topical_allowed():
        return Decision("start_topical", (ctx.topical,), rule="P6.topical_localized")
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


def next_step(p, ctx: PolicyContext, outcome: str, day: float, pain: float) -> Decision:
    """The decision after an evaluation (or an intolerable adverse event) in a treating state."""
    if outcome == "relief":
        return Decision("relief", rule="P4.relief")
    if ctx.policy.protocol is not None:
        return _protocol_next(p, ctx, outcome, pain)
    pol = ctx.policy
    state = p.state
    if state == "strong_opioid":
        return Decision("refer", stop_all=True, rule="P8.stop_ineffective")
    if referral_due(p, ctx, day, pain) and p.referral_allowed():
        return Decision("refer", stop_all=True, rule="P9.referral_criteria")
    if state == "tramadol":
        if p.strong_opioid_gate():
            return Decision("escalate_strong_opioid", (ctx.strong,), stop_all=True, rule="P8.prerequisites")
        return Decision("refer", stop_all=True, rule="P9.refractory_referral")
    if state == "topical":
        first = first_oral(p, ctx)
        if first is not None:
            keep = outcome == "partial"
            return Decision("start_first_line", (first[0],), stop_all=not keep,
                            rule="P6.topical_add" if keep else first[1])
    if state in ("first_line", "switch") and p.can_add_on():
        if outcome == "partial" and pol.on_partial == "add":
            if pol.topicals == "add_on" and p.facts.localized and ctx.topical not in p.tried and p.topical_allowed():
                return Decision("add_on", (ctx.topical,), rule="P6.topical_add")
            add = pick_add(p, ctx)
            if add is not None:
                return Decision("add_on", (add,), rule="P4.partial_add")
        if outcome == "none" and p.etiology == RADICULOPATHY and pol.on_partial == "add":
            add = pick_add(p, ctx)
            if add is not None:
                return Decision("add_on", (add,), rule="P11.radiculopathy_combination")
    if pol.tramadol == "second_line" and p.tramadol_allowed():
        return Decision("escalate_tramadol", (ctx.tramadol,), stop_all=True, rule="P7.tramadol_after_first_line")
    if p.has_untried_first_line():
        nxt = pick_switch(p, ctx)
        if nxt is not None:
            return Decision("switch", (nxt,), stop_all=True, rule=_switch_rule(outcome, state))
    if p.tramadol_allowed():
        return Decision("escalate_tramadol", (ctx.tramadol,), stop_all=True, rule="P7.tramadol_after_first_line")
    if p.strong_opioid_gate():
        return Decision("escalate_strong_opioid", (ctx.strong,), stop_all=True, rule="P8.prerequisites")
    if pol.referral.when_exhausted:
        return Decision("refer", stop_all=True, rule="P9.refractory_referral")
    return Decision("stay", stop_all=True, rule="P9.refractory_referral")


# ---- protocols (trial-style fixed sequences; X.protocol_step) ------------------------------------
_TRIGGER_BY_CLASS = {"gabapentinoid": "start_first_line", "snri": "start_first_line", "tca": "start_first_line",
                     "topical": "start_topical", "weak_opioid": "escalate_tramadol",
                     "strong_opioid": "escalate_strong_opioid"}


def _protocol_start(p, ctx: PolicyContext, k: int, how: str) -> Decision:
    """Start step ``k``'s drug: at the first visit (``start``), added to the regimen, or switched to."""
    steps = ctx.policy.protocol.steps
    step = steps[k]
    p.protocol_step = k
    j = ctx.by_name[step.drug]
    drug = ctx.tables.drugs[j]
    if how == "add":
        trigger = "add_on"
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
