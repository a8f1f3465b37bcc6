"""P6 (arXiv:2312.15001): one outer step of meta-learning on the modular teacher, inner loop included
("MetaStep"), and one on the hyperteacher's few-shot tasks ("FewShotStep", below).

The theory setting of ``tasks.modular_teacher``: student f(x; ẑ) = ReLU(x W(ẑ)/√n) A/√h with
W(ẑ) = Σ_m ẑ_m Θ_m (n = 8, ĥ = 16, M̂ = 6, o = 2), T = 64 tasks × B = 256 samples against fixed
random targets, float32. A step: K = 50 Adam steps (lr 0.03) on all 64 codes from one shared
start (the inner loop), then the first-order outer gradient ∂_θ L at the inferred codes.

* tinynim: ``meta_step``: ``infer_codes`` and the outer gradient (the hand-derived
  HyperMLP backward, every task in one batched matmul per step), as a ``TinynimStep`` (pure in
  params and batch, so tinynim-jit compiles the whole step, the 50 inner steps unrolled);
* torch: the same forward, ``torch.autograd.grad`` w.r.t. the codes at every inner step, a
  hand-written Adam, then autograd w.r.t. (Θ, A) at the detached codes;
* JAX: ``jit`` of the whole step, ``vmap`` of the per-task loss's ``grad`` over tasks and
  ``lax.scan`` over the inner steps.

    python -m benchmarks.run --only modular
"""
from __future__ import annotations

import math

import numpy as np

from benchmarks.common import F32, Case, TinynimStep, f32, host_flat

T, B, N_IN, H, M, O = 64, 256, 8, 16, 6, 2
K, LR, B1, B2, EPS = 50, 0.03, 0.9, 0.999, 1e-8


def _problem():
    from tasks.modular_teacher import network
    from tinynim.random import RNG
    net = network(M, N_IN, H, O)
    params = net.init(RNG(0), dtype="float32")
    rng = np.random.default_rng(1)
    x = rng.uniform(-math.sqrt(3), math.sqrt(3), (T, B, N_IN))
    return net, params, f32(x), f32(rng.standard_normal((T, B, O))), f32(rng.standard_normal(M))


def _forward(xp_relu, Theta, A, x, z):
    """f(x; z) for tasks (T, B, n) with codes (T, M), in any library with `@`."""
    W = (z @ Theta.reshape(M, N_IN * H)).reshape(-1, N_IN, H)
    return xp_relu(x @ W / math.sqrt(N_IN)) @ A / math.sqrt(H)


def _adam(z, g, m, v, t, lr=LR):
    """One Adam step (bias-corrected, as tinynim.optim.Adam) on any array type."""
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    return z - (lr / (1 - B1 ** t)) * m / ((v ** 0.5) / (1 - B2 ** t) ** 0.5 + EPS), m, v


def _setup(impl):
    net, params, x, y, z0 = _problem()
    if impl == "tinynim":
        from tasks.modular_teacher import meta_step
        from tinynim.backend import asarray
        return TinynimStep(meta_step(net, K, LR), params, tuple(asarray(a, "float32") for a in (x, y, z0)))
    flat = {k: f32(v) for k, v in host_flat(params).items()}
    if impl == "torch":
        import torch
        Theta = torch.tensor(flat["0/Theta"], requires_grad=True)
        A = torch.tensor(flat["1/W"], requires_grad=True)
        xt, yt, zt = (torch.as_tensor(a) for a in (x, y, z0))

        def task_loss_sum(Th, A_, z):
            return 0.5 * ((_forward(torch.relu, Th, A_, xt, z) - yt) ** 2).mean(dim=(1, 2)).sum()

        def step():
            z = zt.expand(T, M).clone()
            m, v = torch.zeros_like(z), torch.zeros_like(z)
            with torch.no_grad():
                Th_, A_ = Theta.detach(), A.detach()
            for t in range(1, K + 1):
                z.requires_grad_(True)
                (g,) = torch.autograd.grad(task_loss_sum(Th_, A_, z), [z])
                with torch.no_grad():
                    z, m, v = _adam(z.detach(), g, m, v, t)
            loss = task_loss_sum(Theta, A, z.detach()) / T
            gTh, gA = torch.autograd.grad(loss, [Theta, A])
            return loss.detach(), {"0/Theta": gTh, "1/W": gA}
        return step
    if impl == "jax":
        import jax
        import jax.numpy as jnp
        p = {k: jnp.asarray(v) for k, v in flat.items()}
        xj, yj, zj = (jnp.asarray(a) for a in (x, y, z0))

        def one_task(Th, A_, x1, y1, z1):
            out = _forward(jax.nn.relu, Th, A_, x1[None], z1[None])[0]
            return 0.5 * ((out - y1) ** 2).mean()

        dz = jax.vmap(jax.grad(one_task, argnums=4), in_axes=(None, None, 0, 0, 0))
        per_task = jax.vmap(one_task, in_axes=(None, None, 0, 0, 0))

        def outer(p, x_, y_, z_start):
            def inner(carry, t):
                z, m, v = carry
                z, m, v = _adam(z, dz(p["0/Theta"], p["1/W"], x_, y_, z), m, v, t)
                return (z, m, v), None
            z = jnp.broadcast_to(z_start, (T, M))
            (z, _, _), _ = jax.lax.scan(inner, (z, jnp.zeros_like(z), jnp.zeros_like(z)),
                                        jnp.arange(1, K + 1, dtype=jnp.float32))
            z = jax.lax.stop_gradient(z)
            return jax.value_and_grad(lambda q: per_task(q["0/Theta"], q["1/W"], x_, y_, z).mean())(p)
        f = jax.jit(outer)
        return lambda: f(p, xj, yj, zj)
    raise ValueError(impl)


