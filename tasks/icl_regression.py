"""In-context linear regression (von Oswald et al. 2023, "Transformers learn in-context by
gradient descent"; spec ../shared/papers/linear_icl.md §1–2).

Token layout (D = d + d_out; N context tokens and one query)::

    e_i = (x_i, y_i)   i = 1..N        x ~ U(−r/2, r/2)^d, y = w x (+ noise), w ~ N(0, I)
    e_q = (x_q, 0)                      or (x_q, −W₀ x_q) for an initial guess W₀
    ŷ   = −(y slot of the query after the last layer)

Reference algorithms on L(W) = 1/(2N) Σ_i ‖W x_i − y_i‖²:

    GD:    W ← W − (η/N) Σ_i (W x_i − y_i) x_iᵀ                     ŷ = W_K x_q
    GD++:  for every token j (query too), from the layer input:
           x_j ← x_j − γ Σ_i x_i x_iᵀ x_j,   y_j ← y_j − (η/N) Σ_i y_i x_iᵀ x_j,   ŷ = −y_q

Constructions (spec §2.2, merged row form H' = H + (H Q Cᵀ) C P, C = context rows)::

    GD:    Q = [[I_d, 0], [0, 0]],   P = (η/N) [[0, W₀ᵀ], [0, −I]]
    GD++:  Q = [[I_d, 0], [0, 0]],   P = [[−γ I_d, 0], [0, −(η/N) I]]

so that every token's y slot moves by −(η/N) Σ_i (y_i − W₀ x_i) x_iᵀ x_j. With the query
slot starting at −W₀ x_q (:func:`with_initial_guess`) the query holds −W_l x_q after l
shared layers: K layers are K GD steps from W₀. The context y slots hold y_i − (W_l − W₀) x_i,
the residual of GD when W₀ = 0; the x slots never change.

``eta`` is the paper code's ``lr``: the step on the *mean* loss, so η/N multiplies the sum.

Contents: data (:func:`sample`); reference algorithms (:func:`gd_predict`, :func:`gdpp_predict`,
:func:`tune_gd`; GD and GD++ depend on the context only through Σ = Σ_i x_i x_iᵀ and
α = Σ_i x_i y_iᵀ, and in the eigenbasis of Σ every step is elementwise, which makes tuning
cheap); the model (:class:`LinearTransformer`, :func:`train`); the constructions
(:func:`gd_weights`, :func:`gdpp_weights`, :func:`effective_eta`); the paper's alignment
metrics (:func:`sensitivity`, :func:`gd_sensitivity`, :func:`alignment`).
"""
from __future__ import annotations

import itertools
import math
from functools import reduce

import array_api_compat
import numpy as np

from tinynim.backend import asarray, namespace, to_numpy
from tinynim.losses import mse
from tinynim.nn.base import Layer
from tinynim.nn.linear_attention import LinearSelfAttention, merged_products, place_rows
from tinynim.random import as_rng
from tinynim.train import fit, supervised
from tinynim.tree import add


# -- data ------------------------------------------------------------------------------

def sample(rng, batch, n_context=10, d=10, *, d_out=1, input_range=1.0, noise_std=0.0, dtype=None,
           w=None):
    """`batch` regression tasks as (tokens (batch, N+1, d+d_out), targets (batch, d_out)).

    w ~ N(0, I) (d_out × d) per task, x ~ U(−input_range/2, input_range/2)^d as in the
    official code (the paper text's U(−1, 1) is input_range=2). Gaussian noise of std
    `noise_std` is added to the context y only; the query target is noise-free.
    `w` (host, (batch, d_out, d)) fixes the task weights instead of drawing them.
    """
    rng = as_rng(rng)
    if w is None:
        w = rng.normal((batch, d_out, d), host=True)
    elif np.shape(w) != (batch, d_out, d):
        raise ValueError(f"sample: expected w of shape {(batch, d_out, d)}, got {np.shape(w)}")
    x = rng.uniform((batch, n_context + 1, d), -input_range / 2, input_range / 2, host=True)
    y = x @ w.transpose(0, 2, 1)                                        # (batch, N+1, d_out)
    y_ctx = y[:, :n_context] + noise_std * rng.normal((batch, n_context, d_out), host=True)
    ys = np.concatenate([y_ctx, np.zeros((batch, 1, d_out))], axis=1)
    return asarray(np.concatenate([x, ys], axis=-1), dtype), asarray(y[:, n_context], dtype)


