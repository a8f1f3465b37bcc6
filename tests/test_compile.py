"""tinynim.compile: a compiled training step equals the eager one (float64), and says so
when it cannot compile. Tolerance 1e-12 relative: a compiler may reassociate sums and fuse
multiply-adds (float64 rounding ~1e-16 per operation, a few hundred operations deep), but
a wrong term or a dropped update is off by far more."""
import warnings

import numpy as np
import pytest

import tinynim
from tinynim.backend import to_numpy, use_backend
from tinynim.compile import CompileWarning
from tinynim.losses import mse, softmax_cross_entropy
from tinynim.nn.mlp import MLP
from tinynim.nn.transformer import TransformerBlock
from tinynim.optim import Adam
from tinynim.random import RNG
from tinynim.train import supervised
from tinynim.tree import leaves_with_paths
from tasks.gated_rnn_attention import RNNRegressor
from tasks.icl_regression import LinearTransformer, sample
from tasks.mesa_optimization import SequencePredictor, sequence_data, sequence_mse
from tasks.modular_teacher import meta_step, network
from tinynim.nn.recurrent import GatedLinearRNN

RTOL = 1e-12
STEPS = 3


def _mlp():
    model = MLP([6, 16, 16, 4], activation="gelu")
    data = RNG(1)
    x, y = data.normal((32, 6)), data.integers(0, 4, 32)
    return model, supervised(model, softmax_cross_entropy), (x, y)


def _block():
    model = TransformerBlock(8, 2, 16, causal=True)
    data = RNG(1)
    return model, supervised(model, mse), (data.normal((3, 5, 8)), data.normal((3, 5, 8)))


def _p1():
    model = LinearTransformer(4, 1, 3, form="full")           # 3 shared layers (P1, arXiv:2212.07677)
    return model, supervised(model), sample(RNG(1), 16, n_context=6, d=4)


def _p3_last():
    model = RNNRegressor(3, 1, 8, n_out_gates=4)              # last step only (P3, arXiv:2309.01775)
    return model, supervised(model), sample(RNG(1), 16, n_context=6, d=3)


def _rnn_all(scan):
    def make():
        model = GatedLinearRNN(3, 8, 2, scan=scan)            # every step's output
        data = RNG(1)
        return model, supervised(model, mse), (data.normal((4, 7, 3)), data.normal((4, 7, 2)))
    return make


def _p2(mesa):
    def make():
        model = SequencePredictor(2, 2, 2, mesa=mesa, init_std=0.3)   # P2 (arXiv:2309.05858)
        return model, supervised(model, sequence_mse), sequence_data(4, 6, 2)(RNG(1), 0)
    return make


def _p6():
    model = network(3, 4, 5, 2)                               # HyperMLP student (P6, arXiv:2312.15001)
    data = RNG(1)
    batch = (data.normal((3, 8, 4)), data.normal((3, 8, 2)), data.normal((3,)))   # 3 tasks: x, y, z0
    return model, meta_step(model, 4, 0.1), batch


MODELS = {"MLP": _mlp, "TransformerBlock": _block, "P1 LinearTransformer": _p1, "P3 RNNRegressor": _p3_last,
          "GatedLinearRNN loop": _rnn_all("loop"), "GatedLinearRNN parallel": _rnn_all("parallel"),
          "P2 deep LSA": _p2(False), "P2 mesa": _p2(True),
          "P6 meta step": _p6}


def train_step_for(loss_and_grads, optimizer, calls=None):
    def train_step(params, opt_state, batch):
        if calls is not None:
            calls.append(1)                       # Python runs this body only while tracing
        loss, grads = loss_and_grads(params, batch, 0)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss
    return train_step


def _run(step, params, state, batch):
    losses = []
    for _ in range(STEPS):
        params, state, loss = step(params, state, batch)
        losses.append(float(loss))
    return params, state, losses


def assert_trees_close(a, b, what):
    pa, pb = leaves_with_paths(a), leaves_with_paths(b)
    assert [p for p, _ in pa] == [p for p, _ in pb], what
    for (path, x), (_, y) in zip(pa, pb):
        x, y = to_numpy(x).astype(np.float64), to_numpy(y).astype(np.float64)
        scale = max(np.max(np.abs(y)), 1e-300)
        assert np.max(np.abs(x - y)) <= RTOL * scale, f"{what}: {path} differs by {np.max(np.abs(x - y)):.2e}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jit_step_equals_eager_step(name):
    """Three Adam steps under jax.jit give the eager jax steps' params, Adam moments and
    losses; and the eager numpy steps' too (the same maths on another library)."""
    pytest.importorskip("jax")
    results, traces = {}, []
    for backend, compiled in (("jax", True), ("jax", False), ("numpy", False)):
        with use_backend(backend, dtype="float64"):
            model, loss_and_grads, batch = MODELS[name]()
            params, opt = model.init(RNG(0)), Adam(1e-2)
            step = train_step_for(loss_and_grads, opt, traces if compiled else None)
            step = tinynim.compile(step) if compiled else step
            results[backend, compiled] = _run(step, params, opt.init(params), batch)
    # traced at most twice (the step count enters as a Python int, then as an array), run 3 times
    assert 1 <= len(traces) < STEPS
    jit_params, jit_state, jit_losses = results["jax", True]
    for key in (("jax", False), ("numpy", False)):
        params, state, losses = results[key]
        np.testing.assert_allclose(jit_losses, losses, rtol=RTOL)
        assert_trees_close(jit_params, params, f"{name}: params, jit vs {key}")
        assert_trees_close({"m": jit_state["m"], "v": jit_state["v"]}, {"m": state["m"], "v": state["v"]},
                           f"{name}: Adam moments, jit vs {key}")
        assert int(jit_state["step"]) == state["step"] == STEPS


