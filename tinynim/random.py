"""Seeded randomness: draw on the host with ``numpy.random.Generator``, then move to the backend.

One seed gives the same numbers on every backend (numpy, torch, cupy, array-api-strict),
which is what makes cross-backend tests and reproducible examples possible.

>>> rng = RNG(0)
>>> w = rng.normal((3, 4), std=0.1)           # on the active backend, active float dtype
>>> a, b = rng.spawn(2)                        # independent child streams
"""
from __future__ import annotations

import numpy as np

from tinynim.backend import resolve


FLOATS = ("float32", "float64")


def _shape(shape):
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _float_dtype(who, dtype):
    """Continuous draws need a floating dtype: an integer one would truncate them (to zeros).
    Checked before drawing, so a refused call leaves the stream where it was."""
    if dtype is not None and str(dtype).replace("torch.", "") not in FLOATS:
        raise ValueError(f"RNG.{who}: dtype must be a floating dtype ({', '.join(FLOATS)}; "
                         f"default: the backend's), got {dtype!r}")


class RNG:
    """A host random stream whose draws land on the active (or a named) backend.

    Continuous draws take keyword ``dtype`` (float32 or float64, default the backend's float
    dtype; any other is a ValueError), and every method ``backend`` (a name or adapter,
    default the active one). ``host=True`` returns numpy (float64 for continuous draws).
    """

    def __init__(self, seed=0):
        self.seed = seed
        self.np = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def spawn(self, n: int) -> list["RNG"]:
        """`n` statistically independent child streams."""
        return [RNG(g) for g in self.np.spawn(n)]

    def _out(self, a, dtype, backend, host):
        return a if host else resolve(backend).asarray(a, dtype)

    def normal(self, shape, std=1.0, mean=0.0, *, dtype=None, backend=None, host=False):
        _float_dtype("normal", dtype)
        return self._out(self.np.normal(mean, std, _shape(shape)), dtype, backend, host)

    def truncated_normal(self, shape, std=1.0, *, dtype=None, backend=None, host=False):
        """N(0, std²) truncated to ±2 std (redrawn, not clipped), as Haiku's initialisers."""
        _float_dtype("truncated_normal", dtype)
        z = self.np.standard_normal(_shape(shape))
        bad = np.abs(z) > 2
        while bad.any():
            z[bad] = self.np.standard_normal(int(bad.sum()))
            bad = np.abs(z) > 2
        return self._out(std * z, dtype, backend, host)

    def uniform(self, shape, low=0.0, high=1.0, *, dtype=None, backend=None, host=False):
        _float_dtype("uniform", dtype)
        return self._out(self.np.uniform(low, high, _shape(shape)), dtype, backend, host)

    def integers(self, low, high, shape, *, backend=None, host=False):
        """Integers in [low, high), int64."""
        return self._out(self.np.integers(low, high, _shape(shape)), "int64", backend, host)

    def permutation(self, n: int, *, backend=None, host=False):
        return self._out(self.np.permutation(n), "int64", backend, host)

    def choice(self, n: int, size, *, replace=True, p=None, backend=None, host=False):
        """Indices in [0, n) drawn with probabilities `p` (uniform by default)."""
        return self._out(self.np.choice(n, _shape(size), replace=replace, p=p), "int64", backend, host)

    def orthogonal(self, n: int, *, batch=(), dtype=None, backend=None, host=False):
        """Haar-distributed orthogonal n×n matrices (QR of a Gaussian with sign fix)."""
        _float_dtype("orthogonal", dtype)
        q, r = np.linalg.qr(self.np.standard_normal(_shape(batch) + (n, n)))
        q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
        return self._out(q, dtype, backend, host)


def as_rng(rng) -> RNG:
    """Accept an :class:`RNG`, a numpy Generator or an int seed."""
    return rng if isinstance(rng, RNG) else RNG(rng)