def split(tokens, d):
    """(X (B, N, d), Y (B, N, d_out), x_q (B, d)) of a token batch."""
    return tokens[:, :-1, :d], tokens[:, :-1, d:], tokens[:, -1, :d]


def with_initial_guess(tokens, W0):
    """The tokens with the query's y slot set to −W₀ x_q (W₀: (d_out, d) or (B, d_out, d))."""
    xp = namespace(tokens, W0)
    xq = tokens[:, -1:, :W0.shape[-1]]                                  # (B, 1, d)
    query = xp.concat([xq, -(xq @ W0.mT)], axis=-1)                     # (B, 1, D)
    return xp.concat([tokens[:, :-1, :], query], axis=1)


# -- reference algorithms ----------------------------------------------------------------

def moments(tokens, d):
    """Context statistics Σ = Σ_i x_i x_iᵀ (B, d, d), α = Σ_i x_i y_iᵀ (B, d, d_out) and x_q
    (B, 1, d): GD and GD++ predictions depend on the context only through Σ and α."""
    X, Y, _ = split(tokens, d)
    return X.mT @ X, X.mT @ Y, tokens[:, -1:, :d]


def gd_solve(tokens, eta, steps=1, W0=None, *, d_out=1):
    """W_K (B, d_out, d) after `steps` GD steps on the context loss from W₀ (zero default).

    With V = Wᵀ the step −(η/N) Σ_i (W x_i − y_i) x_iᵀ reads V ← V + (η/N)(α − Σ V).
    """
    xp = namespace(tokens)
    d_out = d_out if W0 is None else W0.shape[-2]
    d, N = tokens.shape[-1] - d_out, tokens.shape[1] - 1
    S, a, _ = moments(tokens, d)
    V = xp.zeros_like(a) if W0 is None else xp.broadcast_to(W0.mT, a.shape)   # (B, d, d_out)
    for _ in range(steps):
        V = V + (eta / N) * (a - S @ V)
    return V.mT


def gd_predict(tokens, eta, steps=1, W0=None, *, d_out=1):
    """ŷ = W_K x_q (B, d_out) after `steps` explicit GD steps from W₀."""
    return _apply(gd_solve(tokens, eta, steps, W0, d_out=d_out), tokens)


def _apply(W, tokens):
    """W x_q for per-task weights W (B, d_out, d) -> (B, d_out)."""
    xq = tokens[:, -1:, :W.shape[-1]]                                   # (B, 1, d)
    return namespace(W).reshape(xq @ W.mT, (W.shape[0], W.shape[1]))


def gdpp_tokens(tokens, eta, gamma, steps, *, d_out=1):
    """The token stream [H_0, ..., H_K] of the explicit GD++ recursion (module docstring)."""
    d = tokens.shape[-1] - d_out
    N = tokens.shape[1] - 1
    stream = [tokens]
    for _ in range(steps):
        H = stream[-1]
        X, Y = H[..., :d], H[..., d:]                                   # every token
        G = X @ X[:, :N, :].mT                                          # x_jᵀ x_i (B, T, N)
        X = X - gamma * (G @ X[:, :N, :])
        Y = Y - (eta / N) * (G @ Y[:, :N, :])
        stream.append(namespace(H).concat([X, Y], axis=-1))
    return stream


def gdpp_predict(tokens, eta, gamma, steps, *, d_out=1):
    """ŷ = −(query y slot) after `steps` GD++ updates (B, d_out), computed in the eigenbasis
    of Σ (see :func:`_gdpp_spectral`); equal to the token recursion :func:`gdpp_tokens`."""
    return _gdpp_spectral(*spectrum(tokens, tokens.shape[-1] - d_out), eta, gamma, steps, tokens.shape[1] - 1)


def spectrum(tokens, d):
    """(λ (B, d, 1), z (B, d, 1), β (B, d, d_out), y_q (B, d_out)): Σ = U diag(λ) Uᵀ,
    x_q and α in that eigenbasis (z = Uᵀx_q, β = Uᵀα), and the query's y slot."""
    xp = namespace(tokens)
    S, a, xq = moments(tokens, d)
    lam, U = xp.linalg.eigh(S)
    return xp.expand_dims(lam, axis=-1), U.mT @ xq.mT, U.mT @ a, tokens[:, -1, d:]


