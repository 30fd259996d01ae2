"""The layer map of ``simulator/``: every module's layer, and where the relayout puts it.

One table, read by three things: ``docs/architecture.md`` (which shows it, checked equal by
``tests/test_layers.py``), the layers contract (``tests/test_layers.py``) and the move script
(``tools/relayout.py``). A new module gets a row here before it can pass the contract.

``LAYERS`` lists the layers from the top (``cli``) to the bottom (``inputs``); a layer may import only
the layers below it, and the layers of one group (``teaching``, ``regression``) not each other.
``MODULES`` maps each flat module ``simulator/<name>.py`` of today to its dotted place in the layered
package (``"engine.simulation"`` is ``simulator/engine/simulation.py``; a package's own ``__init__`` is
named by the package, e.g. ``"cli"`` for ``simulator/cli/__init__.py``). ``FACADES`` are the public
entry modules that stay at the top of the package and may import any layer.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("teaching", "regression"),
    ("output",),
    ("analysis",),
    ("scenario",),
    ("engine",),
    ("population",),
    ("model",),
    ("inputs",),
)
"""Top to bottom; the names of one tuple are independent siblings."""

FACADES: tuple[str, ...] = ("__init__", "testing")
"""``simulator`` (``load_scenario``, ``simulate``, ``InputError``) and ``simulator.testing`` (pytest helpers
for guideline teams' own repositories): public entry points that keep their import path."""

MODULES: dict[str, str] = {
    # inputs: reading files into validated models, with errors a user can act on
    "errors": "inputs.errors",
    "schema": "inputs.schema",
    "packaged": "inputs.packaged",
    "compiled": "inputs.compiled",
    # model: the clinical knowledge (pathway, rules, drugs, clinical model, policy, safety) and its chance
    "pathway": "model.pathway",
    "rules": "model.rules",
    "catalog": "model.catalog",
    "clinical": "model.clinical",
    "clinical_tables": "model.clinical_tables",
    "response": "model.response",
    "care": "model.care",
    "policy": "model.policy",
    "policy_context": "model.policy_context",
    "decisions": "model.decisions",
    "protocol": "model.protocol",
    "safety": "model.safety",
    "patient": "model.patient",
    "overrides": "model.overrides",
    "parameters": "model.parameters",
    "streams": "model.streams",
    # population: who the patients are and when they come
    "cohort": "population.cohort",
    "cohort_spec": "population.cohort_spec",
    "arrivals": "population.arrivals",
    # engine: the SimPy simulation and the specialist clinic it queues patients for
    "engine": "engine.simulation",
    "clinic": "engine.clinic",
    # scenario: a cohort or population, a policy, capacity, overrides, horizon and seed
    "scenario": "scenario",
    # analysis: from runs to numbers (outcomes, CIs, comparisons, sensitivity, trials, calibration)
    "runner": "analysis.runner",
    "interrupts": "analysis.interrupts",
    "outcomes": "analysis.outcomes",
    "summary": "analysis.summary",
    "persistence": "analysis.persistence",
    "population": "analysis.open_population",
    "queue_stats": "analysis.queue_stats",
    "metrics": "analysis.metrics",
    "stats": "analysis.stats",
    "compare": "analysis.compare",
    "sweep": "analysis.sweep",
    "trial": "analysis.trial",
    "trial_design": "analysis.trial.design",
    "trial_protocol": "analysis.trial.protocol",
    "trial_courses": "analysis.trial.courses",
    "trial_group": "analysis.trial.group",
    "trial_results": "analysis.trial.results",
    "calibrate": "analysis.calibrate",
    "realworld": "analysis.realworld",
    # output: run folders, reports and figures
    "results": "output.results",
    "folders": "output.folders",
    "report": "output.report",
    "report_blocks": "output.blocks",
    "figures": "output.figures",
    # teaching: the educators' tools
    "narrate": "teaching.narrate",
    "one_patient": "teaching.one_patient",
    "steps": "teaching.steps",
    "regimen": "teaching.regimen",
    "words": "teaching.words",
    "journey": "teaching.journey",
    "tutor": "teaching.tutor.options",
    "tutor_verdicts": "teaching.tutor.verdicts",
    "tutor_session": "teaching.tutor.session",
    "tutor_terminal": "teaching.tutor.terminal",
    "cases": "teaching.cases",
    "flowchart": "teaching.flowchart",
    "diagram": "teaching.diagram",
    "webapp": "teaching.webapp",
    # regression: the guideline maintainers' tools
    "invariants": "regression.invariants",
    "invariants_registry": "regression.invariants.registry",
    "invariants_report": "regression.invariants.report",
    "invariants_rules": "regression.invariants.rules",
    "invariants_trajectory": "regression.invariants.trajectory",
    "invariants_base": "regression.invariants.base",
    "invariants_doses": "regression.invariants.doses",
    "invariants_decisions": "regression.invariants.decisions",
    "invariants_course": "regression.invariants.course",
    "invariants_checker": "regression.invariants.checker",
    "invariants_care": "regression.invariants.care",
    "opioid_check": "regression.opioid_check",
    "lint": "regression.lint",
    "snapshot": "regression.snapshot",
    "diff": "regression.diff",
    # cli: thin commands
    "cli": "cli",
    "cli_policy": "cli.policy",
    "cli_regress": "cli.regress",
    "cli_teach": "cli.teach",
    "cli_trial": "cli.trial",
    # facades
    "__init__": "__init__",
    "testing": "testing",
}

KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}
"""Import edges (flat module names) allowed to break the contract, each with its fix: empty since the last
two (runner -> results/report, narrate <-> flowchart) were fixed; the contract fails if a listed one is fixed
and still listed, so the list only shrinks."""

SUBPACKAGE_DOCS: dict[str, str] = {
    "inputs": "Reading input files (YAML) into validated pydantic models, with errors naming the file, the field "
              "and the fix; finding packaged cohorts, scenarios and trial cohorts by name. Imports nothing else of "
              "simulator.",
    "model": "The clinical knowledge: the pathway state machine (one transitions definition), the guideline rules "
             "with their seeds, the drug catalogue, the clinical model of response and adverse events, care after "
             "the first answer, policies, safety rules, the guards, clinical overrides, the parameter audit, and the "
             "random streams the model draws from. Imports only simulator.inputs.",
    "population": "Who the patients are and when they come: cohort specifications and synthetic cohorts, open "
                  "populations' arrivals. Imports only simulator.model and simulator.inputs.",
    "engine": "The SimPy discrete-event simulation of patients walking the pathway, and the specialist clinic "
              "they queue for; writes the flat event log. Imports population, model and inputs, never scenario, "
              "analysis or anything above.",
    "analysis": "From runs to numbers: running scenarios (replications, workers), outcomes and summaries, queue "
                "statistics, the metric registry, confidence intervals, comparisons, sweeps and tornados, "
                "virtual trials and calibration. Never imports output, teaching, regression or cli.",
    "output": "Run, comparison, sweep and tornado folders (written atomically), the HTML reports and their "
              "figures. Never imports teaching, regression or cli.",
    "teaching": "The educators' tools: narrated journeys, the counterfactual tutor, teaching cases, the clinical "
                "flowchart, the developer diagram and the browser app. Never imports regression or cli.",
    "regression": "The guideline maintainers' tools: the invariant oracle (checks that share no code with the "
                  "engine's decisions), static lint, golden snapshots and diffs. Never imports teaching or cli.",
    "cli": "The painpath command: thin click commands over the library. Nothing imports it.",
}
