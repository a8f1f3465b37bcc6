"""The layer protocol across every layer: keyword pass-through in containers, one cache form,
validated dout/params/hyperparameters, explicit collection of layers, every example route
gradient-checked."""
import numpy as np
import pytest

from tinynim.backend import asarray, use_backend
from tinynim.nn import REGISTRY, LinearSelfAttention, Residual, Sequential, SoftmaxAttention, TransformerBlock
from tinynim.nn.base import collect_layers
from tinynim.nn.containers import route_keywords
from tinynim.nn.linear import Linear
from tinynim.random import RNG
from tinynim.tree import leaves
from helpers import KINK_TOL, assert_close, assert_gradients, host

LAYERS = collect_layers("tinynim.nn", "tasks")
ROUTES = sorted((name, route) for name, cls in LAYERS.items() for route in cls.examples(RNG(0)))
CONTAINERS = (Sequential, Residual)


def example(name, route, seed=0):
    return LAYERS[name].examples(RNG(seed))[route]


def test_collect_layers_finds_framework_and_task_layers_explicitly():
    """REGISTRY is the framework's layers only; tasks' models are collected on request; an
    abstract base (Elementwise) or a helper class without examples is not collected."""
    assert set(REGISTRY) == set(collect_layers("tinynim.nn"))
    assert all(cls.__module__.startswith("tinynim.nn.") for cls in REGISTRY.values())
    assert {"LinearTransformer", "RNNRegressor"} <= set(collect_layers("tasks")) <= set(LAYERS)
    assert "Elementwise" not in LAYERS and "Layer" not in LAYERS
    assert set(collect_layers("tinynim.nn.linear")) == {"Linear"}


@pytest.mark.parametrize("name, route", ROUTES, ids=[f"{n}/{r}" for n, r in ROUTES])
def test_every_route_gradients(f64, name, route):
    """Every route of every layer: FD (≤ 64 coordinates per array) and torch autograd.
    ReLU gets the kink tolerance; its example is a normal draw, never within 1e-6 of 0
    here, but the tolerance documents that it may be."""
    layer, x, kwargs = example(name, route)
    assert_gradients(layer, layer.init(RNG(1)), x, kwargs, max_coords=64,
                     fd_tol=KINK_TOL if name == "ReLU" else 1e-6)


FRAMEWORK_ROUTES = [(n, r) for n, r in ROUTES if n in REGISTRY]


@pytest.mark.parametrize("name, route", FRAMEWORK_ROUTES, ids=[f"{n}/{r}" for n, r in FRAMEWORK_ROUTES])
def test_caches_are_named_tuples(f64, name, route):
    """A framework layer's cache is a NamedTuple (fields read by name); a container's cache
    is the plain tuple of its children's caches."""
    layer, x, kwargs = example(name, route)
    _, cache = layer.forward(layer.init(RNG(1)), x, **kwargs)
    if isinstance(layer, Sequential):
        assert type(cache) is tuple and len(cache) == len(layer.layers)
    elif not isinstance(layer, Residual):
        assert isinstance(cache, tuple) and hasattr(cache, "_fields"), type(cache)


@pytest.mark.parametrize("name, route", ROUTES, ids=[f"{n}/{r}" for n, r in ROUTES])
def test_wrong_dout_names_a_layer(f64, name, route):
    """backward rejects a dout of another batch size, of another last dim (for a scalar
    output: a dout of shape (1,)), and of another structure (an array for a tuple output or vice versa) with a ValueError naming the layer
    (or, for a composite, the layer of its own that received it); a task model that checks
    its dout as an input may call a tuple a TypeError."""
    layer, x, kwargs = example(name, route)
    params = layer.init(RNG(1))
    out, cache = layer.forward(params, x, **kwargs)
    first = out[0] if isinstance(out, tuple) else out
    grow = lambda a, axis: asarray(np.concatenate([host(a), host(a)[(slice(None),) * axis + (slice(0, 1),)]], axis))
    bad = ([grow(first, 0), grow(first, first.ndim - 1)] if first.ndim else [asarray(np.zeros(1))]) + [
           out[0] if isinstance(out, tuple) else (out, out)]                  # a scalar output (an objective): a (1,) dout
    if isinstance(out, tuple):
        bad += [(grow(out[0], 0), out[1]), (out[0], grow(out[1], 1))]
    names = component_names(layer)
    for dout in bad:
        with pytest.raises((ValueError, TypeError), match=r"expected d\w* (of shape|to be an array)") as err:
            layer.backward(params, cache, dout)
        assert any(err.value.args[0].startswith(n + ":") for n in names), err.value
        assert err.type is ValueError or name not in REGISTRY


