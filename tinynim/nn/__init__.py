"""Layers, one family a file. Each follows the protocol in :mod:`tinynim.nn.base`."""
from tinynim.nn.base import REGISTRY, Layer
from tinynim.nn.linear import Linear

__all__ = ["Layer", "REGISTRY", "Linear"]
