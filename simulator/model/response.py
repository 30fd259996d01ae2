"""The response model: per-patient latent draws, drug effects, observed pain and onset times.

Owns :class:`Latents` (the Gaussian-copula responsiveness with drift, and its scalar twins for the engine's hot
path, read from packed struct records), :func:`draw_latents`, :func:`drug_effect`, :func:`observed_pain`,
:func:`onset_days`, and their vectorised twins used by virtual trials (``*_array``; checked equal to the scalar
functions in ``tests/test_trial.py``). The model's structure and the source of every number are described in
:mod:`simulator.model.clinical`; the functions read the compiled tables of :mod:`simulator.model.clinical_tables`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import ndtr, ndtri

from .catalog import ALL_CLASSES
from .clinical_tables import MAX_DRUGS, DrugTable, ModelTables, interp

N_CLASSES = len(ALL_CLASSES)
DRIFT_FEATURES = 3  # random Fourier features per drifting latent (Latents.u_scalar unpacks three)
# One drifting latent of one patient: its static normal, then K angular frequencies and K phases in single
# precision (half the memory, ample for a phase), side by side so the engine reads them in one go (_RECORD).
LATENT_RECORD = np.dtype([("x", "<f8"), ("f", "<f4", (2 * DRIFT_FEATURES,))])
_RECORD = struct.Struct(f"<d{2 * DRIFT_FEATURES}f")
_unpack, _RECORD_SIZE, _cos, _erfc = _RECORD.unpack_from, _RECORD.size, math.cos, math.erfc  # hot path: no lookups
_round = float.__round__  # round(x) of a float without the builtin's lookup of __round__ (observed_pain, per visit)
_unpack_ns = struct.Struct("<3d").unpack_from  # Latents.ns_scalar: share, reduction as responder, as not
N_LATENT = 2 + N_CLASSES + MAX_DRUGS  # drifting latents: nonspecific membership, patient factor, classes, drugs
_PATIENT_SIZE = N_LATENT * _RECORD_SIZE  # bytes of one patient's records
RESPONSE_COLUMNS = 3 + N_CLASSES + 2 * MAX_DRUGS + 1 + 2 * N_LATENT * DRIFT_FEATURES
_SQRT2 = math.sqrt(2.0)
_NS, _G, _C = 0, 1, 2  # latent index of the nonspecific membership, the patient factor, the first class


@dataclass(frozen=True)
class Latents:
    """Per-patient latent draws, as numpy arrays (rows = patients).

    Responsiveness to drug ``d`` of class ``c`` is ``z_d = sqrt(rho) g + sqrt(w - rho) c_c + sqrt(1 - w) e_d``
    with a patient factor ``g`` (refractoriness, shared by all drugs), a class factor ``c_c`` and a drug
    factor ``e_d``: two drugs of different classes correlate with ``rho = responsiveness_correlation``, two
    drugs of one class with ``w = within_class_correlation`` (partial cross-response: a gabapentin
    non-responder may still respond to pregabalin). A patient responds to ``d`` on a day when
    ``Phi(z_d)`` is below the responder probability. Membership of the nonspecific responders works the
    same way (``Phi(x_ns) < share``).

    **Drift.** Every latent normal ``x`` (``g``, ``c_c``, ``e_d``, ``x_ns``) is
    ``sqrt(1 - s) x_static + sqrt(s) f_x(t)`` where ``s = responsiveness_drift.share`` and ``f_x`` is a
    stationary process of unit variance, ``sqrt(2 / K) sum_k cos(omega_k t + phase_k)`` (random Fourier
    features of a Gaussian kernel with time scale ``responsiveness_drift.time_scale_days``, ``t`` = day of
    the simulation). Across patients every latent stays standard normal on every day, so the responder
    share of a trial arm does not depend on the day and the correlations above hold on every day, while a
    patient moves between responder and non-responder over weeks (COMBO-DN: many week-8 non-responders
    respond by week 16).
    """

    ns_reduction: np.ndarray  # (n,) steady-state nonspecific fractional reduction on day 0
    drug_z: np.ndarray  # (n, MAX_DRUGS) standard normals for the effect magnitude, by drug index
    ns_onset: np.ndarray  # (n,) the patient's time constant of the nonspecific response, days
    records: np.ndarray  # (n, N_LATENT) of LATENT_RECORD: each drifting latent's static normal and drift features
    ns_share: np.ndarray  # (n,) the patient's probability of being a nonspecific responder
    ns_resp: np.ndarray  # (n,) nonspecific reduction as a responder
    ns_non: np.ndarray  # (n,) nonspecific reduction as a non-responder
    loadings: np.ndarray  # (MAX_DRUGS, N_LATENT) weights of the latents in each drug's responsiveness
    drift_share: float

    def take(self, rows: np.ndarray) -> Latents:
        """The latents of patients ``rows`` (copies), for repeated evaluation over a group of patients."""
        from dataclasses import fields, replace
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)
                                if f.name not in ("loadings", "drift_share")})

    @property
    def static(self) -> np.ndarray:
        """(n, N_LATENT) static normals of the drifting latents (a view of ``records``)."""
        return self.records["x"]

    @property
    def omega(self) -> np.ndarray:
        """(n, N_LATENT, K) angular frequencies of the drift features, 1/day (float32, a view of ``records``)."""
        return self.records["f"][..., :DRIFT_FEATURES]

    @property
    def phase(self) -> np.ndarray:
        """(n, N_LATENT, K) phases of the drift features, radians (float32, a view of ``records``)."""
        return self.records["f"][..., DRIFT_FEATURES:]

    def latent(self, rows: np.ndarray | int | slice, j: int, day: float) -> np.ndarray:
        """Latent normal ``j`` of patients ``rows`` on ``day``."""
        x = self.static[rows, j]
        if self.drift_share <= 0.0:
            return x
        om, ph = self.omega[rows, j], self.phase[rows, j]
        f = math.sqrt(2.0 / DRIFT_FEATURES) * np.cos(om * day + ph).sum(axis=-1, dtype=np.float64)
        return math.sqrt(1.0 - self.drift_share) * x + math.sqrt(self.drift_share) * f

    def u_at(self, rows: np.ndarray | int, drug_index: int, day: float) -> np.ndarray:
        """The latent uniform of drug ``drug_index`` on ``day`` (responder when below the responder probability)."""
        w = self.loadings[drug_index]
        z = sum(w[j] * self.latent(rows, j, day) for j in np.flatnonzero(w))
        return ndtr(z)

    # ---- scalar twins for the engine's hot path (one patient, one day) ---------------------------------
    # The same arithmetic as latent/u_at/ns_at, in the same order, on Python floats: the engine calls these a
    # few times per visit for 100k patients, where numpy scalar operations and per-call setup dominated.

    @cached_property
    def _hot(self) -> tuple:
        """What the scalar twins read on every call, fetched with one attribute load: the records as bytes, per
        drug index its nonzero loadings as (record byte offset, weight) pairs in latent order (as u_at), the weight of
        a latent's static normal and of its sum of drift features, whether latents drift, and per patient the
        nonspecific responder share and reductions (3 doubles)."""
        s = self.drift_share
        # (byte offset of the latent's record in the patient's records, weight): no index arithmetic per latent
        loadings = tuple(tuple((int(j) * _RECORD_SIZE, float(w[j])) for j in np.flatnonzero(w)) for w in self.loadings)
        # A patient's nonspecific share and reductions side by side (one cache line, not three arrays to read).
        ns = np.ascontiguousarray(np.stack([self.ns_share, self.ns_resp, self.ns_non], axis=1), dtype=np.float64)
        return (memoryview(np.ascontiguousarray(self.records)).cast("B"), loadings, math.sqrt(1.0 - s),
                math.sqrt(s * 2.0 / DRIFT_FEATURES), s > 0.0, memoryview(ns).cast("B"))

    def u_scalar(self, i: int, drug_index: int, day: float) -> float:
        """:meth:`u_at` for one patient in plain Python (the engine's hot path)."""
        # Each latent's record read straight into Python floats (exact, float32 included): one C call instead of
        # numpy indexing and scalars. cos and sums in double precision, feature by feature, as latent().
        rec, loadings, static_w, drift_w, drift, _ = self._hot
        base = i * _PATIENT_SIZE
        z = 0.0
        if drift:  # (tested once per call, not per latent)
            for off, w in loadings[drug_index]:
                x, o0, o1, o2, p0, p1, p2 = _unpack(rec, base + off)
                z += w * (static_w * x + drift_w * (_cos(o0 * day + p0) + _cos(o1 * day + p1) + _cos(o2 * day + p2)))
        else:
            for off, w in loadings[drug_index]:
                z += w * _unpack(rec, base + off)[0]
        return 0.5 * _erfc(-z / _SQRT2)

    def ns_scalar(self, i: int, day: float) -> float:
        """:meth:`ns_at` for one patient in plain Python."""
        rec, _, static_w, drift_w, drift, ns = self._hot
        if not drift:
            return self.ns_reduction.item(i)
        x, o0, o1, o2, p0, p1, p2 = _unpack(rec, i * _PATIENT_SIZE + _NS * _RECORD_SIZE)
        x = static_w * x + drift_w * (_cos(o0 * day + p0) + _cos(o1 * day + p1) + _cos(o2 * day + p2))
        u = 0.5 * _erfc(-x / _SQRT2)
        share, resp, non = _unpack_ns(ns, i * 24)
        return resp if u < share else non

    def ns_at(self, rows: np.ndarray | int, day: float) -> np.ndarray:
        """Steady-state nonspecific reduction on ``day`` (membership drifts like drug responsiveness)."""
        if self.drift_share <= 0.0:
            return self.ns_reduction[rows]
        member = ndtr(self.latent(rows, _NS, day)) < self.ns_share[rows]
        return np.where(member, self.ns_resp[rows], self.ns_non[rows])


def draw_latents(tables: ModelTables, etiology: np.ndarray, uniforms: np.ndarray | Iterable[np.ndarray]) -> Latents:
    """Turn a patient block of uniforms (n, RESPONSE_COLUMNS) into the latent draws (see :class:`Latents`).

    ``uniforms``: the block, or its rows in consecutive chunks (:func:`simulator.model.streams.block_rows`: the
    engine never holds the whole block, ~120 MB at 100k patients). It is used as scratch space (overwritten).
    """
    n = len(etiology)
    k, m = N_CLASSES, MAX_DRUGS
    c0 = 3 + k + 2 * m
    nf = N_LATENT * DRIFT_FEATURES
    share = np.asarray(tables.ns_share)[etiology]
    ns_resp, ns_non, ns, ns_onset = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    drug_z = np.empty((n, m))
    records = np.empty((n, N_LATENT), dtype=LATENT_RECORD)  # static normals: ns, g, classes, drugs
    a = 0
    # Chunk by chunk, in place: the same element-wise operations as on whole fresh arrays, without their
    # first-touch page faults (most of the engine's set-up time at 100k patients).
    for u in ((uniforms,) if isinstance(uniforms, np.ndarray) else uniforms):
        b = a + len(u)
        np.clip(u, 1e-12, 1 - 1e-12, out=u)
        ns_resp[a:b] = np.clip(tables.ns_resp_mean + tables.ns_sd * ndtri(u[:, 1]), -0.3, 0.95)
        ns_non[a:b] = np.clip(tables.ns_non_mean + tables.ns_sd * ndtri(u[:, 1]), -0.3, 0.95)
        ns[a:b] = np.where(u[:, 0] < share[a:b], ns_resp[a:b], ns_non[a:b])
        drug_z[a:b] = ndtri(u[:, 3 + k + m:3 + k + 2 * m])
        ns_onset[a:b] = tables.ns_onset * np.exp(tables.ns_onset_sd_log * ndtri(u[:, c0]))
        x = records["x"][a:b]
        x[:, 0] = ndtri(u[:, 0])
        x[:, 1:] = ndtri(u[:, 2:3 + k + m], out=u[:, 2:3 + k + m])
        f = records["f"][a:b]
        omega = u[:, c0 + 1:c0 + 1 + nf]
        ndtri(omega, out=omega)
        np.abs(omega, out=omega)
        np.divide(omega, tables.drift_days, out=omega)
        f[..., :DRIFT_FEATURES] = omega.reshape(-1, N_LATENT, DRIFT_FEATURES)  # to float32
        phase = u[:, c0 + 1 + nf:c0 + 1 + 2 * nf]
        np.multiply(2.0 * math.pi, phase, out=phase)
        f[..., DRIFT_FEATURES:] = phase.reshape(-1, N_LATENT, DRIFT_FEATURES)
        a = b
    if a != n:
        raise ValueError(f"draw_latents: {a} rows of uniforms for {n} patients")
    rho, w = tables.corr, tables.within_corr
    loadings = np.zeros((m, N_LATENT))
    for d in tables.drugs:
        loadings[d.index, _G] = math.sqrt(rho)
        loadings[d.index, _C + d.class_index] = math.sqrt(max(w - rho, 0.0))
        loadings[d.index, _C + k + d.index] = math.sqrt(1.0 - w)
    return Latents(ns, drug_z, ns_onset, records, np.asarray(share, dtype=float), ns_resp, ns_non,
                   loadings, tables.drift_share)


def drug_effect(tables: ModelTables, drug: DrugTable, dose: float, days_on: float, etiology: int,
                class_u: float, class_z: float, localized: bool) -> float:
    """Fractional reduction of the remaining pain from one drug (a partial effect for a non-responder).

    ``class_u``/``class_z``: the patient's latent uniform and normal for this drug
    (``Latents.drug_u[i, drug.index]``, ``Latents.drug_z[i, drug.index]``).
    """
    if days_on <= 0 or dose <= 0:
        return 0.0
    p, e_resp, e_non = effect_terms(drug, dose, etiology, class_z, localized)
    return (e_resp if class_u < p else e_non) * (1.0 - math.exp(-days_on / drug.onset_days))


def effect_terms(drug: DrugTable, dose: float, etiology: int, class_z: float, localized: bool
                 ) -> tuple[float, float, float]:
    """The parts of :func:`drug_effect` that do not change from day to day at one dose:
    ``(responder probability, full effect of a responder, partial effect of a non-responder)`` (the engine
    keeps them per running drug while its dose holds)."""
    if drug.localized_only and not localized:
        return 0.0, 0.0, 0.0
    p = interp(drug.responder_prob, dose) * drug.etiology_modifier[etiology]
    e = drug.effect_mean + drug.effect_sd * class_z
    e = 0.0 if e < 0.0 else (0.95 if e > 0.95 else e)
    pmax = drug.responder_max
    return p, e, e * (drug.nonresponder_effect * (p / pmax if pmax > 0 else 0.0))


def observed_pain(baseline: float, ns_reduction: float, ns_onset: float, day: float,
                  effects: list[float], noise_sd: float, noise_z: float) -> float:
    """Observed NRS at a visit: baseline scaled by the combined reduction, plus visit noise, in [0, 10]."""
    remaining = 1.0 - ns_reduction * (1.0 - math.exp(-day / ns_onset)) if day > 0 else 1.0
    for e in effects:
        remaining *= 1.0 - e
    pain = baseline * remaining + noise_sd * noise_z
    if pain < 0.0:
        return 0.0
    if pain > 10.0:
        return 10.0
    # round(pain, 1) goes through a decimal string (~2,500 instructions, once per visit). The nearest tenth from an
    # integer rounding is the same double unless ten times pain is within rounding error of a half tenth (or 0:
    # keeps the sign of -0.0); then round() itself (tests/test_hot_paths_obs.py).
    tenths = _round(pain * 10.0)
    if tenths and abs(pain * 10.0 - tenths) < 0.4999:
        return tenths / 10.0
    return round(pain, 1)


def onset_days(median: float, u: float) -> float:
    """Exponential onset time with the given median, from a uniform."""
    return -median * math.log1p(-u) / math.log(2.0)


# --------------------------------------------------------------------------------------------------
# Vectorised twins of drug_effect / observed_pain / onset_days (virtual trials, simulator/analysis/trial/__init__.py).
# Same formulas and same parameters; tests/test_trial.py checks them against the scalar functions.
# --------------------------------------------------------------------------------------------------


def interp_array(points: tuple[tuple[float, float], ...], x: float | np.ndarray) -> np.ndarray:
    """:func:`interp` on arrays (flat outside the points)."""
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    return np.interp(np.asarray(x, dtype=float), xs, ys)


def drug_effect_array(tables: ModelTables, drug: DrugTable, dose: float | np.ndarray, days_on: float | np.ndarray,
                      etiology: np.ndarray, class_u: np.ndarray, class_z: np.ndarray,
                      localized: np.ndarray) -> np.ndarray:
    """:func:`drug_effect` for many patients (dose and days: scalars or arrays over patients)."""
    days = np.asarray(days_on, dtype=float)
    dose_a = np.asarray(dose, dtype=float)
    shape = np.broadcast(days, dose_a, class_u).shape
    mod = np.asarray(drug.etiology_modifier)[etiology]
    p = interp_array(drug.responder_prob, dose_a) * mod
    pmax = max(q for _, q in drug.responder_prob)
    partial = drug.nonresponder_effect * (p / pmax) if pmax > 0 else np.zeros_like(p)
    e = np.clip(drug.effect_mean + drug.effect_sd * class_z, 0.0, 0.95)
    e = np.where(class_u < p, e, e * partial)
    active = (days > 0) & (dose_a > 0)
    if drug.localized_only:
        active = active & np.asarray(localized, dtype=bool)
    build = np.where(days > 0, 1.0 - np.exp(-np.maximum(days, 0.0) / drug.onset_days), 0.0)
    return np.broadcast_to(np.where(active, e * build, 0.0), shape)


def observed_pain_array(baseline: np.ndarray, ns_reduction: np.ndarray, ns_onset: float | np.ndarray,
                        day: float | np.ndarray, effects: list[np.ndarray], noise_sd: float,
                        noise_z: np.ndarray | float) -> np.ndarray:
    """:func:`observed_pain` on arrays: baseline scaled by the combined reduction, plus noise, in [0, 10]."""
    d = np.asarray(day, dtype=float)
    remaining = np.where(d > 0, 1.0 - ns_reduction * (1.0 - np.exp(-np.maximum(d, 0.0) / ns_onset)), 1.0)
    for e in effects:
        remaining = remaining * (1.0 - e)
    pain = baseline * remaining + noise_sd * np.asarray(noise_z, dtype=float)
    return np.round(np.clip(pain, 0.0, 10.0), 1)


def onset_days_array(median: float, u: np.ndarray) -> np.ndarray:
    """:func:`onset_days` on arrays."""
    return -median * np.log1p(-u) / math.log(2.0)
