"""One patient simulated alone, as the trace and the tutor need it: who (:class:`Setup`), with which draws
(:func:`setup_from_scenario`, :func:`setup_from_cohort`, :func:`setup_from_case`), the event log of the run
(:func:`simulate`) and the profile a reader sees (:func:`profile`).

How a single patient is simulated (:func:`setup_from_scenario`): the replication is built as ``painpath run``
builds it (the model with the scenario's ``clinical_overrides``, the full-size cohort
``generate_cohort(spec, n, seed, replication)``, an open population's entry days, the clinic's settings) and the
engine runs with ``only=[K]``; K must be one of the run's patients. Every random stream is keyed by (seed, replication, purpose) and read by patient row,
so patient K gets exactly the draws it gets in a full run of the cohort: same profile, same drug
responses, same adverse events, same drop-out. The one thing that differs is the pain clinic's queue
(P9): the queue is shared by the whole cohort, so a wait depends on every patient's demand against the
clinic's capacity; alone in the simulation, the patient never waits behind other referrals. Simulating the
whole cohort to extract one patient would give the queue too but costs the whole cohort's run (seconds
instead of milliseconds, and the tutor re-simulates at every answer); the caveat is printed instead
(:data:`QUEUE_CAVEAT`, and the words of the consult step, :data:`simulator.teaching.words.WAIT_ALONE`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..analysis.outcomes import events_frame
from ..engine.simulation import EngineConfig, Simulation
from ..inputs.errors import InputError
from ..model.policy_context import PolicyContext
from ..population.cohort import Cohort, generate_cohort
from ..population.cohort_spec import ETIOLOGIES, MISUSE_RISK_LEVELS
from .cases import Case
from .words import FLAG_WORDS

QUEUE_CAVEAT = ("This patient was simulated alone with the draws it has in the full cohort: the journey is the one "
                "it has in a run of the cohort up to a referral to the pain clinic (P9). The clinic's queue is "
                "shared by the whole cohort, so a specialist wait depends on the whole simulated cohort's demand "
                "against the clinic's capacity; here the patient queues behind no one, so a wait shown in this trace "
                "is not representative of the waits in a run (nor is what happens during them: reviews, relief "
                "while waiting, drop-out). Read the waits of a run in its report.")
CASE_NOTE = ("A curated teaching case, simulated alone: it queues behind no one for the pain clinic (P9), so a "
             "specialist wait here is not representative (a real wait depends on the demand of all patients "
             "against the clinic's capacity).")
NOT_CLINICAL = "Teaching material from a simulation; not clinical advice and not for treating patients."


@dataclass
class Setup:
    """Everything needed to simulate one patient."""

    ctx: PolicyContext
    cohort: Cohort
    config: EngineConfig
    index: int
    replication: int
    label: str
    caveat: str
    case: Case | None = None


def setup_from_scenario(scenario: Any, patient: int, seed: int | None = None, replication: int = 0,
                        patients: int | None = None, replications: int | None = None) -> Setup:
    """Patient ``patient`` of replication ``replication`` of a run of the scenario (seed, ``patients`` per
    replication and ``replications`` as in ``painpath run``: the scenario's unless given).

    Raises InputError on a negative index or replication, and on one outside the run: a patient at or beyond
    the run's patients per replication (an open population's: the patients its replication brings in), a
    replication at or beyond its replications. Keyed draws would make such a patient well defined, but he is
    not one of the run, so a trace would tell a journey no run of the scenario contains."""
    from ..analysis.open_population import replication_setup
    from ..model.overrides import model_tables

    if patient < 0:
        raise InputError(f"the patient index must be 0 or more (got {patient})", field="--patient",
                         fix="give a patient index such as 0, 1, 2 ...")
    if replication < 0:
        raise InputError(f"the replication must be 0 or more (got {replication})", field="--replication",
                         fix="use a whole number >= 0")
    given = {k: v for k, v in (("seed", seed), ("patients", patients), ("replications", replications)) if v is not None}
    sc = scenario.with_overrides(**given) if given else scenario
    if replication >= sc.replications:
        raise InputError(f"replication {replication} is not one of the run's: scenario '{sc.name}' runs "
                         f"{sc.replications} replication(s), numbered 0 to {sc.replications - 1}",
                         field="--replication",
                         fix=f"use --replication 0 to {sc.replications - 1}, or add --replications "
                             f"{replication + 1} (or more) to trace a patient of a run with that many replications")
    # As painpath run builds the replication (simulator.analysis.runner._replication): the model with the scenario's
    # clinical_overrides, the replication's patients (an open population's: those it brings in, each entering on
    # his own day) and the clinic's settings.
    tables = model_tables(sc.clinical_overrides)
    n, entry, clinic = replication_setup(sc, replication, tables.specialist["consult_days"])
    if patient >= n and sc.population is not None:
        raise InputError(f"patient {patient} is not one of the run's: the open population of scenario "
                         f"'{sc.name}' brings {n:,} patients into replication {replication} (seed {sc.seed}), "
                         f"numbered 0 to {n - 1}", field="--patient", fix=f"give a patient index from 0 to {n - 1}")
    if patient >= n:
        raise InputError(f"patient {patient} is not one of the run's: scenario '{sc.name}' simulates "
                         f"{n:,} patients per replication, numbered 0 to {n - 1}", field="--patient",
                         fix=f"give a patient index from 0 to {n - 1}, or add --patients {patient + 1} "
                             "(or more) to trace a patient of a run of that many patients")
    cohort = generate_cohort(sc.cohort_spec, n, sc.seed, replication=replication)
    ctx = PolicyContext.build(sc.policy, tables)
    config = EngineConfig(horizon_days=float(sc.horizon_days), specialist_slots_per_week=clinic.consults_per_week,
                          seed=sc.seed, clinic=clinic, entry_days=entry)
    entered = "" if entry is None else f" (enters on day {float(entry[patient]):.1f} of the run)"
    return Setup(ctx, cohort, config, patient, replication,
                 f"{sc.name}: patient {patient}{entered}, seed {sc.seed}, replication {replication}", QUEUE_CAVEAT)


def setup_from_cohort(cohort_file: str, patient: int, seed: int, replication: int = 0) -> Setup:
    """A patient of a cohort file under the guideline policy (tutor ``--cohort``)."""
    from ..model.clinical_tables import compile_model
    from ..model.policy import Policy
    from ..population.cohort_spec import load_cohort_spec
    from ..scenario import MAX_PATIENTS

    if patient < 0:
        raise InputError(f"the patient index must be 0 or more (got {patient})", field="--patient",
                         fix="give a patient index such as 0, 1, 2 ...")
    if patient >= MAX_PATIENTS:  # his draws need the cohort up to him: no more patients than a run holds
        raise InputError(f"patient {patient} is beyond the {MAX_PATIENTS:,} patients a cohort of a run holds",
                         field="--patient", fix=f"give a patient index from 0 to {MAX_PATIENTS - 1}")
    spec = load_cohort_spec(cohort_file)
    cohort = generate_cohort(spec, patient + 1, seed, replication=replication)
    ctx = PolicyContext.build(Policy(), compile_model())
    config = EngineConfig(horizon_days=730.0, specialist_slots_per_week=1, seed=seed)
    return Setup(ctx, cohort, config, patient, replication,
                 f"{spec.name}: patient {patient}, seed {seed}, guideline policy", QUEUE_CAVEAT)


def setup_from_case(case: Case) -> Setup:
    """The patient of a teaching case under the case's policy and seed."""
    from ..model.clinical_tables import compile_model

    ctx = PolicyContext.build(case.policy, compile_model())
    config = EngineConfig(horizon_days=float(case.horizon_days), specialist_slots_per_week=1, seed=case.seed)
    return Setup(ctx, case.to_cohort(), config, 0, case.replication, f"case '{case.name}': {case.title}",
                 CASE_NOTE, case)


