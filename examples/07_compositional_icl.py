# %% [markdown]
# # 07 · Compositional generalisation in context: a transformer vs a task-inference bottleneck
#
# Kobayashi, Schug, Akram, Redhardt, von Oswald, Pascanu, Lajoie, Sacramento, *When can
# transformers compositionally generalize in-context?* (ICML 2024 workshop, arXiv 2407.12275).
#
# **Only the abstract is public and there is no official code.** Its claim: transformers
# that learn a modular task family in context fit the training combinations of modules but
# fail on held-out combinations, although they are in principle expressive enough; a
# bottleneck that separates *task inference* from *task execution* makes compositional
# generalisation possible. **Everything else here is our reconstruction**: the tasks, the
# token layout, both architectures, their sizes and the training recipe.
#
# * **Tasks** (from arXiv:2312.15001, example 06): f(x; z) = ReLU(x W(z)/√n) A/√h with
#   W(z) = Σ_m z_m Θ_m; codes with two active modules out of M = 6; training pairs on the
#   ring (i, i+1) (connected and compositional), the 9 other pairs held out (OOD).
# * **An episode**: 16 context pairs [x; y; 1] and 8 queries [x; 0; 0] of one task.
# * **Monolithic in-context learner**: softmax transformer blocks over all tokens, every token
#   attending to the context only, a linear readout at the queries.
# * **Bottleneck**: ẑ = Enc(context) ∈ R⁸ (a DeepSets mean of an MLP, or a transformer read
#   out at a CLS token), then ŷ_q = g(x_q; ẑ), an MLP whose first layer a linear hypernetwork
#   generates from ẑ. The queries never reach the encoder.
#
# Models, experiments and claims live in `tasks/compositional_icl.py`.
#
# Run: `python examples/07_compositional_icl.py [--quick]` (or `TINYNIM_QUICK=1`). Any
# `TINYNIM_BACKEND` (float64 throughout). Expected runtime on an idle 2-core CPU: about
# 2 min (quick mode: about 15 s).

# %%
import numpy as np

from tasks import compositional_icl as p7
from tinynim import claims
from tinynim.backend import get_backend, to_numpy, use_dtype
from tinynim.experiment import pyplot, quick, save_figure, scaled

session = use_dtype("float64")
session.__enter__()
print(f"{get_backend()}{'; quick mode' if quick() else ''}")

# %% [markdown]
# ## 1 · What holds exactly
# * one linear-attention layer read out at the query *is* a linear hypernetwork applied to
#   the context's second moment ẑ = vec((1/N) Σ_i t_i t_iᵀ): in-context learners can compute a
#   task code ("in principle expressive enough");
# * the bottleneck predicts g(x_q; ẑ): the context enters only through ẑ, and both encoders
#   ignore the order of the context;
# * neither model lets a query see a target or another query.

# %%
constructions = p7.measure("constructions")
for k, v in constructions.items():
    print(f"{k:22s} {v:.3g}")

# %% [markdown]
# ## 2 · Training both models on the ring's combinations
# Fresh episodes of training combinations at every step (Adam on the query MSE); R² on fixed
# ID and OOD episodes along the way. The CLS-transformer bottleneck is shown beside the two
# compared models (no claim rests on it).

