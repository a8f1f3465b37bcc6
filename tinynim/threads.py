"""CPU threads: tinynim's training loops run with one BLAS/OpenMP/torch thread by default.

Why: a teaching-sized training step is many small matrix products. Multi-threaded BLAS
(OpenBLAS, MKL) and torch's intra-op pool split each product over worker threads that
spin-wait between products; on a 2-core machine, or one shared with other jobs, those
threads compete with each other and with everything else, and measured steps became
10–30× slower than on one thread (the products are too small to gain from splitting).

So :func:`tinynim.train.fit` (hence every ``tinynim.experiment.run``) runs inside
:func:`limited`, which sets the thread count of every BLAS/OpenMP library loaded in the
process (through ``threadpoolctl``) and of torch, and restores the previous counts on exit.
Evaluation and everything else outside ``fit`` keep the libraries' own settings; wrap them
in ``with limited():`` to pin them too.

``TINYNIM_THREADS`` chooses the count: unset or ``1`` (default) one thread, ``n`` n threads,
``0`` or ``auto`` the libraries' own defaults (nothing is changed; for large models on an
idle many-core machine).
"""
from __future__ import annotations

import contextlib
import os
import sys


def thread_count() -> int | None:
    """The count from TINYNIM_THREADS (default 1); None means "leave the libraries alone"."""
    raw = os.environ.get("TINYNIM_THREADS", "1").strip().lower()
    if raw in ("0", "auto"):
        return None
    if not raw.isdigit():
        raise ValueError(f"TINYNIM_THREADS must be a positive integer, 0 or 'auto', got {raw!r}")
    return int(raw)


_controller: tuple = (None, -1)       # (threadpoolctl controller, len(sys.modules) when built)


def _libraries():
    """A threadpoolctl controller of the loaded BLAS/OpenMP libraries. Building one scans
    every loaded shared library (~9 ms), so it is rebuilt only when modules were imported
    since (a new module may have loaded a new library), not on every ``fit``."""
    global _controller
    if _controller[1] != len(sys.modules):
        from threadpoolctl import ThreadpoolController
        _controller = (ThreadpoolController(), len(sys.modules))
    return _controller[0]


@contextlib.contextmanager
def limited(n: int | None | str = "env"):
    """Run the block with `n` BLAS/OpenMP/torch threads (default: :func:`thread_count`);
    ``n=None`` changes nothing. Also a decorator (``@limited()``): the count is read per call."""
    n = thread_count() if n == "env" else n
    if n is None:
        yield
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"tinynim.threads.limited: n must be a positive int, None or 'env', got {n!r}")
    libraries = _libraries()
    torch = sys.modules.get("torch")            # only if already imported: never import torch here
    before = torch.get_num_threads() if torch is not None else None
    with libraries.limit(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


__all__ = ["limited", "thread_count"]
