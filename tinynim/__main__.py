"""Command line: what is installed, and are the hand-derived gradients right here?

    python -m tinynim                 version, active backend/device/dtype, usable backends
    python -m tinynim check [NAME..] [--include MODULE]..
                                      gradient-check every route of every framework layer
                                      (or those named) on the active backend in float64;
                                      exit code 1 on failure
    python -m tinynim check path/to/file.py [NAME..]
                                      the same for the layers defined in a file of yours
                                      (all of them, or those named)

``check`` builds every route of each layer's ``examples(rng)`` (one table row per
``Layer/route``) with *randomised* parameters (the init perturbed by seeded noise,
:func:`tinynim.gradcheck.perturb`: init values such as LayerNorm's γ = 1 can hide a missing
factor), runs ``backward`` against central finite differences (at most ``MAX_COORDS`` random
coordinates per array) and, when torch is installed, against torch autograd run on the
layer's own forward, and judges each array by :func:`tinynim.gradcheck.check_layer`'s verdict
(relative error, plus an absolute part at the check's rounding noise, so that exactly-zero
and tiny gradients are judged correctly). NAME is a layer (all its routes) or one
``Layer/route``.

The framework layers (:data:`tinynim.nn.REGISTRY`) are checked by default; ``--include
MODULE`` (repeatable) adds the layers defined in an importable module or package, found by
:func:`tinynim.nn.base.collect_layers`: e.g. ``--include tasks`` checks the paper models
(``LinearTransformer``, ``RNNRegressor``). tinynim itself never imports ``tasks``. A NAME
ending in ``.py`` is a file, imported by :func:`tinynim.nn.base.load_file` wherever it lies:
its layers (classes with ``examples``) are checked, all of them unless layers are named.
--include also takes such a path.

A bad ``TINYNIM_*`` setting or an unknown module or layer is reported in one line with exit
code 2.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np

import backends
import tinynim
import tinynim.nn
from tinynim.backend import available, get_backend, use_backend
from tinynim.nn.base import collect_layers

MAX_COORDS = 64     # FD probes per array: enough to catch a wrong formula, fast for every layer
EXAMPLE_SEED = 1234
PERTURB = 0.5       # parameters: init + 0.5 · N(0, 1) · (each array's RMS, or 1 if it is zero)
LIBRARIES = {"numpy": "numpy", "torch": "torch", "cupy": "cupy", "array_api_strict": "array_api_strict", "jax": "jax"}


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


def layers(include=()) -> dict:
    """``{name: class}``: the framework layers plus those defined in the `include` modules."""
    return {**tinynim.nn.REGISTRY, **collect_layers(*include)}


def routes(registry, names=()) -> list:
    """``["Layer/route", ...]`` of the given layers (all when `names` is empty), sorted; a name
    is a layer (all its routes) or one ``Layer/route``. Raises KeyError for an unknown one."""
    from tinynim.random import RNG
    every = sorted(f"{name}/{route}" for name, cls in registry.items() for route in cls.examples(RNG(0)))
    if not names:
        return every
    unknown = [n for n in names if n not in every and not any(r.startswith(n + "/") for r in every)]
    if unknown:
        raise KeyError(", ".join(unknown))
    return [r for r in every if r in names or r.split("/")[0] in names]


def check_one(cls, route, use_torch: bool) -> tuple:
    """(FD check, torch check or None): :class:`tinynim.gradcheck.GradientCheck` results of
    one route of a layer's examples, at randomised parameters."""
    from tinynim.gradcheck import check_layer, perturb
    from tinynim.random import RNG
    # Seeds differ from check_layer's cotangent seed (0): with equal seeds the probe R would
    # equal an example x of the same shape, and e.g. LayerNorm's dx (orthogonal to x) vanish.
    layer, x, kwargs = cls.examples(RNG(EXAMPLE_SEED))[route]
    params = perturb(layer.init(RNG(EXAMPLE_SEED + 1)), seed=EXAMPLE_SEED + 2, scale=PERTURB)
    fd = check_layer(layer, params, x, kwargs, max_coords=MAX_COORDS, method="fd")
    oracle = check_layer(layer, params, x, kwargs, method="torch") if use_torch else None
    return fd, oracle


