"""The observation hot path's shortcuts give exactly what the plain formulas give (speed-ups, not changes): the
observed NRS rounded to a tenth, the engine's observed NRS at a visit. Each check computes the reference its own way (no shared code with what it checks)."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from statistics import NormalDist

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from simulator.engine.simulation import EngineConfig, Simulation
from simulator.model import streams
from simulator.model.overrides import model_tables
from simulator.model.policy_context import PolicyContext
from simulator.model.response import drug_effect, observed_pain
from simulator.population.cohort import generate_cohort
from simulator.scenario import load_scenario
from tests.test_hot_paths import _reference_latent  # the latent formula, written once for both files

ROOT = Path(__file__).resolve().parents[1]


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _near_half_tenths() -> list[float]:
    """Doubles at and beside every half tenth in [0, 10] (where rounding to a tenth is decided by the last bit)."""
    out = []
    for k in range(100):
        h = (k + 0.5) / 10.0
        out += [math.nextafter(h, -1.0), h, math.nextafter(h, 11.0)]
    return out


@given(st.one_of(st.floats(min_value=0.0, max_value=10.0), st.sampled_from(_near_half_tenths())))
@example(0.0)
@example(-0.0)
@example(10.0)
@example(0.05)
@example(0.04999999999999999)
def test_observed_pain_rounds_like_round_to_one_digit(x: float) -> None:
    """With no reduction and no noise the observed NRS is the baseline rounded to a tenth: bit for bit what
    ``round(x, 1)`` gives (the engine rounds by an integer rounding of tenths, round() only near a half tenth)."""
    assert _bits(observed_pain(x, 0.0, 1.0, 0.0, [], 0.0, 0.0)) == _bits(round(x + 0.0, 1))


def _reference_pain(sim: Simulation, p, lines, now: float, obs: tuple, retained: float) -> float:
    """The observed NRS from the plain functions: ``drug_effect`` per running drug with its latent uniform from the
    record fields, the nonspecific reduction likewise, the visit noise by ``keyed_normal``."""
    lat, t, i = sim.latents, sim.tables, p.idx
    _, ns_onset, adherence, entry, _ = obs
    effects = []
    for n_line, ln in enumerate(lines):
        d = t.drugs[ln.drug]
        w = lat.loadings[d.index]
        z = 0.0
        for j in np.flatnonzero(w):
            z += float(w[j]) * _reference_latent(lat, i, int(j), now)
        u = 0.5 * math.erfc(-z / math.sqrt(2.0))
        e = drug_effect(t, d, ln.dose_at(now) / ln.factor, now - ln.start, p.etiology, u,
                        float(lat.drug_z[i, d.index]), p.facts.localized) * (adherence * retained)
        effects.append(e * t.combination_factor if n_line > 0 else e)
    if lat.drift_share > 0.0:
        member = 0.5 * math.erfc(-_reference_latent(lat, i, 0, now) / math.sqrt(2.0)) < lat.ns_share[i]
        ns = float(lat.ns_resp[i]) if member else float(lat.ns_non[i])
    else:
        ns = float(lat.ns_reduction[i])
    since = now - entry
    noise = streams.keyed_normal(sim.noise_key, i, streams.day_slot(since))
    return observed_pain(p.baseline, ns, ns_onset, since, effects, t.noise_sd, noise)


class _Checked(Simulation):
    """The engine, every observed NRS also computed by :func:`_reference_pain`."""

    def _pain(self, p, lines, now, obs, retained):
        pain = super()._pain(p, lines, now, obs, retained)
        self.checked.append((pain, _reference_pain(self, p, lines, now, obs, retained), len(lines),
                             any(ln.terms is not None and ln.terms[1] <= 0.0 for ln in lines)))
        return pain


def test_engine_observed_pain_equals_the_plain_functions() -> None:
    """``Evaluation._pain`` (effect terms kept per dose, the latent uniform not computed when the responder
    probability is 0, latents read from packed records) gives the NRS of the plain functions at every visit of a
    guideline run, bit for bit; the run has visits with several drugs and with a responder probability of 0."""
    sc = load_scenario(ROOT / "scenarios" / "guideline.yaml").with_overrides(patients=300, seed=5)
    tables = model_tables(sc.clinical_overrides)
    ctx = PolicyContext.build(sc.policy, tables)
    cohort = generate_cohort(sc.cohort_spec, 300, sc.seed, 0)
    sim = _Checked(ctx, cohort, EngineConfig(float(sc.horizon_days), 2.0, sc.seed), 0)
    sim.checked = []
    sim.run()
    assert sum(1 for c in sim.checked if c[2] > 1) > 100 and sum(1 for c in sim.checked if c[3]) > 20
    assert [_bits(c[0]) for c in sim.checked] == [_bits(c[1]) for c in sim.checked]


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_patient_streams_are_the_patient_streams(key: int) -> None:
    """The per-patient parts of keyed draws mixed once for the cohort (numpy uint64, wrapping) are
    ``patient_stream`` of each patient (Python integers masked to 64 bits), so the drop-out draw is unchanged."""
    streams_ = streams.patient_streams(key, 300)
    assert [streams_.item(i) for i in range(300)] == [streams.patient_stream(key, i) for i in range(300)]


@given(st.integers(min_value=0, max_value=(1 << 64) - 1),
       st.one_of(st.floats(min_value=0.0, max_value=5000.0), st.integers(0, 10**7).map(lambda k: k / 2000.0)))
def test_visit_normal_is_the_inverse_cdf_of_the_rounded_day_slot(stream: int, day: float) -> None:
    """``visit_normal`` (``slot_uniform`` written out, ``float.__round__`` called directly) and ``day_slot`` give what
    the builtin ``round`` and the plain functions give, half-thousandths (ties to even) included."""
    slot = round(day * 1000.0)
    assert streams.day_slot(day) == slot and type(streams.day_slot(day)) is int
    assert _bits(streams.visit_normal(stream, day)) == _bits(NormalDist().inv_cdf(streams.slot_uniform(stream, slot)))
