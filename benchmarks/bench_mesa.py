"""P2 (arXiv:2309.05858): one training step of the mesa layer and of the deep linear model.

* Mesa: ``tinynim.nn.MesaLayer``, B = 64 sequences, T = 30, D = 16, one head, d_key = 4,
  float32, ½-MSE against a fixed random target. tinynim: the hand-derived backward (score
  form: the cache holds q, k, v, u, y; H_t is rebuilt by a prefix sum for the one backward
  solve). torch / JAX: the same forward written with ``linalg.solve`` on every
  H_t = Σ_{i≤t} k_i k_iᵀ + I/λ (λ = exp(log_lam)), differentiated by autograd /
  ``jit(value_and_grad)``.
* Deep LSA: ``tasks.mesa_optimization.SequencePredictor(4, 3, 4)`` (3 causal LSA layers of 4
  heads, key size 4, residual) on constructed tokens of linear dynamics, B = 64, T = 30, the
  official loss Σ‖ŝ − s‖²/(2BT); torch / JAX: the textbook masked-score forward.

    python -m benchmarks.run --only mesa
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import F32, Case, TinynimStep, f32, host_flat, jax_step, torch_step

B, T, D, K = 64, 30, 16, 4


def _data():
    rng = np.random.default_rng(0)
    return f32(rng.uniform(-1, 1, (B, T, D))), f32(rng.standard_normal((B, T, D)))


def _params():
    from tinynim.nn.mesa import MesaLayer
    from tinynim.random import RNG
    layer = MesaLayer(D, 1, K, init_std=0.3)
    return layer, layer.init(RNG(0), dtype="float32")


def _textbook_loss(xp, cumsum):
    """The mesa forward in any library with `@`, ``linalg.solve`` and a prefix sum."""
    def loss(p, x, target):
        W = lambda name: p[name][0]                                    # one head
        q, k, v = x @ W("Wq"), x @ W("Wk"), x @ W("Wv")                # (B, T, K)
        eye = xp.eye(K, dtype=x.dtype)
        H = cumsum(k[..., :, None] * k[..., None, :]) + xp.exp(-p["log_lam"][0]) * eye
        u = xp.linalg.solve(H, q[..., None])[..., 0]                   # (B, T, K)
        mask = xp.tril(xp.ones((T, T), dtype=x.dtype))
        y = ((u @ k.mT) * mask) @ v
        diff = y @ W("Wp") - target
        return 0.5 * (diff * diff).sum() / x.shape[0]
    return loss


def setup(impl):
    layer, params = _params()
    x, target = _data()
    if impl == "torch":
        import torch
        return torch_step(_textbook_loss(torch, lambda a: torch.cumsum(a, dim=1)), host_flat(params), x, target)
    if impl == "jax":
        import jax.numpy as jnp
        return jax_step(_textbook_loss(jnp, lambda a: jnp.cumsum(a, axis=1)), host_flat(params), x, target)
    from tinynim.backend import asarray
    from tinynim.losses import mse
    from tinynim.train import supervised
    return TinynimStep(supervised(layer, mse), params, (asarray(x), asarray(target)))


def _deep_textbook(xp, n_layers, n_heads, d):
    def loss(p, tokens, target):
        H = tokens
        mask = xp.tril(xp.ones((T, T), dtype=tokens.dtype))
        for l in range(n_layers):
            W = lambda name, h: p[f"{l}/{name}"][h]
            H = H + sum(((((H @ W("Wq", h)) @ (H @ W("Wk", h)).mT) * mask) @ (H @ W("Wv", h))) @ W("Wp", h)
                        for h in range(n_heads))
        diff = H[..., :d] - target
        return 0.5 * (diff * diff).sum() / (tokens.shape[0] * T)
    return loss


def setup_deep(impl):
    from tasks import mesa_optimization as p2
    from tinynim.backend import asarray, to_numpy, use_backend
    from tinynim.random import RNG
    from tinynim.train import supervised
    d, n_layers, n_heads = 4, 3, 4
    model = p2.SequencePredictor(d, n_layers, n_heads, init_std=0.1)
    with use_backend("numpy", dtype="float32"):
        params = model.init(RNG(0))
        tokens, target = (f32(to_numpy(a)) for a in p2.sequence_data(B, T, d)(RNG(1), 0))
    flat = {f"{l}/{k}": to_numpy(v) for l, layer in enumerate(params) for k, v in layer.items()}
    if impl == "torch":
        import torch
        return torch_step(_deep_textbook(torch, n_layers, n_heads, d), flat, tokens, target)
    if impl == "jax":
        import jax.numpy as jnp
        return jax_step(_deep_textbook(jnp, n_layers, n_heads, d), flat, tokens, target)
    params = [{k: asarray(v) for k, v in layer.items()} for layer in params]
    return TinynimStep(supervised(model, p2.sequence_mse), params, (asarray(tokens), asarray(target)))


def _mesa_counts():
    """Textbook counts (benchmarks/common.py) of the mesa forward above: q, k, v 3·D·K MACs
    per token, the prefix sum of k kᵀ K², a K×K solve per token ~K³/3 + K², the masked
    scores and their product with v 2·T·K per token, the output D·K; backward twice the
    forward. Bytes: x and target read, weights read and gradients written, and per token the
    kept q, k, v, u, y (5K), H_t (K²), the output (D) and the T-long score row, written and
    read once."""
    n = B * T
    macs = 3 * n * (3 * D * K + K * K + K ** 3 / 3 + K * K + 2 * T * K + D * K)
    n_params = 4 * D * K + 1
    acts = n * (5 * K + K * K + D + T)
    return 2 * macs, F32 * (2 * n * D + 2 * n_params + 2 * acts)


def _deep_counts(n_layers=3, n_heads=4, d=4):
    """Per layer and head: q, k, v 3·D·K MACs per token (K = d = 4 here, D = 16), masked
    scores and their product with v 2·T·K, output K·D; backward twice the forward. Bytes:
    tokens and targets read, weights read and grads written, per layer the residual stream
    and per head q, k, v, the score row and the head output, written and read once."""
    n, k = B * T, d
    macs = 3 * n * n_layers * n_heads * (3 * D * k + 2 * T * k + k * D)
    n_params = n_layers * n_heads * 4 * D * k
    acts = n * n_layers * (D + n_heads * (3 * k + T + k))
    return 2 * macs, F32 * (n * (D + d) + 2 * n_params + 2 * acts)


GOAL = 0.5          # issue 10: structure-aware cases (LSA, mesa) at most half torch's time
CASES = [Case("Mesa", setup, info=f"1 head, B={B}, T={T}, D={D}, d_key={K}",
              flops=_mesa_counts()[0], bytes=_mesa_counts()[1], goal_vs_torch=GOAL),
         Case("DeepLSA", setup_deep, info=f"3 causal LSA layers x 4 heads, d=4 (D=16), B={B}, T={T}",
              flops=_deep_counts()[0], bytes=_deep_counts()[1], goal_vs_torch=GOAL)]