def check(names, include=()) -> int:
    files = [n for n in names if n.endswith(".py")]
    names = [n for n in names if not n.endswith(".py")]
    try:
        registry = layers(include)
    except ImportError as err:
        print(f"tinynim check: cannot import --include module: {err}", file=sys.stderr)
        return 2
    try:
        own = collect_layers(*files)
    except ImportError as err:
        print(f"tinynim check: cannot import {err}", file=sys.stderr)
        return 2
    if files and not own:
        print(f"tinynim check: no layer with examples(rng) in {', '.join(files)}", file=sys.stderr)
        return 2
    registry.update(own)
    try:
        selected = routes(registry, names or list(own))
    except KeyError as err:
        print(f"tinynim check: unknown layer(s) {err.args[0]}; known: {', '.join(sorted(registry))}",
              file=sys.stderr)
        return 2
    return check_routes(registry, selected)


def check_routes(registry, selected) -> int:
    """Check the routes `selected` (``"Layer/route"``) of the layers in `registry` (``{name:
    class}``) on the active backend in float64; print the table (an exception in a route is
    that route's ``ERROR`` row) and the failing arrays (stderr). Exit code: 0 iff all pass."""
    active = get_backend()
    use_torch = available()["torch"][0]
    from tinynim.gradcheck import TOLERANCES
    (fd_rtol, _), (torch_rtol, _) = TOLERANCES["fd"], TOLERANCES["torch"]
    print(f"gradient check on {active.name} ({active.device}), float64, at randomised parameters; "
          f"FD on at most {MAX_COORDS} coordinates per array (rtol {fd_rtol:g}); torch oracle: "
          f"{f'yes (rtol {torch_rtol:g})' if use_torch else 'no (not installed)'}; "
          "pass: ‖Δ‖ ≤ atol·noise + rtol·‖ref‖")
    rows, details, failed = [], [], 0
    max_rel = lambda result: f"{max(result.values(), default=0.0):.1e}"
    with use_backend(active.name, device=os.environ.get("TINYNIM_DEVICE") or None, dtype="float64"):
        for name in selected:
            try:
                layer, route = name.split("/", 1)
                fd, oracle = check_one(registry[layer], route, use_torch)
                ok = fd.passed and (oracle is None or oracle.passed)
                rows.append((name, max_rel(fd), "–" if oracle is None else max_rel(oracle), "ok" if ok else "FAIL"))
                details += [f"{name}: {r.report()}" for r in (fd, oracle) if r is not None and not r.passed]
            except Exception as err:            # report every layer, then fail
                ok = False
                rows.append((name, "–", "–", f"ERROR {type(err).__name__}: {err}"))
            failed += not ok
    header = ("layer", "max FD rel err", "max torch rel err", "status")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    print(f"{len(rows) - failed}/{len(rows)} layer routes ok" + (f", {failed} FAILED" if failed else ""))
    for line in details:                        # which arrays failed, and by how much
        print(line, file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinynim", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command")
    chk = sub.add_parser("check", help="gradient-check every route of every layer on the active backend")
    chk.add_argument("names", nargs="*", help="layer class names, Layer/route, or path/to/file.py (default: all)")
    chk.add_argument("--include", action="append", default=[], metavar="MODULE",
                     help="also check the layers defined in this importable module, package or .py file (repeatable)")
    args = ap.parse_args(argv)
    try:
        get_backend()
        return check(args.names, args.include) if args.command == "check" else info()
    except backends.BackendError as err:
        usable = [n for n, (ok, _) in available().items() if ok]
        print(f"tinynim: {err}\nvalid backends: {', '.join(backends.NAMES)}; usable here: {', '.join(usable)}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