def component_names(layer):
    """The class names of `layer` and every Layer among its attributes, recursively."""
    from tinynim.nn.base import Layer
    names, todo = set(), [layer]
    while todo:
        obj = todo.pop()
        names.add(type(obj).__name__)
        for v in vars(obj).values():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(item, Layer) and type(item).__name__ not in names:
                    todo.append(item)
    return names


# -- keyword pass-through -----------------------------------------------------------------

def test_transformer_block_passes_mask_to_attention(f64):
    """forward(p, x, mask=m) reaches SoftmaxAttention: the block equals its explicit
    composition with the masked attention (1e-14: the same operations), differs from the
    unmasked block, and its gradients pass FD and torch."""
    rng = RNG(0)
    block = TransformerBlock(4, 2, 5)
    p, x = block.init(rng), rng.normal((2, 3, 4))
    m = np.tril(np.ones((3, 3), dtype=bool))
    m[2, 0] = False
    mask = asarray(m)
    ln1, attn = block.layers[0].layer.layers
    h = host(x) + host(attn(p["0"]["1"], ln1(p["0"]["0"], x), mask=mask))
    want = h + host(block.layers[1](p["1"], asarray(h)) - asarray(h))
    assert_close(block(p, x, mask=mask), want, 1e-14, "block with mask vs composition")
    assert np.abs(host(block(p, x, mask=mask)) - host(block(p, x))).max() > 1e-3
    assert_gradients(block, p, x, {"mask": mask}, fd_tol=1e-6, max_coords=64)


def test_keywords_go_to_every_child_that_accepts_them(f64):
    """Sequential(LSA, LSA): n_context reaches both (each child by its signature); a
    keyword that no child accepts is a TypeError naming the container and the keyword."""
    rng = RNG(2)
    a, b = LinearSelfAttention(3, 1), LinearSelfAttention(3, 1)
    seq = Sequential(a, Linear(3, 3), b)
    assert seq.keywords == {"n_context", "last_only"} and Linear(3, 3).keywords == frozenset()
    p, x = seq.init(rng), rng.normal((2, 4, 3))
    h = a(p["0"], x, n_context=2)
    want = b(p["2"], Linear(3, 3)(p["1"], h), n_context=2)
    assert_close(seq(p, x, n_context=2), want, 1e-14, "n_context routed to both LSAs")
    assert route_keywords(seq, seq.layers, {"n_context": 2}) == [{"n_context": 2}, {}, {"n_context": 2}]
    with pytest.raises(TypeError, match=r"Sequential.forward: no layer accepts keyword\(s\) \['mask'\]"):
        seq.forward(p, x, mask=None)
    with pytest.raises(TypeError, match=r"TransformerBlock.forward: no layer accepts keyword\(s\) \['n_context'\]"):
        block = TransformerBlock(4, 2, 4)
        block.forward(block.init(0), rng.normal((1, 2, 4)), n_context=1)
    with pytest.raises(TypeError, match=r"Residual.forward: no layer accepts keyword\(s\) \['mask'\]"):
        Residual(Linear(3, 3)).forward(Linear(3, 3).init(0), x, mask=None)


# -- parameters and hyperparameters ---------------------------------------------------------

@pytest.mark.parametrize("name, route", ROUTES, ids=[f"{n}/{r}" for n, r in ROUTES])
def test_param_shapes_describe_init(f64, name, route):
    """param_shapes is the shape tree of init's params, key for key."""
    layer, _, _ = example(name, route)
    params = layer.init(RNG(1))
    shapes = layer.param_shapes

    def walk(p, s):
        if isinstance(s, dict):
            assert isinstance(p, dict) and set(p) == set(s)
            for k in s:
                walk(p[k], s[k])
        elif isinstance(s, list):
            assert len(p) == len(s)
            for a, b in zip(p, s):
                walk(a, b)
        else:
            assert tuple(p.shape) == tuple(s)
    walk(params, shapes)


@pytest.mark.parametrize("make, key", [
    (lambda: Linear(3, 2), "b"), (lambda: Linear(3, 2), "W"),
    (lambda: __import__("tinynim.nn", fromlist=["LayerNorm"]).LayerNorm(3), "gamma"),
    (lambda: __import__("tinynim.nn", fromlist=["Embedding"]).Embedding(4, 3), "W")])
def test_missing_param_key_is_a_clear_error(f64, make, key):
    layer = make()
    params = layer.init(0)
    x = RNG(0).integers(0, 4, (2, 5)) if layer.name == "Embedding" else RNG(0).normal((2, 3))
    del params[key]
    with pytest.raises(ValueError, match=rf"{layer.name}: params lack \['{key}'\]"):
        layer.forward(params, x)


