"""The policy compiled for the engine, and the record of a decision.

Owns :class:`PolicyContext` (a :class:`~simulator.model.policy.Policy` compiled against the model tables into
plain attributes the engine, the guards and the decisions read) and :class:`Decision` (what a decision
fires, starts, stops and cites). The decisions themselves are in :mod:`simulator.model.decisions` and
:mod:`simulator.model.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from .policy import Policy

if TYPE_CHECKING:  # pragma: no cover
    from .clinical_tables import ModelTables


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


# A run makes the same few decisions again and again, and building a frozen dataclass costs ~3 us: each distinct
# decision is built once and shared (a cache hit costs ~0.4 us; a Decision is immutable, so sharing is safe).
@lru_cache(maxsize=4096, typed=True)  # typed: stop_all=1 is not stop_all=True
def decision(*args, **kwargs) -> Decision:
    """``Decision(*args, **kwargs)``, built once per distinct value (arguments must be hashable: tuples)."""
    return Decision(*args, **kwargs)


@lru_cache(maxsize=4096, typed=True)  # typed: stop_all=1 is not stop_all=True
def revised(d: Decision, **changes) -> Decision:
    """``dataclasses.replace(d, **changes)``, built once per distinct value (see :func:`decision`)."""
    return replace(d, **changes)
