"""tinynim: a small deep-learning framework with hand-derived gradients, written once
against the Python Array API (NumPy, CuPy, PyTorch, array-api-strict)."""
__version__ = "0.1.0"

from backends import BackendError
from tinynim.backend import asarray, get_backend, to_numpy, use_backend
from tinynim.random import RNG
from tinynim import gradcheck, nn, tree

__all__ = ["__version__", "BackendError", "asarray", "get_backend", "to_numpy", "use_backend",
           "RNG", "gradcheck", "nn", "tree"]