@pytest.mark.parametrize("name, route", ROUTES, ids=[f"{n}/{r}" for n, r in ROUTES])
def test_wrong_param_shape_names_layer_key_and_shapes(f64, name, route):
    """Each parameter array in turn gets one more row: ValueError naming the layer (or the
    sub-layer that owns it), the key, the expected and the actual shape."""
    from tinynim.tree import leaves_with_paths, set_leaf
    layer, x, kwargs = example(name, route)
    params = layer.init(RNG(1))
    for path, leaf in leaves_with_paths(params):
        a = host(leaf)
        bigger = asarray(np.concatenate([a, a[:1]], axis=0))
        with pytest.raises(ValueError, match=r"expected params\[.*\] of shape .*got shape") as err:
            layer.forward(set_leaf(params, path, bigger), x, **kwargs)
        msg = err.value.args[0]
        assert any(msg.startswith(n + ":") for n in component_names(layer)), msg
        assert str(tuple(leaf.shape)) in msg and str(tuple(bigger.shape)) in msg
        assert path.split("/")[-1] in msg


@pytest.mark.parametrize("make, message", [
    (lambda: Linear(0, 3), r"Linear: d_in must be a positive integer, got 0"),
    (lambda: Linear(-1, 3), r"Linear: d_in must be a positive integer, got -1"),
    (lambda: Linear(3, 2.0), r"Linear: d_out must be a positive integer, got 2.0"),
    (lambda: SoftmaxAttention(6, 0), r"SoftmaxAttention: n_heads must be a positive integer, got 0"),
    (lambda: LinearSelfAttention(4, 2, -3), r"LinearSelfAttention: d_key must be a positive integer, got -3"),
    (lambda: TransformerBlock(4, 2, 0), r"TransformerBlock: d_mlp must be a positive integer, got 0"),
    (lambda: __import__("tinynim.nn", fromlist=["MLP"]).MLP([3, -2, 1]), r"MLP: sizes\[1\] must be a positive integer, got -2"),
    (lambda: __import__("tinynim.nn", fromlist=["LayerNorm"]).LayerNorm(0), r"LayerNorm: d must be a positive integer, got 0"),
    (lambda: __import__("tinynim.nn", fromlist=["LayerNorm"]).LayerNorm(3, eps=-1.0), r"LayerNorm: eps must be ≥ 0, got -1.0"),
    (lambda: __import__("tinynim.nn", fromlist=["Embedding"]).Embedding(True, 3), r"Embedding: n_tokens must be a positive integer, got True"),
    (lambda: __import__("tinynim.nn", fromlist=["SinusoidalPositional"]).SinusoidalPositional(0), r"SinusoidalPositional: d_pos must be a positive integer, got 0"),
    (lambda: __import__("tinynim.nn", fromlist=["GatedLinearRNN"]).GatedLinearRNN(3, 4, 2, n_out_gates=0), r"GatedLinearRNN: n_out_gates must be a positive integer, got 0"),
])
def test_invalid_hyperparameters_fail_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_mixed_backends_are_one_clear_type_error():
    """numpy params with a torch input: a TypeError at forward naming the layer and both
    namespaces (not a failure deep inside backward)."""
    torch = pytest.importorskip("torch")
    layer = Linear(3, 2)
    with use_backend("numpy", dtype="float64"):
        params = layer.init(0)
    x = torch.zeros((2, 3), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"Linear: params\['W'\] is from namespace array_api_compat.numpy but x "
                                        r"is from array_api_compat.torch"):
        layer.forward(params, x)
    with use_backend("numpy", dtype="float64"):
        rnn_layer, (x, h0), kwargs = example("GatedLinearRNN", "h0_return_state")
        p = rnn_layer.init(0)
    with pytest.raises(TypeError, match=r"GatedLinearRNN: h0 is from namespace \S*torch but x is from \S*numpy"):
        rnn_layer.forward(p, (x, torch.as_tensor(host(h0))), **kwargs)


@pytest.mark.parametrize("dtype", ["int64", "bool", "complex128"])
def test_non_float_inputs_are_type_errors(f64, dtype):
    """int (once promoted silently), bool (once → float16) and complex (once accepted): a
    TypeError naming the layer and the dtype, from the first layer that reads x."""
    x = asarray(np.ones((2, 3)), dtype)
    for layer in (Linear(3, 2), Sequential(Linear(3, 3), Linear(3, 2)),
                  __import__("tinynim.nn", fromlist=["Tanh"]).Tanh()):
        with pytest.raises(TypeError, match=rf"(Linear|Tanh): expected x with dtype kind 'real floating', got dtype \S*{dtype}"):
            layer.forward(layer.init(0), x)


