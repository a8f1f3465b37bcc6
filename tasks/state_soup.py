"""State soup (Pióro et al. 2024, arXiv:2406.08423): recurrent states as task vectors to store,
retrieve and mix. The paper uses Mamba-2.8b; here the phenomenon is reproduced on the gated
RNN of arXiv:2309.01775 trained on in-context regression (:data:`EXPERIMENTS`).

A gated linear recurrence h_t = a_t ⊙ h_{t−1} + b_t, whose a_t and b_t depend only on the
inputs, maps the initial state *affinely* to the final one. A context c is therefore
summarised by two vectors, its state from a zero start s(c) and its decay Φ(c) = Π_t a_t::

    h_T(h₀) = Φ(c) ⊙ h₀ + s(c)                              (affine in h₀)
    s(c₁∘c₂) = Φ(c₂) ⊙ s(c₁) + s(c₂),   Φ(c₁∘c₂) = Φ(c₁) ⊙ Φ(c₂)  (concatenation)

The pairs (s, Φ) compose associatively with identity (0, 1), the monoid that parallel
scans use. A *soup* is a linear combination Σ_i w_i s(c_i) of stored states, used as the
initial state for new input. It is exact in two cases: convex weights on initial states
(affinity), and plain sums of λ = 1 states (linear attention: S(c₁∘c₂) = S(c₁) + S(c₂),
so the sum soup of two demonstration sets *is* the state of their union, in any order).
Elsewhere it is an approximation: with λ < 1 a sum forgets to decay the first context,
and a mean halves an unnormalised accumulator (on regression: half the GD step size).

For :class:`tinynim.nn.recurrent.GatedLinearRNN` the decay is input-independent, a_t = λ,
so Φ = λ^T. The model functions below take such a layer and its params; the algebra
(:func:`compose`, :func:`soup`, :class:`StateStore`) works on any arrays of states.
"""
from __future__ import annotations

import functools

import array_api_compat
import numpy as np

from tinynim.analysis import cosine_matrix
from tinynim.backend import namespace, use_dtype
from tinynim.claims import Claim
from tinynim.experiment import Experiment, run, scaled
from tinynim.gradcheck import rel_error
from tinynim.losses import softmax
from tinynim.nn.recurrent import GatedLinearRNN
from tinynim.optim import Adam, cosine
from tinynim.random import RNG

from tasks.gated_rnn_attention import RNNRegressor, gd_gated_rnn
from tasks.icl_regression import gd_predict, loss, regression_data, sample

KINDS = ("sum", "mean")


# -- a model's state of a context ----------------------------------------------------------

def context_state(rnn, params, tokens, h0=None):
    """h_T after reading `tokens` (B, T, d_in) from `h0` (B, N); s(c) when h0 is None. (B, N)"""
    x = tokens if h0 is None else (tokens, h0)
    (_, h_T), _ = rnn.forward(params, x, return_state=True, last_only=True)
    return h_T


def decay(rnn, params, T: int):
    """Φ = Π_t λ = λ^T: how much of the initial state survives T tokens.           (N,)"""
    return rnn.decay_product(params, T)


def predict_from_state(rnn, params, state, query_tokens):
    """The output at the last of `query_tokens` (B, T_q, d_in), resuming from `state` (B, N)
    (None: a zero start, i.e. no context).                                       (B, d_out)"""
    x = query_tokens if state is None else (query_tokens, state)
    out, _ = rnn.forward(params, x, last_only=True)
    return out


# -- the algebra -------------------------------------------------------------------------

def compose(states, decays):
    """(s, Φ) of the concatenation c₁∘c₂∘…∘c_n from each part's s(c_i) and Φ(c_i).

    A left fold of (s₁, Φ₁) ∘ (s₂, Φ₂) = (Φ₂ ⊙ s₁ + s₂, Φ₁ ⊙ Φ₂). Put an initial state h₀
    first with decay 1 to get h_T(h₀) of the whole concatenation.
    """
    if len(states) != len(decays) or not states:
        raise ValueError(f"compose: need as many decays as states (at least one), "
                         f"got {len(states)} states and {len(decays)} decays")
    s, phi = states[0], decays[0]
    for s_i, phi_i in zip(states[1:], decays[1:]):
        s, phi = phi_i * s + s_i, phi * phi_i
    return s, phi