def test_numpy_has_no_compiler_and_says_so_once(f64):
    model, loss_and_grads, batch = _block()
    params, opt = model.init(RNG(0)), Adam(1e-2)
    eager = train_step_for(loss_and_grads, opt)
    step = tinynim.compile(eager)
    with pytest.warns(CompileWarning, match=r"tinynim.compile\(.*train_step\): backend numpy has no compiler"):
        compiled = _run(step, params, opt.init(params), batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # no second warning
        step(params, opt.init(params), batch)
    reference = _run(eager, params, opt.init(params), batch)
    assert compiled[2] == reference[2]


def test_arrays_of_two_backends_are_refused(f64):
    params = {"W": tinynim.asarray(np.ones((2, 2)))}
    with use_backend("array_api_strict", dtype="float64"):
        x = tinynim.asarray(np.ones((2, 2)))
    step = tinynim.compile(lambda p, s, b: (p, s, b))
    with pytest.raises(TypeError, match=r"arrays of one backend, got \['array_api_strict', 'numpy'\]"):
        step(params, {}, x)


def test_untraceable_step_is_a_clear_error():
    """A Python branch on an array value cannot be traced: the error names the step and
    what to change, and chains JAX's own error."""
    jax = pytest.importorskip("jax")
    with use_backend("jax", dtype="float64"):
        params = {"W": tinynim.asarray(np.ones(3))}

    def branchy_step(params, opt_state, batch):
        if float(params["W"][0]) > 0:                                   # value-dependent
            return params, opt_state, params["W"][0]
        return params, opt_state, -params["W"][0]
    with pytest.raises(TypeError, match=r"compile\(.*branchy_step\): the step is not traceable by jax.jit") as err:
        tinynim.compile(branchy_step)(params, {}, None)
    assert isinstance(err.value.__cause__, jax.errors.ConcretizationTypeError)


@pytest.mark.slow
def test_torch_compile_step_equals_eager_step():
    """torch.compile (dynamo + AOT autograd, backend "aot_eager": the graph capture the
    inductor backend compiles, without its C++ build of minutes) on the MLP step."""
    pytest.importorskip("torch")
    out = {}
    for compiled in (True, False):
        with use_backend("torch", dtype="float64"):
            model, loss_and_grads, batch = _mlp()
            params, opt = model.init(RNG(0)), Adam(1e-2)
            step = train_step_for(loss_and_grads, opt)
            step = tinynim.compile(step, backend="aot_eager") if compiled else step
            out[compiled] = _run(step, params, opt.init(params), batch)
    np.testing.assert_allclose(out[True][2], out[False][2], rtol=RTOL)
    assert_trees_close(out[True][0], out[False][0], "torch.compile vs eager params")


def test_fit_compile_equals_fit_and_resumes(tmp_path):
    """fit(compile=True) on jax: the eager run's losses and params; its checkpoint keeps the
    optimiser's step a Python int, so a compiled run resumes it (2 × 3 steps = 6 straight)."""
    pytest.importorskip("jax")
    with use_backend("jax", dtype="float64"):
        model, loss_and_grads, batch = _block()
        params = model.init(RNG(0))
        runs = {c: tinynim.fit(loss_and_grads, params, Adam(1e-2), steps=6, data=batch, log=None, compile=c)
                for c in (False, True)}
        np.testing.assert_allclose(runs[True][1]["loss"], runs[False][1]["loss"], rtol=RTOL)
        assert_trees_close(runs[True][0], runs[False][0], "fit(compile=True) vs fit")
        path = tmp_path / "ck"
        tinynim.fit(loss_and_grads, params, Adam(1e-2), steps=3, data=batch, log=None, compile=True,
                    checkpoint_path=path)
        resumed, history = tinynim.fit(loss_and_grads, params, Adam(1e-2), steps=6, data=batch, log=None,
                                       compile=True, checkpoint_path=path, resume=True)
        np.testing.assert_allclose(history["loss"], runs[False][1]["loss"], rtol=RTOL)
        assert_trees_close(resumed, runs[False][0], "resumed compiled fit vs fit")
