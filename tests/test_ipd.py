"""The iterated prisoner's dilemma of arXiv:2410.18636 (tasks/ipd.py): environment, analytic
game, naive learners, ZD strategies; float64 on every backend.

Tolerances: identities that compute one number two ways hold to rounding (EXACT = 1e-12
relative); central differences (h = 1e-6) carry truncation ~h² and rounding ~1e-16/h times the
function's scale, so FD = 1e-6 relative (observed ~1e-9).
"""
import array_api_compat
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray, to_numpy
from tinynim.random import RNG
from tasks import ipd
from helpers import assert_close, host

EXACT, FD = 1e-12, 1e-6
seeds = st.integers(0, 2**16)
gammas = st.floats(0.1, 0.97)
batch = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


def _fd(f, x, eps=1e-6):
    """Central differences of a batched f (...) in x (..., n), coordinate by coordinate."""
    n = x.shape[-1]
    eye = asarray(np.eye(n))
    return np.stack([(host(f(x + eps * eye[k, :])) - host(f(x - eps * eye[k, :]))) / (2 * eps)
                     for k in range(n)], axis=-1)


@given(shape=batch, seed=seeds)
def test_step_rewards_states_and_perspective(backend, shape, seed):
    """Every joint action: rewards (R, S, T, P) = (1, −1, 2, 0) from the table, each player's
    state own action first (the co-player's state is the swapped outcome), one-hot observations."""
    xp = backend.xp
    rng = RNG(seed)
    a1, a2 = rng.integers(0, 2, shape), rng.integers(0, 2, shape)
    s1, s2, r1, r2 = ipd.step(a1, a2)
    table = {(0, 0): (1, 1), (0, 1): (-1, 2), (1, 0): (2, -1), (1, 1): (0, 0)}
    h1, h2 = np.asarray(to_numpy(a1)), np.asarray(to_numpy(a2))
    expected = np.array([table[(int(x), int(y))] for x, y in zip(h1.ravel(), h2.ravel())]).reshape(shape + (2,))
    assert np.array_equal(host(r1), expected[..., 0]) and np.array_equal(host(r2), expected[..., 1])
    assert np.array_equal(host(s1), 1 + 2 * h1 + h2) and np.array_equal(host(s2), 1 + 2 * h2 + h1)
    assert np.array_equal(np.asarray(ipd.SWAP)[host(s1).astype(int) - 1] + 1, host(s2))
    obs = host(ipd.observe(s1))
    assert obs.shape == shape + (5,) and np.array_equal(obs.argmax(-1), host(s1)) and np.all(obs.sum(-1) == 1)
    with pytest.raises(ValueError, match="ipd.step"):
        ipd.step(a1, xp.concat([xp.reshape(a2, (-1,)), xp.reshape(a2, (-1,))]))


@given(shape=batch, gamma=gammas, seed=seeds)
def test_gradient_matches_finite_differences(backend, shape, gamma, seed):
    """∂J¹/∂φ¹ and ∂J¹/∂φ² (hand-derived) vs central differences of J¹ by linalg.solve."""
    rng = RNG(seed)
    phi1, phi2 = rng.normal(shape + (5,), std=2.0), rng.normal(shape + (5,), std=2.0)
    J, d1, d2 = ipd.value_and_grads(phi1, phi2, gamma)
    assert_close(J, ipd.values(phi1, phi2, gamma)[0], EXACT, "LU vs linalg.solve")
    assert_close(d1, _fd(lambda x: ipd.values(x, phi2, gamma)[0], phi1), FD, "∂J¹/∂φ¹")
    assert_close(d2, _fd(lambda x: ipd.values(phi1, x, gamma)[0], phi2), FD, "∂J¹/∂φ²")
    J_own, J_other, d_own = ipd.values_and_grad(phi1, phi2, gamma)
    assert_close(J_other, ipd.values(phi1, phi2, gamma)[1], EXACT, "J² from the same inverse")
    assert_close(d_own, d1, EXACT, "values_and_grad")


@given(shape=batch, gamma=gammas, seed=seeds)
def test_swap_symmetry_and_neumann_series(backend, shape, gamma, seed):
    """J¹(φ, ψ) = J²(ψ, φ); Σ_{t<n} γ^t rᵀ M^t s0 → rᵀ(I − γM)⁻¹ s0 (n with γⁿ < 1e-17);
    (1 − γ) J lies within the payoff range [S, T]."""
    rng = RNG(seed)
    phi, psi = rng.normal(shape + (5,), std=2.0), rng.normal(shape + (5,), std=2.0)
    J1, J2 = ipd.values(phi, psi, gamma)
    assert_close(ipd.values(psi, phi, gamma)[1], J1, EXACT, "swap: J²(ψ, φ)")
    assert_close(ipd.values(psi, phi, gamma)[0], J2, EXACT, "swap: J¹(ψ, φ)")
    n = int(np.ceil(np.log(1e-17) / np.log(gamma)))
    assert_close(ipd.neumann_value(phi, psi, gamma, n), J1, EXACT, "Neumann series")
    per_step = (1 - gamma) * host(J1)
    assert np.all(per_step >= -1 - 1e-12) and np.all(per_step <= 2 + 1e-12)