def soup(states, weights=None, *, kind="sum"):
    """A linear combination of states of equal shape.

    kind="sum":  Σ_i w_i s_i            (w = 1 by default: the plain sum)
    kind="mean": Σ_i w_i s_i / Σ_i w_i  (convex; w = 1 by default: the average)
    """
    if kind not in KINDS:
        raise ValueError(f"soup: kind must be one of {KINDS}, got {kind!r}")
    if not states:
        raise ValueError("soup: need at least one state")
    weights = [1.0] * len(states) if weights is None else [float(w) for w in weights]
    if len(weights) != len(states):
        raise ValueError(f"soup: got {len(states)} states and {len(weights)} weights")
    total = sum(w * s for w, s in zip(weights, states))
    if kind == "sum":
        return total
    if sum(weights) == 0:
        raise ValueError("soup: kind='mean' needs weights with a nonzero sum")
    return total / sum(weights)


class StateStore:
    """K stored states with labels; look-up by cosine similarity, hard or soft.

    `keys` (N,) weights the neurons before the similarity is taken (e.g. :func:`memory_keys`
    to ignore pass-through neurons, which hold the last token rather than the task).

    >>> store = StateStore.build(rnn, params, contexts, labels)      # contexts: (K, T, d_in)
    >>> idx, cos = store.nearest(context_state(rnn, params, short))   # (B,) (B,)
    >>> pred = predict_from_state(rnn, params, store.states_at(idx), query)
    """

    def __init__(self, states, labels=None, *, keys=None):
        if states.ndim != 2:
            raise ValueError(f"StateStore: expected states of shape (K, N), got shape {tuple(states.shape)}")
        self.states, self.keys = states, keys                       # (K, N), (N,) or None
        self.labels = list(range(states.shape[0])) if labels is None else list(labels)
        if len(self.labels) != states.shape[0]:
            raise ValueError(f"StateStore: {states.shape[0]} states but {len(self.labels)} labels")

    @classmethod
    def build(cls, rnn, params, contexts, labels=None, *, keys=None):
        """Store s(c_k) of each context c_k (a batch (K, T, d_in) of equal-length contexts)."""
        return cls(context_state(rnn, params, contexts), labels, keys=keys)

    def similarity(self, queries):
        """cos(keys ⊙ query_b, keys ⊙ s_k) for query states (B, N).                  (B, K)"""
        if queries.ndim != 2 or queries.shape[1] != self.states.shape[1]:
            raise ValueError(f"StateStore: expected queries of shape (B, {self.states.shape[1]}), "
                             f"got shape {tuple(queries.shape)}")
        if self.keys is None:
            return cosine_matrix(queries, self.states)
        return cosine_matrix(queries * self.keys, self.states * self.keys)

    def nearest(self, queries):
        """Index of the most similar stored state, and that similarity.             (B,) (B,)"""
        xp = namespace(queries)
        sim = self.similarity(queries)                              # (B, K)
        return xp.argmax(sim, axis=-1), xp.max(sim, axis=-1)

    def states_at(self, idx):
        """The stored states at indices `idx` (B,), ready to resume from.           (B, N)"""
        return namespace(self.states).take(self.states, idx, axis=0)

    def mix(self, queries, beta):
        """Soft retrieval: the mean soup Σ_k p_k s_k, p = softmax(β · cos(query, s_k)).  (B, N)

        β → ∞ gives :meth:`nearest`; β = 0 the plain average of the store.
        """
        return softmax(beta * self.similarity(queries)) @ self.states


def memory_keys(rnn, params, T, threshold=0.05):
    """1 for neurons whose content survives T tokens (λ^T ≥ threshold), else 0.       (N,)"""
    phi = decay(rnn, params, T)
    return namespace(phi).astype(phi >= threshold, phi.dtype)


# -- experiments on in-context regression --------------------------------------------------

def split_predictions(rnn, params, tokens, n_first=None):
    """Query predictions from every way of combining the two parts c₁, c₂ of the context.

    tokens (B, N+1, D) = c₁ ∘ c₂ ∘ query, n_first = |c₁| (default N // 2). Keys:
    none (zero state), half (s(c₁) only), full (the whole sequence read in order),
    exact (compose: Φ(c₂) ⊙ s(c₁) + s(c₂)), sum and mean (soups of s(c₁), s(c₂)).
    """
    N = tokens.shape[1] - 1
    n_first = N // 2 if n_first is None else n_first
    c1, c2, query = tokens[:, :n_first, :], tokens[:, n_first:N, :], tokens[:, N:, :]
    s1, s2 = context_state(rnn, params, c1), context_state(rnn, params, c2)
    exact, _ = compose([s1, s2], [decay(rnn, params, n_first), decay(rnn, params, N - n_first)])
    from_state = lambda s: predict_from_state(rnn, params, s, query)
    return {"none": from_state(None), "half": from_state(s1),
            "full": predict_from_state(rnn, params, None, tokens), "exact": from_state(exact),
            "sum": from_state(soup([s1, s2])), "mean": from_state(soup([s1, s2], kind="mean"))}


