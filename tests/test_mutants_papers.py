"""Tests written for mutants of the newer modules (P6 few-shot, P7, P8 colouring, P9, ES,
relaxed risk, hypernetworks, compile) that survived their mapped test files (issue 19,
``python tools/mutate.py --paths <those files> --sample 120 --seed 1 --mapped-only``): each
one fails with that single-line bug (checked by applying it) and passes on the correct code,
and asserts an independent formula or property, not a value the code under test computed:
integer losses ranked in float64; Eq. 18's φ range for any payoffs; solve_pair's refusal of
a non-square A; the training history and metrics of the P9 pools against pairwise sums; the
symmetric relative error; uniform colourings against the chromatic polynomial; the
hyperteacher's generated layers; evaluation and training streams that do not collide; the
ICL training loss; reseeding; the ICL model names; the P6 teacher handed to evaluation and
the counterexample's code kinds; the P9 training log; P2's per-position loss. Whole file ≈ 2 s.
"""
import dataclasses

import numpy as np
import pytest

from tinynim.backend import asarray, zeros
from tinynim.es import centered_ranks
from tinynim.random import RNG
from tinynim.tree import leaves
from tasks import compositional_icl as ci
from tasks import graph_colouring as gc
from tasks import ipd
from tasks import learning_aware_pg as lp
from tasks import mesa_optimization as p2
from tasks import modular_teacher as mt
from tasks import sampled_shaping as ss
from tasks import modular_fewshot as mf
from tasks.modular_fewshot import FewShot, few_shot_learner, hyperteacher
from helpers import host


def test_centered_ranks_of_integer_losses(backend):
    """Integer losses (e.g. counts of failures) are ranked like the same floats and give a
    float64 result on every backend (an integer array is not divided as is: torch would give
    float32, array_api_strict refuses integer true division)."""
    x = np.array([[3, 1, 4, 1], [5, 9, 2, 6]])
    got = centered_ranks(backend.asarray(x))
    assert got.dtype == backend.xp.float64
    np.testing.assert_array_equal(host(got), host(centered_ranks(backend.asarray(x.astype(np.float64)))))


# -- tasks/ipd.py: zero-determinant strategies --------------------------------------------------

@pytest.mark.parametrize("payoffs", [(1.0, -1.0, 2.0, 0.0), (3.0, 0.0, 5.0, 1.0)])
@pytest.mark.parametrize("chi", [1.0, 2.0, 3.5])
def test_zd_range_ends_where_a_probability_reaches_0(payoffs, chi):
    """Eq. 18's admissible φ: (0, (P − S)/((P − S) + χ(T − P))] for any payoffs (the classic
    (3, 0, 5, 1) has P ≠ 0, unlike the default). At its end every probability lies in [0, 1]
    and one of them is 0 (the range cannot be larger); just past it zd_strategy refuses."""
    R, S, T, P = payoffs
    limit = (P - S) / ((P - S) + chi * (T - P))
    p = np.array(ipd.zd_strategy(chi, limit * (1 - 1e-12), payoffs))
    assert np.all(p >= -1e-12) and np.all(p <= 1 + 1e-12) and np.min(p[:3]) <= 1e-10
    with pytest.raises(ValueError, match="zd_strategy"):
        ipd.zd_strategy(chi, limit * (1 + 1e-9), payoffs)


def test_solve_pair_refuses_a_non_square_matrix(f64):
    """A (n, m) with m ≠ n has no inverse: solve_pair refuses it (b and c sized by either side)."""
    A = asarray(np.ones((2, 3, 4)))
    for k in (3, 4):
        with pytest.raises(ValueError, match=r"solve_pair: expected A \(\.\.\., n, n\)"):
            ipd.solve_pair(A, asarray(np.ones((2, k))), asarray(np.ones((2, k))))


# -- tasks/learning_aware_pg.py: the training history --------------------------------------------

def _mean_over_pairs(phi, gamma):
    """Mean over ordered pairs j ≠ k (the agent and itself when K = 1) of the per-step reward
    (1 − γ) J(φ_k, φ_j), one pair at a time; phi (K, 5) host."""
    K = phi.shape[0]
    pairs = [(k, j) for k in range(K) for j in range(K) if j != k] or [(0, 0)]
    return np.mean([(1 - gamma) * float(host(ipd.values(asarray(phi[k]), asarray(phi[j]), gamma)[0]))
                    for k, j in pairs])