def _gdpp_spectral(lam, z, beta, yq, eta, gamma, steps, N):
    """GD++ (γ = 0: GD) per eigen-direction of Σ, where every matrix of the recursion is
    diagonal: with m = 1 − γλ, a layer maps y_q → y_q − (η/N) Σ_k z_k β_k, z → m z,
    β → m (1 − (η/N) λ) β and λ → λ m² (Σ → (I − γΣ) Σ (I − γΣ)). Elementwise: cheap."""
    xp = namespace(lam)
    t = eta / N
    for _ in range(steps):
        m = 1 - gamma * lam
        yq = yq - t * xp.sum(z * beta, axis=1)
        z, beta, lam = m * z, m * (1 - t * lam) * beta, lam * m * m
    return -yq


def loss(pred, targets) -> float:
    """½ mean over tasks of ‖ŷ − y‖² (the paper's loss), as a Python float."""
    return float(mse(pred, targets)[0])


def tune_gd(tokens, targets, steps=1, *, plus=False, eta_range=None, gamma_range=None,
            grid=None, rounds=4):
    """Best η (GD) or (η, γ) (GD++, ``plus=True``, shared across steps) on this evaluation set.

    Zooming grid search: a grid over the ranges, then `rounds` times a finer grid of ±2
    cells around the best point. Default ranges scale with s = mean ‖Σ_i x_i x_iᵀ‖_F:
    η ∈ [0, 8N/s], γ ∈ [0, 1/s] (γ·λ_max ≤ 1). Returns ``({"eta": ..[, "gamma": ..]}, loss)``.
    """
    xp = namespace(tokens)
    d_out = targets.shape[-1]
    d, N = tokens.shape[-1] - d_out, tokens.shape[1] - 1
    lam, z, beta, _ = spectrum(tokens, d)
    yq = xp.zeros_like(beta[:, 0, :])                                   # the query starts at 0
    s = float(xp.mean(xp.sqrt(xp.sum(lam * lam, axis=(1, 2)))))         # ‖Σ‖_F
    ranges = [eta_range or (0.0, 8 * N / s)] + ([gamma_range or (0.0, 1.0 / s)] if plus else [])
    grid = grid or (15 if plus else 41)

    def evaluate(p):
        pred = _gdpp_spectral(lam, z, beta, yq, p[0], p[1] if plus else 0.0, steps, N)
        value = loss(pred, targets)
        return value if math.isfinite(value) else math.inf

    best = None
    for _ in range(rounds + 1):
        axes = [np.linspace(lo, hi, grid) for lo, hi in ranges]
        for p in itertools.product(*axes):
            value = evaluate(p)
            if best is None or value < best[1]:
                best = (p, value)
        ranges = [(max(lo, b - 2 * (hi - lo) / (grid - 1)), min(hi, b + 2 * (hi - lo) / (grid - 1)))
                  for b, (lo, hi) in zip(best[0], ranges)]
    names = ("eta", "gamma")
    return {k: float(v) for k, v in zip(names, best[0])}, best[1]


# -- the model -------------------------------------------------------------------------