def task_tokens(rng, w, n_context, *, input_range=2.0, dtype=None):
    """Regression tasks with given weights w (B, d) (host numpy), tokens laid out as
    :func:`tasks.icl_regression.sample`: (tokens (B, n_context+1, d+1), targets (B, 1))."""
    B, d = w.shape
    return sample(rng, B, n_context, d, input_range=input_range, dtype=dtype, w=w[:, None, :])


def skill_store(rnn, params, skills, rng, n_context=12, *, keys=None, input_range=2.0):
    """A :class:`StateStore` of s(c_k) for one fresh n_context-shot context of each skill k
    (skills: host (K, d) regression weights); labels are the skill indices."""
    tokens, _ = task_tokens(rng, skills, n_context, input_range=input_range)
    return StateStore.build(rnn, params, tokens[:, :-1, :], labels=range(skills.shape[0]), keys=keys)


def retrieval_predictions(rnn, params, store, skills, rng, n_shots, batch, *, beta=5.0,
                          input_range=2.0):
    """New tasks of random stored skills j with an `n_shots`-shot context c, and a query.

    Returns (accuracy of the nearest stored state being skill j, targets, predictions):
    "short" reads c alone; "retrieved" resumes from the nearest stored state on the query
    only, "retrieved+short" on c then the query; "mixed+short" resumes from the soft
    retrieval ``store.mix(s(c), beta)`` on c then the query; "oracle" resumes from the
    stored state of the true skill j on the query.
    """
    j = rng.integers(0, skills.shape[0], (batch,), host=True)
    tokens, targets = task_tokens(rng, skills[j], n_shots, input_range=input_range)
    query = tokens[:, n_shots:, :]
    s_short = context_state(rnn, params, tokens[:, :n_shots, :])
    idx, _ = store.nearest(s_short)
    xp = namespace(idx)
    truth = _indices(j, idx)
    accuracy = float(xp.mean(xp.astype(idx == truth, tokens.dtype)))
    retrieved = store.states_at(idx)
    preds = {"short": predict_from_state(rnn, params, None, tokens),
             "retrieved": predict_from_state(rnn, params, retrieved, query),
             "retrieved+short": predict_from_state(rnn, params, retrieved, tokens),
             "mixed+short": predict_from_state(rnn, params, store.mix(s_short, beta), tokens),
             "oracle": predict_from_state(rnn, params, store.states_at(truth), query)}
    return accuracy, targets, preds


def _indices(host, like):
    """Host integer indices as an int64 array in the namespace and on the device of `like`."""
    xp = namespace(like)
    return xp.asarray(host, dtype=xp.int64, device=array_api_compat.device(like))


def mixing_predictions(rnn, params, store, skills, rng, batch, n_context=12, *, input_range=2.0):
    """Tasks that mix two distinct stored skills, w = (w_a + w_b)/2, predicted at a query.

    Returns (targets, predictions) with keys: none, one skill (resume from s_a), mean soup,
    sum soup, concat (the exact state of c_a∘c_b, by compose) and own context (a fresh
    n_context-shot context of the mixed task itself: the reference).
    """
    K = skills.shape[0]
    a = rng.integers(0, K, (batch,), host=True)
    b = (a + rng.integers(1, K, (batch,), host=True)) % K                # b ≠ a
    tokens, targets = task_tokens(rng, (skills[a] + skills[b]) / 2, n_context, input_range=input_range)
    query = tokens[:, n_context:, :]
    s_a, s_b = store.states_at(_indices(a, store.states)), store.states_at(_indices(b, store.states))
    phi = decay(rnn, params, n_context)
    from_state = lambda s: predict_from_state(rnn, params, s, query)
    return targets, {"none": from_state(None), "one skill": from_state(s_a),
                     "mean soup": from_state(soup([s_a, s_b], kind="mean")),
                     "sum soup": from_state(soup([s_a, s_b])),
                     "concat": from_state(compose([s_a, s_b], [phi, phi])[0]),
                     "own context": predict_from_state(rnn, params, None, tokens)}