# %%
runs = {}
for name in ("transformer", "bottleneck", "bottleneck_cls"):
    exp = p7.EXPERIMENTS[name]
    model, params, history, ev = p7.train(exp, log=print, eval_every=max(scaled(exp.steps) // 8, 1))
    runs[name] = (exp, model, params, history, ev, p7.evaluate(exp, model, params, ev))
    print(name, {k: round(v, 4) for k, v in runs[name][-1].items()})

# %%
LABELS = {"transformer": "monolithic transformer", "bottleneck": "bottleneck (DeepSets)",
          "bottleneck_cls": "bottleneck (CLS transformer)"}
plt = pyplot()
if plt is not None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, split in zip(axes, ("id", "ood")):
        for name, (_, _, _, history, _, _) in runs.items():
            ax.plot(history["eval_step"], history[f"{split}_r2"], marker="o", label=LABELS[name])
        ax.set(xlabel="training step", ylabel="R² on the queries",
               title="training combinations (ID)" if split == "id" else "held-out pairs (OOD)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    fig.tight_layout()
    print("figure:", save_figure(fig, "07_compositional_icl_r2.png"))

# %% [markdown]
# ## 3 · Does ẑ carry the true code?
# A ridge map ẑ → z fitted on the ID episodes (as the decoding R² of arXiv:2312.15001), then
# applied unchanged to the OOD episodes: each point is one active module of one task.

# %%
exp, model, params, _, ev, _ = runs["bottleneck"]
decoded = {}
for split in ("id", "ood"):
    episode, z = ev[split]
    decoded[split] = (np.asarray(to_numpy(model.encode(params, episode, exp.n_context)), dtype=np.float64), z)
Zh, Z = decoded["id"]
W = np.linalg.solve(Zh.T @ Zh + 0.01 * np.eye(Zh.shape[1]), Zh.T @ Z)
if plt is not None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, split in zip(axes, ("id", "ood")):
        Zh, Z = decoded[split]
        active = Z > 0
        ax.scatter(Z[active], (Zh @ W)[active], s=6, alpha=0.5)
        ax.plot([0.5, 1.0], [0.5, 1.0], color="black", lw=1)
        ax.set(xlabel="true code entry z_m (active modules)", ylabel="decoded entry (ẑ W)_m",
               title=f"{'ID' if split == 'id' else 'OOD'} episodes, map fitted on ID")
    fig.tight_layout()
    print("figure:", save_figure(fig, "07_compositional_icl_codes.png"))

# %% [markdown]
# ## 4 · The claims beside this run

# %%
comparison = {f"{m}_{k}": v for m in p7.COMPARED for k, v in runs[m][-1].items()}
comparison["ood_gap"] = comparison["bottleneck_ood_r2"] - comparison["transformer_ood_r2"]
measured = {"constructions": constructions, "comparison": comparison}
print(claims.table(p7.CLAIMS, measured))
claims.verify(p7.CLAIMS, measured, kinds=("exact",) if quick() else claims.KINDS)

# %% [markdown]
# ## The abstract beside this reconstruction
#
# | | the abstract (arXiv:2407.12275) | here (CPU scale, seeds 0–2) |
# |---|---|---|
# | in-context transformer, training combinations | fits | fits: ID R² 0.94–0.96 |
# | in-context transformer, held-out combinations | fails, although expressive enough | generalises **partly**: OOD R² 0.65–0.85; expressivity shown exactly (one linear-attention layer = a hypernetwork on the context second moment) |
# | bottleneck (task inference → execution), held-out combinations | generalises | generalises **partly**: OOD R² 0.55–0.80, ID 0.95–0.97 |
# | ordering bottleneck > transformer on OOD | yes | **not reproduced**: the transformer is ahead by 0.04–0.10 R² on every seed |
# | why the bottleneck falls short here | – | its encoder: ẑ decodes the true code with R² 0.93–0.94 on ID but 0.66–0.72 on OOD episodes (figure 2), so inference, not execution, fails to generalise |
#
# **Reconstructed (ours)**: the task family and support, the episode and token layout,
# both architectures (softmax pre-norm blocks with a context-only mask; DeepSets or CLS
# encoder, d_z = 8, a hypernetwork-generated first layer), all sizes (n = 4, h = 8, o = 4,
# M = 6, 16 context pairs, d_model = 32, two blocks) and the training recipe (Adam, 800 or
# 3000 steps of fresh episodes). The paper's own scale, and whether its bottleneck model
# regularises its encoder or trains far longer, are unknown; at this scale both models are
# limited by how well *inferring* a task from 16 examples transfers to unseen combinations.
#
# **Other scales tried (seed 0 only, not claims)**, bottleneck OOD R² − transformer OOD R²:
# 4× longer training of each model −0.04 (transformer ID 0.99 / OOD 0.85, bottleneck
# 0.98 / 0.81; the CLS bottleneck 0.99 / 0.71); 32 context pairs −0.06; M = 8 modules on
# the ring −0.06; the hyperteacher's "connected" support with M = 8 (single modules and
# pairs at distance 1 and 2, 12 held-out pairs) −0.03, where both models reach OOD R² ≈ ID.
# The ordering was never seen; whatever makes the paper's transformer fail (its scale, task
# family or training length) is not reached on a CPU in minutes.
