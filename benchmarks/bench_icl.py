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

from benchmarks.common import F32, Case, TinynimStep, f32, jax_step, torch_step

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

        return TinynimStep(supervised(model), params, (t, y))
    return setup


def _counts(n_layers):
    """Textbook counts of the forward above, per layer and task: H Wq (N+1)·D², C Wk and
    C Wv N·D² each, scores and their product with C Wv (N+1)·N·D each, the output
    projection (N+1)·D²; backward twice that. Bytes: tokens and targets read, weights read
    and gradients written, and per layer the six intermediate products written and read
    once."""
    T = N + 1
    per_layer = 2 * T * D * D + 2 * N * D * D + 2 * T * N * D
    acts = 2 * T * D + 2 * N * D + 2 * T * N
    return 2 * 3 * B * n_layers * per_layer, F32 * (B * T * D + B + 2 * 4 * D * D + 2 * B * n_layers * acts)


GOAL = 0.5          # issue 10: structure-aware cases at most half torch's time
CASES = [Case("LSA-1layer", _setup(1), info=f"full form, d=N={N}, B={B}",
              flops=_counts(1)[0], bytes=_counts(1)[1], goal_vs_torch=GOAL),
         Case("LSA-3shared", _setup(3), info=f"full form, 3 shared layers, d=N={N}, B={B}",
              flops=_counts(3)[0], bytes=_counts(3)[1], goal_vs_torch=GOAL)]
