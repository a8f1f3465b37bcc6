# %% [markdown]
# # 05 · State soup: storing, retrieving and mixing recurrent states
#
# Pióro, Wołczyk, Pascanu, von Oswald, Sacramento, *State Soup: In-Context Skill Learning,
# Retrieval and Mixing* (arXiv 2406.08423) treat the internal state of a gated linear
# recurrent model (Mamba-2.8b) after a few-shot prompt as a *task vector*: states are
# stored, retrieved by similarity and linearly combined ("souped"), exploiting the
# linearity of the recurrence. Mamba-2.8b is out of reach here; we reproduce the
# phenomenon on the gated RNN of example P3 (Zucchet et al.) trained on in-context linear
# regression, where every step of the story is visible:
#
# 1. **The algebra is exact** for one gated linear layer h_t = λ ⊙ h_{t−1} + u_t:
#    h_T(h₀) = Φ ⊙ h₀ + s(c) with Φ = λ^T, and s(c₁∘c₂) = Φ(c₂) ⊙ s(c₁) + s(c₂).
#    For λ = 1 (linear attention) the *sum* of two states is the state of the
#    concatenation, so the sum soup of two demonstration sets is GD on their union.
# 2. **On a trained model** the soups are approximations: spec §6.3 orders them
#    full ≈ exact recombination < sum soup < mean soup < half context < no context.
# 3. **Skills**: with K stored task states, the mean soup of two skills solves a task that
#    mixes them; a short new context retrieves a stored state by cosine similarity.
#
# Run: `python examples/05_state_soup.py [--quick]` (or `TINYNIM_QUICK=1`).
# Expected runtime on a 2-core CPU: about 20 s (quick mode: about 5 s, mostly imports).

# %%
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from tinynim.backend import to_numpy, use_backend
from tinynim.gradcheck import rel_error
from tinynim.nn.recurrent import GatedLinearRNN
from tinynim.random import RNG
from tasks.gated_rnn_attention import RNNRegressor, gd_gated_rnn, train_icl
from tasks.icl_regression import gd_predict, loss, sample
from tasks.state_soup import (compose, context_state, decay, memory_keys, mixing_predictions,
                              predict_from_state, retrieval_predictions, skill_store, soup,
                              split_predictions, task_tokens)

QUICK = "--quick" in sys.argv or os.environ.get("TINYNIM_QUICK") == "1"
STEPS = 300 if QUICK else 3000
N_EVAL = 2000 if QUICK else 20000             # spec §1.3: ≥ 10k paired tasks for comparisons
D, N, K = 4, 12, 16
FIGURES = (Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()) / "figures"
session = contextlib.ExitStack()                   # numpy, float64 for the whole script:
session.enter_context(use_backend("numpy", dtype="float64"))   # identities are checked to 1e-10
print(f"{'quick mode, ' if QUICK else ''}{STEPS} training steps, {N_EVAL} evaluation tasks")

# %% [markdown]
# ## 1 · The algebra, live, on a tiny random gated RNN
# Three neurons, random weights, the sigmoid parametrisation λ = σ(ν). A context is
# summarised by two vectors: its state from a zero start s(c) and its decay Φ(c) = λ^T.

# %%
rng = RNG(0)
tiny = GatedLinearRNN(2, 3, 1)
tp = tiny.init(rng)
c1, c2, h0 = rng.normal((1, 5, 2)), rng.normal((1, 7, 2)), rng.normal((1, 3))
s1, s2 = context_state(tiny, tp, c1), context_state(tiny, tp, c2)
s12 = context_state(tiny, tp, np.concatenate([c1, c2], axis=1))
composed, _ = compose([s1, s2], [decay(tiny, tp, 5), decay(tiny, tp, 7)])
print("λ           ", np.round(to_numpy(tiny.decay(tp)), 4))
print("s(c1∘c2)    ", np.round(to_numpy(s12)[0], 6))
print("Φ2⊙s1 + s2  ", np.round(to_numpy(composed)[0], 6))
print("s1 + s2     ", np.round(to_numpy(soup([s1, s2]))[0], 6), " (the sum soup forgets Φ2)")
checks = {"concatenation s(c1∘c2) = Φ(c2)⊙s(c1) + s(c2)": rel_error(s12, composed),
          "affine: h_T(h0) = Φ⊙h0 + s(c)": rel_error(context_state(tiny, tp, c1, h0),
                                                   decay(tiny, tp, 5) * h0 + s1)}