class LinearTransformer(Layer):
    """A residual stack of linear self-attention layers reading −(query y slot).

    H_0 = tokens,  H_{l+1} = H_l + LSA_l(H_l)  (keys/values: the N context tokens),
    ŷ = −H_L[query, d:].  forward(params, tokens (B, N+1, D)) -> ŷ (B, d_out).

    params: one LSA dict when ``shared`` (the paper's recurrent Transformer: gradients
    summed over layers), else a list of ``n_layers`` dicts. ``fast=True`` computes only the
    query row in the last layer (only it reaches ŷ; ``LinearSelfAttention(last_only=True)``)
    and backpropagates only that row into the stack; ``fast=False`` is the plain
    composition of full layers, kept as the reference the fast path is tested against.
    Default init: the paper code's VarianceScaling(0.002/L) (truncated normal, std
    √(0.002/(L·D)) after truncation).
    """

    def __init__(self, d, d_out=1, n_layers=1, *, shared=True, form="merged", n_heads=1,
                 d_key=None, init_std=None, fast=True):
        self.d, self.d_out, self.n_layers, self.shared, self.fast = d, d_out, n_layers, shared, fast
        self.D = d + d_out
        if init_std is None:
            init_std = math.sqrt(0.002 / (n_layers * self.D)) / 0.8796256610342398  # truncation
        self.lsa = LinearSelfAttention(self.D, n_heads, d_key, form=form, init_std=init_std)

    def init(self, rng, *, dtype=None, backend=None):
        rng = as_rng(rng)
        if self.shared:
            return self.lsa.init(rng, dtype=dtype, backend=backend)
        return [self.lsa.init(r, dtype=dtype, backend=backend) for r in rng.spawn(self.n_layers)]

    def layer_params(self, params, l):
        return params if self.shared else params[l]

    def _run(self, params, tokens, fast):
        """Residual stream [H_0, ..., H_L] (H_L is the query row only when `fast`) and caches."""
        self.check_input(tokens, ndim=3, last=self.D, what="tokens")
        T = tokens.shape[1]
        if T < 2:
            raise ValueError(f"{self.name}: expected tokens with N ≥ 1 context tokens and a query, got shape {tuple(tokens.shape)}")
        stream, caches = [tokens], []
        for l in range(self.n_layers):
            last = fast and l == self.n_layers - 1
            H = stream[-1]
            out, cache = self.lsa.forward(self.layer_params(params, l), H, n_context=T - 1, last_only=last)
            stream.append((H[:, T - 1:, :] if last else H) + out)
            caches.append(cache)
        return stream, caches

    def stream(self, params, tokens):
        """Every layer's full token matrix [H_0, ..., H_L] (B, N+1, D) (plain composition)."""
        return self._run(params, tokens, fast=False)[0]

    def forward(self, params, tokens):
        stream, caches = self._run(params, tokens, self.fast)
        return -stream[-1][:, -1, self.d:], (tokens.shape[1], caches)   # (B, d_out)

    def backward(self, params, cache, dpred):
        T, caches = cache
        xp = self.check_input(dpred, ndim=2, last=self.d_out, what="dpred")
        B = dpred.shape[0]
        zeros = xp.zeros((B, self.d), dtype=dpred.dtype, device=array_api_compat.device(dpred))
        dH = xp.expand_dims(xp.concat([zeros, -dpred], axis=-1), axis=1)    # dL/dH_L, query row
        if not self.fast:
            dH = place_rows(dH, T - 1, T)                                   # (B, T, D)
        grads = [None] * self.n_layers
        for l in reversed(range(self.n_layers)):
            dx, grads[l] = self.lsa.backward(self.layer_params(params, l), caches[l], dH)
            dH = dx + place_rows(dH, T - dH.shape[1], T)                    # + residual path
        return dH, (reduce(add, grads) if self.shared else grads)

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        model = LinearTransformer(3, 2, n_layers=2, shared=False, form="full", init_std=0.5)
        return {"default": (model, sample(rng, 2, n_context=4, d=3, d_out=2)[0], {})}


def train(model, params, optimizer, *, steps, batch, rng, n_context=10, input_range=1.0,
          noise_std=0.0, **fit_kw):
    """Fit `model` on fresh tasks every step (as the paper code): ``(params, history)``.
    Extra keywords go to :func:`tinynim.train.fit` (log_every, log, eval_fn, eval_every)."""
    rng = as_rng(rng)
    data = lambda step: sample(rng, batch, n_context, model.d, d_out=model.d_out,
                               input_range=input_range, noise_std=noise_std)
    return fit(supervised(model), params, optimizer, steps=steps, data=data, **fit_kw)


# -- constructions ---------------------------------------------------------------------

def _to_form(Q, P, form, dtype, backend):
    """Merged (Q, P) host matrices -> params of one head in `form` (full: Wq = Q, Wk = I,
    Wv = P, Wp = I, so that Wq Wkᵀ = Q and Wv Wp = P)."""
    D = Q.shape[0]
    mats = {"Q": Q, "P": P} if form == "merged" else {"Wq": Q, "Wk": np.eye(D), "Wv": P, "Wp": np.eye(D)}
    return {k: asarray(m[None], dtype, backend) for k, m in mats.items()}


