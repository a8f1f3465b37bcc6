"""GatedLinearRNN training step: tinynim's hand-derived BPTT vs torch autograd vs JAX.

B = 256 sequences, d_in = d_out = 16, 128 recurrent neurons and output gates, σ(ν) decays.
Two losses (tinynim's mse, ½ Σ (out − y)² / B):

* **all steps**: a target at every time step, T = 16, 64, 256. tinynim: the default
  ``scan="loop"`` forward and reversed for BPTT; T = 64, 256 also with ``scan="parallel"``
  (the log-depth doubling scan).
* **last step**: a target at the last step only, as in in-context regression. tinynim
  exploits it (``last_only=True``: h_T as one weighted sum, output gating at one step);
  torch and JAX run the same recurrence and read h_T.

torch runs the recurrence the natural way, a Python loop over time (input and output
projections batched over all steps); JAX uses ``lax.scan`` under ``jit``.
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import Case, host_flat, jax_step, torch_step
from tinynim.backend import asarray
from tinynim.nn.recurrent import GatedLinearRNN
from tinynim.random import RNG
from tinynim.train import supervised

B, D_IN, N, D_OUT = 256, 16, 128, 16


def _sq_err(out, y):
    return 0.5 * ((out - y) ** 2).sum() / out.shape[0]


def _torch_loss(p, x, y, last):
    import torch
    xt = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
    u = (xt @ p["Wx_in"]) * (xt @ p["Wg_in"])                       # (B, T, N)
    lam = torch.sigmoid(p["nu"])
    h, states = torch.zeros_like(u[:, 0]), []
    for t in range(u.shape[1]):
        h = lam * h + u[:, t]
        states.append(h)
    H = h if last else torch.stack(states, dim=1)
    return _sq_err(((H @ p["Wx_out"]) * (H @ p["Wg_out"])) @ p["D"], y)


def _jax_loss(p, x, y, last):
    import jax
    import jax.numpy as jnp
    xt = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
    u = (xt @ p["Wx_in"]) * (xt @ p["Wg_in"])
    lam = jax.nn.sigmoid(p["nu"])

    def step(h, u_t):
        h = lam * h + u_t
        return h, h
    h_T, states = jax.lax.scan(step, jnp.zeros_like(u[:, 0]), jnp.swapaxes(u, 0, 1))
    H = h_T if last else jnp.swapaxes(states, 0, 1)
    return _sq_err(((H @ p["Wx_out"]) * (H @ p["Wg_out"])) @ p["D"], y)


def make_setup(T, *, last=False, scan="loop"):
    def setup(impl):
        rnn = GatedLinearRNN(D_IN, N, D_OUT, scan=scan)
        params = rnn.init(RNG(0))
        data = np.random.default_rng(1)
        x = data.standard_normal((B, T, D_IN))
        y = data.standard_normal((B, D_OUT) if last else (B, T, D_OUT))
        if impl == "tinynim":
            x, y = asarray(x), asarray(y)

            loss_and_grads = supervised(rnn, last_only=last)
            return lambda: loss_and_grads(params, (x, y), 0)
        if impl == "torch":
            return torch_step(lambda p, x, y: _torch_loss(p, x, y, last), host_flat(params), x, y)
        if impl == "jax":
            return jax_step(lambda p, x, y: _jax_loss(p, x, y, last), host_flat(params), x, y)
        raise ValueError(impl)
    return setup


_SIZES = f"B={B}, d_in={D_IN}, N={N}, M={N}, d_out={D_OUT}"
CASES = [Case(f"all steps T={T}", make_setup(T), info=f"{_SIZES}, T={T}, scan='loop'") for T in (16, 64, 256)]
CASES += [Case(f"all steps T={T} parallel", make_setup(T, scan="parallel"), info=f"{_SIZES}, T={T}, scan='parallel'",
               impls=("tinynim", "torch")) for T in (64, 256)]
CASES += [Case("last step T=64", make_setup(64, last=True), info=f"{_SIZES}, T=64, loss at the last step")]
