"""Associative recall with a memory smaller than the data, trained by gradient descent
(the first task of arXiv:2408.10818, Fig. 1; the model, loss, sizes and settings are ours:
the paper's were not retrieved).

A causal linear-attention model reads N (key, value) pairs, values v_t ∈ {±1}^d, and a
random seed r; its state holds M < N directions, so it cannot keep every value. An
oblivious adversary then queries the key i whose recall is worst. A deterministic model
keeps a fixed set and loses some key for sure (worst-case recall 0); storing a uniformly
random M-subset recalls every key with probability M/N, the best any storage can
guarantee (the memory game of :mod:`tasks.randomized_algorithms`).

Model (:class:`SeededRecall`). Tokens: the N pairs (key e_t, value v_t, seed r) in the order
t = 0..N−1, then the query (key e_i, seed r). Key t and the seed meet in a bilinear score,
whose sigmoid gates what the token writes and what the query reads::

    g_t = σ(u_tᵀ r + b_t)                       (B, N)   which keys this seed keeps
    S   = Σ_t g_t a_t v_tᵀ                      (B, M, d) the state after the pairs
    y_i = g_i Sᵀ c_i = Σ_t g_i g_t (c_iᵀ a_t) v_t   (B, N, d) logits of the d bits of key i

with a_t = A[:, t], c_i = Q[:, i] ∈ R^M (key and query embeddings). It is the causal
linear self-attention read of the query token (score of query i on pair t: g_i g_t c_iᵀ a_t,
no softmax, value projection the identity). Gating the read by g_i lets the model answer
"unknown" (y = 0) for a key this seed did not keep, instead of another key's value.

Recall loss (:func:`recall_failure`): the model's bits are independent Bernoulli σ(y_k);
the probability that they spell v exactly is P = Π_k σ(v_k y_k), and the loss is the
probability of a failed recall, ℓ = 1 − P ∈ [0, 1], the memory game's 0/1 loss made
differentiable. A per-bit log-likelihood does NOT work here: it adds over bits, so two
keys written into one direction (half their bits recalled) cost as much as a key kept
half of the time, and training settles on such superpositions (exact recall ≈ 0).

Objective: R̂_{q,m} (:func:`tasks.randomized_algorithms.power_mean_risk`) over the N
queries of the failure averaged over m seeds (shared by all queries) and a batch of value
draws; :class:`RecallRisk` is that whole chain as a layer, so its hand-derived gradient is
checked against finite differences and torch autograd like any layer's.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from tinynim.backend import namespace, to_numpy
from tinynim.es import es_loss_and_grads
from tinynim.experiment import scaled
from tinynim.nn.activations import sigmoid_tanh
from tinynim.nn.base import Layer
from tinynim.optim import Adam
from tinynim.random import RNG, as_rng
from tinynim.train import fit

from tasks.relaxed_risk import power_mean_risk


# -- the model -------------------------------------------------------------------------------------

def recall_gates(params, seeds):
    """g = σ(U r + b): how much each key is written (and read) under each seed. seeds (B,
    d_seed) -> (..., B, N), with the leading axes of the params (a population). σ = ½(1 +
    tanh(x/2)), smooth everywhere (the |x| of the exp form has a zero autograd derivative at
    x = 0, where the deterministic start U = 0, b = 0 puts every score)."""
    xp = namespace(seeds)
    return sigmoid_tanh(xp, xp.matmul(seeds, xp.matrix_transpose(params["U"])) + params["b"][..., None, :])


def recall_logits(params, values, seeds):
    """The forward of :class:`SeededRecall` for one parameter set or a population: every
    leaf of `params` may carry the same leading axes (e.g. an ES population P).

    values (B, N, d), seeds (B, d_seed) -> ``(y, g, G, W, Z)``: logits y (..., B, N, d),
    gates g (..., B, N), scores G = Qᵀ A (..., N, N), writes W = g ⊙ V and reads
    Z = G W (..., B, N, d); y = g ⊙ Z.
    """
    xp = namespace(values)
    g = recall_gates(params, seeds)                                             # (..., B, N)
    G = xp.matmul(xp.matrix_transpose(params["Q"]), params["A"])                # (..., N, N) c_iᵀ a_t
    W = g[..., None] * values                                                   # (..., B, N, d) g_t v_t
    Z = xp.matmul(G[..., None, :, :], W)                                        # (..., B, N, d) Σ_t G_it g_t v_t
    return g[..., None] * Z, g, G, W, Z


class SeededRecallCache(NamedTuple):
    values: object      # (B, N, d)
    seeds: object       # (B, d_seed)
    g: object           # (B, N) gates
    G: object           # (N, N) Qᵀ A
    W: object           # (B, N, d) g ⊙ V
    Z: object           # (B, N, d) G W


class SeededRecall(Layer):
    """The seeded linear-attention memory (module docstring): N keys, state dimension M,
    d value bits, seeds in R^d_seed.

    params: A, Q (M, N) key and query embeddings, U (N, d_seed), b (N,) gate scores.
    forward(params, x): x = (values, seeds), values (B, N, d) of keys 0..N−1 and one seed
    per row (B, d_seed) -> y (B, N, d), the logits read for every query key (all N queries
    on one state). The seed is an input like the values (it has a gradient, dr).

    Backward, with dy = ∂L/∂y and σ' = g(1 − g)::

        dZ = g ⊙ dy,   dG = Σ_b dZ_b W_bᵀ,   dW = Gᵀ dZ,   dV = g ⊙ dW
        dg = Σ_k dy ⊙ Z + Σ_k dW ⊙ V,   ds = dg g (1 − g)
        dU = dsᵀ r,   db = Σ_b ds,   dr = ds U,   dA = Q dG,   dQ = A dGᵀ
    """

    def __init__(self, n_keys: int, memory: int, d_value: int, d_seed: int):
        self.check_sizes(n_keys=n_keys, memory=memory, d_value=d_value, d_seed=d_seed)
        self.N, self.M, self.d, self.d_seed = n_keys, memory, d_value, d_seed

    @property
    def param_shapes(self) -> dict:
        return {"A": (self.M, self.N), "Q": (self.M, self.N), "U": (self.N, self.d_seed), "b": (self.N,)}

    def init(self, rng, *, dtype=None, backend=None, u_std=0.0):
        """A, Q ~ N(0, 1/M); U ~ N(0, u_std²) (default 0: the seed is ignored, a
        deterministic start); b = 0 (every gate ½)."""
        rng = as_rng(rng)
        kw = dict(dtype=dtype, backend=backend)
        return {"A": rng.normal((self.M, self.N), std=self.M ** -0.5, **kw),
                "Q": rng.normal((self.M, self.N), std=self.M ** -0.5, **kw),
                "U": rng.normal((self.N, self.d_seed), std=u_std, **kw),
                "b": rng.normal((self.N,), std=0.0, **kw)}

    def forward(self, params, x):
        if not (isinstance(x, tuple) and len(x) == 2):
            raise TypeError(f"{self.name}: expected x = (values, seeds), got {type(x).__name__}")
        values, seeds = x
        self.check_input(values, ndim=3, what="values")
        self.check_input(seeds, ndim=2, what="seeds", like=values)
        if tuple(values.shape[1:]) != (self.N, self.d):
            raise ValueError(f"{self.name}: expected values of shape (B, {self.N}, {self.d}), got {tuple(values.shape)}")
        if tuple(seeds.shape) != (values.shape[0], self.d_seed):
            raise ValueError(f"{self.name}: expected seeds of shape ({values.shape[0]}, {self.d_seed}), got "
                             f"{tuple(seeds.shape)}")
        self.check_params(params, values)
        y, g, G, W, Z = recall_logits(params, values, seeds)
        return y, SeededRecallCache(values, seeds, g, G, W, Z)

    def backward(self, params, cache, dout):
        V, r, g, G, W, Z = cache
        self.check_dout(dout, tuple(V.shape))
        xp = namespace(dout)
        dZ = g[..., None] * dout                                                # (B, N, d)
        dG = xp.sum(xp.matmul(dZ, xp.matrix_transpose(W)), axis=0)              # (N, N)
        dW = xp.matmul(G.T, dZ)                                                 # (B, N, d)
        dg = xp.sum(dout * Z, axis=-1) + xp.sum(dW * V, axis=-1)                # (B, N)
        ds = dg * g * (1 - g)                                                   # (B, N)
        grads = {"A": xp.matmul(params["Q"], dG), "Q": xp.matmul(params["A"], dG.T),
                 "U": xp.matmul(ds.T, r), "b": xp.sum(ds, axis=0)}
        return (g[..., None] * dW, xp.matmul(ds, params["U"])), grads

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        layer = SeededRecall(5, 2, 3, 4)
        return {"default": (layer, (rng.normal((3, 5, 3)), rng.normal((3, 4))), {})}


# -- the recall loss and the objective -------------------------------------------------------------

def recall_failure(logits, values):
    """ℓ = 1 − P, P = Π_k σ(v_k y_k), and its partial derivatives: ``(ℓ, ∂ℓ/∂y, ∂ℓ/∂v)``.

    logits y, values v (..., d) -> ℓ (...,), both derivatives (..., d). In log space,
    −log P = Σ_k softplus(−v_k y_k), softplus(z) = max(z, 0) + log1p(e^(−|z|)) (no
    overflow; numpy's logaddexp gives the same to rounding but is ~10× slower, the ES
    benchmark's bottleneck), and ℓ = −expm1(log P) (no cancellation when P ≈ 1). With
    ∂(−log P)/∂y_k = −v_k σ(−v_k y_k)::

        ∂ℓ/∂y_k = −P v_k σ(−v_k y_k),   ∂ℓ/∂v_k = −P y_k σ(−v_k y_k)
    """
    xp = namespace(logits, values)
    z = -values * logits                                                        # (..., d)
    log_p = -xp.sum(xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z))), axis=-1)   # (...,)
    p = xp.exp(log_p)
    weight = -p[..., None] * sigmoid_tanh(xp, z)                                # (..., d)
    return -xp.expm1(log_p), weight * values, weight * logits


def tile(values, seeds):
    """Every (seed, value draw) pair as one batch row, seed-major: values (B, N, d), seeds
    (m, d_seed) -> (m·B, N, d), (m·B, d_seed); row j·B + b holds draw b under seed j."""
    xp = namespace(values, seeds)
    m, B, k = seeds.shape[0], values.shape[0], seeds.shape[1]
    tiled = xp.reshape(xp.broadcast_to(values[None, ...], (m,) + tuple(values.shape)), (m * B,) + tuple(values.shape[1:]))
    return tiled, xp.reshape(xp.broadcast_to(seeds[:, None, :], (m, B, k)), (m * B, k))


def failures_by_seed(fail, m: int):
    """(..., m·B, N) failures of the tiled rows -> (..., N, m): L[i, j], the mean over the B
    value draws of query i's failure under seed j (the loss array of power_mean_risk)."""
    xp = namespace(fail)
    B = fail.shape[-2] // m
    L = xp.mean(xp.reshape(fail, tuple(fail.shape[:-2]) + (m, B, fail.shape[-1])), axis=-2)   # (..., m, N)
    return xp.matrix_transpose(L)


class RecallRiskCache(NamedTuple):
    model: object       # SeededRecallCache of the tiled batch
    values: object      # (m·B, N, d) the values seen by every seed
    dfail_dy: object    # (m·B, N, d)
    dfail_dv: object    # (m·B, N, d)
    dlosses: object     # (N, m) ∂R/∂ℓ̄-by-seed from power_mean_risk


class RecallRisk(Layer):
    """R̂_{q,m} of :class:`SeededRecall` as one layer (a scalar output), so that the whole
    hand-derived chain is gradient-checked: forward(params, x, seeds, q), x (B, N, d) value
    draws, seeds (m, d_seed) shared by every draw and every query.

        ℓ[j, b, i] = recall_failure(y_i(V_b, r_j), v_{b,i})      every query i, seed j, draw b
        L[i, j]   = 1/B Σ_b ℓ[j, b, i]                            (N, m)
        R         = power_mean_risk(L, q)

    Backward: ∂R/∂L from :func:`power_mean_risk`, spread as 1/B over the draws, then
    through the failure's ∂ℓ/∂y into the model; the values get the model's dV plus the
    failure's direct ∂ℓ/∂v, summed over the seeds that saw them.
    """

    def __init__(self, model: SeededRecall):
        self.model = model

    @property
    def param_shapes(self) -> dict:
        return self.model.param_shapes

    def init(self, rng, *, dtype=None, backend=None, **kw):
        return self.model.init(rng, dtype=dtype, backend=backend, **kw)

    def forward(self, params, x, seeds=None, q=16.0):
        if seeds is None or seeds.ndim != 2:
            raise ValueError(f"{self.name}: expected seeds of shape (m, d_seed), got "
                             f"{None if seeds is None else tuple(seeds.shape)}")
        values, r = tile(x, seeds)                                              # (m·B, N, d), (m·B, d_seed)
        y, cache = self.model.forward(params, (values, r))                      # (m·B, N, d)
        fail, dy, dv = recall_failure(y, values)                                # (m·B, N)
        risk, dL = power_mean_risk(failures_by_seed(fail, seeds.shape[0]), q)
        return risk, RecallRiskCache(cache, values, dy, dv, dL)

    def backward(self, params, cache, dout):
        self.check_dout(dout, ())
        xp = namespace(cache.values)
        N, m = cache.dlosses.shape
        B = cache.values.shape[0] // m
        w = xp.broadcast_to((dout * cache.dlosses.T / B)[:, None, :], (m, B, N))
        w = xp.reshape(w, (m * B, N))[..., None]                                # (m·B, N, 1)
        (dvalues, _), grads = self.model.backward(params, cache.model, w * cache.dfail_dy)
        dvalues = dvalues + w * cache.dfail_dv
        return xp.sum(xp.reshape(dvalues, (m, B) + tuple(dvalues.shape[1:])), axis=0), grads

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        layer = RecallRisk(SeededRecall(5, 2, 3, 4))
        x, seeds = rng.normal((2, 5, 3)), rng.normal((3, 4))
        return {"q16": (layer, x, {"seeds": seeds, "q": 16.0}), "erm": (layer, x, {"seeds": seeds, "q": 1.0})}


def population_risk(params, values, seeds, q):
    """R̂_{q,m} of every member of a population at once (leaves with a leading axis P; no
    loop over members, for evolution strategies): values (B, N, d), seeds (m, d_seed) -> (P,)."""
    tiled, r = tile(values, seeds)
    fail = recall_failure(recall_logits(params, tiled, r)[0], tiled)[0]        # (P, m·B, N)
    return power_mean_risk(failures_by_seed(fail, seeds.shape[0]), q)[0]


def population_risk_fast(params, values, seeds, q):
    """:func:`population_risk` in fewer passes over the (P, m, N, B, d) logits (the ES step's
    cost; tested equal). The gates depend on the seed only, so the tiled batch is never
    built: with K_jit = ½ g_ji G_it g_jt (..., m, N, N), half the logit of bit k of query i,
    seed j, draw b is one GEMM, ½ y = K V (V as (N, B·d)), and

        P = Π_k σ(v_k y_k) = 2^(−d) Π_k (1 + tanh(½ v_k y_k)),   ℓ̄_ij = 1 − 1/B Σ_b P

    (1 − P instead of −expm1(log P): an absolute error of one rounding, against the plain
    path's relative one, irrelevant to R̂ of losses in [0, 1]). values (B, N, d), seeds
    (m, d_seed) -> (P,)."""
    xp = namespace(values, seeds)
    B, N, d = values.shape
    g = recall_gates(params, seeds)                                             # (..., m, N)
    G = xp.matmul(xp.matrix_transpose(params["Q"]), params["A"])                # (..., N, N)
    K = (0.5 * g[..., :, None]) * G[..., None, :, :] * g[..., None, :]          # (..., m, N, N) ½ g_i G_it g_t
    V = xp.permute_dims(values, (1, 0, 2))                                      # (N, B, d)
    half = xp.reshape(xp.reshape(K, (-1, N)) @ xp.reshape(V, (N, B * d)), tuple(K.shape[:-1]) + (B, d))
    p = xp.prod(1 + xp.tanh(half * V), axis=-1) * 2.0 ** -d                     # (..., m, N, B)
    return power_mean_risk(xp.matrix_transpose(1 - xp.mean(p, axis=-1)), q)[0]


# -- training by gradient descent, and the oblivious adversary's evaluation ---------------------------

@dataclasses.dataclass(frozen=True)
class RecallRun:
    """Adam on R̂_{q,m} of :class:`SeededRecall` (our setting: the paper's sizes and training
    settings were not retrieved). Every step draws `batch` value sets (bits ±1) and m seeds
    r ~ N(0, I), shared by every draw and every query; the start is deterministic (U = 0)."""
    q: float
    m: int
    N: int = 8                      # keys; the adversary queries one
    M: int = 4                      # state dimension: the randomized optimum is M/N
    d_value: int = 12               # bits per value: a guess is right with 2^-12
    d_seed: int = 8
    batch: int = 16
    steps: int = 1500
    lr: float = 0.03
    u_std: float = 0.0              # initial seed weights (0: the seed is ignored)
    seed: int = 0                   # initialisation and data
    n_eval: int = 10_000            # fresh (seed, values) draws for the evaluation
    trainer: str = "gd"             # "gd": Adam on the hand-derived gradient; "es": Adam on an ES estimate
    sigma: float = 0.05             # ES: perturbation scale
    n_pairs: int = 32               # ES: antithetic pairs (population 64, one batched forward)

    def model(self) -> SeededRecall:
        return SeededRecall(self.N, self.M, self.d_value, self.d_seed)


def binary_values(rng, shape):
    """Values with i.i.d. fair ±1 bits (the signs of normal draws: never 0)."""
    x = as_rng(rng).normal(shape)
    return namespace(x).sign(x)


def train_recall(run: RecallRun, *, quick_mode=None, log=None, seed_offset=0):
    """Adam on R̂_{q,m}: ``(model, params, history)``, with the hand-derived gradient
    (``run.trainer == "gd"``) or an antithetic ES estimate with centred ranks ("es"), the whole
    population's risk in one batched forward (:func:`population_risk_fast`), as the paper trains
    where it has no gradient."""
    if run.trainer not in ("gd", "es"):
        raise ValueError(f"train_recall: trainer must be 'gd' or 'es', got {run.trainer!r}")
    seed = run.seed + seed_offset
    model = run.model()
    objective = RecallRisk(model)
    params = model.init(RNG(seed), u_std=run.u_std)
    data = RNG(np.random.default_rng([seed, 400]))

    def loss_and_grads(params, batch, step):
        values, seeds = batch
        risk, cache = objective.forward(params, values, seeds=seeds, q=run.q)
        return risk, objective.backward(params, cache, namespace(risk).ones_like(risk))[1]
    if run.trainer == "es":
        loss_and_grads = es_loss_and_grads(lambda population, batch: population_risk_fast(population, *batch, run.q),
                                           sigma=run.sigma, n_pairs=run.n_pairs, seed=seed, population=True)
    steps = scaled(run.steps, quick_mode=quick_mode)
    batch = lambda step: (binary_values(data, (run.batch, run.N, run.d_value)), data.normal((run.m, run.d_seed)))  # noqa: E731
    params, history = fit(loss_and_grads, params, Adam(run.lr), steps=steps, data=batch, log=log,
                          log_every=max(steps // 5, 1))
    return model, params, history


def recall_metrics(model, params, run: RecallRun, *, seed=0, quick_mode=None) -> dict:
    """Exact recall (every bit's sign right) of each key, with n_eval fresh draws of the
    seed and the values, drawn before and independently of the adversary's choice of key
    (an oblivious adversary, who then takes the worst key). Also P(g_i > ½), how often each
    key is kept, and the number of keys whose keeping depends on the seed (P in [0.1, 0.9]).
    Beside the worst key, the 5th percentile over keys of the recall (the 95th percentile of
    the failure over inputs; ``np.percentile``, linear between the sorted per-key values)."""
    n = scaled(run.n_eval, quick_mode=quick_mode)
    rng = RNG(np.random.default_rng([seed, 401]))
    values, seeds = binary_values(rng, (n, run.N, run.d_value)), rng.normal((n, run.d_seed))
    y, g = recall_logits(params, values, seeds)[:2]
    right = np.all(np.sign(to_numpy(y)) == to_numpy(values), axis=-1)              # (n, N)
    recall = right.mean(axis=0)
    kept = np.mean(np.asarray(to_numpy(g)) > 0.5, axis=0)                           # (N,)
    optimum = run.M / run.N
    return {"worst_recall": float(recall.min()), "mean_recall": float(recall.mean()),
            "worst_over_optimum": float(recall.min()) / optimum, "mean_over_optimum": float(recall.mean()) / optimum,
            "recall_p5": float(np.percentile(recall, 5)), "p5_over_optimum": float(np.percentile(recall, 5)) / optimum,
            "seeded_keys": int(np.sum((kept >= 0.1) & (kept <= 0.9))), "recall": recall, "kept": kept}