# -- the experiments ---------------------------------------------------------------------------
# The gated RNN of arXiv:2309.01775 (32 neurons, λ = exp(−exp(ν))) trained on in-context
# regression (d = 4, N = 12 = two 6-shot halves, x ~ U(−1, 1)), float64 so the identities
# are checked to 1e-10; K = 16 fixed tasks ("skills") for storing, retrieving and mixing.

D, N, K = 4, 12, 16
SHOTS = (1, 2, 3, 4, 6, 12)
EXPERIMENTS = {
    "soup_model": Experiment(model=lambda: RNNRegressor(D, 1, 32, recurrence="exp"),
                             optimizer=lambda steps: Adam(cosine(4e-3, steps, 4e-3 / 20)), steps=3000,
                             seed=0, data_seed=1, data=regression_data(256, N, D, input_range=2.0)),
}


def algebra_errors(seed=0) -> dict:
    """Relative errors (float64) of the exact identities on a tiny random 3-neuron gated RNN
    (concatenation, affinity and convex mixing in h₀) and on the λ = 1 one-GD-step RNN of
    arXiv:2309.01775 (the sum soup of two halves is GD on their union, in either order)."""
    with use_dtype("float64"):
        rng = RNG(seed)
        tiny = GatedLinearRNN(2, 3, 1)
        tp = tiny.init(rng)
        c1, c2, h0, h0b = rng.normal((1, 5, 2)), rng.normal((1, 7, 2)), rng.normal((1, 3)), rng.normal((1, 3))
        s1, s2 = context_state(tiny, tp, c1), context_state(tiny, tp, c2)
        xp = namespace(c1)
        composed, _ = compose([s1, s2], [decay(tiny, tp, 5), decay(tiny, tp, 7)])
        mixed_start = context_state(tiny, tp, c1, soup([h0, h0b], [0.3, 0.7]))
        mixed_end = soup([context_state(tiny, tp, c1, h0), context_state(tiny, tp, c1, h0b)], [0.3, 0.7])
        tokens, _ = sample(RNG(seed + 1), 256, n_context=N, d=D, input_range=2.0)
        rnn, params = gd_gated_rnn(D, N, eta=1.0)
        S1, S2 = context_state(rnn, params, tokens[:, :5, :]), context_state(rnn, params, tokens[:, 5:N, :])
        union = gd_predict(tokens, 1.0)
        at_query = lambda s: predict_from_state(rnn, params, s, tokens[:, N:, :])
        return {"concatenation": rel_error(context_state(tiny, tp, xp.concat([c1, c2], axis=1)), composed),
                "affine": rel_error(context_state(tiny, tp, c1, h0), decay(tiny, tp, 5) * h0 + s1),
                "convex": rel_error(mixed_start, mixed_end),
                "union": max(rel_error(at_query(soup([S1, S2])), union), rel_error(at_query(soup([S2, S1])), union))}


def soup_metrics(rnn, params, skills, quick_mode=None) -> dict:
    """Losses of every way of combining two context halves (``split/<key>``), of mixing two
    stored skills (``mix/<key>``), and retrieval accuracies and losses per number of shots
    (``acc/<n>``, ``acc_all/<n>``, ``retrieval/<n>/<key>``), with the ratios the claims use."""
    tokens, targets = sample(RNG(1000), scaled(20_000, quick_mode=quick_mode), n_context=N, d=D, input_range=2.0)
    split = split_predictions(rnn, params, tokens)
    m = {f"split/{k}": loss(v, targets) for k, v in split.items()}
    m["exact_error"] = rel_error(split["exact"], split["full"])
    keys = memory_keys(rnn, params, N)                 # neurons with λ^12 ≥ 0.05 hold the task
    store = skill_store(rnn, params, skills, RNG(8), N, keys=keys)
    plain = skill_store(rnn, params, skills, RNG(8), N)
    mix_targets, mix = mixing_predictions(rnn, params, store, skills, RNG(10), scaled(20_000, quick_mode=quick_mode), N)
    m.update({f"mix/{k}": loss(v, mix_targets) for k, v in mix.items()})
    for n in SHOTS:
        batch = scaled(10_000, quick_mode=quick_mode)
        m[f"acc_all/{n}"] = retrieval_predictions(rnn, params, plain, skills, RNG(9), n, batch)[0]
        m[f"acc/{n}"], t, preds = retrieval_predictions(rnn, params, store, skills, RNG(9), n, batch)
        m.update({f"retrieval/{n}/{k}": loss(v, t) for k, v in preds.items()})
    m.update({"sum_over_full": m["split/sum"] / m["split/full"],
              "mean_over_half": m["split/mean"] / m["split/half"],
              "half_over_none": m["split/half"] / m["split/none"],
              "mean_soup_over_own": m["mix/mean soup"] / m["mix/own context"],
              "mean_soup_over_others": m["mix/mean soup"] / min(m["mix/one skill"], m["mix/sum soup"], m["mix/none"]),
              "acc_gain": m["acc/12"] - m["acc/2"],
              "mixed_over_short": m["retrieval/3/mixed+short"] / m["retrieval/3/short"]})
    return m


