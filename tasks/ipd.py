"""The iterated prisoner's dilemma (IPD) of Meulemans et al., *Multi-agent cooperation through
learning-aware policy gradients* (ICLR 2025, arXiv:2410.18636): a batched environment, the
analytic game of the paper's App. C with its hand-derived gradient, naive learners as
unrolled gradient steps, and zero-determinant (ZD) strategies.

**States and perspective.** Five states ``s0, CC, CD, DC, DD`` (the start, then the last joint
action), each seen from the *own action first*: after (I cooperate, you defect) I am in CD
and you are in DC. A policy is 5 logits ``φ = [φ_s0, φ_CC, φ_CD, φ_DC, φ_DD]``, its cooperation
probabilities ``p = σ(φ)``. Actions are 0 = C, 1 = D. Payoffs (R, S, T, P) = (1, −1, 2, 0): the
own reward of the outcomes CC, CD, DC, DD is ``r = [R, S, T, P]``.

**Analytic game (App. C, Eq. 15–16).** With a = p¹[1:] and b = p²[1:] put into player 1's
ordering (the co-player's CD is our DC: the permutation ``SWAP``), the Markov matrix over the
4 outcomes is column-stochastic, column s the next-outcome distribution from s::

    M[:, s] = [a_s b_s, a_s (1 − b_s), (1 − a_s) b_s, (1 − a_s)(1 − b_s)]ᵀ
    s0      = the same with a_0 = p¹_s0, b_0 = p²_s0           (the first round's distribution)
    J^i     = r^iᵀ Σ_t γ^t M^t s0 = r^iᵀ (I − γM)⁻¹ s0          (the first round counts)

J is a discounted *sum*; ``(1 − γ) J`` is the per-step reward on the payoff scale.

**Its gradient (hand-derived).** With v = (I − γM)⁻¹ s0 and u = (I − γM)⁻ᵀ r,
dJ = γ uᵀ (dM) v + uᵀ ds0. Only column s of M depends on a_s and b_s, so::

    ∂J/∂a_s = γ v_s (b_s (u_CC − u_DC) + (1 − b_s)(u_CD − u_DD))
    ∂J/∂b_s = γ v_s (a_s (u_CC − u_CD) + (1 − a_s)(u_DC − u_DD))
    ∂J/∂a_0 = b_0 (u_CC − u_DC) + (1 − b_0)(u_CD − u_DD)    (∂J/∂b_0 likewise, without γ v)

and ∂p/∂φ = p (1 − p); the co-player's gradient is mapped back to its own ordering by SWAP.

**Naive learners** take gradient-ascent steps on their own per-step reward, the meta agent's
policy held fixed: φ²_{m+1} = φ²_m + η ∂[(1 − γ) J²]/∂φ²(φ¹, φ²_m). Every operation in that chain
(the logistic function as (1 + tanh(x/2))/2, products, ``linalg.solve`` with plain transposes)
is complex-analytic, so derivatives through the unrolled steps are exact by the complex step
Im f(x + ih)/h (:func:`complex_step`), with no autodiff.

**ZD strategies (Eq. 18).** For χ ≥ 1 and 0 < φ ≤ (P − S)/((P − S) + χ(T − P)) the strategy::

    p = [1 − φ(χ − 1)(R − P)/(P − S),  1 − φ(1 + χ(T − P)/(P − S)),  φ(χ + (T − P)/(P − S)),  0]

enforces s_X − P = χ (s_Y − P) on the long-run rewards against *any* co-player (Press & Dyson
2012); χ > 1 extorts, χ = 1, φ = 1/3 is tit-for-tat. It is affine in (φ, φχ), so a least-squares
fit of (χ, φ) to a learned policy is a 2 × 2 linear solve (:func:`zd_fit`).
"""
from __future__ import annotations

import array_api_compat

from tinynim.backend import get_backend, namespace

PAYOFFS = (1.0, -1.0, 2.0, 0.0)             # (R, S, T, P)
STATES = ("s0", "CC", "CD", "DC", "DD")
C, D = 0, 1                                  # actions
SWAP = (0, 2, 1, 3)                          # an outcome in the co-player's own-first ordering


def _check_logits(who, phi):
    if phi.ndim < 1 or phi.shape[-1] != 5:
        raise ValueError(f"{who}: expected policy logits of shape (..., 5), got shape {tuple(phi.shape)}")


