"""The hyperteacher few-shot setting (tasks/modular_fewshot.py, work in progress), float64.

Exact: the task pool and its split, soft targets (probability rows), and AnilNet's hand
gradients (central differences and torch autograd, with tanh features: no kinks)."""
import math

import numpy as np
from hypothesis import given, strategies as st

from tinynim.random import RNG
from tasks.modular_fewshot import AnilNet, FewShot, few_shot_targets, hyperteacher, layer_codes
from helpers import assert_gradients, host


@given(M=st.integers(1, 6), K=st.integers(1, 6))
def test_layer_codes_are_every_1_to_K_hot_vector(M, K):
    c = layer_codes(M, K) if K <= M else None
    if c is None:
        return
    assert len(c) == sum(math.comb(M, k) for k in range(1, K + 1))
    assert len({tuple(r) for r in c}) == len(c) and set(c.sum(axis=1)) <= set(range(1, K + 1))


def test_hyperteacher_split_and_targets(f64):
    fs = FewShot(M=4, K=2)
    t = hyperteacher(fs)
    assert len(t.codes) == 100 and len(t.ood) == 25 and len(t.train) == 75
    assert not set(t.train) & set(t.ood)
    x = RNG(0).uniform((3, 5, fs.n_in), -1.0, 1.0)
    y = host(few_shot_targets(fs, t, x, t.ood[:3]))
    assert np.allclose(y.sum(axis=-1), 1.0) and np.all(y >= 0)


@given(T=st.integers(1, 3), B=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_anil_gradients(backend, T, B, seed):
    rng = RNG(seed)
    net = AnilNet([3, 4, 5], 2, activation="tanh")
    assert_gradients(net, net.init(rng), (rng.normal((T, B, 3)), rng.normal((T, 5, 2))))