def skills_host() -> np.ndarray:
    """The K fixed skill weights (K, D), host numpy."""
    return RNG(7).normal((K, D), host=True)


def train(name="soup_model", *, quick_mode=None, log=print, seed_offset=0):
    """Train the model (float64, active backend) and measure everything: ``(metrics, Result)``."""
    exp = EXPERIMENTS[name]
    exp = exp.reseeded(seed_offset)
    with use_dtype("float64"):
        result = run(exp, quick_mode=quick_mode, log=log)
        return soup_metrics(result.model.rnn, result.params, skills_host(), quick_mode), result


def measure(name, *, quick_mode=None, log=None, seed_offset=0):
    """Metrics of "algebra" or "soup_model"."""
    if name == "algebra":
        return algebra_errors()
    return train(name, quick_mode=quick_mode, log=log, seed_offset=seed_offset)[0]


# -- claims ------------------------------------------------------------------------------------

PAPER = "2406.08423"
RECON = "ours, on the arXiv:2309.01775 model"     # the paper measures Mamba-2.8b
TITLE = "Pióro et al. 2024, *State Soup: in-context skill learning, retrieval and mixing*"
_CLAIM = functools.partial(Claim, paper=PAPER)
_EXACT = dict(kind="exact", experiment="algebra", bound=("<=", 1e-10), reference="exact",
              seeds="seed 0", why="float64 rounding; the identities are algebraic")

