"""tinynim: a small deep-learning framework with hand-derived gradients, written once
against the Python Array API (NumPy, CuPy, PyTorch, array-api-strict).

>>> import tinynim as tn
>>> layer = tn.nn.Linear(3, 2)
>>> params = layer.init(tn.RNG(0))
"""
__version__ = "0.1.0"

from backends import BackendError
from tinynim.backend import asarray, get_backend, to_numpy, use_backend
from tinynim.random import RNG
from tinynim import checkpoint, es, gradcheck, losses, nn, optim, train, tree
from tinynim.checkpoint import CheckpointError
from tinynim.optim import SGD, Adam
from tinynim.train import NonFiniteError, fit

__all__ = ["__version__", "BackendError", "asarray", "get_backend", "to_numpy", "use_backend",
           "RNG", "checkpoint", "es", "gradcheck", "losses", "nn", "optim", "train", "tree",
           "CheckpointError", "SGD", "Adam", "NonFiniteError", "fit"]
