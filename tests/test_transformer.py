import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.transformer import TransformerBlock
from tinynim.random import RNG
from tinynim.tree import get, tree_map
from helpers import assert_close, assert_gradients, host

KINDS = ["softmax", "linear"]


def jitter(params, rng, std=0.3):
    """Params moved off their init (γ = 1, biases 0), so a backward that ignores γ or a bias fails."""
    return tree_map(lambda p: p + rng.normal(tuple(p.shape), std=std), params)


@given(kind=st.sampled_from(KINDS), norm=st.booleans(), causal=st.booleans(), B=st.integers(1, 2),
       T=st.integers(1, 4), H=st.integers(1, 2), d_head=st.integers(1, 3), d_mlp=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_block_gradients(backend, kind, norm, causal, B, T, H, d_head, d_mlp, seed):
    """Default tolerances, every size: rows with one allowed key give Wq, Wk no gradient,
    LayerNorm over D = 2 features is degenerate (±1 per feature: tokens often coincide and the
    softmax cannot depend on Wq), and d_mlp = 1 gives gradients ~1e-12; such arrays are judged
    by their absolute error at the rounding noise of the differences (tinynim.gradcheck), all
    others by the relative one. Torch autograd judges every array at 1e-10."""
    rng = RNG(seed)
    block = TransformerBlock(H * d_head, H, d_mlp, causal=causal, attention=kind, norm=norm)
    params = jitter(block.init(rng), rng)
    assert_gradients(block, params, rng.normal((B, T, H * d_head)), max_coords=16)


def _layer_norm(x, p):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p["gamma"] + p["beta"]


def _reference(kind, causal, norm, H, params, x):
    """The block written out in plain numpy, one head at a time, from the formulas."""
    p = tree_map(host, params)
    B, T, D = x.shape
    attn_p, mlp_p = (p["0"]["1"], p["1"]["1"]) if norm else (p["0"], p["1"])
    allowed = np.tril(np.ones((T, T), bool)) if causal else np.ones((T, T), bool)
    u = _layer_norm(x, p["0"]["0"]) if norm else x
    if kind == "softmax":
        d = D // H
        heads = []
        for h in range(H):
            cols = slice(h * d, (h + 1) * d)
            q, k, v = (u @ attn_p[w][:, cols] for w in ("Wq", "Wk", "Wv"))
            S = np.where(allowed, q @ k.transpose(0, 2, 1) / math.sqrt(d), -np.inf)
            P = np.exp(S - S.max(-1, keepdims=True))
            heads.append(P / P.sum(-1, keepdims=True) @ v)
        a = np.concatenate(heads, axis=-1) @ attn_p["Wo"]
    else:
        a = sum(((u @ attn_p["Wq"][h]) @ (u @ attn_p["Wk"][h]).transpose(0, 2, 1) * allowed)
                @ (u @ attn_p["Wv"][h]) @ attn_p["Wp"][h] for h in range(H))
    h1 = x + a
    u = _layer_norm(h1, p["1"]["0"]) if norm else h1
    z = u @ mlp_p["0"]["W"] + mlp_p["0"]["b"]
    g = 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    return h1 + g @ mlp_p["2"]["W"] + mlp_p["2"]["b"]


@given(kind=st.sampled_from(KINDS), norm=st.booleans(), causal=st.booleans(), B=st.integers(1, 2),
       T=st.integers(1, 5), H=st.integers(1, 3), d_head=st.integers(1, 3), d_mlp=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_block_matches_numpy_reference(backend, kind, norm, causal, B, T, H, d_head, d_mlp, seed):
    """The composed block equals the pre-norm formula written out by hand in numpy.
    Tolerance 1e-12 (relative): the same float64 operations in a different order."""
    rng = RNG(seed)
    block = TransformerBlock(H * d_head, H, d_mlp, causal=causal, attention=kind, norm=norm)
    params, x = jitter(block.init(rng), rng), rng.normal((B, T, H * d_head))
    assert_close(block(params, x), _reference(kind, causal, norm, H, params, host(x)), 1e-12, kind)


@given(kind=st.sampled_from(KINDS), norm=st.booleans(), T=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_causal_block_ignores_the_future(backend, kind, norm, T, seed):
    """Changing the inputs after position t leaves outputs 0..t unchanged (to 1e-13: the
    masked terms are exact zeros, so only summation order could differ) and does change
    output t+1 in the causal block, and output t in the non-causal one (so the test can fail)."""
    rng = RNG(seed)
    t = int(np.random.default_rng(seed).integers(0, T - 1))
    x = host(rng.normal((2, T, 4)))
    y = x.copy()
    y[:, t + 1:] = host(rng.normal((2, T - t - 1, 4)))
    for causal in (True, False):
        block = TransformerBlock(4, 2, 5, causal=causal, attention=kind, norm=norm)
        params = jitter(block.init(rng), rng)
        out_x, out_y = host(block(params, asarray(x))), host(block(params, asarray(y)))
        assert np.abs(out_x[:, t + 1] - out_y[:, t + 1]).max() > 1e-6
        past_diff = np.abs(out_x[:, :t + 1] - out_y[:, :t + 1]).max()
        if causal:
            assert past_diff <= 1e-13 * max(1.0, np.abs(out_x).max())
        else:
            assert past_diff > 1e-6


def test_block_param_layout_and_errors(f64):
    block = TransformerBlock(4, 2, 6)
    params = block.init(0)
    assert tuple(get(params, "0/1/Wq").shape) == (4, 4)
    assert tuple(get(params, "1/1/0/W").shape) == (4, 6)
    assert tuple(get(TransformerBlock(4, 2, 6, norm=False).init(0), "0/Wq").shape) == (4, 4)
    with pytest.raises(ValueError, match=r"TransformerBlock: attention must be one of \['linear', 'softmax'\], got 'mamba'"):
        TransformerBlock(4, 2, 6, attention="mamba")
    with pytest.raises(ValueError, match=r"TransformerBlock: expected x of shape \(\.\.\., 4\), got shape \(2, 3, 5\)"):
        block.forward(params, RNG(0).normal((2, 3, 5)))
    with pytest.raises(ValueError, match=r"TransformerBlock: expected x with 3 dims, got shape \(3, 4\)"):
        block.forward(params, RNG(0).normal((3, 4)))
