# %% [markdown]
# # 03 · Gated recurrent networks discover attention (Zucchet et al. 2023)
#
# Claim: a *gated linear RNN* (multiplicative input gating, a diagonal linear recurrence
# h_t = λ ⊙ h_{t−1} + g_t, multiplicative output gating, a linear readout) can implement
# causal linear self-attention **exactly**, with neurons of λ = 1 (perfect memory: they
# accumulate the key–value matrix Σ_s v_s k_sᵀ) and λ = 0 (perfect forgetting: they pass
# the current query through). And gradient descent finds such solutions: trained on
# in-context regression, a gated RNN does what a trained linear self-attention layer does,
# one step of gradient descent on the context; trained to imitate an attention teacher,
# the neurons it relies on end near λ = 0 or λ = 1.
#
# Paper: arXiv:2309.01775. No official code exists; the numbers we compare with are our own
# CPU reconstruction. Settings, experiments and claims live in `tasks/gated_rnn_attention.py`.
#
# Run: `python examples/03_gated_rnn_attention.py [--quick]` (or `TINYNIM_QUICK=1`; in a
# notebook, `tinynim.experiment.set_quick(True)`). Any `TINYNIM_BACKEND`.
# Measured on a 2-core CPU shared with other jobs (load average ≈ 8–10; an idle machine is
# faster): full run at default settings 70 s; quick mode 34 s (as the tests run it:
# OPENBLAS_NUM_THREADS=1).
# Training steps use one BLAS/torch thread (`TINYNIM_THREADS`, see the README).

# %%
import numpy as np

from tasks import gated_rnn_attention as p3
from tinynim import claims
from tinynim.backend import get_backend, to_numpy, use_dtype
from tinynim.experiment import pyplot, quick, save_figure
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.random import RNG

print(f"backend {get_backend()}; {'quick mode' if quick() else 'full run'}")

# %% [markdown]
# ## 1. The construction, checked live
# A random causal LSA with D = 3, one head, key/value size 2:
# out_t = Σ_{s≤t} (q_t · k_s) v_s Wp. `gated_rnn_from_attention` builds a gated RNN with
# d_v·d_k = 4 key–value neurons (λ = 1; input gates v_a and k_b, so h = S_t[a, b]) and
# d_k = 2 query neurons (λ = 0; gates q_b and the constant 1 appended to the input). The
# output gates multiply S_t[a, b] by q_t[b], and D sums over b and applies Wp. The layer's
# `recurrence="direct"` stores λ itself, so 0 and 1 are exact. In float64 the two models
# agree to rounding on any sequence (the test suite checks random heads and sizes).

# %%
measured = {"constructions": p3.measure("constructions")}
with use_dtype("float64"):
    lsa = LinearSelfAttention(3, n_heads=1, d_key=2, causal=True)
    rnn, rnn_params = p3.gated_rnn_from_attention(lsa, lsa.init(RNG(0)))    # as in construction_errors
    blocks = {k: to_numpy(v) for k, v in rnn_params.items()}
    gd_rnn, _ = p3.gd_gated_rnn(p3.D_ICL, p3.N_ICL, eta=1.0)
print(f"gated RNN ({rnn.n_hidden} neurons, {rnn.n_out_gates} output gates) vs causal LSA: "
      f"rel. error {measured['constructions']['attention_error']:.1e}")
print(f"{gd_rnn.n_hidden}-neuron gated RNN vs one GD step (d = 4, N = 12): "
      f"rel. error {measured['constructions']['gd_error']:.1e}")

# %% [markdown]
# ## 2. In-context regression: trained gated RNN vs one GD step vs a trained LSA
# d = 4, N = 12 context pairs, x ~ U(−1, 1), w ~ N(0, I), noiseless; tokens (x, y), the
# query (x_q, 0). The RNN (32 neurons, 32 output gates, λ = σ(ν)) predicts from its output
# at the query: only that output is computed (`last_only=True`: the state h_T is one
# weighted sum of the inputs, no scan, and the output gating runs at one step). Adam with
# a cosine decay, batch 256. The one-layer LSA (merged form, the P1 readout −y slot) is
# trained the same way. GD's step size is tuned on the evaluation set itself (its best case).

# %%
measured["baselines"] = p3.measure("baselines")
results = {}
for name in ("icl_rnn", "icl_lsa"):
    print(name)
    measured[name], results[name] = p3.train(name)
b = measured["baselines"]
print(f"losses: zero {b['zero']:.4f} | GD (η/N = {b['gd_eta_over_n']:.3f}) {b['gd']:.4f} | "
      f"gated RNN {measured['icl_rnn']['loss']:.4f} | LSA {measured['icl_lsa']['loss']:.4f}")
