"""Layers, one family a file. Each follows the protocol in :mod:`tinynim.nn.base`:
``init(rng) -> params``, ``forward(params, x, **kw) -> (out, cache)``,
``backward(params, cache, dout) -> (dx, grads)``, and ``examples(rng)``, one per code route.

``REGISTRY`` is ``{name: class}`` of the framework's layers (those of this package), collected
explicitly by :func:`~tinynim.nn.base.collect_layers`; nothing registers itself on import, and
layers defined elsewhere (e.g. the paper models in ``tasks``) are collected by name:
``collect_layers("tasks")``."""
from tinynim.nn.base import Layer, collect_layers
from tinynim.nn.linear import Linear
from tinynim.nn.activations import ACTIVATIONS, GELU, ReLU, Sigmoid, Softplus, Tanh
from tinynim.nn.containers import Residual, Sequential
from tinynim.nn.mlp import MLP
from tinynim.nn.norm import LayerNorm
from tinynim.nn.embedding import Embedding
from tinynim.nn.positional import SinusoidalPositional, sinusoidal
from tinynim.nn.attention import SoftmaxAttention
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.nn.mesa import MesaLayer, sherman_morrison_inverses
from tinynim.nn.transformer import TransformerBlock
from tinynim.nn.recurrent import GatedLinearRNN
from tinynim.nn.hyper import HyperLinear, HyperMLP

REGISTRY: dict[str, type] = collect_layers(__name__)

__all__ = ["Layer", "REGISTRY", "collect_layers", "Linear", "ACTIVATIONS", "GELU", "ReLU", "Sigmoid",
           "Softplus", "Tanh", "Residual", "Sequential", "MLP", "LayerNorm", "Embedding",
           "SinusoidalPositional", "sinusoidal", "SoftmaxAttention", "LinearSelfAttention", "MesaLayer",
           "sherman_morrison_inverses",
           "TransformerBlock", "GatedLinearRNN", "HyperLinear", "HyperMLP"]
