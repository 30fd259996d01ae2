"""Words the teaching tools share: a drug's catalogue name for reading, and the safety flags in plain words.

Owned here so that the narrated journey (:mod:`simulator.teaching.narrate`) and the clinical flowchart
(:mod:`simulator.teaching.flowchart`) can both use them without importing each other (the journey page draws
the flowchart). Imports nothing.
"""

from __future__ import annotations

FLAG_WORDS = {"hepatic_disease": "hepatic disease", "recent_mi": "recent myocardial infarction",
              "arrhythmia": "arrhythmia", "heart_block": "heart block",
              "cardiovascular_disease": "cardiovascular disease", "glaucoma": "glaucoma",
              "orthostatic_hypotension": "orthostatic hypotension", "ssri_use": "takes an SSRI",
              "depression": "depression"}
"""Cohort flag -> the words a reader sees (the flags the safety rules read; docs/cohorts)."""


def drug_name(name: str) -> str:
    """A drug's catalogue name for reading: lidocaine_5pct -> lidocaine 5%."""
    return name.replace("_5pct", " 5%").replace("_8pct", " 8%").replace("_", " ")