h0b = rng.normal((1, 3))
checks["convex: h_T(0.3 h0 + 0.7 h0') = 0.3 h_T(h0) + 0.7 h_T(h0')"] = rel_error(
    context_state(tiny, tp, c1, soup([h0, h0b], [0.3, 0.7])),
    soup([context_state(tiny, tp, c1, h0), context_state(tiny, tp, c1, h0b)], [0.3, 0.7]))

# %% [markdown]
# For λ = 1 the decay is 1 and the sum is exact. P3's 2d-neuron construction stores
# Σ x_i y_i in λ = 1 neurons and passes the query through λ = 0 neurons (which the query
# overwrites, so summing them does no harm): its prediction from S(c₁) + S(c₂) is one GD
# step on the union of the two demonstration sets, in either order.

# %%
tokens, _ = sample(RNG(1), 256, n_context=N, d=D, input_range=2.0)
gd_rnn, gd_params = gd_gated_rnn(D, N, eta=1.0)
S1 = context_state(gd_rnn, gd_params, tokens[:, :5, :])
S2 = context_state(gd_rnn, gd_params, tokens[:, 5:N, :])
union = gd_predict(tokens, 1.0)
checks["λ=1: prediction from S(c1)+S(c2) = GD on c1 ∪ c2"] = rel_error(
    predict_from_state(gd_rnn, gd_params, soup([S1, S2]), tokens[:, N:, :]), union)
checks["λ=1: ... from S(c2)+S(c1) (order-free)"] = rel_error(
    predict_from_state(gd_rnn, gd_params, soup([S2, S1]), tokens[:, N:, :]), union)
for name, err in checks.items():
    print(f"  {name:62s} rel. error {err:.1e}")

# %% [markdown]
# ## 2 · Train P3's gated RNN on in-context regression
# d = 4, N = 12 shots, x ~ U(−1, 1), w ~ N(0, I); 32 neurons with λ = exp(−exp(ν)),
# Adam with a cosine-decayed learning rate (`tasks.gated_rnn_attention.train_icl`).

