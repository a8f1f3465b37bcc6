"""The benchmark twins compute the same thing: for every case, one step of the torch-autograd
and JAX versions gives tinynim's loss and gradient norm (float32, relative 2e-3: sums in a
different order agree to ~1e-6, while a missing term or a wrong scale is off by far more).
No timing here: speed is measured by ``python -m benchmarks.run``, never in unit tests."""
import pytest

from benchmarks.common import REFERENCE, block, summary, unavailable
from benchmarks.run import RTOL, float32_backend, load_cases

CASES = load_cases()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_implementation_matches_tinynim(name):
    case = CASES[name]
    impls = [impl for impl in case.impls if unavailable(impl) is None]
    with float32_backend():
        results = {impl: summary(block(case.setup(impl)())) for impl in impls}
    ref_loss, ref_norm = results[REFERENCE]
    for impl, (loss, norm) in results.items():
        assert abs(loss - ref_loss) <= RTOL * abs(ref_loss), f"{name}: {impl} loss {loss} vs tinynim {ref_loss}"
        assert abs(norm - ref_norm) <= RTOL * abs(ref_norm), f"{name}: {impl} grad norm {norm} vs {ref_norm}"