@given(n=st.integers(1, 6), shape=batch, seed=seeds)
def test_solve_pair_is_the_linear_solve(backend, n, shape, seed):
    """The LU without pivoting solves A x = b and Aᵀ y = c for column-diagonally-dominant A
    (as I − γM is): equal to linalg.solve."""
    xp = backend.xp
    rng = RNG(seed)
    M = rng.uniform(shape + (n, n), 0.0, 1.0)
    M = M / xp.sum(M, axis=-2, keepdims=True)                                # column-stochastic
    A = xp.eye(n, dtype=M.dtype, device=array_api_compat.device(M)) - 0.95 * M
    b, c = rng.normal(shape + (n,)), rng.normal(shape + (n,))
    x, y = ipd.solve_pair(A, b, c)
    assert_close(x, xp.linalg.solve(A, b[..., None])[..., 0], EXACT, "A⁻¹ b")
    assert_close(y, xp.linalg.solve(xp.matrix_transpose(A), c[..., None])[..., 0], EXACT, "A⁻ᵀ c")
    with pytest.raises(ValueError, match="solve_pair"):
        ipd.solve_pair(A, b[..., :n - 1] if n > 1 else xp.concat([b, b], axis=-1), c)


@given(n_steps=st.integers(0, 6), eta=st.floats(0.1, 8.0), gamma=st.floats(0.5, 0.95), seed=seeds)
def test_complex_step_meta_gradient(backend, n_steps, eta, gamma, seed):
    """∇J̄ by the complex step through the unrolled naive steps = central differences of J̄;
    the naive path's first step is η(1 − γ)∂J²/∂φ² and J̄ sums the meta agent's per-step values."""
    rng = RNG(seed)
    phi, psi = rng.normal((3, 5)), rng.normal((3, 5))
    Jbar, grad = ipd.shaping_gradient(phi, psi, n_steps, eta, gamma)
    assert_close(grad, _fd(lambda x: ipd.shaping_objective(x, psi, n_steps, eta, gamma), phi), FD, "∇J̄")
    path, meta_values = ipd.naive_learning(phi, psi, n_steps, eta, gamma)
    assert tuple(path.shape) == (n_steps + 1, 3, 5) and tuple(meta_values.shape) == (n_steps + 1, 3)
    for m in range(n_steps + 1):
        assert_close(meta_values[m, ...], (1 - gamma) * ipd.values(phi, path[m, ...], gamma)[0], EXACT, "J¹ on path")
    if n_steps:
        _, g, _ = ipd.value_and_grads(psi, phi, gamma)
        assert_close(path[1, ...], psi + eta * (1 - gamma) * g, EXACT, "first naive step")
    assert_close(Jbar, backend.xp.sum(meta_values, axis=0), EXACT, "J̄ = Σ_m")


@given(n_steps=st.integers(1, 8), gamma=st.floats(0.5, 0.95), seed=seeds)
def test_naive_learner_ascends_its_own_value(backend, n_steps, gamma, seed):
    """Small steps (η = 0.05) of gradient ascent never decrease the naive learner's own J."""
    rng = RNG(seed)
    phi, psi = rng.normal((4, 5)), rng.normal((4, 5))
    path, _ = ipd.naive_learning(phi, psi, n_steps, 0.05, gamma)
    own = np.stack([host(ipd.values(path[m, ...], phi, gamma)[0]) for m in range(n_steps + 1)])
    assert np.all(np.diff(own, axis=0) >= -1e-12)


@given(chi=st.floats(1.0, 5.0), frac=st.floats(0.05, 1.0), seed=seeds)
def test_zd_identity_and_fit(backend, chi, frac, seed):
    """A ZD strategy (Eq. 18) against any interior co-player q: the stationary π solves Mπ = π and
    s_X − P = χ (s_Y − P); the least-squares fit returns (χ, φ)."""
    xp = backend.xp
    phi = frac * 1.0 / (1.0 + 2.0 * chi)                    # (P − S)/((P − S) + χ(T − P)) = 1/(1 + 2χ)
    p = asarray(np.tile(ipd.zd_strategy(chi, phi), (6, 1)))
    q = RNG(seed).uniform((6, 4), 0.02, 0.98)
    pi = ipd.stationary(p, q)
    M = xp.matrix_transpose(ipd.joint(p, ipd.swap(q)))
    assert_close((M @ pi[..., None])[..., 0], pi, EXACT, "M π = π")
    assert_close(xp.sum(pi, axis=-1), xp.ones_like(pi[..., 0]), EXACT, "Σ π = 1")
    s_x, s_y = ipd.long_run_rewards(p, q)
    P = ipd.PAYOFFS[3]
    assert np.max(np.abs(host(s_x - P) - chi * host(s_y - P))) <= 1e-12
    chi_fit, phi_fit, residual = ipd.zd_fit(p)
    assert np.allclose(host(chi_fit), chi, rtol=1e-10) and np.allclose(host(phi_fit), phi, rtol=1e-10)
    assert np.all(host(residual) <= 1e-12)


def test_tit_for_tat_and_bad_zd_parameters():
    """χ = 1, φ = 1/3 is tit-for-tat [1, 0, 1, 0]; parameters outside Eq. 18's range are refused."""
    assert np.allclose(ipd.zd_strategy(1.0, 1 / 3), [1, 0, 1, 0], atol=1e-15)
    for chi, phi in ((0.5, 0.1), (2.0, 0.0), (2.0, 0.3)):
        with pytest.raises(ValueError, match="zd_strategy"):
            ipd.zd_strategy(chi, phi)


def test_shape_errors_name_the_function(f64):
    x = asarray(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"values: phi1.*\(\.\.\., 5\).*\(2, 4\)"):
        ipd.values(x, x, 0.9)
    with pytest.raises(ValueError, match="value_and_grads"):
        ipd.value_and_grads(x, x, 0.9)
    with pytest.raises(ValueError, match="zd_fit"):
        ipd.zd_fit(asarray(np.zeros((2, 5))))
