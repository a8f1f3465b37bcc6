"""Layers, one family a file. Each follows the protocol in :mod:`tinynim.nn.base`:
``init(rng) -> params``, ``forward(params, x) -> (out, cache)``,
``backward(params, cache, dout) -> (dx, grads)``."""
from tinynim.nn.base import REGISTRY, Layer
from tinynim.nn.linear import Linear
from tinynim.nn.activations import ACTIVATIONS, GELU, ReLU, Sigmoid, Softplus, Tanh
from tinynim.nn.containers import Residual, Sequential
from tinynim.nn.mlp import MLP
from tinynim.nn.norm import LayerNorm
from tinynim.nn.embedding import Embedding
from tinynim.nn.positional import SinusoidalPositional, sinusoidal
from tinynim.nn.attention import SoftmaxAttention
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.nn.transformer import TransformerBlock
from tinynim.nn.recurrent import GatedLinearRNN

__all__ = ["Layer", "REGISTRY", "Linear", "ACTIVATIONS", "GELU", "ReLU", "Sigmoid", "Softplus",
           "Tanh", "Residual", "Sequential", "MLP", "LayerNorm", "Embedding",
           "SinusoidalPositional", "sinusoidal", "SoftmaxAttention", "LinearSelfAttention",
           "TransformerBlock", "GatedLinearRNN"]
