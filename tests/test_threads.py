"""tinynim.threads: training loops run with TINYNIM_THREADS (default 1) BLAS/torch threads,
and the previous counts come back afterwards."""
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from tinynim.threads import limited, thread_count
from tinynim.train import fit


def blas_threads():
    """Thread counts of every BLAS/OpenMP library loaded, and torch's."""
    return sorted({lib["num_threads"] for lib in threadpool_info()}), torch.get_num_threads()


@pytest.fixture
def two_threads():
    """Every library at 2 threads, so that both the limit and the restore are visible."""
    before = torch.get_num_threads()
    with threadpool_limits(limits=2):
        torch.set_num_threads(2)
        yield
    torch.set_num_threads(before)


def test_thread_count_from_environment(monkeypatch):
    monkeypatch.delenv("TINYNIM_THREADS", raising=False)
    assert thread_count() == 1
    for raw, n in [("3", 3), ("0", None), ("auto", None), (" AUTO ", None)]:
        monkeypatch.setenv("TINYNIM_THREADS", raw)
        assert thread_count() == n
    for bad in ["-1", "two", "1.5", ""]:
        monkeypatch.setenv("TINYNIM_THREADS", bad)
        with pytest.raises(ValueError, match="TINYNIM_THREADS"):
            thread_count()


def test_limited_sets_and_restores(two_threads):
    assert blas_threads() == ([2], 2)
    with limited(1):
        assert blas_threads() == ([1], 1)
    assert blas_threads() == ([2], 2)
    with limited(None):
        assert blas_threads() == ([2], 2)
    for bad in [0, -2, 1.0, True]:
        with pytest.raises(ValueError, match="limited"):
            with limited(bad):
                pass


@pytest.mark.parametrize("setting, inside", [(None, ([1], 1)), ("2", ([2], 2)), ("auto", ([2], 2))])
def test_fit_runs_with_tinynim_threads(two_threads, monkeypatch, setting, inside):
    """fit reads TINYNIM_THREADS per call (default 1) and restores the counts after."""
    if setting is None:
        monkeypatch.delenv("TINYNIM_THREADS", raising=False)
    else:
        monkeypatch.setenv("TINYNIM_THREADS", setting)
    seen = []

    def loss_and_grads(params, batch, step):
        seen.append(blas_threads())
        return 0.0, params

    fit(loss_and_grads, {}, _NoOpt(), steps=2, log=None)
    assert seen == [inside, inside]
    assert blas_threads() == ([2], 2)


class _NoOpt:
    def init(self, params):
        return None

    def update(self, grads, state, params):
        return params, state