def _counts():
    """Textbook counts. Per task, the forward is W = z Θ (M·n·ĥ MACs), x W (B·n·ĥ) and the
    readout (B·ĥ·o); an inner step's backward to the code is dh = G Aᵀ (B·o·ĥ), dW = xᵀ dh
    (B·n·ĥ) and dz = ⟨dW, Θ⟩ (M·n·ĥ): 2 × the forward. The outer gradient adds dA (B·ĥ·o) and
    dΘ (M·n·ĥ), about the same again: (K + 1) steps of 2·2·T·(M·n·ĥ + B·n·ĥ + B·ĥ·o) flops.
    Bytes per step: x and y read, the hidden layer (T·B·ĥ, before and after the ReLU) and the
    output written and read once, Θ and A read; codes and Adam state are negligible."""
    macs = M * N_IN * H + B * N_IN * H + B * H * O
    per_step = F32 * (T * B * (N_IN + O) + 2 * T * B * (2 * H + O) + M * N_IN * H + H * O)
    return (K + 1) * 4 * T * macs, (K + 1) * per_step


# -- the hyperteacher's few-shot step (tasks.modular_fewshot) ------------------------------------
# The hypernetwork learner of the claims: HyperMLP(M̂ = 16, [8, 32, 32, 32, 4]) with the two
# hidden layers generated; T = 16 tasks × 64 support + 64 query shots, soft targets; 10 inner
# Adam steps (lr 0.3) on the codes from the learned start, then the first-order outer gradient
# on the query set w.r.t. the network and the start (first-order MAML).
FT, FB, FN, FW, FM, FC, FK, FLR = 16, 64, 8, 32, 16, 4, 10, 0.3


def _fewshot_problem():
    from tasks.modular_fewshot import FewShot, few_shot_learner
    fs = FewShot(learner="hnet", n_in=FN, width=FW, M_student=FM, classes=FC, shots=FB, tasks_per_step=FT,
                 inner_steps=FK, inner_lr=FLR)
    net, slow = few_shot_learner(fs)
    rng = np.random.default_rng(2)
    data = []
    for _ in range(2):
        logits = 3.0 * rng.standard_normal((FT, FB, FC))
        y = np.exp(logits - logits.max(-1, keepdims=True))
        data += [f32(rng.uniform(-1, 1, (FT, FB, FN))), f32(y / y.sum(-1, keepdims=True))]
    return fs, net, slow, data


def _fewshot_forward(relu, p, x, z):
    """The student's logits for tasks (T, B, n) with codes (T, M̂), in any library with `@`."""
    s = lambda d: 1.0 / math.sqrt(d)
    W1 = (z @ p["net/1/Theta"].reshape(FM, FW * FW)).reshape(-1, FW, FW)
    W2 = (z @ p["net/2/Theta"].reshape(FM, FW * FW)).reshape(-1, FW, FW)
    h = relu(x @ p["net/0/W"] * s(FN))
    h = relu(h @ W1 * s(FW))
    h = relu(h @ W2 * s(FW))
    return h @ p["net/3/W"] * s(FW)


