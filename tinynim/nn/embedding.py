"""Token embedding: a lookup table.

Forward. Integer token ids x of any shape pick rows of W::

    out[..., :] = W[x[...], :]             x: (...) int   W: (n_tokens, d)   out: (..., d)

computed as ``xp.take(W, flat x, axis=0)`` (no fancy indexing in the Array API). Ids
outside [0, n_tokens) raise ValueError; that check reads min and max back to the host.

Backward. x is discrete, so there is no dx (None). Row t of W receives the sum of the
upstream gradients of every position holding token t: ``dW[t] = Σ_{i: xᵢ = t} dout_i``.
This scatter-add is written without in-place updates as a matrix product with the one-hot
matrix ``O[i, t] = 1[xᵢ = t]``: ``dW = Oᵀ dout``. O has n·n_tokens entries, fine at teaching
sizes; a production layer would use a scatter-add (``index_add``) instead.

Cache: ``EmbeddingCache(ids)``, the token ids x.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat

from tinynim.backend import namespace
from tinynim.nn.base import Layer
from tinynim.random import as_rng


class EmbeddingCache(NamedTuple):
    ids: object         # (...) integer token ids


class Embedding(Layer):
    def __init__(self, n_tokens: int, d: int, *, init_std: float = 1.0):
        self.check_sizes(n_tokens=n_tokens, d=d)
        self.n_tokens, self.d, self.init_std = n_tokens, d, init_std

    def init(self, rng, *, dtype=None, backend=None):
        """W ~ N(0, init_std²), init_std = 1 by default (as torch.nn.Embedding)."""
        return {"W": as_rng(rng).normal((self.n_tokens, self.d), std=self.init_std, dtype=dtype, backend=backend)}

    @property
    def param_shapes(self):
        return {"W": (self.n_tokens, self.d)}

    def forward(self, params, x):
        xp = self.check_input(x, what="token ids x", dtype="integral")
        self.check_params(params, x)
        if math.prod(x.shape) and not (0 <= int(xp.min(x)) and int(xp.max(x)) < self.n_tokens):
            raise ValueError(f"{self.name}: token ids must lie in [0, {self.n_tokens}), "
                             f"got min {int(xp.min(x))}, max {int(xp.max(x))}")
        out = xp.take(params["W"], xp.reshape(x, (-1,)), axis=0)     # (n, d)
        return xp.reshape(out, tuple(x.shape) + (self.d,)), EmbeddingCache(x)   # (..., d)

    def backward(self, params, cache, dout):
        x = cache.ids
        self.check_dout(dout, tuple(x.shape) + (self.d,))
        xp = namespace(dout)
        tokens = xp.arange(self.n_tokens, dtype=x.dtype, device=array_api_compat.device(x))
        onehot = xp.astype(xp.reshape(x, (-1, 1)) == tokens, dout.dtype)  # (n, n_tokens)
        return None, {"W": onehot.T @ xp.reshape(dout, (-1, self.d))}       # (n_tokens, d)

    @staticmethod
    def examples(rng):
        return {"default": (Embedding(5, 3), as_rng(rng).integers(0, 5, (2, 4)), {})}