def own_rewards(payoffs=PAYOFFS):
    """The own reward of the outcomes CC, CD, DC, DD: [R, S, T, P] (a tuple of floats)."""
    R, S, T, P = payoffs
    return (R, S, T, P)


def swap(x):
    """An outcome axis (last, size 4) re-ordered into the co-player's perspective (CD ↔ DC)."""
    xp = namespace(x)
    return xp.stack([x[..., i] for i in SWAP], axis=-1)


def sigmoid(x):
    """σ(x) = (1 + tanh(x/2))/2: stable for large |x| and complex-analytic (complex step)."""
    return 0.5 + 0.5 * namespace(x).tanh(0.5 * x)


# -- the environment, batched -------------------------------------------------------------------

def outcome(a_own, a_other):
    """Outcome index 0..3 (CC, CD, DC, DD) from the own perspective of integer actions (0 = C)."""
    return 2 * a_own + a_other


def step(a1, a2, payoffs=PAYOFFS):
    """One round for arrays of actions of any equal shape (e.g. (meta-batch, B)), 0 = C, 1 = D.

    Returns (state¹, state², r¹, r²): each player's next state index in 1..4 (own action first;
    0 is s0, the start) and its reward, as a float array of the actions' shape.
    """
    if tuple(a1.shape) != tuple(a2.shape):
        raise ValueError(f"ipd.step: actions of both players must have one shape, got {tuple(a1.shape)} "
                         f"and {tuple(a2.shape)}")
    return 1 + outcome(a1, a2), 1 + outcome(a2, a1), reward(a1, a2, payoffs), reward(a2, a1, payoffs)


def reward(a_own, a_other, payoffs=PAYOFFS):
    """The own reward R, S, T or P of integer action arrays, in the active float dtype."""
    xp = namespace(a_own)
    R, S, T, P = payoffs
    dtype = get_backend().resolve_dtype()
    x, y = xp.astype(a_own, dtype), xp.astype(a_other, dtype)
    return R * (1 - x) * (1 - y) + S * (1 - x) * y + T * x * (1 - y) + P * x * y


def observe(state, dtype=None):
    """One-hot observation (..., 5) of integer state indices (...,), in the active float dtype."""
    xp = namespace(state)
    dtype = get_backend().resolve_dtype() if dtype is None else dtype
    index = xp.arange(5, device=array_api_compat.device(state))
    return xp.astype(state[..., None] == index, dtype)


# -- the analytic game (App. C) --------------------------------------------------------------

def joint(a, b):
    """Outcome distribution [ab, a(1 − b), (1 − a)b, (1 − a)(1 − b)] on a new last axis."""
    return namespace(a).stack([a * b, a * (1 - b), (1 - a) * b, (1 - a) * (1 - b)], axis=-1)


def transition(p1, p2):
    """(M, s0) from cooperation probabilities p¹, p² (..., 5), each in its own perspective.

    M (..., 4, 4) is column-stochastic over the outcomes in player 1's ordering, s0 (..., 4)
    the first round's distribution.
    """
    xp = namespace(p1, p2)
    a, b = p1[..., 1:], swap(p2[..., 1:])                                # (..., 4) in player 1's order
    return xp.matrix_transpose(joint(a, b)), joint(p1[..., 0], p2[..., 0])


def _solves(p1, p2, gamma, payoffs):
    """v = (I − γM)⁻¹ s0 and u = (I − γM)⁻ᵀ r for player 1: (v, u), each (..., 4), by
    :func:`solve_pair` (one elimination for both)."""
    xp = namespace(p1, p2)
    M, s0 = transition(p1, p2)
    r = xp.asarray(own_rewards(payoffs), dtype=M.dtype, device=array_api_compat.device(M))
    return solve_pair(xp.eye(4, dtype=M.dtype, device=array_api_compat.device(M)) - gamma * M, s0,
                      xp.broadcast_to(r, s0.shape))