Decide = Callable[..., Any]


def simulate(setup: Setup, decide: Decide | None = None) -> pd.DataFrame:
    """The readable event log of the one patient (``decide`` as in :class:`simulator.engine.simulation.Simulation`)."""
    sim = Simulation(setup.ctx, setup.cohort, setup.config, setup.replication, only=[setup.index], decide=decide)
    ev = events_frame([sim.run()], setup.ctx.tables)
    return ev[ev["patient"] == setup.index].reset_index(drop=True)


def profile(setup: Setup) -> list[tuple[str, str]]:
    """(label, value) pairs of the patient's profile, in reading order."""
    c, i = setup.cohort, setup.index
    flags = [w for f, w in FLAG_WORDS.items() if bool(getattr(c, f)[i])]
    loc = "localized" if bool(c.localized[i]) else "not localized"
    if bool(c.allodynia[i]):
        loc += ", with allodynia"
    crcl = float(c.crcl[i])
    renal = f"{crcl:.0f} mL/min" + (" (renal impairment)" if crcl < 60 else "")
    return [("age", f"{float(c.age[i]):.0f}"), ("sex", "male" if int(c.sex[i]) == 1 else "female"),
            ("etiology", ETIOLOGIES[int(c.etiology[i])].replace("_", " ")),
            ("baseline pain", f"{float(c.baseline_nrs[i]):.1f}/10"), ("pain", loc),
            ("creatinine clearance", renal), ("comorbidities that matter", ", ".join(flags) or "none"),
            ("opioid misuse risk", MISUSE_RISK_LEVELS[int(c.misuse_risk[i])])]
