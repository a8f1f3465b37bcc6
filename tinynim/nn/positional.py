"""Sinusoidal positional encoding (Vaswani et al. 2017, §3.5).

The table, for position t and dimension j (pair index i = ⌊j/2⌋)::

    PE[t, j] = sin(t / 10000^(2i/d))   j even          PE: (T, d)
    PE[t, j] = cos(t / 10000^(2i/d))   j odd           (odd d: the last column is a sine)

Layer forward on x: (..., T, d_in), no parameters::

    mode="add"     out = x + PE                             d_in = d_pos    out: (..., T, d_pos)
    mode="concat"  out = [x, PE] along the last axis                        out: (..., T, d_in + d_pos)

Backward. PE is a constant, so: "add" passes the gradient through, dx = dout; "concat"
keeps the part that came from x, dx = dout[..., :d_in].

Cache: ``PositionalCache(x_shape)``, the input's shape (the table is recomputed, not stored).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat

from tinynim.backend import resolve
from tinynim.nn.base import Layer
from tinynim.random import as_rng

MODES = ("add", "concat")


def _table(xp, T, d, dtype, device):
    pos = xp.reshape(xp.arange(T, dtype=dtype, device=device), (T, 1))              # (T, 1)
    j = xp.arange(d, device=device)                                                   # (d,)
    rate = xp.exp(xp.astype(j // 2, dtype) * (-2 * math.log(10000.0) / d))            # (d,)
    angle = pos * xp.reshape(rate, (1, d))                                            # (T, d)
    return xp.where(j % 2 == 0, xp.sin(angle), xp.cos(angle))                        # (T, d)


def sinusoidal(T: int, d: int, *, dtype=None, backend=None):
    """The (T, d) table PE on the active (or named) backend, in `dtype` (default: its float dtype)."""
    adapter = resolve(backend)
    return _table(adapter.xp, T, d, adapter.resolve_dtype(dtype), adapter.device)


class PositionalCache(NamedTuple):
    x_shape: tuple      # (..., T, d_in)


class SinusoidalPositional(Layer):
    def __init__(self, d_pos: int, mode: str = "add"):
        self.check_sizes(d_pos=d_pos)
        if mode not in MODES:
            raise ValueError(f"SinusoidalPositional: unknown mode {mode!r}; valid: {', '.join(MODES)}")
        self.d_pos, self.mode = d_pos, mode

    def forward(self, params, x):
        xp = self.check_input(x, min_ndim=2, last=self.d_pos if self.mode == "add" else None)
        pe = _table(xp, x.shape[-2], self.d_pos, x.dtype, array_api_compat.device(x))  # (T, d_pos)
        cache = PositionalCache(tuple(x.shape))
        if self.mode == "add":
            return x + pe, cache
        pe = xp.broadcast_to(pe, tuple(x.shape[:-1]) + (self.d_pos,))                  # (..., T, d_pos)
        return xp.concat([x, pe], axis=-1), cache                                      # (..., T, d_in + d_pos)

    def backward(self, params, cache, dout):
        *lead, d_in = cache.x_shape
        self.check_dout(dout, tuple(lead) + (d_in if self.mode == "add" else d_in + self.d_pos,))
        return (dout if self.mode == "add" else dout[..., :d_in]), {}

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"add": (SinusoidalPositional(4), rng.normal((2, 5, 4)), {}),
                "concat": (SinusoidalPositional(3, mode="concat"), rng.normal((2, 5, 4)), {})}