def solve_pair(A, b, c):
    """(A⁻¹ b, A⁻ᵀ c) for a batch A (..., n, n), b, c (..., n): one LU factorisation A = LU
    (Doolittle, no pivoting) on arrays of the batch shape, n static and small.

    No pivoting is safe here: A = I − γM with M column-stochastic and γ < 1 is strictly
    diagonally dominant by columns (1 − γM_ss > γ Σ_{k≠s} M_ks), so partial pivoting would
    never swap rows. For batches of 4 × 4 systems, elementwise arithmetic beats a batched
    LAPACK call (a per-matrix overhead) by an order of magnitude; ``linalg.solve`` is the
    plain path beside it (:func:`values`), tested equal.
    Aᵀ c = Uᵀ (Lᵀ c): forward substitution with Uᵀ, then back substitution with Lᵀ.
    """
    n = A.shape[-1]
    if A.shape[-2] != n or b.shape[-1] != n or c.shape[-1] != n:
        raise ValueError(f"solve_pair: expected A (..., n, n), b and c (..., n), got shapes "
                         f"{tuple(A.shape)}, {tuple(b.shape)}, {tuple(c.shape)}")
    U = [[A[..., i, j] for j in range(n)] for i in range(n)]
    L = [[None] * n for _ in range(n)]
    for k in range(n):                                   # eliminate below the pivot U[k][k]
        for i in range(k + 1, n):
            L[i][k] = U[i][k] / U[k][k]
            for j in range(k + 1, n):
                U[i][j] = U[i][j] - L[i][k] * U[k][j]
    y = []                                               # L y = b
    for i in range(n):
        y.append(b[..., i] - sum((L[i][k] * y[k] for k in range(i)), start=0.0))
    x = [None] * n                                       # U x = y
    for i in reversed(range(n)):
        x[i] = (y[i] - sum((U[i][k] * x[k] for k in range(i + 1, n)), start=0.0)) / U[i][i]
    z = []                                               # Uᵀ z = c
    for i in range(n):
        z.append((c[..., i] - sum((U[k][i] * z[k] for k in range(i)), start=0.0)) / U[i][i])
    w = [None] * n                                       # Lᵀ w = z
    for i in reversed(range(n)):
        w[i] = z[i] - sum((L[k][i] * w[k] for k in range(i + 1, n)), start=0.0)
    xp = namespace(A)
    return xp.stack(x, axis=-1), xp.stack(w, axis=-1)


def values(phi1, phi2, gamma, payoffs=PAYOFFS):
    """(J¹, J²) = r^iᵀ (I − γM)⁻¹ s0 for logits φ¹, φ² (..., 5): discounted sums (Eq. 15–16)."""
    for who, phi in (("values: phi1", phi1), ("values: phi2", phi2)):
        _check_logits(who, phi)
    xp = namespace(phi1, phi2)
    M, s0 = transition(sigmoid(phi1), sigmoid(phi2))
    eye = xp.eye(4, dtype=M.dtype, device=array_api_compat.device(M))
    v = xp.linalg.solve(eye - gamma * M, s0[..., None])[..., 0]                     # (..., 4)
    r1 = xp.asarray(own_rewards(payoffs), dtype=v.dtype, device=array_api_compat.device(v))
    return xp.sum(v * r1, axis=-1), xp.sum(v * swap(r1 * xp.ones_like(v)), axis=-1)


def value_and_grads(phi_own, phi_other, gamma, payoffs=PAYOFFS):
    """J of the first player and its gradients: (J, ∂J/∂φ_own, ∂J/∂φ_other), (...), (..., 5) × 2.

    The derivation is in the module docstring; the co-player's gradient comes back in its own
    perspective (the same ordering as φ_other). :func:`values_and_grad` gives J of both.
    """
    J, _, d_own, d_other = _value_and_grads(phi_own, phi_other, gamma, payoffs)
    return J, d_own, d_other


def values_and_grad(phi_own, phi_other, gamma, payoffs=PAYOFFS):
    """(J_own, J_other, ∂J_own/∂φ_own): one inverse serves both values and the own gradient."""
    J, J_other, d_own, _ = _value_and_grads(phi_own, phi_other, gamma, payoffs)
    return J, J_other, d_own