def _fewshot_setup(impl):
    fs, net, slow, (xs, ys, xq, yq) = _fewshot_problem()
    if impl == "tinynim":
        from tasks.modular_fewshot import query_gradients
        from tinynim.backend import asarray
        return TinynimStep(lambda p, b, step: query_gradients(fs, net, p, b[:2], b[2:]), slow,
                           tuple(asarray(a, "float32") for a in (xs, ys, xq, yq)))
    flat = {k: f32(v) for k, v in host_flat(slow).items()}
    if impl == "torch":
        import torch
        p = {k: torch.tensor(v, requires_grad=True) for k, v in flat.items()}
        xs_, ys_, xq_, yq_ = (torch.as_tensor(a) for a in (xs, ys, xq, yq))

        def task_losses(q, x, y, z):
            return -(y * torch.log_softmax(_fewshot_forward(torch.relu, q, x, z), -1)).sum(-1).mean(1)

        def step():
            q = {k: v.detach() for k, v in p.items()}
            z = q["start"].expand(FT, FM).clone()
            m, v = torch.zeros_like(z), torch.zeros_like(z)
            for t in range(1, FK + 1):
                z.requires_grad_(True)
                (g,) = torch.autograd.grad(task_losses(q, xs_, ys_, z).sum(), [z])
                with torch.no_grad():
                    z, m, v = _adam(z.detach(), g, m, v, t, FLR)
            z = z.detach() + (p["start"] - p["start"].detach())     # dL/dstart = mean_t dL_t/dz_t (first order)
            loss = task_losses(p, xq_, yq_, z).mean()
            keys = list(p)
            return loss.detach(), dict(zip(keys, torch.autograd.grad(loss, [p[k] for k in keys])))
        return step
    if impl == "jax":
        import jax
        import jax.numpy as jnp
        p = {k: jnp.asarray(v) for k, v in flat.items()}
        data = tuple(jnp.asarray(a) for a in (xs, ys, xq, yq))

        def one_task(q, x1, y1, z1):
            out = _fewshot_forward(jax.nn.relu, q, x1[None], z1[None])[0]
            return -(y1 * jax.nn.log_softmax(out, -1)).sum(-1).mean()

        dz = jax.vmap(jax.grad(one_task, argnums=3), in_axes=(None, 0, 0, 0))
        per_task = jax.vmap(one_task, in_axes=(None, 0, 0, 0))

        def outer(q, xs_, ys_, xq_, yq_):
            def inner(carry, t):
                z, m, v = carry
                return _adam(z, dz(q, xs_, ys_, z), m, v, t, FLR), None
            z = jnp.broadcast_to(q["start"], (FT, FM))
            (z, _, _), _ = jax.lax.scan(inner, (z, jnp.zeros_like(z), jnp.zeros_like(z)),
                                        jnp.arange(1, FK + 1, dtype=jnp.float32))
            z = jax.lax.stop_gradient(z)
            return jax.value_and_grad(
                lambda r: per_task(r, xq_, yq_, z + r["start"] - jax.lax.stop_gradient(r["start"])).mean())(q)
        f = jax.jit(outer)
        return lambda: f(p, *data)
    raise ValueError(impl)


def _fewshot_counts():
    """Textbook counts. Per task and sample the forward is n·ĥ + 2ĥ² + ĥ·c MACs, plus the two
    generated layers W(z) (2·M̂·ĥ² per task); an inner step's backward to the code is about
    2 × the forward (dW of the generated layers and dz = ⟨dW, Θ⟩), so (K + 1) steps of
    2·3·(T·B·(n·ĥ + 2ĥ² + ĥ·c) + 2·T·M̂·ĥ²) flops, the query's parameter gradient included.
    Bytes per step: x and y read, the three hidden layers (T·B·ĥ, before and after the ReLU)
    written and read once, the generated weights (2·T·ĥ²) written and read, Θ read."""
    macs = FT * FB * (FN * FW + 2 * FW * FW + FW * FC) + 2 * FT * FM * FW * FW
    per_step = F32 * (FT * FB * (FN + FC) + 2 * 3 * 2 * FT * FB * FW + 2 * 2 * FT * FW * FW + 2 * FM * FW * FW)
    return (FK + 1) * 6 * macs, (FK + 1) * per_step


# issue 10: the hand-derived code gradient is the structure tinynim exploits (the whole inner
# loop is one batched matmul chain, no graph per step); the goal for such cases is 0.5x torch.
CASES = [Case("MetaStep", _setup, info=f"T={T} tasks × B={B}, n={N_IN}, ĥ={H}, M̂={M}; {K} inner Adam steps on "
                                       f"the codes + first-order outer gradient",
              flops=_counts()[0], bytes=_counts()[1], goal_vs_torch=0.5),
         Case("FewShotStep", _fewshot_setup,
              info=f"hyperteacher hypernetwork: T={FT} tasks × {FB}+{FB} shots, [{FN}, {FW}, {FW}, {FW}, {FC}], M̂={FM}; "
                   f"{FK} inner Adam steps (lr {FLR}) on the codes + first-order outer gradient",
              flops=_fewshot_counts()[0], bytes=_fewshot_counts()[1], goal_vs_torch=0.5)]
