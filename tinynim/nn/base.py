"""The layer protocol, shared by every layer in :mod:`tinynim.nn`.

A layer is hyperparameters plus three pure functions::

    layer = Linear(4, 3)                       # hyperparameters only
    params = layer.init(rng)                   # nested dict of arrays (active backend)
    out, cache = layer.forward(params, x)      # no hidden state; cache is what backward needs
    dx, grads = layer.backward(params, cache, dout)   # grads has the keys of params

* **Several inputs**: ``x`` and ``dx`` are tuples; several outputs: ``out`` and ``dout`` are.
* **Skipping the input gradient**: ``backward(params, cache, dout, *, need_dx=False)`` returns
  ``(None, grads)``, the same grads bit for bit, and may skip the work that only dx needs
  (Linear skips the GEMM ``dout Wᵀ``; an RNN or attention layer a (B, T, d) array). A training
  step needs no gradient w.r.t. its data, so :func:`tinynim.train.supervised` calls the model
  so; containers pass the flag to their first layer only (every later layer's dx is the
  cotangent of the layer before it). The flag is a static Python bool (traceable). A layer whose
  ``backward`` has no ``need_dx`` parameter (a student's, a task's) accepts it all the same:
  :meth:`Layer.__init_subclass__` wraps it to compute dx and drop it.
* **Per-call keywords** (masks, ``n_context``, ``last_only``...) are keyword arguments of
  ``forward``; a container passes each one to every child that accepts it (see
  :mod:`tinynim.nn.containers`). :attr:`Layer.keywords` lists those a layer accepts.
* **Caches** are one ``NamedTuple`` per layer (e.g. ``LinearCache(x)``), its fields listed in
  the layer's docstring; a container's cache is the tuple of its children's caches.
* **Fast paths.** A layer with a structure-aware fast path takes ``fast=True`` (the default)
  in its constructor; ``fast=False`` runs the plain, textbook path, which reads first in the
  layer's file. A test selects each fast route explicitly and compares it with the plain one.
* **Examples**: every concrete layer provides ``examples(rng) -> {route: (layer, x, kwargs)}``,
  one small instance per distinct code route. :func:`collect_layers` finds the layers of a
  package by them; ``python -m tinynim check`` and the tests run every route.
* **Per-example gradients** (optional, for Jacobians and the neural tangent kernel in
  :mod:`tinynim.analysis`): a layer that treats the examples of a batch (axis 0 of ``x``)
  independently may give :meth:`Layer.backward_per_example`, which keeps the examples apart
  in ``grads``, and may override :meth:`Layer.backward_gram`, the inner products of those
  per-example gradients, when they factorise (Linear). :attr:`Layer.per_example` says whether
  a layer has them; without them the analysis falls back to one backward per example.
* **Validation** (static: shapes, dtypes and namespaces only, never values, so that
  forward and backward stay traceable under ``jax.jit``): hyperparameters at construction
  (:meth:`Layer.check_sizes`), inputs and params at ``forward`` (:meth:`Layer.check_input`,
  :meth:`Layer.check_params`, against :attr:`Layer.param_shapes`), ``dout`` at ``backward``
  (:meth:`Layer.check_dout`). Shape errors are ``ValueError``, dtype and backend errors
  ``TypeError``; each message names the layer, the expected and the actual.

Nothing is ever mutated.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import numbers
import pkgutil
import sys
import types
from functools import cached_property
from pathlib import Path

import array_api_compat

from tinynim.tree import leaves_with_paths, tree_map


def shape_tree(a):
    """The shape of an array, a tuple of the shapes of a tuple of arrays (recursively), None
    for None, and the type name of anything else: what :meth:`Layer.check_dout` compares."""
    if isinstance(a, tuple):
        return tuple(shape_tree(e) for e in a)
    if a is None:
        return None
    return tuple(a.shape) if hasattr(a, "shape") else type(a).__name__


def split_rows(a, split):
    """(a[:split], a[split:]) along axis 0, or (a, a) for split=None."""
    return (a, a) if split is None else (a[:split, ...], a[split:, ...])


def gram(grads, split=None):
    """Σ over the leaves of per-example gradients (n, *leaf) of G₁ G₂ᵀ, with G the leaf
    flattened to (n, P) and split by :func:`split_rows`; None for a tree without leaves."""
    total = None
    for _, g in leaves_with_paths(grads):
        xp = array_api_compat.array_namespace(g)
        G1, G2 = split_rows(xp.reshape(g, (g.shape[0], math.prod(g.shape[1:]))), split)      # (m, P), (n − m, P)
        total = add_gram(total, G1 @ G2.T)
    return total


def add_gram(a, b):
    """a + b where None stands for 0 (a layer without parameters)."""
    return b if a is None else a if b is None else a + b


def _accepting_need_dx(backward):
    """`backward(self, params, cache, dout)` as ``backward(..., *, need_dx=True)``: with
    need_dx=False it still computes dx, and returns None in its place."""
    def with_need_dx(self, params, cache, dout, *, need_dx=True):
        dx, grads = backward(self, params, cache, dout)
        return (dx if need_dx else None), grads
    with_need_dx.__name__, with_need_dx.__qualname__ = backward.__name__, backward.__qualname__
    with_need_dx.__doc__, with_need_dx.__module__ = backward.__doc__, backward.__module__
    return with_need_dx


def _namespace_name(a) -> str:
    try:
        return array_api_compat.array_namespace(a).__name__
    except TypeError:
        return type(a).__name__


class Layer:
    """Base class: naming, validation helpers and the protocol's defaults."""

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def param_shapes(self) -> dict:
        """The shapes ``init`` gives, as a tree like params (a dict of shape tuples, nested
        for composites). :meth:`check_params` validates params against it. This default reads
        them off a fresh ``init``; the framework's layers state them directly."""
        return tree_map(lambda a: tuple(a.shape), self.init(0))

    @cached_property
    def keywords(self) -> frozenset:
        """The per-call keyword arguments ``forward`` accepts, read from its signature."""
        sig = inspect.signature(self.forward)
        return frozenset(k for k, p in list(sig.parameters.items())[2:]       # after params, x
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def init(self, rng, *, dtype=None, backend=None) -> dict:
        return {}

    def forward(self, params, x, **kw):
        raise NotImplementedError

    def backward(self, params, cache, dout, *, need_dx=True):
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs):
        """Give a subclass's own ``backward`` that lacks ``need_dx`` the flag (module docstring)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("backward")
        if own is not None and "need_dx" not in inspect.signature(own).parameters:
            cls.backward = _accepting_need_dx(own)

    # -- per-example gradients (optional) ------------------------------------------------
    @property
    def per_example(self) -> bool:
        """Whether :meth:`backward_per_example` (hence :meth:`backward_gram`) is available."""
        return type(self).backward_per_example is not Layer.backward_per_example

    def backward_per_example(self, params, cache, dout):
        """``(dx, grads)`` as :meth:`backward`, but each grads leaf keeps a leading axis over
        the n examples (axis 0 of x): ``grads[i]`` is example i's gradient, and the sum over
        that axis is :meth:`backward`'s. Only for layers that treat examples independently."""
        raise NotImplementedError(f"{self.name}: no per-example backward (layer.per_example is False)")

    def backward_gram(self, params, cache, dout, split=None):
        """``(dx, Γ)``: Γ[a, b] = Σ_θ g_a(θ) g_b(θ), the inner products of the per-example
        gradients g_i = ∂⟨dout_i, out_i⟩/∂θ over every parameter θ of the layer.

        split=None: all n examples against all (n, n); split=m: examples a < m against
        b ≥ m (m, n − m). Γ is None for a layer without parameters. This default contracts
        :meth:`backward_per_example`'s grads leaf by leaf; a layer whose per-example gradients
        factorise overrides it so that they are never formed."""
        dx, grads = self.backward_per_example(params, cache, dout)
        return dx, gram(grads, split)

    def __call__(self, params, x, **kw):
        """The forward output only (inference)."""
        return self.forward(params, x, **kw)[0]

    # -- validation helpers for subclasses ---------------------------------------------
    def check_sizes(self, **sizes):
        """Raise ValueError naming this layer unless every given size is an integer ≥ 1."""
        for key, n in sizes.items():
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
                raise ValueError(f"{self.name}: {key} must be a positive integer, got {n!r}")

    def check_input(self, x, *, ndim=None, min_ndim=None, last=None, what="x",
                    dtype="real floating", min_steps=None, like=None):
        """Check one input array and return its namespace.

        ValueError (naming this layer) for a wrong rank (``ndim``/``min_ndim``), last dimension
        (``last``) or fewer than ``min_steps`` time steps on axis −2; TypeError for a
        non-array, a dtype not of kind ``dtype`` (an Array-API kind such as ``"real floating"``
        or ``"integral"``; None: any) or, given ``like``, a namespace other than ``like``'s."""
        if not hasattr(x, "shape"):
            raise TypeError(f"{self.name}: expected {what} to be an array, got {type(x).__name__}")
        if like is not None:
            self._same_namespace(x, what, like, "x")
        shape = tuple(x.shape)
        if ndim is not None and len(shape) != ndim:
            raise ValueError(f"{self.name}: expected {what} with {ndim} dims, got shape {shape}")
        if min_ndim is not None and len(shape) < min_ndim:
            raise ValueError(f"{self.name}: expected {what} with at least {min_ndim} dims, got shape {shape}")
        if last is not None and (not shape or shape[-1] != last):
            raise ValueError(f"{self.name}: expected {what} of shape (..., {last}), got shape {shape}")
        if min_steps is not None and (len(shape) < 2 or shape[-2] < min_steps):
            raise ValueError(f"{self.name}: expected {what} with at least {min_steps} time step(s) "
                             f"on axis -2, got shape {shape}")
        xp = array_api_compat.array_namespace(x)
        if dtype is not None and not xp.isdtype(x.dtype, dtype):
            raise TypeError(f"{self.name}: expected {what} with dtype kind {dtype!r}, got dtype {x.dtype}")
        return xp

    def check_params(self, params, x=None):
        """Raise ValueError naming this layer, the key and both shapes if `params` lacks a key
        of :attr:`param_shapes` or holds an array of another shape; TypeError if a parameter
        lives in another array namespace than the input `x` (e.g. numpy params, torch x)."""
        self._check_tree(params, self.param_shapes, (), x[0] if isinstance(x, tuple) else x)

    def _check_tree(self, params, shapes, path, x):
        """Walk `shapes` (dicts, lists, shape tuples) beside `params`; messages are formatted
        only on an error (this runs at every forward)."""
        key = lambda: "/".join(map(str, path))
        if isinstance(shapes, dict):
            if not isinstance(params, dict):
                raise ValueError(f"{self.name}: expected params['{key()}'] to be a dict with keys "
                                 f"{sorted(shapes)}, got {type(params).__name__}")
            missing = [k for k in shapes if k not in params]
            if missing:
                where = f" at '{key()}'" if path else ""
                raise ValueError(f"{self.name}: params lack {missing}{where}; got keys {sorted(params)}")
            for k, want in shapes.items():
                self._check_tree(params[k], want, path + (k,), x)
        elif isinstance(shapes, list):
            if not isinstance(params, (list, tuple)) or len(params) != len(shapes):
                raise ValueError(f"{self.name}: expected params['{key()}'] to be a list of {len(shapes)}, "
                                 f"got {type(params).__name__}")
            for i, want in enumerate(shapes):
                self._check_tree(params[i], want, path + (i,), x)
        else:
            shape = getattr(params, "shape", None)
            if shape is None:
                raise TypeError(f"{self.name}: expected params['{key()}'] to be an array of shape {shapes}, "
                                f"got {type(params).__name__}")
            if tuple(shape) != tuple(shapes):
                raise ValueError(f"{self.name}: expected params['{key()}'] of shape {tuple(shapes)}, "
                                 f"got shape {tuple(shape)}")
            if x is not None and type(params) is not type(x):
                self._same_namespace(params, f"params['{key()}']", x, "x")

    def _same_namespace(self, a, what, ref, ref_what):
        """TypeError unless `a` and `ref` belong to one array namespace (cheap when same type)."""
        ref = ref[0] if isinstance(ref, tuple) else ref
        if type(a) is type(ref):
            return
        na, nr = _namespace_name(a), _namespace_name(ref)
        if na != nr:
            raise TypeError(f"{self.name}: {what} is from namespace {na} but {ref_what} is from {nr}; "
                            f"put params and inputs on one backend")

    def check_dout(self, dout, expected):
        """Raise ValueError naming this layer unless `dout` has the forward output's structure
        and shapes; `expected` is :func:`shape_tree` of that output (a shape, or a tuple of
        shapes for a tuple output)."""
        got = shape_tree(dout)
        if got != expected:
            raise ValueError(f"{self.name}: expected dout of shape {expected}, got shape {got}")