def _value_and_grads(phi_own, phi_other, gamma, payoffs):
    _check_logits("value_and_grads: phi_own", phi_own)
    _check_logits("value_and_grads: phi_other", phi_other)
    xp = namespace(phi_own, phi_other)
    p, q = sigmoid(phi_own), sigmoid(phi_other)
    v, u = _solves(p, q, gamma, payoffs)                                   # (..., 4) each
    r = xp.asarray(own_rewards(payoffs), dtype=v.dtype, device=array_api_compat.device(v))
    J, J_other = xp.sum(v * r, axis=-1), xp.sum(v * swap(r * xp.ones_like(v)), axis=-1)
    a, b = p[..., 1:], swap(q[..., 1:])                                     # player 1's order
    du_a = (u[..., 0] - u[..., 2])[..., None], (u[..., 1] - u[..., 3])[..., None]   # own C vs D
    du_b = (u[..., 0] - u[..., 1])[..., None], (u[..., 2] - u[..., 3])[..., None]   # other's C vs D
    g_a = gamma * v * (b * du_a[0] + (1 - b) * du_a[1])                    # ∂J/∂a_s (..., 4)
    g_b = gamma * v * (a * du_b[0] + (1 - a) * du_b[1])                    # ∂J/∂b_s
    g_a0 = q[..., :1] * du_a[0] + (1 - q[..., :1]) * du_a[1]                # ∂J/∂a_0 (..., 1)
    g_b0 = p[..., :1] * du_b[0] + (1 - p[..., :1]) * du_b[1]
    d_own = xp.concat([g_a0, g_a], axis=-1) * p * (1 - p)
    d_other = xp.concat([g_b0, swap(g_b)], axis=-1) * q * (1 - q)
    return J, J_other, d_own, d_other


def neumann_value(phi1, phi2, gamma, n_terms, payoffs=PAYOFFS):
    """J¹ by the truncated series Σ_{t<n_terms} γ^t r¹ᵀ M^t s0 (a check of :func:`values`)."""
    xp = namespace(phi1, phi2)
    M, x = transition(sigmoid(phi1), sigmoid(phi2))
    r = xp.asarray(own_rewards(payoffs), dtype=x.dtype, device=array_api_compat.device(x))
    total = xp.zeros_like(x[..., 0])
    for t in range(n_terms):
        total = total + gamma ** t * xp.sum(r * x, axis=-1)
        x = (M @ x[..., None])[..., 0]
    return total


# -- naive learners and the shaping objective --------------------------------------------------

def naive_learning(phi_meta, phi_naive, n_steps: int, eta, gamma, payoffs=PAYOFFS):
    """A naive co-player learning against the fixed φ_meta: gradient ascent on its own per-step
    reward (1 − γ) J², step size η, from φ_naive.

    Returns (path, meta_values): its logits φ²_0 … φ²_n (n_steps + 1, ..., 5) and the meta
    agent's per-step reward (1 − γ) J¹(φ_meta, φ²_m) at each of them (n_steps + 1, ...).
    """
    xp = namespace(phi_meta, phi_naive)
    path, meta_values = [phi_naive + xp.zeros_like(phi_meta)], []          # broadcast (and promote)
    for _ in range(n_steps):
        _, J_meta, g = values_and_grad(path[-1], phi_meta, gamma, payoffs)  # the naive agent's own J
        path.append(path[-1] + eta * (1 - gamma) * g)
        meta_values.append((1 - gamma) * J_meta)
    meta_values.append((1 - gamma) * values(phi_meta, path[-1], gamma, payoffs)[0])
    return xp.stack(path, axis=0), xp.stack(meta_values, axis=0)


def shaping_objective(phi_meta, phi_naive, n_steps: int, eta, gamma, payoffs=PAYOFFS):
    """J̄ = Σ_{m=0}^{M} (1 − γ) J¹(φ_meta, φ²_m) (Eq. 17, per-step scale), over the naive path
    from φ_naive (M = n_steps); broadcasts over leading axes.                         (...)"""
    _, meta_values = naive_learning(phi_meta, phi_naive, n_steps, eta, gamma, payoffs)
    return namespace(meta_values).sum(meta_values, axis=0)


def complex_step(f, x, h=1e-20):
    """∂f/∂x of a complex-analytic, elementwise-batched f: (...) from (..., n), one complex
    evaluation per coordinate, stacked on a leading axis: Im f(x + i h e_k)/h.       (..., n)"""
    xp = namespace(x)
    n = x.shape[-1]
    eye = xp.eye(n, dtype=xp.complex128, device=array_api_compat.device(x))
    shape = (n,) + (1,) * (x.ndim - 1) + (n,)
    xc = xp.astype(x, xp.complex128)[None, ...] + (1j * h) * xp.reshape(eye, shape)   # (n, ..., n)
    fx = f(xc)                                                                        # (n, ...)
    return xp.stack([xp.imag(fx[k, ...]) for k in range(n)], axis=-1) / h


