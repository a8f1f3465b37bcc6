"""Foundation layers: an MLP classifier and a causal pre-norm transformer block.

torch and JAX use their library's own building blocks where they have one (fused
scaled-dot-product attention, layer_norm, tanh-GELU), as a user of those libraries would.

The same maths three times: tinynim's hand-derived backward, torch autograd, JAX
``jit(value_and_grad)``, from the same initial weights (tinynim's init, copied to the host).
"""
from __future__ import annotations


import numpy as np

from benchmarks.common import F32, Case, TinynimStep, host_flat, jax_step, torch_step
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

        return TinynimStep(supervised(model, softmax_cross_entropy), params, (x, y))
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

        return TinynimStep(supervised(block, mse), params, (x, y))
    # tinynim's mse: ½ Σ (out − y)² / B
    sq_err = lambda out, y: 0.5 * ((out - y) ** 2).sum() / out.shape[0]   # noqa: E731
    if impl == "torch":
        return torch_step(lambda p, x, y: sq_err(_torch_block(p, x), y), host_flat(params), x, y)
    if impl == "jax":
        return jax_step(lambda p, x, y: sq_err(_jax_block(p, x), y), host_flat(params), x, y)
    raise ValueError(impl)


# -- textbook counts (benchmarks/common.py): 2 flops per multiply-add -------------------
def _mlp_counts():
    """Forward GEMMs B·Σ d_i d_(i+1) MACs; backward the same for dW plus dx for every layer
    but the first. Bytes: x read, params read and grads written, each hidden activation
    and the logits written in forward and read in backward."""
    pairs = list(zip(MLP_SIZES, MLP_SIZES[1:]))
    macs = MLP_B * (2 * sum(a * b for a, b in pairs) + sum(a * b for a, b in pairs[1:]))
    n_params = sum(a * b + b for a, b in pairs)
    return 2 * macs, F32 * (MLP_B * MLP_SIZES[0] + 2 * n_params + 2 * MLP_B * sum(MLP_SIZES[1:]))


def _block_counts():
    """Per token: Q, K, V and output projections 4d², MLP 2·d·d_mlp; per sequence and head
    the T×T scores and their product with V, 2·T²·d_head each (the full square, as the
    libraries compute it). Backward: twice the forward, minus dx of the first projections
    (x is data). Bytes: x and y read, params read and grads written, kept activations
    (LN outputs 2, q/k/v 3, attention output 1, residual 1, block output 1 per token and
    feature, the T×T probabilities per head, MLP hidden before and after GELU) written and
    read once."""
    n, d, dh = TF_B * TF_T, TF_D, TF_D // TF_H
    fwd = n * (4 * d * d + 2 * d * TF_MLP) + TF_B * TF_H * 2 * TF_T * TF_T * dh
    macs = 3 * fwd - n * 3 * d * d
    n_params = 4 * d * d + 2 * d * TF_MLP + TF_MLP + d + 4 * d
    acts = n * (8 * d + 2 * TF_MLP) + TF_B * TF_H * TF_T * TF_T
    return 2 * macs, F32 * (2 * n * d + 2 * n_params + 2 * acts)


CASES = [
    Case("MLP", mlp_setup, info=f"B={MLP_B}, sizes={MLP_SIZES}, ReLU, softmax CE",
         flops=_mlp_counts()[0], bytes=_mlp_counts()[1], goal_vs_torch=1.0),
    Case("TransformerBlock", transformer_setup,
         info=f"B={TF_B}, T={TF_T}, d={TF_D}, {TF_H} heads, d_mlp={TF_MLP}, causal, pre-LN, mse",
         flops=_block_counts()[0], bytes=_block_counts()[1], goal_vs_torch=1.0),
]
