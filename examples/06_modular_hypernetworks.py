# %% [markdown]
# # 06 · Modular hypernetworks: identification and compositional generalisation
#
# Schug, Kobayashi, Akram, Wołczyk, Proca, von Oswald, Pascanu, Sacramento, Steger,
# *Discovering modular solutions that generalize compositionally* (ICLR 2024, arXiv 2312.15001).
# A task is a code z; its network's weights are W(z) = Σ_m z_m Θ_m, a linear hypernetwork
# (`tinynim.nn.HyperLinear`). The teacher and the student are
# f(x; z) = ReLU(x W(z)/√n) A/√h (`tinynim.nn.HyperMLP`); the student infers its own code ẑ
# for each task by gradient descent, and is meta-learned so that it fits every training task.
#
# 1. **Identification ⇒ generalisation (exact).** A student equal to the teacher up to an
#    invertible map F of the codes, a permutation and positive scales of the hidden units is
#    exact on *every* code, also combinations never trained on (Theorem 2).
# 2. **Connectivity is necessary (exact).** On a disconnected support a student can be exact
#    on every training family and wrong on a code that mixes both sides (Appendix A.3).
# 3. **Meta-learning finds the modules (trained).** On the connected ring support the
#    meta-learned student generalises to the held-out pairs, its codes decode linearly to
#    the teacher's, and its modules align with the teacher's.
# 4. **Hypernetwork vs ANIL and MAML on the hyperteacher (trained).** The paper's multi-layer
#    teacher at CPU scale, K-hot codes, held-out combinations, soft targets (Tables A2–A8):
#    what the ordering is at this scale.
#
# Our CPU scale (teacher n = 8, h = 4, o = 2, M = 6; student ĥ = 8 = 2h as the paper's, M̂ = 6;
# a pool of 8 tasks per family with fresh inputs every step and warm-started codes; 8000 outer
# steps, the outer lr constant then linearly to 0 over the last 5000) is our own setting; the
# paper uses n = h = 16, 300 inner steps and 60k outer steps. Settings, experiments and
# claims live in `tasks/modular_teacher.py`.
#
# Run: `python examples/06_modular_hypernetworks.py [--quick]` (or `TINYNIM_QUICK=1`). Any
# `TINYNIM_BACKEND` (float64 throughout). Runtime measured at load ≈ 9 on the 2 shared
# cores: 2.2 min CPU, 7.9 min wall (idle: about 4 min before MAML joined section 4); quick
# mode 29 s CPU, 5.3 min wall.

# %%
import dataclasses

import numpy as np

from tasks import modular_fewshot as fewshot, modular_teacher as p6
from tinynim import claims
from tinynim.backend import asarray, get_backend, use_dtype
from tinynim.experiment import pyplot, quick, save_figure, scaled
from tinynim.random import RNG

session = use_dtype("float64")
session.__enter__()
print(f"{get_backend()}{'; quick mode' if quick() else ''}")

# %% [markdown]
# ## 1 · The identified student and the counterexample
# `construction_errors` builds both students on a random teacher and measures them.

# %%
constructions = p6.measure("constructions")
for k, v in constructions.items():
    print(f"{k:22s} {v:.3g}")

# %% [markdown]
# ## 2 · Supports
# Families of codes (binary masks) and the two conditions of the theorem.

# %%
for name in ("ring", "triangles", "onehot", "counterexample", "bridged"):
    m = p6.support(name)
    print(f"{name:15s} families {len(m):2d}  compositional {p6.is_compositional(m)!s:5s}  "
          f"connected {p6.is_connected(m)!s:5s}  tasks needed Σ(d_k + 1) = {p6.task_count(m)}")

# %% [markdown]
# ## 3 · Meta-learning on a connected and on disconnected supports
# The same student, trained on the ring (connected), the two triangles and the single
# modules (both disconnected). The OOD loss is measured on every held-out pair during
# training, with codes re-inferred from the shared start. The theory guarantees
# generalisation only for the connected support; it does not say that gradient descent
# fails on the others, and at this scale it often does not (the disconnected runs are a
# diagnostic, not a claim).