def shaping_gradient(phi_meta, phi_naive, n_steps: int, eta, gamma, payoffs=PAYOFFS):
    """∇_φ_meta J̄ by the complex step through the unrolled naive steps: (J̄, ∇J̄), (...), (..., 5).

    φ_meta (..., 5) and φ_naive (..., 5) broadcast; the gradient is per element (average over a
    meta-batch of naive co-players outside).
    """
    objective = lambda phi: shaping_objective(phi, phi_naive, n_steps, eta, gamma, payoffs)
    grad = complex_step(objective, phi_meta)
    return shaping_objective(phi_meta, phi_naive, n_steps, eta, gamma, payoffs), grad


# -- zero-determinant strategies -------------------------------------------------------------

def zd_strategy(chi, phi, payoffs=PAYOFFS):
    """Eq. 18: cooperation probabilities in CC, CD, DC, DD (a tuple of 4 floats)."""
    R, S, T, P = payoffs
    limit = (P - S) / ((P - S) + chi * (T - P))
    if not (chi >= 1 and 0 < phi <= limit):
        raise ValueError(f"zd_strategy: need chi >= 1 and 0 < phi <= {limit:.6g}, got chi={chi}, phi={phi}")
    k1, k2 = (R - P) / (P - S), (T - P) / (P - S)
    return (1 - phi * (chi - 1) * k1, 1 - phi * (1 + chi * k2), phi * (chi + k2), 0.0)


def zd_fit(p, payoffs=PAYOFFS):
    """Least-squares (χ, φ) of Eq. 18 to cooperation probabilities p (..., 4) in CC..DD.

    p = [1, 1, 0, 0] + α [k₁, −1, k₂, 0] + β [−k₁, −k₂, 1, 0] with α = φ, β = φχ,
    k₁ = (R − P)/(P − S), k₂ = (T − P)/(P − S): a 2 × 2 normal-equation solve.
    Returns (χ, φ, rms residual), each (...).
    """
    if p.ndim < 1 or p.shape[-1] != 4:
        raise ValueError(f"zd_fit: expected probabilities of shape (..., 4), got shape {tuple(p.shape)}")
    xp = namespace(p)
    R, S, T, P = payoffs
    k1, k2 = (R - P) / (P - S), (T - P) / (P - S)
    dev = array_api_compat.device(p)
    basis = xp.asarray([[k1, -1.0, k2, 0.0], [-k1, -k2, 1.0, 0.0]], dtype=p.dtype, device=dev)   # (2, 4)
    y = p - xp.asarray([1.0, 1.0, 0.0, 0.0], dtype=p.dtype, device=dev)                          # (..., 4)
    gram = basis @ xp.matrix_transpose(basis)                                                    # (2, 2)
    coef = xp.linalg.solve(xp.broadcast_to(gram, y.shape[:-1] + (2, 2)), (y @ xp.matrix_transpose(basis))[..., None])[..., 0]
    alpha, beta = coef[..., 0], coef[..., 1]
    residual = xp.sqrt(xp.mean((y - coef @ basis) ** 2, axis=-1))
    return beta / alpha, alpha, residual


def stationary(p1, p2):
    """The stationary outcome distribution π (..., 4) of the chain of cooperation probabilities
    p¹, p² (..., 4) over CC..DD (own perspective each): M π = π, Σ π = 1, by one linear solve
    (the last balance row replaced by the normalisation)."""
    xp = namespace(p1, p2)
    M = xp.matrix_transpose(joint(p1, swap(p2)))                                    # (..., 4, 4)
    dev = array_api_compat.device(M)
    eye = xp.eye(4, dtype=M.dtype, device=dev)
    A = xp.concat([(M - eye)[..., :3, :], xp.ones_like(M[..., :1, :])], axis=-2)
    e = xp.broadcast_to(xp.asarray([0.0, 0.0, 0.0, 1.0], dtype=M.dtype, device=dev), M.shape[:-1])
    return xp.linalg.solve(A, e[..., None])[..., 0]


def long_run_rewards(p1, p2, payoffs=PAYOFFS):
    """(s_X, s_Y): each player's expected reward under the stationary distribution.   (...) × 2"""
    xp = namespace(p1, p2)
    pi = stationary(p1, p2)
    r = xp.asarray(own_rewards(payoffs), dtype=pi.dtype, device=array_api_compat.device(pi))
    return xp.sum(pi * r, axis=-1), xp.sum(pi * swap(r), axis=-1)
