"""The layer protocol, shared by every layer in :mod:`tinynim.nn`.

A layer is hyperparameters plus three pure functions::

    layer = Linear(4, 3)                       # hyperparameters only
    params = layer.init(rng)                   # nested dict of arrays (active backend)
    out, cache = layer.forward(params, x)      # no hidden state; cache is what backward needs
    dx, grads = layer.backward(params, cache, dout)   # grads has the keys of params

Several inputs: ``x`` and ``dx`` are tuples. Per-call extras (masks, lengths) are keyword
arguments of ``forward`` and are stored in the cache. Nothing is ever mutated.

Every concrete layer also provides ``example(rng)`` -> ``(layer, x, kwargs)``: a small
instance with an input, used by ``python -m tinynim check`` and the test suite.
"""
from __future__ import annotations

from tinynim.backend import namespace

REGISTRY: dict[str, type] = {}


class Layer:
    """Base class: naming, error messages and registration for gradient checks."""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "example" in cls.__dict__:
            REGISTRY[cls.__name__] = cls

    @property
    def name(self) -> str:
        return type(self).__name__

    def init(self, rng, *, dtype=None, backend=None) -> dict:
        return {}

    def forward(self, params, x, **kw):
        raise NotImplementedError

    def backward(self, params, cache, dout):
        raise NotImplementedError

    def __call__(self, params, x, **kw):
        """The forward output only (inference)."""
        return self.forward(params, x, **kw)[0]

    # -- helpers for subclasses -------------------------------------------------------
    def check_input(self, x, *, ndim=None, min_ndim=None, last=None, what="x"):
        """Raise ValueError naming this layer if `x` has the wrong rank or last dimension."""
        shape = tuple(x.shape)
        if ndim is not None and len(shape) != ndim:
            raise ValueError(f"{self.name}: expected {what} with {ndim} dims, got shape {shape}")
        if min_ndim is not None and len(shape) < min_ndim:
            raise ValueError(f"{self.name}: expected {what} with at least {min_ndim} dims, got shape {shape}")
        if last is not None and (not shape or shape[-1] != last):
            raise ValueError(f"{self.name}: expected {what} of shape (..., {last}), got shape {shape}")
        return namespace(x)

    def require_keys(self, params, keys):
        missing = [k for k in keys if k not in params]
        if missing:
            raise ValueError(f"{self.name}: params lack {missing}; got keys {sorted(params)}")