# %%
runs = {}
for name in ("ring", "triangles", "onehot"):
    exp = p6.EXPERIMENTS[name]
    (net, tp), student, params, z0, history = p6.meta_train(exp, log=print, eval_every=scaled(exp.steps) // 5)
    runs[name] = (p6.evaluate(exp, (net, tp), student, params, z0), history)
    print(name, {k: round(v, 4) for k, v in runs[name][0].items()})

# %%
plt = pyplot()
if plt is not None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (metrics, history) in runs.items():
        ax1.semilogy(history["eval_step"], history["ood"], marker="o", label=name)
    ax1.set(xlabel="outer step", ylabel="OOD relative loss", title="held-out pairs")
    names = list(runs)
    ax2.bar(np.arange(len(names)) - 0.2, [runs[n][0]["alignment"] for n in names], 0.4, label="module alignment")
    ax2.bar(np.arange(len(names)) + 0.2, [runs[n][0]["r2"] for n in names], 0.4, label="decoding R²")
    ax2.set(xticks=np.arange(len(names)), xticklabels=names, ylim=(0, 1.05), xlabel="training support",
            ylabel="score (1 = identified)", title="after training")
    for ax in (ax1, ax2):
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    fig.tight_layout()
    print("figure:", save_figure(fig, "06_modular_hypernetworks.png"))

# %% [markdown]
# ## 4 · Hypernetwork vs ANIL and MAML on the hyperteacher
# The multi-layer teacher of the paper's Sec. 4.1 at CPU scale (`tasks/modular_fewshot.py`):
# two generated 16×16 hidden layers, each with its own K-hot code over M = 4 modules, 4
# classes, soft targets at temperature 0.1, 64 support and 64 query shots; a fixed 25 % of
# the layer-code combinations is held out. A linear hypernetwork (code adapted, M̂ = 16),
# ANIL (linear head adapted) and MAML (every weight of a 3 × 32 MLP adapted) are
# meta-trained first order for the same number of outer steps; accuracy is measured on the
# query sets after adapting on the support sets. Here in
# float64 with the example's length (quick mode: 50 outer steps, near chance); the claims
# were observed in float32 at 500 steps.
# Table A3 (M = 4) reports the hypernetwork ahead of both for K = 2 (76 % vs ANIL 61 %,
# MAML 55 %) and ANIL ahead for K = 1.

# %%
steps = scaled(fewshot.COMPARISONS["hyperteacher"].steps)
few_shot = {"hyperteacher": fewshot.comparison("hyperteacher", eval_every=max(steps // 10, 1)),
            "hyperteacher_k1": p6.measure("hyperteacher_k1")}
print("| K | hnet train | hnet OOD | ANIL train | ANIL OOD | MAML train | MAML OOD | hnet − ANIL | hnet − MAML |\n"
      "|---|---|---|---|---|---|---|---|---|")
for name, m in few_shot.items():
    print(f"| {1 if name.endswith('k1') else 2} | {m['hnet_train']:.3f} | {m['hnet_ood']:.3f} | "
          f"{m['anil_train']:.3f} | {m['anil_ood']:.3f} | {m['maml_train']:.3f} | {m['maml_ood']:.3f} | "
          f"{m['ood_gap']:+.3f} | {m['maml_gap']:+.3f} |")

# %%
if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for learner, label in (("hnet", "linear hypernetwork"), ("anil", "ANIL"), ("maml", "MAML (first order)")):
        ax.plot(*few_shot["hyperteacher"][f"{learner}_curve"], marker="o", label=label)
    ax.axhline(0.25, color="gray", lw=0.8, ls=":", label="chance")
    ax.set(xlabel="outer step", ylabel="OOD query accuracy", title="hyperteacher M = 4, K = 2: held-out combinations")
    ax.legend()
    fig.tight_layout()
    print("figure:", save_figure(fig, "06_hyperteacher.png"))

# %% [markdown]
# ## 5 · The claims beside this run
# Connected (ring) vs disconnected supports, as a diagnostic:

# %%
print("| support | connected | train | OOD | R² | alignment |\n|---|---|---|---|---|---|")
for name, (m, _) in runs.items():
    print(f"| {name} | {p6.is_connected(p6.support(name))} | {m['train']:.2g} | {m['ood']:.2g} | "
          f"{m['r2']:.3f} | {m['alignment']:.3f} |")
measured = {"constructions": constructions, "ring": runs["ring"][0], **few_shot}
print(claims.table(p6.CLAIMS, measured))
claims.verify(p6.CLAIMS, measured, kinds=("exact",) if quick() else claims.KINDS)

# %% [markdown]
# ## What reproduces at this scale, and what does not
#
# * **Exact statements** (Theorem 2's construction, the Appendix A.3 counterexample and its
#   bridge, the support predicates, the envelope identity behind the first-order outer
#   gradient): all hold to float64 rounding, on every backend (`tests/test_modular_teacher.py`).
# * **Connected support, trained**: the meta-learned student fits the training families,
#   generalises to the 9 held-out pairs (OOD relative loss 0.016–0.022 over seeds 0–2, below
#   the 0.05; an untrained student: ~0.8), its codes decode linearly to the teacher's
#   (R² ≥ 0.99) and its modules align with the teacher's (0.82–0.97; the paper's Fig. 2C
#   reports ≈ 1 after 60k outer steps with 300 inner steps each). Not every seed gets there
#   in 8000 steps: seeds 3 and 4, which played no part in choosing the setting, give 0.036
#   and 0.18 (seed 4 still falling slowly; the former setting: 0.30). What brought seeds 0–2
#   from 0.023–0.087 (ĥ = 4h, a constant lr, 5000 steps) under 0.05: the paper's width
#   ĥ = 2h (the OOD loss falls 2–3× faster) and the cooldown (at a constant lr the student
#   now and then reorganises: seed 2 jumped from 0.027 to 0.106 within 1000 steps; a cosine
#   decay from the start is too slow). More inner steps, a 4× task pool and M̂ = 2M did not
#   help (P6.ring.ood's why).
# * **Connected vs disconnected gap: not reproduced.** With a generic teacher, the two
#   triangles and the single modules (both disconnected) generalise as well as the ring at
#   this scale or better (seed 0, full length: OOD < 1e-4 and 8e-4 against the ring's 0.016;
#   the table above). The theorem says a disconnected support does not
#   *guarantee* generalisation (the counterexample is exact), not that gradient descent
#   fails; the paper's gap (Fig. 2C, 3C/D) comes from longer, larger runs.
# * **Tables A2–A8 (hyperteacher, hypernetwork vs ANIL and MAML): half of the ordering
#   reproduces at this scale.** M = 4, first order, 500 outer steps × 16 tasks (claims in
#   float32, seeds 0–2): for K = 2 the hypernetwork (0.59–0.61 OOD accuracy) is ahead of MAML
#   (0.53–0.58; Table A3: 55 %) by +0.025 to +0.079, as in the paper, but ANIL reaches
#   0.65–0.66 (ANIL ahead by 7.5 pooled std; Table A3: hypernetwork 76 % vs ANIL 61 %). For
#   K = 1 the hypernetwork has no advantage over MAML either (−0.064 to −0.010). What does match the
#   paper: for K = 2 the hypernetwork's held-out combinations are nearly as good as its
#   trained ones (train − OOD 0.04–0.05), while for K = 1 (one-hot layer codes) it fits the
#   trained combinations (0.73–0.79) and fails on new ones (0.43–0.47; ANIL 0.62–0.65, as in
#   Table A3 where ANIL leads at K = 1). Longer runs do not close the K = 2 gap (seed 0,
#   float32: hypernetwork 0.60 / 0.62 OOD after 1000 / 2500 steps, then its query loss
#   rises from 0.67 at 2500 to 1.08 at 5000 steps and OOD accuracy falls to 0.48: the
#   first-order meta-gradient at a constant outer lr 3e-3 is not stable that long; ANIL
#   0.69 after 2500). The paper trains 200k steps, second order, with weight decay and
#   128-wide students. What we tried on seed 0 (hypernetwork train / OOD accuracy; 0.64 /
#   0.59 as claimed) did not close the gap: outer weight decay 1e-2 (0.63 / 0.59), the
#   official outer lr 1e-3 with it (0.56 / 0.56), the second-order outer gradient through the
#   10 inner Adam steps (`unrolled_gradients`, 5× the time: 0.61 / 0.58), 64 tasks a step
#   (0.68 / 0.59), a cosine lr over 2000 steps (0.71 / 0.61), codes normalised to norm √M̂ as
#   the official embeddings (0.51 / 0.52), M = 8 (0.58 / 0.57, ANIL 0.65 / 0.65), the official
#   learner's layout (every layer generated, each from its own code of 16 entries, the two
#   hidden layers sharing one bank, a fast output bias: 0.54 / 0.56; 4 entries a layer: 0.50 /
#   0.51; every layer from the one code: 0.46 / 0.47, with the fast bias 0.49 / 0.49; 30
#   inner steps as ANIL's: 0.53 / 0.52; width 64: 0.67 / 0.59; the
#   official ANIL is moreover 4× wider than the hypernetwork's base MLP, ours as wide): more
#   compute raises the hypernetwork's training accuracy, not its OOD accuracy. The
#   second-order meta-gradient through Adam is ill-conditioned (Adam's m/√v is nearly
#   scale-free in the gradient, so its adjoint is a difference of two ~1/|g| terms): in
#   float32 it came out 2.5e3 in norm against 0.29 in float64, hence float64 there. Two changes mattered at
#   this scale: the hypernetwork's bank at std 1/√M̂ (as the official bank; with std 1 the
#   generated weights were 4× too large and it reached 0.43–0.50 OOD in 300–1500 steps),
#   and 30 inner steps for ANIL (with 10 it fell from 0.55 at 300 steps to ~0.4 at 1000).
