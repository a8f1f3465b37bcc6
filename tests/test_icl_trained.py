"""Trained linear self-attention lands on gradient descent (P1, spec §2.5 S1.1–S1.3).

Setting: d = N = 10, x ~ U(−0.5, 0.5) (the paper code's input_range=1), fresh tasks every
step, numpy float32, fixed seeds. All comparisons are paired on one evaluation set of 10k
tasks (spec §1.3: two independent 10k sets differ by ~4 % in loss, paired ones do not).
Measured while writing the tests (seeds 0–3, 2 layers: 0–2): 1 layer merged, loss / tuned
GD = 1.002–1.003, cosine 0.9991–0.9992, effective η within 1 %; 4-matrix form at batch 2048,
1.001–1.003, 0.9992–0.9993, within 1.3 % (batch 512: ≤ 1.005, ≥ 0.998, within 3 %); 2 shared
layers, loss / GD-2 = 0.705–0.706 and loss / GD++-2 = 1.0002–1.0010.
Times (2-core CPU, one BLAS thread): about 2 s, 6 s and 6 s. With multi-threaded OpenBLAS on
a machine busy with other jobs the 2-layer test took up to ~110 s (spin-waiting BLAS
threads); OPENBLAS_NUM_THREADS=1 avoids that and costs nothing at these matrix sizes.
"""
import pytest

from tasks import icl_regression as icl
from tinynim.backend import use_backend
from tinynim.optim import Adam, cosine
from tinynim.random import RNG

pytestmark = pytest.mark.slow
D, N = 10, 10


@pytest.fixture(scope="module")
def evaluation():
    """10k evaluation tasks and the tuned baselines on exactly those tasks."""
    with use_backend("numpy", dtype="float32"):
        tokens, targets = icl.sample(RNG(2023), 10_000, N, D)
        gd1 = icl.tune_gd(tokens, targets, 1)
        gd2 = icl.tune_gd(tokens, targets, 2)
        gdpp2 = icl.tune_gd(tokens, targets, 2, plus=True)
    return tokens, targets, {"gd1": gd1, "gd2": gd2, "gdpp2": gdpp2}


def fit(model, optimizer, steps, batch, seed):
    with use_backend("numpy", dtype="float32"):
        params, _ = icl.train(model, model.init(RNG(seed)), optimizer, steps=steps, batch=batch,
                              rng=RNG(seed + 100), log=None)
    return params


def assert_one_gd_step(model, params, evaluation):
    """Loss ≤ 1.02 × tuned one-step GD (observed ≤ 1.005: the 2 % leaves room for seeds and
    BLAS differences, yet a model off GD by a few % of η fails); sensitivity cosine ≥ 0.99
    (observed ≥ 0.998; the zero-init model has cosine ~0); effective η within 5 % (spec)."""
    tokens, targets, base = evaluation
    (best, gd_loss) = base["gd1"]
    with use_backend("numpy", dtype="float32"):
        loss = icl.loss(model(params, tokens), targets)
        pred, J = icl.sensitivity(model, params, tokens)
        metrics = icl.alignment(pred, J, *icl.gd_sensitivity(tokens, best["eta"], 1))
    eta = icl.effective_eta(params, D, N, model.lsa.form)
    assert loss <= 1.02 * gd_loss, (loss, gd_loss)
    assert metrics["cosine"] >= 0.99, metrics
    assert abs(eta / best["eta"] - 1) <= 0.05, (eta, best)


def test_one_layer_merged_is_one_gd_step(evaluation):
    """S1.1: merged (P, Q) layer, Adam(1e-3, β₂ = 0.98), batch 512, 1500 steps (~2 s)."""
    model = icl.LinearTransformer(D, 1, 1, form="merged")
    params = fit(model, Adam(1e-3, 0.9, 0.98), 1500, 512, seed=0)
    assert_one_gd_step(model, params, evaluation)


def test_one_layer_full_form_is_one_gd_step(evaluation):
    """S1.2: the paper code's 4-matrix layer at its settings: batch 2048, global-norm clip
    0.001, Adam(1e-3, β₂ = 0.98), init VarianceScaling(0.002); 2000 steps (~6 s). The
    spec's saddle (1 of 2 seeds stuck at loss 0.39 with batch 512) did not occur in our
    runs (6 seeds, batch 512, with and without clipping); batch 2048 is the official one."""
    model = icl.LinearTransformer(D, 1, 1, form="full")
    params = fit(model, Adam(1e-3, 0.9, 0.98, clip_norm=1e-3), 2000, 2048, seed=0)
    assert_one_gd_step(model, params, evaluation)


def test_two_shared_layers_beat_gd_and_match_gdpp(evaluation):
    """S1.3: 2 shared merged layers, Adam with cosine decay 3e-3 → 3e-5, batch 512, 3000
    steps (~6 s). Loss < 0.8 × GD-2 (observed 0.706: GD++ is 0.705) and ≤ 1.05 × tuned
    GD++-2 (observed ≤ 1.001). A constant lr 1e-3 needs ~8000 steps to leave the GD-2
    plateau (loss 0.155 at 3000 steps), hence the schedule."""
    tokens, targets, base = evaluation
    model = icl.LinearTransformer(D, 1, 2, form="merged")
    params = fit(model, Adam(cosine(3e-3, 3000, 3e-5), 0.9, 0.98), 3000, 512, seed=0)
    with use_backend("numpy", dtype="float32"):
        loss = icl.loss(model(params, tokens), targets)
    assert loss < 0.8 * base["gd2"][1], (loss, base["gd2"])
    assert loss <= 1.05 * base["gdpp2"][1], (loss, base["gdpp2"])