def _defined_layers(module):
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Layer) and obj.__module__ == module.__name__
            and "examples" in vars(obj)]


def load_file(path) -> types.ModuleType:
    """The Python file at `path` imported as a module of its own (named after the file, e.g.
    a student's ``my_rmsnorm.py`` outside any package). Raises ImportError naming the path
    if there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise ImportError(f"no file {str(path)!r}")
    name = f"_tinynim_file_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                      # dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def collect_layers(*modules) -> dict:
    """``{name: cls}`` of the Layer subclasses that provide ``examples`` and are defined in the
    given modules or packages (names, module objects, or paths of ``.py`` files, loaded by
    :func:`load_file`; a package is walked, importing every submodule). Nothing registers
    itself: this is how the check and the tests find layers, e.g.
    ``collect_layers("tinynim.nn")``, ``collect_layers("tasks")`` or
    ``collect_layers("my_layers.py")``."""
    found = {}
    for m in modules:
        if isinstance(m, (str, Path)) and str(m).endswith(".py"):
            mod = load_file(m)
        else:
            mod = importlib.import_module(m) if isinstance(m, str) else m
        mods = [mod] + [importlib.import_module(info.name)
                        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), mod.__name__ + ".")]
        for module in mods:
            for cls in _defined_layers(module):
                if found.setdefault(cls.__name__, cls) is not cls:
                    raise ValueError(f"collect_layers: two layers named {cls.__name__}: "
                                     f"{found[cls.__name__].__module__} and {cls.__module__}")
    return found