@pytest.mark.parametrize("K", [1, 2, 3])
def test_train_population_history_is_the_mean_reward_over_pairs(f64, K):
    """history["meta_vs_meta"] of each seed is the mean over ordered pairs j ≠ k (the agent and
    itself when K = 1) of the per-step reward (1 − γ) J(φ_k, φ_j), computed here pair by pair;
    history["p"] is σ(φ); the last record is the returned φ; `log` hears of every record."""
    run = lp.AnalyticRun(p_naive=0.5, n_meta=K, n_naive=2, n_steps=1, steps=2, seeds=2, gamma=0.9)
    messages = []
    phi, history = lp.train_population(run, quick_mode=False, record_every=1, log=messages.append)
    assert list(history["step"]) == [0, 1, 2]
    assert [m.split(":")[0] for m in messages] == ["step 0", "step 1", "step 2"]
    assert history["meta_vs_meta"].shape == (3, 2) and history["p"].shape == (3, 2, K, 5)
    phi = host(phi)
    np.testing.assert_allclose(history["p"][-1], 1 / (1 + np.exp(-phi)), rtol=1e-12)
    for s in range(2):
        assert history["meta_vs_meta"][-1, s] == pytest.approx(_mean_over_pairs(phi[s], run.gamma), rel=1e-12)


