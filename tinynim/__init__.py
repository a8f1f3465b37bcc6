"""tinynim: a small deep-learning framework with hand-derived gradients, written once
against the Python Array API (NumPy, CuPy, PyTorch, JAX, array-api-strict).

>>> import tinynim as tn
>>> layer = tn.nn.Linear(3, 2)
>>> params = layer.init(tn.RNG(0))
"""
__version__ = "0.1.0"

import backends

if not getattr(backends, "TINYNIM_BACKENDS", False):          # a generic name: say if it is not ours
    raise ImportError(f"tinynim needs its own top-level package 'backends', but 'import backends' found "
                      f"{getattr(backends, '__file__', backends)!r}; rename that module or run from the "
                      f"tinynim checkout (pip install -e .)")

from backends import BackendError                              # noqa: E402
from tinynim.backend import asarray, get_backend, to_numpy, use_backend
from tinynim.random import RNG
from tinynim import checkpoint, es, gradcheck, losses, nn, optim, train, tree
from tinynim import analysis, claims, experiment, threads
from tinynim.analysis import jacobian, ntk
from tinynim.checkpoint import CheckpointError
from tinynim.optim import SGD, Adam
from tinynim.train import NonFiniteError, fit
from tinynim.compile import CompileWarning, compile                # noqa: A004 - tinynim.compile(step)

__all__ = ["__version__", "BackendError", "asarray", "get_backend", "to_numpy", "use_backend",
           "RNG", "checkpoint", "es", "gradcheck", "losses", "nn", "optim", "train", "tree",
           "analysis", "claims", "experiment", "jacobian", "ntk", "threads",
           "CheckpointError", "SGD", "Adam", "NonFiniteError", "fit", "compile", "CompileWarning"]