def _x_selector(d, d_out):
    Q = np.zeros((d + d_out, d + d_out))
    Q[:d, :d] = np.eye(d)
    return Q


def gd_weights(d, n_context, eta, *, d_out=1, W0=None, form="merged", dtype=None, backend=None):
    """LSA params (one head, d_key = D) whose every shared layer is one GD step from W₀.

    Merged: Q = [[I_d, 0], [0, 0]], P = (η/N)[[0, W₀ᵀ], [0, −I]]. The query must carry −W₀x_q
    in its y slot (:func:`with_initial_guess`). Full form: Wq = Q, Wk = Wp = I, Wv = P (the
    paper code splits the scale differently; only the products matter).
    """
    D = d + d_out
    P = np.zeros((D, D))
    P[d:, d:] = -np.eye(d_out)
    if W0 is not None:
        P[:d, d:] = to_numpy(W0).T
    return _to_form(_x_selector(d, d_out), (eta / n_context) * P, form, dtype, backend)


def gdpp_weights(d, n_context, eta, gamma, *, d_out=1, form="merged", dtype=None, backend=None):
    """LSA params implementing one GD++ update per layer: P = [[−γ I_d, 0], [0, −(η/N) I]]."""
    P = np.zeros((d + d_out, d + d_out))
    P[:d, :d] = -gamma * np.eye(d)
    P[d:, d:] = -(eta / n_context) * np.eye(d_out)
    return _to_form(_x_selector(d, d_out), P, form, dtype, backend)


def effective_eta(params, d, n_context, form):
    """The GD step size a 1-output layer implements: η = −N Σ_h mean(diag Q_h,xx) · P_h,yy."""
    Q, P = merged_products(params, form)
    xp = namespace(Q)
    q = xp.sum(Q[:, :d, :d] * xp.eye(d, dtype=Q.dtype), axis=(1, 2)) / d      # (H,)
    return -n_context * float(xp.sum(q * P[:, d, d]))


# -- alignment metrics (spec §2.6; P1 code's `analyse`) -----------------------------------

def sensitivity(model, params, tokens, W0=None):
    """(ŷ (B, d_out), J (B, d_out, d)) with J = ∂ŷ/∂x_q from the hand-derived backward.

    With an initial guess the query's y slot −W₀x_q also moves with x_q (chain rule):
    J = ∂ŷ/∂(x slot) − ∂ŷ/∂(y slot) W₀, for tokens made by ``with_initial_guess(·, W0)``.
    """
    xp = namespace(tokens)
    pred, cache = model.forward(params, tokens)
    rows = []
    for o in range(model.d_out):
        e_o = xp.astype(xp.arange(model.d_out) == o, pred.dtype)
        dtokens, _ = model.backward(params, cache, xp.broadcast_to(e_o, pred.shape))
        row = dtokens[:, -1, :model.d]                                      # (B, d)
        if W0 is not None:
            row = row - dtokens[:, -1, model.d:] @ W0                       # (B, d_out) @ (d_out, d)
        rows.append(row)
    return pred, xp.stack(rows, axis=1)


def gd_sensitivity(tokens, eta, steps=1, W0=None, *, d_out=1):
    """(ŷ, J) of GD: ŷ = W_K x_q with W_K independent of x_q, so J = W_K exactly."""
    W = gd_solve(tokens, eta, steps, W0, d_out=d_out)
    return _apply(W, tokens), W


def alignment(pred_a, J_a, pred_b, J_b) -> dict:
    """Mean over tasks of: cosine of the sensitivities (norms + 1e-8), ‖J_a − J_b‖ ("model
    diff") and ‖ŷ_a − ŷ_b‖ ("preds diff")."""
    xp = namespace(J_a, J_b)
    B = J_a.shape[0]
    a, b = xp.reshape(J_a, (B, -1)), xp.reshape(J_b, (B, -1))
    na = xp.sqrt(xp.sum(a * a, axis=1)) + 1e-8
    nb = xp.sqrt(xp.sum(b * b, axis=1)) + 1e-8
    norm = lambda u: xp.sqrt(xp.sum(u * u, axis=1))
    return {"cosine": float(xp.mean(xp.sum(a * b, axis=1) / (na * nb))),
            "model_diff": float(xp.mean(norm(a - b))),
            "preds_diff": float(xp.mean(norm(pred_a - pred_b)))}
