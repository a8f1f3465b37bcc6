"""Fuzz every collected layer (the framework's and the paper models in ``tasks``) through
every route of its ``examples``: new layers are covered automatically.

* valid: fresh random inputs and parameters of the example's shapes, a varied batch size →
  finite outputs and a backward whose directional derivative matches central differences;
* invalid: a wrong input dtype, a parameter of the wrong shape, a missing parameter,
  parameters from another array namespace, a dout of the wrong batch size or structure →
  ValueError/TypeError whose message starts with the name of the layer (or of a layer it is
  built from, which received the bad value).

Cost: about 10 s under ``HYPOTHESIS_PROFILE=ci`` on a 2-core machine (a few examples per
route; one directional finite difference, i.e. two forwards, per valid example).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinynim.backend import asarray, to_numpy
from tinynim.gradcheck import cotangent
from tinynim.nn.base import collect_layers
from tinynim.random import RNG
from tinynim.tree import leaves_with_paths, set_leaf, tree_map
from test_protocol import component_names

LAYERS = collect_layers("tinynim.nn", "tasks")
ROUTES = sorted(f"{name}/{route}" for name, cls in LAYERS.items() for route in cls.examples(RNG(0)))


def build(name_route, seed):
    name, route = name_route.split("/", 1)
    layer, x, kwargs = LAYERS[name].examples(RNG(seed))[route]
    return layer, x, kwargs


def is_float(a):
    return hasattr(a, "dtype") and np.issubdtype(np.asarray(to_numpy(a)).dtype, np.floating)


def vary_batch(x, kwargs, batch):
    """The first `batch` rows of x, tiled if needed (and of per-batch kwargs: arrays of ≥ 3 dims)."""
    def take(a):
        h = np.asarray(to_numpy(a))
        return asarray(np.concatenate([h] * (-(-batch // h.shape[0])), axis=0)[:batch])
    x = tree_map(take, x)
    return x, {k: take(v) if hasattr(v, "ndim") and v.ndim >= 3 else v for k, v in kwargs.items()}


def probe(layer, params, x, kwargs, R):
    out = layer.forward(params, x, **kwargs)[0]
    return sum(float(np.sum(np.asarray(to_numpy(o), dtype=np.float64) * r))
               for (_, o), (_, r) in zip(leaves_with_paths(out), leaves_with_paths(R)))


@pytest.mark.parametrize("name_route", ROUTES)
@settings(max_examples=3)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([0.3, 1.0, 2.0]), batch=st.integers(1, 3))
def test_valid_inputs_give_finite_outputs_and_consistent_gradients(f64, name_route, seed, scale, batch):
    """Directional check: with V a random direction over every float input and parameter,
    (L(θ + εV) − L(θ − εV)) / 2ε must equal ⟨∇L, V⟩ up to 1e-6 of ‖∇L‖‖V‖ (the scale of
    ⟨∇L, V⟩; central differences with ε = 1e-6 are accurate to ~1e-9 of it in float64)."""
    layer, x, kwargs = build(name_route, seed)
    x, kwargs = vary_batch(x, kwargs, batch)
    rng = np.random.default_rng(seed)
    params = tree_map(lambda p: asarray(scale * to_numpy(p) + 0.1 * rng.standard_normal(p.shape)),
                      layer.init(RNG(seed + 1)))
    out, cache = layer.forward(params, x, **kwargs)
    assert all(np.all(np.isfinite(to_numpy(o))) for _, o in leaves_with_paths(out)), name_route
    R = cotangent(out, seed)
    dx, grads = layer.backward(params, cache, tree_map(asarray, R))
    inputs, analytic = {"x": x, "params": params}, {"x": dx, "params": grads}
    V = tree_map(lambda a: rng.standard_normal(tuple(a.shape)) if is_float(a) else None, inputs)
    directional, norm_g, norm_v = 0.0, 0.0, 0.0
    for path, v in leaves_with_paths(V):
        g = np.asarray(to_numpy(_get(analytic, path)), dtype=np.float64)
        assert np.all(np.isfinite(g)), f"{name_route}: non-finite gradient {path}"
        directional += float(np.sum(g * v))
        norm_g, norm_v = norm_g + float(np.sum(g * g)), norm_v + float(np.sum(v * v))
    eps = 1e-6
    moved = lambda s: tree_map(lambda a, v: a if v is None else asarray(to_numpy(a) + s * eps * v), inputs, V)
    up, down = moved(1.0), moved(-1.0)
    fd = (probe(layer, up["params"], up["x"], kwargs, R) - probe(layer, down["params"], down["x"], kwargs, R)) / (2 * eps)
    assert abs(fd - directional) <= 1e-6 * np.sqrt(norm_g * norm_v) + 1e-12, (name_route, fd, directional)


def _get(tree, path):
    for key in path.split("/"):
        tree = tree[int(key)] if isinstance(tree, (list, tuple)) else tree[key]
    return tree


INVALID = ["dtype", "param_shape", "param_missing", "param_namespace", "dout_batch", "dout_structure"]


def corrupt(kind, layer, x, kwargs, params, rng):
    """(call, why): a zero-argument call that must raise, or None when `kind` does not apply."""
    float_leaves = [(p, a) for p, a in leaves_with_paths(params)]
    if kind == "dtype":
        first = x[0] if isinstance(x, tuple) else x
        bad_dtype = rng.choice(["int64", "bool", "complex128"]) if is_float(first) else "float64"
        bad = asarray(np.ones(tuple(first.shape)), str(bad_dtype))
        bad_x = (bad,) + tuple(x[1:]) if isinstance(x, tuple) else bad
        return lambda: layer.forward(params, bad_x, **kwargs)
    if kind in ("param_shape", "param_missing", "param_namespace"):
        if not float_leaves:
            return None
        path, leaf = float_leaves[rng.integers(len(float_leaves))]
        if kind == "param_shape":
            h = np.asarray(to_numpy(leaf))
            axis = int(rng.integers(h.ndim))
            new = asarray(np.concatenate([h, np.take(h, [0], axis=axis)], axis=axis))
        elif kind == "param_namespace":
            new = asarray(to_numpy(leaf), backend="array_api_strict")
        else:
            return lambda: layer.forward(_without(params, path), x, **kwargs)
        return lambda: layer.forward(set_leaf(params, path, new), x, **kwargs)
    out, cache = layer.forward(params, x, **kwargs)
    if kind == "dout_batch":
        grow = lambda o: asarray(np.concatenate([np.atleast_1d(to_numpy(o)), np.atleast_1d(to_numpy(o))[:1]], axis=0))   # a scalar (an objective) -> (2,)
        parts = list(out) if isinstance(out, tuple) else [out]
        i = int(rng.integers(len(parts)))
        parts[i] = grow(parts[i])
        bad = tuple(parts) if isinstance(out, tuple) else parts[0]
    else:
        bad = out[0] if isinstance(out, tuple) else (out, out)
    return lambda: layer.backward(params, cache, bad)


def _without(params, path):
    """`params` without the leaf at `path` (copies along the path, nothing mutated)."""
    head, _, rest = path.partition("/")
    if isinstance(params, (list, tuple)):
        i = int(head)
        return type(params)(_without(p, rest) if j == i else p for j, p in enumerate(params))
    if not rest:
        return {k: v for k, v in params.items() if k != head}
    return {**params, head: _without(params[head], rest)}


@pytest.mark.parametrize("kind", INVALID)
@pytest.mark.parametrize("name_route", ROUTES)
@settings(max_examples=2)
@given(seed=st.integers(0, 2**16))
def test_invalid_inputs_raise_errors_naming_the_layer(f64, name_route, kind, seed):
    layer, x, kwargs = build(name_route, seed)
    rng = np.random.default_rng(seed)
    call = corrupt(kind, layer, x, kwargs, layer.init(RNG(seed)), rng)
    if call is None:                                  # a layer without parameters
        return
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    message = str(err.value)
    assert any(message.startswith(n + ":") or message.startswith(n + ".") for n in component_names(layer)), \
        f"{name_route} ({kind}): {type(err.value).__name__}: {message}"
