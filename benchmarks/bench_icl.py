"""In-context regression (P1): one training step of the full-form (4-matrix) linear Transformer.

d = N = 10 (tokens of size 11, 11 per sequence), batch 2048, float32, one head, key size 11;
1 layer, and 3 layers with shared weights. tinynim: ``tasks.icl_regression.LinearTransformer``
with its hand-derived backward (only the query row in the last layer, products Q = Wq Wkᵀ,
P = Wv Wp for that row, one GEMM per projection). torch / JAX: the textbook forward
``H ← H + ((H Wq)(C Wk)ᵀ)(C Wv) Wp`` differentiated by autograd / ``jit(value_and_grad)``.

    python -m benchmarks.run --only icl        # the shared runner (benchmarks/run.py)
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import Case, f32, jax_step, torch_step

D, N, B, STD = 11, 10, 2048, 0.2
NAMES = ("Wq", "Wk", "Wv", "Wp")


def _data():
    rng = np.random.default_rng(0)
    W = {k: rng.normal(0, STD, (D, D)) for k in NAMES}
    w = rng.standard_normal((B, 1, D - 1))
    x = rng.uniform(-0.5, 0.5, (B, N + 1, D - 1))
    y = x @ w.transpose(0, 2, 1)                                       # (B, N+1, 1)
    tokens = np.concatenate([x, np.concatenate([y[:, :N], np.zeros((B, 1, 1))], axis=1)], axis=-1)
    return W, f32(tokens), f32(y[:, N])


def _textbook_loss(p, tokens, targets, n_layers):
    """The same maths in any array library with `@` and slicing (torch or jax.numpy)."""
    H = tokens
    for _ in range(n_layers):
        C = H[:, :N]
        H = H + (((H @ p["Wq"]) @ (C @ p["Wk"]).mT) @ (C @ p["Wv"])) @ p["Wp"]
    pred = -H[:, -1, -1:]
    return 0.5 * ((pred - targets) ** 2).sum() / tokens.shape[0]


def _setup(n_layers):
    def setup(impl):
        W, tokens, targets = _data()
        loss = lambda p, t, y: _textbook_loss(p, t, y, n_layers)
        if impl == "torch":
            return torch_step(loss, W, tokens, targets)
        if impl == "jax":
            return jax_step(loss, W, tokens, targets)
        from tasks.icl_regression import LinearTransformer
        from tinynim.backend import asarray
        from tinynim.train import supervised
        model = LinearTransformer(D - 1, 1, n_layers, form="full")
        params = {k: asarray(v[None]) for k, v in W.items()}           # one head: (1, D, D)
        t, y = asarray(tokens), asarray(targets)

        loss_and_grads = supervised(model)
        return lambda: loss_and_grads(params, (t, y), 0)
    return setup


CASES = [Case("LSA-1layer", _setup(1), info=f"full form, d=N={N}, B={B}"),
         Case("LSA-3shared", _setup(3), info=f"full form, 3 shared layers, d=N={N}, B={B}")]
