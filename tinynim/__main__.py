"""Command line: what is installed, and are the hand-derived gradients right here?

    python -m tinynim                 version, active backend/device/dtype, usable backends
    python -m tinynim check [NAME..]  gradient-check every registered layer (or those named)
                                      on the active backend in float64; exit code 1 on failure

``check`` builds each layer's ``example(rng)``, runs ``backward`` against central finite
differences (at most ``MAX_COORDS`` random coordinates per array) and, when torch is
installed, against torch autograd run on the layer's own forward. A bad ``TINYNIM_*``
setting is reported in one line with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys

import numpy as np

import backends
import tinynim
import tinynim.nn
from tinynim.backend import available, get_backend, use_backend

TOL = 1e-6          # float64: FD errors of smooth layers are ~1e-9, torch's ~1e-14 (see tests/helpers.py)
MAX_COORDS = 64     # FD probes per array: enough to catch a wrong formula, fast for every layer
EXAMPLE_SEED = 1234
LIBRARIES = {"numpy": "numpy", "torch": "torch", "cupy": "cupy", "array_api_strict": "array_api_strict"}


def _version(module: str) -> str:
    mod = sys.modules.get(module)
    return getattr(mod, "__version__", "?") if mod else "?"


def info() -> int:
    active = get_backend()
    print(f"tinynim {tinynim.__version__}  (python {platform.python_version()}, numpy {np.__version__})")
    print(f"active backend: {active.name}  device: {active.device}  dtype: {active.dtype}"
          "   (set with TINYNIM_BACKEND, TINYNIM_DEVICE, TINYNIM_DTYPE)")
    print("backends:")
    for name, (usable, detail) in available().items():
        if usable:
            print(f"  {name:<17} usable    {LIBRARIES[name]} {_version(LIBRARIES[name])}, {detail}")
        else:
            print(f"  {name:<17} unusable  {detail}")
    return 0


def import_layers() -> dict:
    """Import every module of :mod:`tinynim.nn` and of the paper package :mod:`tasks` (its
    models, e.g. ``LinearTransformer``, follow the layer protocol too) so each registers."""
    import tasks
    for package, prefix in ((tinynim.nn, "tinynim.nn."), (tasks, "tasks.")):
        for mod in pkgutil.walk_packages(package.__path__, prefix):
            importlib.import_module(mod.name)
    return tinynim.nn.REGISTRY


def check_one(cls, use_torch: bool) -> tuple[float, float | None]:
    """(max FD rel. error, max torch rel. error or None) of one layer's example."""
    from tinynim.gradcheck import check_layer
    from tinynim.random import RNG
    # Seeds differ from check_layer's cotangent seed (0): with equal seeds the probe R would
    # equal an example x of the same shape, and e.g. LayerNorm's dx (orthogonal to x) vanish.
    layer, x, kwargs = cls.example(RNG(EXAMPLE_SEED))
    params = layer.init(RNG(EXAMPLE_SEED + 1))
    fd = check_layer(layer, params, x, kwargs, max_coords=MAX_COORDS, method="fd")
    oracle = check_layer(layer, params, x, kwargs, method="torch") if use_torch else None
    return max(fd.values(), default=0.0), (max(oracle.values(), default=0.0) if oracle is not None else None)


def check(names) -> int:
    registry = import_layers()
    unknown = sorted(set(names) - set(registry))
    if unknown:
        print(f"tinynim check: unknown layer(s) {', '.join(unknown)}; registered: {', '.join(sorted(registry))}",
              file=sys.stderr)
        return 2
    active = get_backend()
    use_torch = available()["torch"][0]
    print(f"gradient check on {active.name} ({active.device}), float64; tolerance {TOL:g}; "
          f"FD on at most {MAX_COORDS} coordinates per array; torch oracle: {'yes' if use_torch else 'no (not installed)'}")
    rows, failed = [], 0
    with use_backend(active.name, device=os.environ.get("TINYNIM_DEVICE") or None, dtype="float64"):
        for name in sorted(names or registry):
            try:
                fd, oracle = check_one(registry[name], use_torch)
                ok = fd <= TOL and (oracle is None or oracle <= TOL)
                status = "ok" if ok else "FAIL"
                rows.append((name, f"{fd:.1e}", "–" if oracle is None else f"{oracle:.1e}", status))
            except Exception as err:            # report every layer, then fail
                ok = False
                rows.append((name, "–", "–", f"ERROR {type(err).__name__}: {err}"))
            failed += not ok
    header = ("layer", "max FD rel err", "max torch rel err", "status")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    print(f"{len(rows) - failed}/{len(rows)} layers ok" + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinynim", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command")
    chk = sub.add_parser("check", help="gradient-check every registered layer on the active backend")
    chk.add_argument("names", nargs="*", help="layer class names (default: all registered)")
    args = ap.parse_args(argv)
    try:
        get_backend()
        return check(args.names) if args.command == "check" else info()
    except backends.BackendError as err:
        usable = [n for n, (ok, _) in available().items() if ok]
        print(f"tinynim: {err}\nvalid backends: {', '.join(backends.NAMES)}; usable here: {', '.join(usable)}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
