"""Random streams for common random numbers.

Every random number painpath draws comes from a stream keyed by (seed, replication, purpose). Within
a stream, patient ``i`` always reads row ``i`` of an ``(n, k)`` block, so a patient's draws do not
depend on how many patients are simulated, which policy is simulated, or how many worker processes
run the replications. Two scenarios run with the same seed therefore see the same patients with the
same luck, and their difference is mostly policy, not noise.
"""

from __future__ import annotations

import numpy as np

# Purposes: fixed integers so that adding a purpose never shifts the others.
COHORT = 1  # patient attributes (cohort generation)
RESPONSE = 2  # latent responsiveness, placebo response, visit noise
ADVERSE = 3  # adverse-event incidence and onset
FOLLOWUP = 4  # drop-out and loss to follow-up
SPECIALIST = 5  # specialist consult outcomes
TRIAL = 6  # virtual-trial randomisation
ARRIVALS = 20  # open populations: arrival days (simulator.arrivals); far from the others to avoid clashes
PERSISTENCE = 21  # adherence, stops for other reasons, relapse, usual-care choices (issue 10; 7, 8 and 20 are taken)


def rng_for(seed: int, replication: int, purpose: int) -> np.random.Generator:
    """The generator for one (seed, replication, purpose) stream."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(replication), int(purpose))))


def block(seed: int, replication: int, purpose: int, n: int, k: int, dtype: type = np.float64) -> np.ndarray:
    """An ``(n, k)`` block of uniforms in [0, 1); row i belongs to patient i whatever n is.

    ``float32`` halves the memory of wide blocks (2^-24 resolution is ample for event draws).
    """
    return rng_for(seed, replication, purpose).random((n, k), dtype=dtype)
