# %% [markdown]
# # 00 · Quickstart: a regression MLP with hand-derived gradients
#
# tinynim has no autodiff. A layer is a pair of pure functions, `forward` and a
# hand-derived `backward`; a training step is forward, loss (value *and* gradient),
# backward, optimiser update. This example fits y = sin(3x) + noise with a small tanh
# MLP, checks its backward against finite differences, and runs the trained network on
# every installed backend (the same Array-API code on numpy, array-api-strict, torch).
#
# Run: `python examples/00_quickstart.py [--quick]` (or `TINYNIM_QUICK=1`; in a notebook,
# `tinynim.experiment.set_quick(True)` in the first cell). Any `TINYNIM_BACKEND`.
# Measured on a 2-core CPU shared with other jobs (load average ≈ 8–10; an idle machine is
# faster): full run at default settings 13 s; quick mode 12 s (as the tests run it:
# OPENBLAS_NUM_THREADS=1, mostly imports).
# Training steps use one BLAS/torch thread (`TINYNIM_THREADS`, see the README).

# %%
import numpy as np

import tinynim
from tinynim.backend import asarray, available, get_backend, to_numpy, use_dtype
from tinynim.experiment import pyplot, quick, save_figure, scaled
from tinynim.gradcheck import check_layer
from tinynim.losses import mse
from tinynim.nn.mlp import MLP
from tinynim.optim import Adam, cosine
from tinynim.random import RNG
from tinynim.train import fit
from tinynim.tree import tree_map

STEPS = scaled(2000)
NOISE = 0.1
print(f"tinynim {tinynim.__version__} on {get_backend()}; {'quick mode, ' if quick() else ''}{STEPS} steps")

# %% [markdown]
# ## Data
# 256 training points x ~ U(-1, 1), y = sin(3x) + N(0, 0.1²), drawn on the host by a
# seeded `RNG` and moved to the active backend (same numbers on every backend).

# %%
rng = RNG(0)
x_host = rng.uniform((256, 1), -1.0, 1.0, host=True)                          # (N, 1)
y_host = np.sin(3 * x_host) + NOISE * rng.normal((256, 1), host=True)          # (N, 1)
X, Y = asarray(x_host), asarray(y_host)
grid_host = np.linspace(-1, 1, 201)[:, None]                                   # (201, 1)
grid = asarray(grid_host)

# %% [markdown]
# ## Model and one training step
# `MLP([1, 64, 64, 1], "tanh")` is Linear → tanh → Linear → tanh → Linear. The loss is
# `mse(pred, target) = ½ mean ‖pred − target‖²`, returned with its gradient
# `dpred = (pred − target) / N`, which `model.backward` carries back to every weight.
# Adam's learning rate decays from 1e-2 to 0 on a cosine (full-batch Adam at a constant
# rate keeps kicking itself out of the minimum: loss spikes).

# %%
model = MLP([1, 64, 64, 1], activation="tanh")
params = model.init(RNG(1))


def loss_and_grads(params, batch, step):
    pred, cache = model.forward(params, X)               # (N, 1)
    loss, dpred = mse(pred, Y)
    _, grads = model.backward(params, cache, dpred)      # grads has the keys of params
    return loss, grads


params, history = fit(loss_and_grads, params, Adam(cosine(1e-2, STEPS)), steps=STEPS, log_every=max(STEPS // 10, 1))

# %% [markdown]
# ## Is the backward right? A gradient check
# In float64, `check_layer` compares `backward` with central finite differences of the
# forward (and, with `method="torch"`, with torch autograd run on the same forward code).
# Relative errors around 1e-9 mean the hand derivation is right; a wrong formula gives ~1.

# %%
with use_dtype("float64"):
    params64 = tree_map(lambda a: asarray(to_numpy(a), "float64"), params)
    errors = check_layer(model, params64, RNG(2).normal((8, 1)), max_coords=64)
for path, err in errors.items():
    print(f"  {path:6s} FD rel. error {err:.1e}")
max_fd = max(errors.values())

# %% [markdown]
# ## Same code, another backend
# Parameters are plain arrays; moving them to another backend and calling the same
# `model` runs the same Array-API code there. array-api-strict wraps numpy, so it agrees
# bit for bit; torch uses its own kernels, so it agrees to float32 rounding.

# %%
reference = to_numpy(model(params, grid))                                      # (201, 1)
swaps = {}
for name, (usable, _) in available().items():
    if not usable or name == get_backend().name:
        continue
    moved = tree_map(lambda a: asarray(to_numpy(a), backend=name), params)
    out = to_numpy(model(moved, asarray(grid_host, backend=name)))
    swaps[name] = float(np.max(np.abs(out - reference)))
    print(f"  {name:17s} max |out - out_{get_backend().name}| = {swaps[name]:.1e}")

# %% [markdown]
# ## The fit
# The noise-free test error is the RMSE against sin(3x) on a grid; the training loss
# cannot go below ½·0.1² = 0.005 (the noise).

# %%
test_rmse = float(np.sqrt(np.mean((reference - np.sin(3 * grid_host)) ** 2)))
plt = pyplot()
if plt is not None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(x_host[:, 0], y_host[:, 0], ".", ms=3, alpha=0.5, label="training data")
    ax1.plot(grid_host[:, 0], np.sin(3 * grid_host[:, 0]), "k--", lw=1, label="sin(3x)")
    ax1.plot(grid_host[:, 0], reference[:, 0], lw=2, label="MLP")
    ax1.set(xlabel="x", ylabel="y", title="fit")
    ax1.legend(fontsize=8)
    ax2.semilogy(history["loss"])
    ax2.axhline(0.5 * NOISE**2, color="k", ls=":", lw=1, label="noise floor")
    ax2.set(xlabel="training step", ylabel="training loss (½-MSE)", title="training loss")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    print("figure:", save_figure(fig, "00_quickstart.png"))

# %% [markdown]
# ## Summary
# The script fails loudly if the backward disagrees with finite differences or a backend
# disagrees beyond float32 rounding (this is what the test suite checks in quick mode).

# %%
ms_per_step = 1e3 * history["time"][-1] / len(history["time"])
measured = {"fit": {"final_loss": history["loss"][-1], "test_rmse": test_rmse}}    # this run's numbers
rows = [("steps", f"{STEPS}"),
        ("final training loss (noise floor 0.005)", f"{measured['fit']['final_loss']:.4f}"),
        ("test RMSE vs sin(3x)", f"{test_rmse:.3f}"),
        ("time per step", f"{ms_per_step:.2f} ms"),
        ("gradient check, max FD rel. error", f"{max_fd:.1e}")]
rows += [(f"max |Δ output| on {name}", f"{diff:.1e}") for name, diff in swaps.items()]
width = max(len(r[0]) for r in rows)
print("\n| " + "quantity".ljust(width) + " | value |\n|" + "-" * (width + 2) + "|-------|")
for name, value in rows:
    print(f"| {name.ljust(width)} | {value} |")

assert max_fd < 1e-6, f"gradient check failed: max FD rel. error {max_fd:.1e}"
assert all(diff < 1e-5 for diff in swaps.values()), f"backends disagree: {swaps}"