# %%
model = RNNRegressor(D, 1, 32, recurrence="exp")
params, history = train_icl(model, model.init(RNG(0)), steps=STEPS, lr=4e-3, seed=1,
                            log_every=max(STEPS // 6, 1))
rnn = model.rnn
print("learned λ (sorted):", np.round(np.sort(to_numpy(rnn.decay(params))), 2))

# %% [markdown]
# ## 3 · Two halves of a context, combined six ways (spec §6.3)
# Split the 12 shots into c₁ (shots 1–6) and c₂ (7–12), compute each state from zero,
# combine, then read the query from the combined state.

# %%
tokens, targets = sample(RNG(1000), N_EVAL, n_context=N, d=D, input_range=2.0)
split = split_predictions(rnn, params, tokens)
L = {k: loss(v, targets) for k, v in split.items()}
SPEC = {"full": 0.1682, "exact": 0.1682, "sum": 0.1776, "mean": 0.274, "half": 0.308, "none": 0.666}
LABELS = {"full": "full context, read in order", "exact": "exact recombination Φ(c₂)⊙s(c₁)+s(c₂)",
          "sum": "sum soup s(c₁)+s(c₂)", "mean": "mean soup (s(c₁)+s(c₂))/2",
          "half": "one half only s(c₁)", "none": "no context"}
print(f"\n| combined state {' ' * 24}| ours   | spec §6.3 |\n|{'-' * 40}|--------|-----------|")
for k in SPEC:
    print(f"| {LABELS[k]:38s} | {L[k]:.4f} | {SPEC[k]:.4f}    |")
exact_err = rel_error(split["exact"], split["full"])
print(f"exact recombination vs full: rel. error of predictions {exact_err:.1e}; "
      f"sum / full = {L['sum'] / L['full']:.3f}")

# %% [markdown]
# The sum soup is nearly exact because the memory neurons have λ close to 1 (an
# unnormalised accumulator wants weights 1); the mean soup halves the accumulated
# evidence, i.e. half the GD step size, which is still better than one half alone.
#
# ## 4 · Skills: store K task states, mix two of them
# K = 16 fixed tasks w_1..w_K ("skills"). Store the state of one 12-shot context of each.
# A new task mixes two skills, w = (w_a + w_b)/2, and comes with *no* demonstrations:
# we only resume from stored states and read its query.

# %%
skills = RNG(7).normal((K, D), host=True)
keys = memory_keys(rnn, params, N)            # neurons with λ^12 ≥ 0.05: they hold the task
store = skill_store(rnn, params, skills, RNG(8), N, keys=keys)
mix_targets, mix = mixing_predictions(rnn, params, store, skills, RNG(10), N_EVAL, N)
M = {k: loss(v, mix_targets) for k, v in mix.items()}
MIX_LABELS = {"none": "no state", "one skill": "stored state of skill a",
              "sum soup": "sum soup s_a + s_b", "concat": "exact concatenation c_a∘c_b",
              "mean soup": "mean soup (s_a + s_b)/2", "own context": "12-shot context of the mixed task"}
print(f"\n| initial state for w = (w_a+w_b)/2 {' ' * 5}| loss   |\n|{'-' * 40}|--------|")
for k, label in MIX_LABELS.items():
    print(f"| {label:38s} | {M[k]:.4f} |")

# %% [markdown]
# The mean soup matches a real 12-shot context of the mixed task: for a GD-like state
# Σ x_i x_iᵀ w, averaging two skills' states averages their weights. Summing (or
# concatenating the two contexts, which the model reads as 24 shots of a confusing task)
# overshoots.
#
# ## 5 · Retrieval by state similarity
# A new context of n shots from skill j (fresh inputs) retrieves argmax_k cos(s, s_k),
# either on all neurons or on the memory neurons only (`keys`). Resuming from the retrieved
# state is compared with reading the short context alone, with soft retrieval (the mean
# soup weighted by softmax(5·cos), then the short context) and with the true skill's state.

# %%
SHOTS = [1, 2, 3, 4, 6, 12]
n_ret = N_EVAL // 2
plain = skill_store(rnn, params, skills, RNG(8), N)
unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)


def gd_state_accuracy(n_shots):
    """A ceiling for the rule: argmax_k cos(Σ x_i y_i, w_k), the exact GD state against the
    true skill weights (host numpy, fresh tasks)."""
    g = RNG(11)
    j = g.integers(0, K, (n_ret,), host=True)
    tok = to_numpy(task_tokens(g, skills[j], n_shots)[0])[:, :n_shots, :]
    alpha = np.sum(tok[:, :, :D] * tok[:, :, D:], axis=1)                 # (B, D) Σ x_i y_i
    return float(np.mean(np.argmax(unit(alpha) @ unit(skills).T, axis=1) == j))


acc_plain, acc_keys, acc_gd, R = {}, {}, {}, {}
for n in SHOTS:
    acc_plain[n], _, _ = retrieval_predictions(rnn, params, plain, skills, RNG(9), n, n_ret)
    acc_keys[n], t, preds = retrieval_predictions(rnn, params, store, skills, RNG(9), n, n_ret)
    acc_gd[n] = gd_state_accuracy(n)
    R[n] = {k: loss(v, t) for k, v in preds.items()}
cols = ["short", "retrieved", "retrieved+short", "mixed+short", "oracle"]
print("\n| shots | acc (all) | acc (memory) | acc (GD state) | " + " | ".join(f"{c:15s}" for c in cols) + " |")
print("|-------|-----------|--------------|----------------|" + "|".join("-" * 17 for _ in cols) + "|")
for n in SHOTS:
    print(f"| {n:5d} | {acc_plain[n]:9.3f} | {acc_keys[n]:12.3f} | {acc_gd[n]:14.3f} | "
          + " | ".join(f"{R[n][c]:15.4f}" for c in cols) + " |")
print(f"chance accuracy 1/K = {1 / K:.4f}")

# %% [markdown]
# Accuracy grows with the context but stays far from 1: cosine similarity of a GD-like
# state Σ x_i y_i only sees the direction of a noisy estimate of w, and 16 random
# directions in 4 dimensions are crowded; even the exact GD state compared with the true
# weights (column "GD state") is far from perfect. So hard retrieval often resumes from a wrong
# skill and loses to the short context alone; *mixing* the retrieved states softly, then
# reading the short context, helps at 1–6 shots. With the right state (oracle) the query
# is answered as well as from a full context.

# %%
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no figure (pip install -e '.[examples]')")
else:
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    pos = np.arange(len(SPEC))
    ax.bar(pos - 0.2, [L[k] for k in SPEC], 0.4, label="ours")
    ax.bar(pos + 0.2, [SPEC[k] for k in SPEC], 0.4, label="spec §6.3")
    ax.set_xticks(pos, list(SPEC), rotation=30)
    ax.set(ylabel="query loss", title="two halves of a 12-shot context")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.bar(np.arange(len(MIX_LABELS)), [M[k] for k in MIX_LABELS], color="C2")
    ax.set_xticks(np.arange(len(MIX_LABELS)), list(MIX_LABELS), rotation=30)
    ax.set(ylabel="query loss", title="task (w_a + w_b)/2 from stored states")
    ax = axes[2]
    ax.plot(SHOTS, [acc_plain[n] for n in SHOTS], "o-", label="accuracy, all neurons")
    ax.plot(SHOTS, [acc_keys[n] for n in SHOTS], "s-", label="accuracy, memory neurons")
    ax.plot(SHOTS, [acc_gd[n] for n in SHOTS], "^:", color="gray", label="exact GD state vs w_k")
    ax.axhline(1 / K, color="k", ls=":", lw=1, label="chance")
    ax.set(xlabel="shots in the new context", ylabel="retrieval accuracy", ylim=(0, 1),
           title=f"retrieval among K = {K} stored states")
    ax2 = ax.twinx()
    for c, style in [("short", "C3--"), ("mixed+short", "C4--"), ("oracle", "C5--")]:
        ax2.plot(SHOTS, [R[n][c] for n in SHOTS], style, label=f"loss: {c}")
    ax2.set_ylabel("query loss (dashed)")
    ax.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "05_state_soup.png", dpi=120)
    print(f"figure: {FIGURES / '05_state_soup.png'}")

# %% [markdown]
# ## Summary
# The exact identities are asserted in every mode; the statistical claims (those of
# tests/test_state_soup_trained.py) only after full training.

# %%
assert all(err < 1e-10 for err in checks.values()), checks
assert exact_err < 1e-10, exact_err
if not QUICK:
    assert L["sum"] <= 1.15 * L["full"] and L["mean"] < L["half"] < L["none"], L
    assert M["mean soup"] <= 1.15 * M["own context"], M
    assert acc_keys[2] < acc_keys[12] and acc_keys[12] >= 4 / K, acc_keys
    assert R[3]["mixed+short"] <= 0.9 * R[3]["short"], R[3]
session.close()