CLAIMS = (
    _CLAIM(id="P5.algebra.concatenation", metric="concatenation", observed=(7.0e-17, 7.0e-17), source="paper Sec. 3",
           statement="s(c₁∘c₂) = Φ(c₂) ⊙ s(c₁) + s(c₂) (rel. error)", **_EXACT),
    _CLAIM(id="P5.algebra.affine", metric="affine", observed=(0.0, 0.0), source="paper Sec. 3",
           statement="h_T(h₀) = Φ ⊙ h₀ + s(c) (rel. error)", **_EXACT),
    _CLAIM(id="P5.algebra.convex", metric="convex", observed=(4.9e-17, 4.9e-17), source="paper Sec. 3",
           statement="a convex soup of initial states gives the same soup of final states", **_EXACT),
    _CLAIM(id="P5.algebra.union", metric="union", observed=(9.6e-17, 9.6e-17), source="ours",
           statement="λ = 1: the sum soup of two halves = one GD step on their union, either order", **_EXACT),
    _CLAIM(id="P5.trained.exact", kind="exact", experiment="soup_model", metric="exact_error",
           statement="trained model: Φ(c₂) ⊙ s(c₁) + s(c₂) gives the full-context predictions",
           bound=("<=", 1e-10), reference="exact", source="paper Sec. 3", observed=(1.1e-16, 1.2e-16), seeds="seeds 0–2", why="float64 rounding"),
    _CLAIM(id="P5.split.full", kind="statistical", experiment="soup_model", metric="split/full",
           statement="loss, full 12-shot context", bound=("~", 0.1), reference=0.1682, source=RECON,
           observed=(0.1604, 0.161), seeds="seeds 0–2", why="another training run and 20k-task set: ~4 % Monte Carlo plus training"),
    _CLAIM(id="P5.split.sum", kind="statistical", experiment="soup_model", metric="split/sum",
           statement="loss, sum soup s(c₁) + s(c₂)", bound=("~", 0.1), reference=0.1776, source=RECON,
           observed=(0.167, 0.1681), seeds="seeds 0–2", why="as P5.split.full"),
    _CLAIM(id="P5.split.mean", kind="statistical", experiment="soup_model", metric="split/mean",
           statement="loss, mean soup (s(c₁) + s(c₂))/2", bound=("~", 0.1), reference=0.274, source=RECON,
           observed=(0.257, 0.2604), seeds="seeds 0–2", why="as P5.split.full"),
    _CLAIM(id="P5.split.half", kind="statistical", experiment="soup_model", metric="split/half",
           statement="loss, one half s(c₁) only", bound=("~", 0.1), reference=0.308, source=RECON,
           observed=(0.2993, 0.3016), seeds="seeds 0–2", why="as P5.split.full"),
    _CLAIM(id="P5.split.none", kind="statistical", experiment="soup_model", metric="split/none",
           statement="loss, no context", bound=("~", 0.1), reference=0.666, source=RECON,
           observed=(0.6488, 0.6506), seeds="seeds 0–2", why="as P5.split.full"),
    _CLAIM(id="P5.split.sum_vs_full", kind="statistical", experiment="soup_model", metric="sum_over_full",
           statement="sum soup / full context", bound=("<=", 1.15), reference=0.1776 / 0.1682, source=RECON,
           observed=(1.038, 1.048), seeds="seeds 0–2", why="memory neurons have λ ≈ 0.9–0.97: the undecayed first half is over-weighted a little"),
    _CLAIM(id="P5.split.mean_vs_half", kind="statistical", experiment="soup_model", metric="mean_over_half",
           statement="mean soup / one half (averaging still beats one half)", bound=("<", 1.0),
           reference=0.274 / 0.308, source=RECON, observed=(0.8583, 0.8634), seeds="seeds 0–2", why="an ordering; the mean halves the accumulated evidence (half the GD step)"),
    _CLAIM(id="P5.split.half_vs_none", kind="statistical", experiment="soup_model", metric="half_over_none",
           statement="one half / no context", bound=("<", 1.0), reference=0.308 / 0.666, source=RECON,
           observed=(0.4604, 0.4649), seeds="seeds 0–2", why="an ordering"),
    _CLAIM(id="P5.mix.own", kind="statistical", experiment="soup_model", metric="mean_soup_over_own",
           statement="task (w_a + w_b)/2: mean soup of two stored skills / its own 12-shot context",
           bound=("<=", 1.15), reference="≈ 1", source="paper Sec. 4 (skill mixing)", observed=(0.9578, 0.9731), seeds="seeds 0–2", why="for a GD-like state Σ x xᵀ w, averaging two skills' states averages their weights"),
    _CLAIM(id="P5.mix.others", kind="statistical", experiment="soup_model", metric="mean_soup_over_others",
           statement="mean soup / best of (one skill, sum soup, no state)", bound=("<=", 0.5),
           reference="< 1", source="paper Sec. 4", observed=(0.2514, 0.2703), seeds="seeds 0–2", why="far better, not marginally"),
    _CLAIM(id="P5.retrieval.gain", kind="statistical", experiment="soup_model", metric="acc_gain",
           statement="retrieval accuracy (K = 16, memory neurons): 12 shots − 2 shots", bound=(">", 0.0),
           reference="grows with shots", source="paper Sec. 5 (retrieval)", observed=(0.2396, 0.3102), seeds="seeds 0–2", why="10k tasks: s.e. ≤ 0.005 per accuracy"),
    _CLAIM(id="P5.retrieval.acc12", kind="statistical", experiment="soup_model", metric="acc/12",
           statement="retrieval accuracy with 12 shots (chance 1/16)", bound=(">=", 0.25),
           reference="high (Mamba)", source="paper Sec. 5", observed=(0.4768, 0.5885), seeds="seeds 0–2", why="4× chance; the rule is weak here: cos(Σ x y, w_k) of an exact GD state reaches only ~0.78"),
    _CLAIM(id="P5.retrieval.mixed", kind="statistical", experiment="soup_model", metric="mixed_over_short",
           statement="3 shots: soft retrieval (mean soup, softmax(5 cos)) then the shots / the shots alone",
           bound=("<=", 0.9), reference="< 1", source="paper Sec. 5", observed=(0.7211, 0.7426), seeds="seeds 0–2", why="a real gain, not noise (10k paired tasks)"),
)
