"""P7 (arXiv:2407.12275; the model is our reconstruction, only the abstract is public): one
training step of the bottleneck in-context learner of ``tasks.compositional_icl``.

The DeepSets bottleneck at the sizes of its experiment: B = 64 episodes of 16 context pairs
and 8 queries (n = 4 inputs, o = 4 outputs), context tokens t = [x; y; 1]; encoder
ẑ = ρ(mean_i φ(t_i)) with φ = Linear, ReLU, Linear (width 32) and ρ = Linear(32, 8); execution
ŷ_q = ReLU(x_q W(ẑ)/√n) A/√32 with W(ẑ) = Σ_k ẑ_k Θ_k (a linear hypernetwork); loss
½ Σ (ŷ − y)² / B. The step is forward + loss + backward, no update.

* tinynim: ``BottleneckICL`` (the encoder's, HyperMLP's and Linear's hand-derived backwards,
  chained by hand), as a ``TinynimStep`` (the tinynim-jit column compiles it);
* torch: the same forward, ``torch.autograd.grad``;
* JAX: ``jit(value_and_grad)`` of the same forward.

    python -m benchmarks.run --only compositional
"""
from __future__ import annotations

import math

import numpy as np

from benchmarks.common import F32, Case, TinynimStep, host_flat, jax_step, torch_step

B, N, NQ, N_IN, O, D_Z, WIDTH = 64, 16, 8, 4, 4, 8, 32


def _problem():
    from tasks.compositional_icl import BottleneckICL
    from tinynim.random import RNG
    model = BottleneckICL(N_IN, O, d_z=D_Z, width=WIDTH)
    params = model.init(RNG(0))
    episode = np.random.default_rng(1).standard_normal((B, N + NQ, N_IN + O))
    return model, params, episode


def _loss(p, episode, relu, mean, concat, ones):
    """The bottleneck's query loss with tinynim's parameter keys, in any library with `@`."""
    ctx = concat([episode[:, :N, :], ones((B, N, 1))])                           # (B, N, n + o + 1)
    h = relu(ctx @ p["encoder/phi/0/W"] + p["encoder/phi/0/b"]) @ p["encoder/phi/2/W"] + p["encoder/phi/2/b"]
    z = mean(h) @ p["encoder/rho/W"] + p["encoder/rho/b"]                       # (B, d_z)
    W = (z @ p["execute/0/Theta"].reshape(D_Z, N_IN * WIDTH)).reshape(B, N_IN, WIDTH)
    out = relu(episode[:, N:, :N_IN] @ W / math.sqrt(N_IN)) @ p["execute/1/W"] / math.sqrt(WIDTH)
    return 0.5 * ((out - episode[:, N:, N_IN:]) ** 2).sum() / B


def setup(impl):
    model, params, episode = _problem()
    if impl == "tinynim":
        from tinynim.backend import asarray
        from tinynim.losses import mse

        def loss_and_grads(params_, batch, step):
            (ep,) = batch
            pred, cache = model.forward(params_, ep, n_context=N)
            loss, dpred = mse(pred, ep[:, N:, N_IN:])
            return loss, model.backward(params_, cache, dpred, need_dx=False)[1]
        return TinynimStep(loss_and_grads, params, (asarray(episode, "float32"),))
    if impl == "torch":
        import torch
        return torch_step(lambda p, e: _loss(p, e, torch.relu, lambda h: h.mean(1), lambda a: torch.cat(a, -1),
                                             torch.ones), host_flat(params), episode)
    if impl == "jax":
        import jax
        import jax.numpy as jnp
        return jax_step(lambda p, e: _loss(p, e, jax.nn.relu, lambda h: h.mean(1),
                                           lambda a: jnp.concatenate(a, -1), jnp.ones), host_flat(params), episode)
    raise ValueError(impl)


def _counts():
    """Textbook counts. Forward MACs: φ's two layers B·N·(n+o+1)·w and B·N·w², ρ B·w·d_z, the
    generated weights B·d_z·n·w, the queries' hidden layer B·NQ·n·w and readout B·NQ·w·o;
    backward 2× (input and weight gradients; the episode's own gradient is not needed, and
    is left in: a few % of the total): 3 × 2 flops per MAC. Bytes: the episode read,
    parameters read and gradients written, and each activation the backward needs (φ's two
    hidden layers B·N·w each, the generated W, the queries' hidden layer and output) written
    and read once."""
    w = WIDTH
    macs = B * N * (N_IN + O + 1) * w + B * N * w * w + B * w * D_Z + B * D_Z * N_IN * w + B * NQ * N_IN * w + B * NQ * w * O
    n_params = (N_IN + O + 2) * w + (w + 1) * w + (w + 1) * D_Z + D_Z * N_IN * w + w * O
    acts = 2 * B * N * w + B * N_IN * w + B * NQ * (w + O)
    return 3 * 2 * macs, F32 * (B * (N + NQ) * (N_IN + O) + 2 * n_params + 2 * acts)


# A chain of small GEMMs with no structure beyond the layers' own: issue 10's goal for such
# steps is eager tinynim <= 1.0x torch autograd.
CASES = [Case("BottleneckStep", setup, info=f"B={B} episodes, {N} context + {NQ} queries, n={N_IN}, o={O}, "
                                            f"d_z={D_Z}, width {WIDTH}; DeepSets encoder + hypernetwork MLP",
              flops=_counts()[0], bytes=_counts()[1], goal_vs_torch=1.0)]
