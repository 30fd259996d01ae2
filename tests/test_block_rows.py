"""Set-up draws taken a chunk at a time are the same numbers as the whole block (results do not move)."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.model import streams
from simulator.model.overrides import model_tables
from simulator.model.response import RESPONSE_COLUMNS, draw_latents


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 300), k=st.integers(1, 9), rows=st.integers(1, 400), f32=st.booleans())
def test_block_rows_are_the_block(n, k, rows, f32):
    """Protects common random numbers: block_rows yields exactly block()'s rows, in order, whatever the chunk."""
    dtype = np.float32 if f32 else np.float64
    whole = streams.block(3, 1, streams.RESPONSE, n, k, dtype=dtype)
    got = [c.copy() for c in streams.block_rows(3, 1, streams.RESPONSE, n, k, rows=rows, dtype=dtype)]
    joined = np.concatenate(got) if got else np.zeros((0, k), dtype=dtype)
    assert joined.dtype == whole.dtype and joined.tobytes() == whole.tobytes()


def test_latents_from_chunks_equal_latents_from_the_block():
    """Protects byte-identical runs: the engine's chunked latents equal those drawn from the whole block."""
    tables = model_tables(None)
    etiology = np.random.default_rng(0).integers(0, 5, 1000)
    whole = draw_latents(tables, etiology, streams.block(7, 0, streams.RESPONSE, 1000, RESPONSE_COLUMNS))
    chunked = draw_latents(tables, etiology, streams.block_rows(7, 0, streams.RESPONSE, 1000, RESPONSE_COLUMNS,
                                                                rows=333))
    for f in dataclasses.fields(whole):
        a, b = getattr(whole, f.name), getattr(chunked, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), f.name
        else:
            assert a == b, f.name