def test_relative_error_is_symmetric_and_at_most_1(f64):
    """analytic_errors' relative error ‖a − b‖/(‖a‖ + ‖b‖): symmetric in its arguments, 1 for
    opposite vectors or against zero (the triangle inequality's bound), 0 for equal ones."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    assert lp._rel(a, b) == pytest.approx(lp._rel(b, a), rel=1e-15)
    assert lp._rel(a, b) == pytest.approx(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)), rel=1e-15)
    assert lp._rel(a, -a) == pytest.approx(1.0, rel=1e-15) and lp._rel(np.zeros(3), b[0, :3]) == pytest.approx(1.0)
    assert lp._rel(a, a) == 0.0


# -- tasks/graph_colouring.py: the metrics of a colouring ----------------------------------------

def test_colouring_metrics_of_uniform_colours(f64):
    """A stand-in network with all-zero logits colours every node uniformly at random. Then the
    expected conflicts per edge are exactly Σ_c (1/C)² = 1/C, the floor; the sampled conflicts
    estimate 1/C, and the valid rate the chromatic polynomial of the cycle over C^n,
    ((C − 1)^n + (−1)^n (C − 1))/C^n = 66/729 ≈ 0.0905 for C_6 with 3 colours. Tolerance 0.01:
    ≥ 4 standard errors of either rate over 20 000 draws (s.e. ≤ 0.0025)."""
    run = gc.ColouringRun(n=6, colours=3)
    zero_logits = lambda params, z, adj: zeros((z.shape[0], run.n, run.colours))  # noqa: E731
    m = gc.colouring_metrics(zero_logits, None, run, n_eval=20_000, ks=(2,))
    C, n = run.colours, run.n
    assert m["expected_conflicts"] == pytest.approx(1 / C, rel=1e-12)
    assert m["floor"] == pytest.approx(1 / C, rel=1e-12)
    assert m["spread"] == 0.0
    assert abs(m["sampled_conflicts"] - 1 / C) < 0.01
    assert abs(m["valid_rate"] - ((C - 1) ** n + (-1) ** n * (C - 1)) / C ** n) < 0.01
    assert abs(m["best_of_2"] - (1 - (1 - 66 / 729) ** 2)) < 0.01


# -- tasks/modular_fewshot.py: the teacher's layout and the evaluation stream ---------------------

def _tiny_few_shot(**kw):
    return FewShot(M=3, K=1, n_in=3, hidden=4, classes=2, shots=4, width=4, M_student=2, inner_steps=1, **kw)


def test_hyperteacher_generates_the_two_hidden_layers(f64):
    """The official teacher: input and output layers shared (a Linear's W), the two hidden
    layers generated from the code of 2M entries (a HyperLinear's Θ of M₂ = 2M modules)."""
    fs = _tiny_few_shot()
    t = hyperteacher(fs)
    sizes = [fs.n_in, fs.hidden, fs.hidden, fs.hidden, fs.classes]
    for i in ("0", "3"):
        assert set(t.params[i]) <= {"W", "b"} and tuple(t.params[i]["W"].shape) == (sizes[int(i)], sizes[int(i) + 1])
    for i in ("1", "2"):
        assert set(t.params[i]) == {"Theta"} and tuple(t.params[i]["Theta"].shape) == (2 * fs.M, fs.hidden, fs.hidden)


def test_few_shot_evaluation_uses_its_own_stream(f64, monkeypatch):
    """The evaluation episodes are reproducible per seed and come from a stream that none of
    the teacher's, split's, learner's or training's seeds (fs.seed … fs.seed + 4) starts: the
    support inputs differ from the first uniform draws of each of those streams."""
    fs = _tiny_few_shot()
    teacher, learner = hyperteacher(fs), few_shot_learner(fs)
    drawn = []
    episode = mf._episode
    monkeypatch.setattr(mf, "_episode", lambda *a: drawn.append(episode(*a)) or drawn[-1])
    for seed in (0, 0, 1):
        mf.few_shot_accuracy(fs, teacher, learner, teacher.train[:2], seed=seed, min_tasks=2)
    xs = [host(d[0][0]) for d in drawn]
    np.testing.assert_array_equal(xs[0], xs[1])
    assert not np.array_equal(xs[0], xs[2])
    for k in range(5):
        other = host(RNG(fs.seed + k).uniform(xs[0].shape, -1.0, 1.0))
        assert not np.allclose(xs[0], other) and not np.allclose(xs[2], other)



def test_few_shot_training_draws_from_its_own_stream(f64, monkeypatch):
    """Meta-training draws its tasks and episodes from RNG(fs.seed + 4): the first step's
    task indices and support/query inputs are that stream's draws (the module's other streams,
    fs.seed … fs.seed + 3, are the teacher, the split, the targets' reference inputs and the
    learner: a shared stream would replay their draws as training data)."""
    fs = _tiny_few_shot(tasks_per_step=3)
    seen = {}

    def fake_fit(loss_and_grads, slow, opt, **kw):
        loss_and_grads(slow, None, 0)
        return slow, {}
    monkeypatch.setattr(mf, "fit", fake_fit)
    monkeypatch.setattr(mf, "query_gradients", lambda fs_, net, slow, support, query: seen.update(
        support=support, query=query) or (0.0, slow))
    teacher, _, _ = mf.few_shot_train(fs, quick_mode=True)

    def first_step(rng):
        idx = teacher.train[rng.integers(0, len(teacher.train), (fs.tasks_per_step,), host=True)]
        return mf._episode(fs, teacher, rng, idx)
    (xs, ys), (xq, yq) = first_step(RNG(fs.seed + 4))
    for got, want in ((seen["support"][0], xs), (seen["support"][1], ys), (seen["query"][0], xq), (seen["query"][1], yq)):
        np.testing.assert_array_equal(host(got), host(want))
    for k in range(4):
        assert not np.allclose(host(seen["support"][0]), host(first_step(RNG(fs.seed + k))[0][0]))

# -- tasks/compositional_icl.py: the documented streams of a run --------------------------------

def test_icl_build_makes_the_named_model_and_refuses_others():
    """ICLExperiment.build: "transformer" and "bottleneck" build their own class; any other name
    is a clear error, not silently one of the two."""
    assert isinstance(ci.ICLExperiment(model="transformer").build(), ci.ICLTransformer)
    assert isinstance(ci.ICLExperiment(model="bottleneck").build(), ci.BottleneckICL)
    with pytest.raises(ValueError, match="model must be 'transformer' or 'bottleneck', got 'mlp'"):
        ci.ICLExperiment(model="mlp").build()


def test_icl_train_draws_init_and_data_from_the_documented_streams(f64, monkeypatch):
    """ICLExperiment: teacher RNG(seed), model RNG(seed + 1), data RNG(seed + 2): the first
    training batch and the initial parameters are those streams' draws, and differ (a batch
    drawn from the init stream would correlate data and weights)."""
    exp = ci.ICLExperiment(seed=3, M=6, n=2, h=3, o=1, n_context=3, n_query=2, d_model=4, n_layers=1, n_heads=1,
                           d_mlp=4, batch=2, steps=1)
    seen = {}

    def fake_fit(loss_and_grads, params, opt, *, data, **kw):
        seen.update(params=params, batch=data(0), step=loss_and_grads)
        return params, {}
    monkeypatch.setattr(ci, "fit", fake_fit)
    _, _, _, ev = ci.train(exp, quick_mode=True)
    expected = ci.sample_episodes(RNG(exp.seed + 2), ev["teacher"], ci.support(exp.support, exp.M), exp.batch,
                                  exp.n_context, exp.n_query)[0]
    np.testing.assert_array_equal(host(seen["batch"]), host(expected))
    for got, ref in zip(leaves(seen["params"]), leaves(exp.build().init(RNG(exp.seed + 1))), strict=True):
        np.testing.assert_array_equal(host(got), host(ref))
    # the training loss: ½ mean over episodes of the squared error summed over the queries' targets
    model, batch = exp.build(), seen["batch"]
    err = host(model(seen["params"], batch, n_context=exp.n_context)) - host(batch)[:, exp.n_context:, exp.n:]
    loss, _ = seen["step"](seen["params"], batch, 0)
    assert float(loss) == pytest.approx(0.5 * np.mean(np.sum(err ** 2, axis=(1, 2))), rel=1e-12)
    wrong = ci.sample_episodes(RNG(exp.seed + 1), ev["teacher"], ci.support(exp.support, exp.M), exp.batch,
                               exp.n_context, exp.n_query)[0]
    assert not np.allclose(host(seen["batch"]), host(wrong))



@pytest.mark.parametrize("K", [1, 2, 3])
def test_population_metrics_meta_vs_meta_is_the_mean_over_pairs(f64, K):
    """population_metrics' meta_vs_meta: per seed, the mean over ordered pairs j ≠ k (itself
    when K = 1) of (1 − γ) J(φ_k, φ_j), computed here pair by pair; p is σ(φ)."""
    run = lp.AnalyticRun(p_naive=1.0, n_meta=K, n_steps=1, seeds=2, gamma=0.8)
    rng = RNG(K)
    phi, naive = rng.normal((2, K, 5)), rng.normal((2, K, 2, 5))
    m = lp.population_metrics(run, phi, naive)
    h = host(phi)
    np.testing.assert_allclose(m["p"], 1 / (1 + np.exp(-h)), rtol=1e-12)
    for s in range(2):
        assert m["meta_vs_meta"][s] == pytest.approx(_mean_over_pairs(h[s], run.gamma), rel=1e-12)

def test_pool_findings_meet_co_players_fresh_from_training(f64, monkeypatch):
    """pool_findings measures against a fresh meta-batch of naive co-players: not the draws of
    the training stream RNG(seed + 1000 · offset) (they would repeat the initial population),
    and other co-players for each seed offset (the replicates of tools/claims.py observe are
    independent evaluations, not one evaluation set reused)."""
    run = lp.AnalyticRun(p_naive=1.0, n_meta=2, seeds=2)
    seen = {}

    def fake_metrics(run_, phi, naive):
        seen["naive"] = host(naive)
        return {k: np.zeros(run.seeds) for k in ("meta_vs_naive", "naive_vs_meta", "chi", "zd_residual", "meta_vs_meta")}
    monkeypatch.setattr(lp, "population_metrics", fake_metrics)
    drawn = []
    for offset in (0, 1, 2):
        lp.pool_findings(run, asarray(np.zeros((run.seeds, run.n_meta, 5))), seed_offset=offset)
        assert seen["naive"].shape == (run.seeds, run.n_meta, 32, 5)
        training = host(RNG(run.seed + 1000 * offset).normal(seen["naive"].shape))
        assert not np.allclose(seen["naive"], training)
        drawn.append(seen["naive"])
    assert not any(np.allclose(drawn[i], drawn[j]) for i in range(3) for j in range(i))


def test_train_colouring_descends_the_expected_conflicts_of_its_graph(f64):
    """The first recorded loss of train_colouring is the expected conflicts per edge of the
    initial network on the run's graph C_n(jumps) and first noise batch (the documented
    streams: model RNG(seed), data RNG([seed, 200])), recomputed here by the edge sum
    Σ_{u~v} Σ_c p_uc p_vc / (|E| B)."""
    run = gc.ColouringRun(n=7, jumps=(1, 2), colours=3, width=4, rounds=1, batch=3, steps=1)
    _, _, history = gc.train_colouring(run, quick_mode=False)
    model = gc.colouring_net(run.d_noise, run.width, run.rounds, run.colours)
    A = gc.circulant(run.n, run.jumps)
    z = gc.node_inputs(run, RNG(np.random.default_rng([run.seed, 200])), run.batch)
    logits = host(model(model.init(RNG(run.seed)), z, adj=asarray(A)))
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    edges = np.argwhere(np.triu(A) > 0)
    assert len(edges) == 14                                          # 7 nodes, each with 4 neighbours
    ref = np.sum(p[:, edges[:, 0], :] * p[:, edges[:, 1], :]) / (len(edges) * run.batch)
    assert float(history["loss"][0]) == pytest.approx(ref, rel=1e-12)


def test_reseeded_shifts_the_seed(f64):
    """seed_offset k runs the experiment of seed `seed + k` (a non-zero base seed stays in)."""
    assert FewShot(seed=5).reseeded(2).seed == 7 and FewShot(seed=5).reseeded(0) == FewShot(seed=5)
    assert ci.ICLExperiment(seed=5).reseeded(2).seed == 7
    assert mt.MetaExperiment(support="ring", seed=5).reseeded(2).seed == 7


def test_train_sampled_starts_from_its_seed_and_offset(f64):
    """train_sampled's stream depends on the run's seed and on the seed offset: seeds 0 and 1
    (offset 0) and offsets 0 and 1 (seed 0) each train to different θ after one step."""
    run = ss.SampledRun(n_coplayers=2, B=2, M=2, T=2, steps=1, seeds=1)
    theta = lambda r, k: host(ss.train_sampled(r, quick_mode=False, seed_offset=k)[0])   # noqa: E731
    base = theta(run, 0)
    assert not np.array_equal(theta(dataclasses.replace(run, seed=1), 0), base)
    assert not np.array_equal(theta(run, 1), base)


# -- tasks/modular_teacher.py, tasks/sampled_shaping.py, tasks/mesa_optimization.py ---------------

def test_modular_measure_evaluates_the_trained_teacher(monkeypatch):
    """measure(experiment) hands evaluate the teacher (net, params) in that order, as
    meta_train returned it, with the trained student."""
    seen = {}
    net, tp, student, params, z0 = (object() for _ in range(5))
    monkeypatch.setattr(mt, "meta_train", lambda exp, **kw: ((net, tp), student, params, z0, None))
    monkeypatch.setattr(mt, "evaluate", lambda exp, teacher, *args, **kw: seen.update(teacher=teacher, args=args) or {})
    mt.measure("ring", quick_mode=True)
    assert seen["teacher"][0] is net and seen["teacher"][1] is tp
    assert seen["args"][0] is student and seen["args"][1] is params and seen["args"][2] is z0


def test_modular_counterexample_is_probed_on_continuous_codes(monkeypatch):
    """construction_errors: the counterexample's training support and the bridge are probed
    with continuous codes (dense weights on the mask, the stronger check), the OOD family with
    discrete ones, as its docstring says."""
    kinds, original = {}, mt.sample_codes
    ood = mt.masks_from([(0, 5)], 6).tolist()
    bridge = mt.masks_from([(2, 3)], 6).tolist()

    def spy(rng, masks, count, kind="continuous"):
        name = "ood" if masks.tolist() == ood else "bridge" if masks.tolist() == bridge else "train"
        kinds[name] = kind
        return original(rng, masks, count, kind)
    monkeypatch.setattr(mt, "sample_codes", spy)
    mt.construction_errors(0)
    assert kinds == {"train": "continuous", "ood": "discrete", "bridge": "continuous"}


def test_train_sampled_logs_five_times_with_the_step_reward(f64):
    """train_sampled(log=...) reports steps 0, s/5, 2s/5, ... with each estimator's mean
    per-step meta reward of that step (the training history's row, to the 3 printed digits)."""
    run = ss.SampledRun(n_coplayers=2, B=2, M=2, T=2, steps=10, seeds=1)
    lines = []
    _, history = ss.train_sampled(run, quick_mode=False, log=lines.append)
    assert [int(line.split(":")[0].split()[1]) for line in lines] == [0, 2, 4, 6, 8]
    for line, step in zip(lines, (0, 2, 4, 6, 8)):
        values = [float(part.split()[-1]) for part in line.split(": per-step meta reward ")[1].split(", ")]
        np.testing.assert_allclose(values, history[step].mean(axis=-1), atol=5e-4)


def test_position_losses_is_half_the_squared_error_per_position(f64):
    """position_losses: ½ Σ_d (ŝ − s)² averaged over sequences, per position, against a loop."""
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
    want = [sum(0.5 * sum((pred[b, t, d] - target[b, t, d]) ** 2 for d in range(2)) for b in range(3)) / 3
            for t in range(4)]
    np.testing.assert_allclose(p2.position_losses(asarray(pred), asarray(target)), want, rtol=1e-12)
