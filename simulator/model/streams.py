"""Random streams for common random numbers.

Every random number painpath draws is keyed by what it is for, never by how many numbers were drawn
before it:

* **Blocks** (:func:`block`): a stream keyed by (seed, replication, purpose); patient ``i`` always reads
  row ``i`` of an ``(n, k)`` block, so a patient's draws do not depend on how many patients are simulated,
  which policy is simulated, or how many worker processes run the replications. Used for draws fixed per
  patient (attributes, latent response, adverse-event draws per drug, loss to follow-up).
* **Keyed draws** (:func:`keyed_uniform`, :func:`keyed_normal`): stateless (counter-based) draws keyed by
  (seed, replication, purpose, patient, slot), where the slot is the visit day (:func:`day_slot`). Used
  for every per-visit draw (visit noise, drop-out after a failed line): adding or removing a visit leaves
  every other visit's draws unchanged.

Two scenarios run with the same seed therefore see the same patients with the same luck, and their
difference is mostly policy, not noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from statistics import NormalDist

try:  # NormalDist().inv_cdf(p) is this C function after its argument checks (one Python call less per visit)
    from statistics import _normal_dist_inv_cdf
except ImportError:  # pragma: no cover (an interpreter without the C accelerator: the method itself)
    _normal_dist_inv_cdf = None

import numpy as np

# Purposes: fixed integers so that adding a purpose never shifts the others.
COHORT = 1  # patient attributes (cohort generation)
RESPONSE = 2  # latent responsiveness, placebo response (and the virtual trials' visit noise)
ADVERSE = 3  # adverse-event incidence and onset
FOLLOWUP = 4  # loss to follow-up
SPECIALIST = 5  # specialist consult outcomes
TRIAL = 6  # virtual-trial randomisation
VISIT_NOISE = 7  # measurement noise of the NRS observed at a visit (keyed by visit day)
VISIT_DROPOUT = 8  # drop-out after a failed line, drawn at the visit that found it failed (keyed by day)
ARRIVALS = 20  # open populations: arrival days (simulator.population.arrivals); far from the others to avoid clashes
PERSISTENCE = 21  # adherence, stops for other reasons, relapse, usual-care choices (issue 10; 7, 8 and 20 are taken)


def rng_for(seed: int, replication: int, purpose: int) -> np.random.Generator:
    """The generator for one (seed, replication, purpose) stream."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(replication), int(purpose))))


def block(seed: int, replication: int, purpose: int, n: int, k: int, dtype: type = np.float64) -> np.ndarray:
    """An ``(n, k)`` block of uniforms in [0, 1); row i belongs to patient i whatever n is.

    ``float32`` halves the memory of wide blocks (2^-24 resolution is ample for event draws).
    """
    return rng_for(seed, replication, purpose).random((n, k), dtype=dtype)


def block_rows(seed: int, replication: int, purpose: int, n: int, k: int, rows: int = 2048,
               dtype: type = np.float64) -> Iterator[np.ndarray]:
    """:func:`block`'s rows in consecutive chunks of at most ``rows`` (the same numbers: one generator draws
    them in order), each in one reused buffer that is overwritten by the next chunk: for a consumer that
    turns a wide block into other arrays without holding it whole (``response.draw_latents``)."""
    rng = rng_for(seed, replication, purpose)
    buf = np.empty((min(rows, n), k), dtype=dtype)
    for a in range(0, n, rows):
        yield rng.random(dtype=dtype, out=buf[:min(rows, n - a)])


# ---- keyed (stateless) draws -------------------------------------------------------------------
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_INV_CDF = NormalDist().inv_cdf
_inv_cdf01 = _normal_dist_inv_cdf or (lambda u, _mu, _sigma: _INV_CDF(u))
_round = float.__round__  # round(x) of a float without the builtin's lookup of __round__ (~500 instructions less)


def _mix(z: int) -> int:
    """The SplitMix64 finaliser: a bijection of 64-bit integers with good avalanche."""
    z = (z + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def stream_key(seed: int, replication: int, purpose: int) -> int:
    """The 64-bit key of a (seed, replication, purpose) family of keyed draws."""
    return _mix(_mix(_mix(int(seed) & _MASK) ^ (int(replication) & _MASK)) ^ (int(purpose) & _MASK))


def day_slot(day: float) -> int:
    """The schedule slot of a visit on ``day``: the day in thousandths (visits on the same day share it)."""
    return _round(day * 1000.0)  # round() of a float with no digits is already an int


def keyed_uniform(key: int, patient: int, slot: int) -> float:
    """A uniform in (0, 1) that depends only on (``key``, ``patient``, ``slot``): ``_mix(_mix(key ^ patient) ^ slot)``."""
    return slot_uniform(patient_stream(key, patient), slot)


def keyed_normal(key: int, patient: int, slot: int) -> float:
    """A standard normal that depends only on (``key``, ``patient``, ``slot``)."""
    return _INV_CDF(slot_uniform(patient_stream(key, patient), slot))


def patient_stream(key: int, patient: int) -> int:
    """The patient's part of keyed draws, ``_mix(key ^ patient)``: computed once per patient by the engine."""
    return _mix(key ^ (patient & _MASK))


def patient_streams(key: int, n: int) -> np.ndarray:
    """:func:`patient_stream` of patients ``0..n-1`` as uint64 (numpy's uint64 arithmetic wraps modulo 2^64, as the
    masks of :func:`_mix` do): the engine reads a patient's with ``.item(i)`` instead of mixing at every draw."""
    z = np.arange(n, dtype=np.uint64) ^ np.uint64(key)
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def slot_uniform(stream: int, slot: int) -> float:
    """:func:`keyed_uniform` from the patient's :func:`patient_stream` (the mix written out: a draw per visit)."""
    z = ((stream ^ (slot & _MASK)) + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    h = z ^ (z >> 31)
    return ((h >> 11) + 0.5) * (1.0 / (1 << 53))


def visit_normal(stream: int, day: float) -> float:
    """``slot_normal(stream, day_slot(day))`` in one call (the engine's visit noise, drawn at every visit)."""
    # slot_uniform written out (one Python call less per visit; tests/test_hot_paths.py pins it to slot_normal)
    z = ((stream ^ _round(day * 1000.0)) + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return _inv_cdf01((((z ^ (z >> 31)) >> 11) + 0.5) * (1.0 / (1 << 53)), 0.0, 1.0)


def slot_normal(stream: int, slot: int) -> float:
    """:func:`keyed_normal` from the patient's :func:`patient_stream` (the engine's visit noise: no Python-level
    ``NormalDist.inv_cdf`` call; its checks cannot fail, :func:`slot_uniform` is strictly inside (0, 1))."""
    return _inv_cdf01(slot_uniform(stream, slot), 0.0, 1.0)