@pytest.mark.parametrize("layer", [SoftmaxAttention(4, 2), LinearSelfAttention(4, 2), TransformerBlock(4, 2, 3),
                                   __import__("tinynim.nn", fromlist=["GatedLinearRNN"]).GatedLinearRNN(4, 3, 2)],
                         ids=lambda l: l.name)
def test_empty_sequences_are_value_errors(f64, layer):
    with pytest.raises(ValueError, match=rf"{layer.name}: expected x with at least 1 time step\(s\) on axis -2, "
                                         r"got shape \(2, 0, 4\)"):
        layer.forward(layer.init(0), RNG(0).normal((2, 0, 4)))


# -- need_dx=False: the same grads, no input gradient ------------------------------------------

def _backward_both_ways(layer, x, kwargs):
    """backward with need_dx True and False on one forward, one cotangent: (dx, grads, dx', grads')."""
    from tinynim.gradcheck import cotangent
    from tinynim.tree import tree_map
    params = layer.init(RNG(1))
    out, cache = layer.forward(params, x, **kwargs)
    dout = tree_map(asarray, cotangent(out))
    return (*layer.backward(params, cache, dout), *layer.backward(params, cache, dout, need_dx=False))


def _assert_same_grads(got, want):
    from tinynim.tree import leaves_with_paths
    want = dict(leaves_with_paths(want))
    assert {p for p, _ in leaves_with_paths(got)} == set(want)
    for path, g in leaves_with_paths(got):
        assert np.array_equal(host(g), host(want[path]), equal_nan=True), path


@pytest.mark.parametrize("name, route", FRAMEWORK_ROUTES, ids=[f"{n}/{r}" for n, r in FRAMEWORK_ROUTES])
def test_need_dx_false_gives_the_same_grads_and_no_dx(backend, name, route):
    """Every route of every framework layer, on every backend: backward(..., need_dx=False)
    returns dx None and grads equal bit for bit to those of the full backward (the same
    operations on the same arrays: a skipped dx must not change the grads' arithmetic)."""
    layer, x, kwargs = example(name, route)
    dx, grads, no_dx, grads_only = _backward_both_ways(layer, x, kwargs)
    assert no_dx is None
    _assert_same_grads(grads_only, grads)


TASK_ROUTES = [(n, r) for n, r in ROUTES if n not in REGISTRY]


@pytest.mark.parametrize("name, route", TASK_ROUTES, ids=[f"{n}/{r}" for n, r in TASK_ROUTES])
def test_task_layers_accept_need_dx(f64, name, route):
    """The tasks' layers, written without the flag, accept it (Layer.__init_subclass__ wraps
    their backward): dx None, the same grads bit for bit."""
    layer, x, kwargs = example(name, route)
    _, grads, no_dx, grads_only = _backward_both_ways(layer, x, kwargs)
    assert no_dx is None
    _assert_same_grads(grads_only, grads)


def test_need_dx_reaches_the_first_layer_only(f64):
    """A layer written without need_dx gets it from the base class (computes dx, returns
    None); Sequential tells only its first child to skip dx, Residual its inner layer; the
    wrapped backward keeps its name and docstring, and its default still returns dx."""
    from tinynim.nn.base import Layer
    seen = []

    class Spy(Layer):
        """A student's identity layer: backward has no need_dx parameter."""
        def forward(self, params, x):
            return x, None

        def backward(self, params, cache, dout):
            """dx = dout."""
            seen.append(self)
            return dout, {}

        @staticmethod
        def examples(rng):
            return {}

    first, second = Spy(), Spy()
    x = RNG(0).normal((2, 3))
    assert Spy.backward.__name__ == "backward" and Spy.backward.__doc__ == "dx = dout."
    assert first.backward({}, None, x, need_dx=False) == (None, {}) and seen == [first]
    assert first.backward({}, None, x)[0] is x
    seen.clear()

    calls = []

    class Recorder(Linear):
        def backward(self, params, cache, dout, *, need_dx=True):
            calls.append(need_dx)
            return super().backward(params, cache, dout, need_dx=need_dx)

    net = Sequential(Recorder(3, 3), Residual(Recorder(3, 3)), Recorder(3, 2))
    p = net.init(RNG(1))
    out, cache = net.forward(p, x)
    dx, _ = net.backward(p, cache, out, need_dx=False)
    assert dx is None and calls == [True, True, False]
    calls.clear()
    res = Residual(Sequential(Recorder(3, 3), Spy()))
    rp = res.init(RNG(2))
    dx, _ = res.backward(rp, res.forward(rp, x)[1], x, need_dx=False)
    assert dx is None and calls == [False] and len(seen) == 1
