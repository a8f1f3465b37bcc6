"""Foundation layers: an MLP classifier and a causal pre-norm transformer block.

torch and JAX use their library's own building blocks where they have one (fused
scaled-dot-product attention, layer_norm, tanh-GELU), as a user of those libraries would.

The same maths three times: tinynim's hand-derived backward, torch autograd, JAX
``jit(value_and_grad)``, from the same initial weights (tinynim's init, copied to the host).
"""
from __future__ import annotations


import numpy as np

from benchmarks.common import Case, host_flat, jax_step, torch_step
from tinynim.backend import asarray
from tinynim.losses import mse, softmax_cross_entropy
from tinynim.nn.mlp import MLP
from tinynim.nn.transformer import TransformerBlock
from tinynim.random import RNG
from tinynim.train import supervised

# -- MLP: softmax cross-entropy on random labels ------------------------------------------
MLP_B, MLP_SIZES = 1024, [64, 256, 256, 10]


def _mlp_logits(p, x, relu, n_linear):
    """Linear, ReLU, ..., Linear with tinynim's keys: Linear k sits at position 2k."""
    h = x
    for k in range(n_linear):
        h = h @ p[f"{2 * k}/W"] + p[f"{2 * k}/b"]
        if k < n_linear - 1:
            h = relu(h)
    return h


def mlp_setup(impl):
    model = MLP(MLP_SIZES, activation="relu")
    params = model.init(RNG(0))
    data = np.random.default_rng(1)
    x = data.standard_normal((MLP_B, MLP_SIZES[0]))                 # (B, 64)
    y = data.integers(0, MLP_SIZES[-1], MLP_B)                      # (B,)
    n = len(MLP_SIZES) - 1
    if impl == "tinynim":
        x, y = asarray(x), asarray(y)

        loss_and_grads = supervised(model, softmax_cross_entropy)
        return lambda: loss_and_grads(params, (x, y), 0)
    if impl == "torch":
        import torch
        return torch_step(lambda p, x, y: torch.nn.functional.cross_entropy(_mlp_logits(p, x, torch.relu, n), y),
                          host_flat(params), x, y)
    if impl == "jax":
        import jax

        def loss_fn(p, x, y):
            logp = jax.nn.log_softmax(_mlp_logits(p, x, jax.nn.relu, n))
            return -jax.numpy.take_along_axis(logp, y[:, None], axis=1).mean()
        return jax_step(loss_fn, host_flat(params), x, y)
    raise ValueError(impl)


# -- TransformerBlock: pre-norm, causal softmax attention, GELU MLP; mse to a random target --
TF_B, TF_T, TF_D, TF_H, TF_MLP = 64, 64, 64, 4, 256
LN_EPS = 1e-5          # tinynim's LayerNorm default


def _torch_block(p, x):
    """x + Attn(LN₁ x), then + MLP(LN₂ h): torch's fused SDPA and layer_norm, tanh GELU."""
    import torch.nn.functional as F
    B, T, D = x.shape

    def heads(a):                                              # (B, T, D) -> (B, H, T, d)
        return a.reshape(B, T, TF_H, D // TF_H).transpose(1, 2)

    a = F.layer_norm(x, (D,), p["0/0/gamma"], p["0/0/beta"], LN_EPS)
    o = F.scaled_dot_product_attention(heads(a @ p["0/1/Wq"]), heads(a @ p["0/1/Wk"]), heads(a @ p["0/1/Wv"]),
                                       is_causal=True)
    h = x + o.transpose(1, 2).reshape(B, T, D) @ p["0/1/Wo"]
    m = F.layer_norm(h, (D,), p["1/0/gamma"], p["1/0/beta"], LN_EPS)
    m = F.gelu(m @ p["1/1/0/W"] + p["1/1/0/b"], approximate="tanh")
    return h + m @ p["1/1/2/W"] + p["1/1/2/b"]


def _jax_block(p, x):
    """The same block in JAX: jax.nn.dot_product_attention (layout B, T, H, d), tanh GELU."""
    import jax
    import jax.numpy as jnp
    B, T, D = x.shape

    def ln(a, g, b):
        mu = a.mean(-1, keepdims=True)
        return (a - mu) / jnp.sqrt(((a - mu) ** 2).mean(-1, keepdims=True) + LN_EPS) * g + b

    def heads(a):                                              # (B, T, D) -> (B, T, H, d)
        return a.reshape(B, T, TF_H, D // TF_H)

    a = ln(x, p["0/0/gamma"], p["0/0/beta"])
    o = jax.nn.dot_product_attention(heads(a @ p["0/1/Wq"]), heads(a @ p["0/1/Wk"]), heads(a @ p["0/1/Wv"]),
                                     is_causal=True)
    h = x + o.reshape(B, T, D) @ p["0/1/Wo"]
    m = ln(h, p["1/0/gamma"], p["1/0/beta"])
    m = jax.nn.gelu(m @ p["1/1/0/W"] + p["1/1/0/b"], approximate=True)
    return h + m @ p["1/1/2/W"] + p["1/1/2/b"]


def transformer_setup(impl):
    block = TransformerBlock(TF_D, TF_H, TF_MLP, causal=True)
    params = block.init(RNG(0))
    data = np.random.default_rng(1)
    x = data.standard_normal((TF_B, TF_T, TF_D))                    # (B, T, D)
    y = data.standard_normal((TF_B, TF_T, TF_D))                    # (B, T, D) regression target
    if impl == "tinynim":
        x, y = asarray(x), asarray(y)

        loss_and_grads = supervised(block, mse)
        return lambda: loss_and_grads(params, (x, y), 0)
    # tinynim's mse: ½ Σ (out − y)² / B
    sq_err = lambda out, y: 0.5 * ((out - y) ** 2).sum() / out.shape[0]   # noqa: E731
    if impl == "torch":
        return torch_step(lambda p, x, y: sq_err(_torch_block(p, x), y), host_flat(params), x, y)
    if impl == "jax":
        return jax_step(lambda p, x, y: sq_err(_jax_block(p, x), y), host_flat(params), x, y)
    raise ValueError(impl)


CASES = [
    Case("MLP", mlp_setup, info=f"B={MLP_B}, sizes={MLP_SIZES}, ReLU, softmax CE"),
    Case("TransformerBlock", transformer_setup,
         info=f"B={TF_B}, T={TF_T}, d={TF_D}, {TF_H} heads, d_mlp={TF_MLP}, causal, pre-LN, mse"),
]
