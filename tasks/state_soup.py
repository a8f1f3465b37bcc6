"""State soup (Pióro et al. 2024): recurrent states as task vectors to store, retrieve and mix.

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

from tinynim.backend import asarray, namespace
from tinynim.losses import softmax

from tasks.icl_regression import sample

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


def cosine_similarity(a, b):
    """cos(a_i, b_k) for rows a (B, N) and b (K, N); a zero row has similarity 0.   (B, K)"""
    xp = namespace(a, b)
    unit = lambda v: v / xp.maximum(xp.sqrt(xp.sum(v * v, axis=-1, keepdims=True)),
                                    xp.finfo(v.dtype).smallest_normal)
    return unit(a) @ unit(b).T


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
            return cosine_similarity(queries, self.states)
        return cosine_similarity(queries * self.keys, self.states * self.keys)

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


# -- experiments on in-context regression (spec §6.3) --------------------------------------

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
    truth = asarray(j, "int64")
    accuracy = float(xp.mean(xp.astype(idx == truth, tokens.dtype)))
    retrieved = store.states_at(idx)
    preds = {"short": predict_from_state(rnn, params, None, tokens),
             "retrieved": predict_from_state(rnn, params, retrieved, query),
             "retrieved+short": predict_from_state(rnn, params, retrieved, tokens),
             "mixed+short": predict_from_state(rnn, params, store.mix(s_short, beta), tokens),
             "oracle": predict_from_state(rnn, params, store.states_at(truth), query)}
    return accuracy, targets, preds


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
    s_a, s_b = store.states_at(asarray(a, "int64")), store.states_at(asarray(b, "int64"))
    phi = decay(rnn, params, n_context)
    from_state = lambda s: predict_from_state(rnn, params, s, query)
    return targets, {"none": from_state(None), "one skill": from_state(s_a),
                     "mean soup": from_state(soup([s_a, s_b], kind="mean")),
                     "sum soup": from_state(soup([s_a, s_b])),
                     "concat": from_state(compose([s_a, s_b], [phi, phi])[0]),
                     "own context": predict_from_state(rnn, params, None, tokens)}
