"""One experiment runner: a training run as data, quick mode and figures in one place.

An :class:`Experiment` is everything a run needs, written down once (in the paper's task
module) and used by its example, its tests and its claims::

    ONE_LAYER = Experiment(
        model=lambda: LinearTransformer(10, 1, 1, form="merged"),   # a fresh model
        optimizer=lambda steps: Adam(1e-3, 0.9, 0.98),              # steps -> optimiser (schedules)
        data=regression_data(batch=512),                            # (rng, step) -> (x, target)
        steps=1500)
    result = run(ONE_LAYER)               # -> Result(model, params, history)

:func:`run` is the loop a student reads: build the model, initialise it from ``RNG(seed)``,
draw every batch from one ``RNG(data_seed)`` stream, and hand forward → loss → backward to
:func:`tinynim.train.fit` (which logs, guards against NaN and checkpoints). Variants are
``dataclasses.replace(ONE_LAYER, seed=3)``.

Quick mode (every example has one, for CI and for a first look): ``--quick`` on the command
line, ``TINYNIM_QUICK=1``, or ``set_quick(True)`` in a notebook. It divides step counts and
evaluation sizes by :data:`QUICK_FACTOR` through :func:`scaled`, and nowhere else.

Figures go to one folder, :func:`figures_dir` (``TINYNIM_FIGURES``, else ``figures/`` beside
the running script, else beside the notebook); :func:`save_figure` saves one and, outside a
notebook, closes it (in a notebook it stays and is shown inline).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Callable

from tinynim.backend import get_backend
from tinynim.losses import mse
from tinynim.random import RNG
from tinynim.train import fit, supervised

QUICK_FACTOR = 10
_quick: bool | None = None          # set_quick() overrides argv and the environment


def set_quick(on: bool | None = True) -> None:
    """Force quick mode on or off (notebooks have no --quick); None: back to argv/environment."""
    global _quick
    _quick = on


def quick() -> bool:
    """True in quick mode: ``set_quick(True)``, ``--quick`` in sys.argv, or TINYNIM_QUICK=1."""
    if _quick is not None:
        return _quick
    return "--quick" in sys.argv or os.environ.get("TINYNIM_QUICK", "") == "1"


def scaled(n: int, *, quick_mode: bool | None = None) -> int:
    """`n` (steps, evaluation tasks), divided by QUICK_FACTOR in quick mode (at least 1)."""
    q = quick() if quick_mode is None else quick_mode
    return max(n // QUICK_FACTOR, 1) if q else n


@dataclasses.dataclass(frozen=True)
class Experiment:
    model: Callable[[], Any]                     # () -> a fresh layer/model
    optimizer: Callable[[int], Any]              # steps -> optimiser (a schedule needs the length)
    data: Callable[[RNG, int], Any]              # (rng, step) -> batch, e.g. (x, target)
    steps: int
    seed: int = 0                                # parameter initialisation: RNG(seed)
    data_seed: int = 100                         # the batch stream: RNG(data_seed)
    loss: Callable = mse                         # (out, target) -> (value, dout)
    forward_kw: dict = dataclasses.field(default_factory=dict)
    dtype: str | None = None                     # params' dtype (default: the active backend's)

    def reseeded(self, offset: int) -> "Experiment":
        """The same run with init and data seeds shifted by `offset` (seed-to-seed spread)."""
        return dataclasses.replace(self, seed=self.seed + offset, data_seed=self.data_seed + offset)


@dataclasses.dataclass
class Result:
    model: Any
    params: Any
    history: dict
    steps: int


def run(exp: Experiment, *, quick_mode: bool | None = None, log=print, log_every=None,
        eval_fn=None, eval_every=None, **fit_kw) -> Result:
    """Train `exp` for ``scaled(exp.steps)`` steps on the active backend.

    `eval_fn(params, n_done) -> dict` runs every `eval_every` steps (its metrics join the
    history and the log line); `log_every` defaults to 5 lines per run; other keywords go to
    :func:`tinynim.train.fit` (checkpoint_path, resume, ...).
    """
    steps = scaled(exp.steps, quick_mode=quick_mode)
    model = exp.model()
    params = model.init(RNG(exp.seed), dtype=exp.dtype)
    rng = RNG(exp.data_seed)
    params, history = fit(supervised(model, exp.loss, **exp.forward_kw), params, exp.optimizer(steps),
                          steps=steps, data=lambda step: exp.data(rng, step), log=log,
                          log_every=max(steps // 5, 1) if log_every is None else log_every,
                          eval_fn=eval_fn, eval_every=eval_every, **fit_kw)
    return Result(model, params, history, steps)


# -- objects made once per backend ---------------------------------------------------------------

_made: dict = {}


def once_per_backend(make, *key):
    """``make()`` once for each active backend, device and dtype (and `key`), then the same
    object again: an evaluation set with its tuned baselines, a teacher network. Data live on
    one device, so a cache that ignored the backend would hand numpy arrays to a torch run."""
    b = get_backend()
    full = (b.name, str(b.device), b.dtype) + key
    if full not in _made:
        _made[full] = make()
    return _made[full]


# -- figures ---------------------------------------------------------------------------------

def figures_dir() -> Path:
    """TINYNIM_FIGURES, else ``figures/`` beside the running script, else ``./figures``."""
    if os.environ.get("TINYNIM_FIGURES"):
        return Path(os.environ["TINYNIM_FIGURES"])
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    return (Path(script).resolve().parent if script else Path.cwd()) / "figures"


def pyplot():
    """matplotlib.pyplot, or None (with one line saying how to install it)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figures (pip install -e '.[examples]')")
        return None
    return plt


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Save `fig` as figures_dir()/name; close it unless it is shown inline in a notebook."""
    import matplotlib
    import matplotlib.pyplot as plt
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fig.savefig(path, dpi=dpi)
    if "inline" not in matplotlib.get_backend().lower():
        plt.close(fig)
    return path


__all__ = ["Experiment", "Result", "run", "quick", "set_quick", "scaled", "QUICK_FACTOR", "once_per_backend",
           "figures_dir", "pyplot", "save_figure"]