print(f"sensitivity cosine with GD: gated RNN {measured['icl_rnn']['cosine']:.4f} | LSA {measured['icl_lsa']['cosine']:.4f}")
icl_lam = measured["icl_rnn"]["lam"]
print("ICL RNN λ quantiles 10/30/50/70/90 %:", np.round(np.quantile(icl_lam, [.1, .3, .5, .7, .9]), 2))

# %% [markdown]
# ## 3. Teacher–student: an LSA teacher, a gated RNN student
# Teacher: a causal LSA (D = 3, d_k = d_v = 2; its construction needs 6 neurons and 4
# output gates), output scaled to mean square 1, on sequences of T = 8 Gaussian tokens.
# Students with 1× and 2× the construction's size, λ = exp(−exp(ν)) (LRU style), are fit
# to the teacher's outputs at every step. The paper: students need about 2× the neurons to
# reach near-zero loss, and their λ's go to 0 or 1. Ablation tells which neurons matter:
# silence neuron n (its input gate column set to 0) and measure the loss increase.

# %%
for name in ("student_1x", "student_2x"):
    print(name)
    measured[name], results[name] = p3.train(name)
    m = measured[name]
    print(f"{name}: loss / zero-predictor loss {m['loss_over_zero']:.1e}; neurons that matter (ablation ≥ 5 %): "
          f"{m['n_relevant']}, fraction of them with λ < 0.1 or > 0.85: {m['relevant_extreme_fraction']:.2f}")
    print("   λ sorted:", np.round(np.sort(m["lam"]), 3))

# %% [markdown]
# ## Figures
# Left: the constructed weights (rows: input features + the appended 1, or neurons).
# Right: training curves and where the learned λ's end.

# %%
plt = pyplot()
if plt is not None:
    names = ["Wx_in", "Wg_in", "lam", "Wx_out", "Wg_out", "D"]
    fig, axes = plt.subplots(1, 6, figsize=(15, 3.6), layout="constrained",
                             gridspec_kw={"width_ratios": [6, 6, 1, 4, 4, 3]})
    labels = {"Wx_in": ("neuron", "input x̃ = (x, 1)"), "Wg_in": ("neuron", "input x̃ = (x, 1)"),
              "lam": ("", "neuron"), "Wx_out": ("output gate", "neuron"),
              "Wg_out": ("output gate", "neuron"), "D": ("output", "output gate")}
    for ax, name in zip(axes, names):
        block = blocks[name][:, None] if name == "lam" else blocks[name]
        im = ax.imshow(block, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title("λ" if name == "lam" else name)
        ax.set(xlabel=labels[name][0], ylabel=labels[name][1])
        ax.set_xticks([] if name == "lam" else range(block.shape[1]))
        ax.set_yticks(range(block.shape[0]))
    fig.colorbar(im, ax=axes, fraction=0.02, label="weight")
    fig.suptitle("gated RNN built from a causal LSA (D = 3, d_k = d_v = 2): neurons 0–3 hold "
                 "key·value products (λ = 1), neurons 4–5 the query (λ = 0)")
    print("figure:", save_figure(fig, "03_construction.png", dpi=110))

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    smooth = lambda v: np.convolve(v, np.ones(50) / 50, mode="valid")     # noqa: E731
    a1.plot(smooth(results["icl_rnn"].history["loss"]), label="gated RNN")
    a1.plot(smooth(results["icl_lsa"].history["loss"]), label="LSA")
    a1.axhline(b["gd"], color="k", ls="--", lw=1, label="tuned GD (eval)")
    a1.set(yscale="log", xlabel="training step", ylabel="training loss (50-step mean)", title="in-context regression")
    a1.legend(loc="upper left", bbox_to_anchor=(1, 1))
    a2.hist(icl_lam, bins=np.linspace(0, 1, 21))
    a2.yaxis.get_major_locator().set_params(integer=True)
    a2.set(xlabel="λ", ylabel="number of neurons", title="λ of the in-context RNN")
    for name in ("student_1x", "student_2x"):
        a3.hist(measured[name]["lam"], bins=np.linspace(0, 1, 21), alpha=0.6, label=name.replace("_", " "))
    a3.set(xlabel="λ", ylabel="number of neurons", title="λ of teacher–student RNNs")
    a3.yaxis.get_major_locator().set_params(integer=True)
    a3.legend(loc="upper center")
    print("figure:", save_figure(fig, "03_training.png", dpi=110))

# %% [markdown]
# ## Summary: the paper's claims, this run
# The references are our own reconstruction (no official code); in quick mode the trained
# numbers are far from converged and only the exact identities are asserted.

# %%
print(claims.table(p3.CLAIMS, measured))
claims.verify(p3.CLAIMS, measured, kinds=("exact",) if quick() else claims.KINDS)
