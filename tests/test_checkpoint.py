"""Checkpoints: bit-exact round trips, cross-backend loading, and every verification error."""
import hashlib
import io
import json

import numpy as np
import pytest

import tinynim
from tinynim.backend import use_backend
from tinynim.checkpoint import CheckpointError, exists, load, save
from tinynim.optim import Adam
from tinynim.random import RNG
from tinynim.tree import leaves_with_paths


def _tree(backend):
    rng = RNG(0)
    return {"layer": {"W": rng.normal((3, 4)), "b": backend.asarray(rng.normal(4, host=True), "float32")},
            "ids": rng.integers(0, 9, (2, 2)), "mask": backend.asarray(np.array([True, False])),
            "stack": [rng.normal(2), (rng.normal(()), 7)], "step": 12, "lr": 0.1, "name": "mlp",
            "none": None}


def _assert_same(a, b):
    """Same structure, same Python leaves, arrays bit-identical with the same dtype."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif a is None or isinstance(a, (bool, int, float, str)):
        assert a == b
    else:
        x, y = tinynim.to_numpy(a), tinynim.to_numpy(b)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_round_trip_is_bit_exact(backend, tmp_path):
    tree = _tree(backend)
    save(tmp_path / "ck", tree, metadata={"note": "hi", "losses": [0.1, 1 / 3]})
    loaded, meta = load(tmp_path / "ck")
    _assert_same(tree, loaded)
    assert meta == {"note": "hi", "losses": [0.1, 1 / 3]}
    assert type(loaded["layer"]["W"]) is type(tree["layer"]["W"])
    assert json.loads((tmp_path / "ck.json").read_text())["backend"] == backend.name


def test_json_record(f64, tmp_path):
    tree = _tree(f64)
    save(tmp_path / "ck.npz", tree, metadata={"k": 1})           # the suffix is dropped
    record = json.loads((tmp_path / "ck.json").read_text())
    assert record["tinynim_version"] == tinynim.__version__
    assert record["backend"] == "numpy"
    assert record["arrays"]["layer/W"] == {"shape": [3, 4], "dtype": "float64"}
    assert record["arrays"]["layer/b"] == {"shape": [4], "dtype": "float32"}
    assert record["arrays"]["ids"] == {"shape": [2, 2], "dtype": "int64"}
    assert record["sha256"] == hashlib.sha256((tmp_path / "ck.npz").read_bytes()).hexdigest()
    assert record["metadata"] == {"k": 1}


@pytest.mark.parametrize("target", ["torch", "array_api_strict", "numpy"])
def test_load_onto_another_backend(tmp_path, target):
    if target == "torch":
        pytest.importorskip("torch")
    with use_backend("numpy", dtype="float64") as b:
        tree = _tree(b)
        save(tmp_path / "ck", tree)
    loaded, _ = load(tmp_path / "ck", backend=target)
    with use_backend(target) as adapter:
        assert type(loaded["layer"]["W"]) is type(adapter.asarray(np.zeros(1)))
    pairs = list(zip(leaves_with_paths(tree), leaves_with_paths(loaded)))
    assert [p for (p, _), _ in pairs] == [p for _, (p, _) in pairs]
    for (path, a), (_, b) in pairs:
        if hasattr(a, "shape"):
            x, y = tinynim.to_numpy(a), tinynim.to_numpy(b)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), path
        else:
            assert a == b and type(a) is type(b), path


def test_load_with_dtype_casts_floats_only(f64, tmp_path):
    tree = _tree(f64)
    save(tmp_path / "ck", tree)
    loaded, _ = load(tmp_path / "ck", dtype="float32")
    assert loaded["layer"]["W"].dtype == np.float32 and loaded["ids"].dtype == np.int64
    np.testing.assert_array_equal(loaded["layer"]["W"], tree["layer"]["W"].astype(np.float32))


def test_optimizer_state_round_trip(f64, tmp_path):
    """Resuming from a saved Adam state gives bit-identical updates."""
    params = {"W": RNG(1).normal((2, 3))}
    opt = Adam(0.1)
    grads = {"W": RNG(2).normal((2, 3))}
    params, state = opt.update(grads, opt.init(params), params)
    save(tmp_path / "ck", {"params": params, "opt": state})
    loaded, _ = load(tmp_path / "ck")
    assert loaded["opt"]["step"] == 1 and isinstance(loaded["opt"]["step"], int)
    _assert_same(opt.update(grads, state, params), opt.update(grads, loaded["opt"], loaded["params"]))


def _saved(tmp_path):
    with use_backend("numpy", dtype="float64") as b:
        save(tmp_path / "ck", {"W": b.asarray(np.ones((2, 3))), "n": b.asarray(np.arange(3))})
    return tmp_path / "ck.npz", tmp_path / "ck.json"


def test_missing_files(tmp_path):
    npz, js = _saved(tmp_path)
    assert exists(tmp_path / "ck")
    npz.unlink()
    assert not exists(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=rf"checkpoint {npz}: file is missing"):
        load(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=rf"checkpoint {tmp_path / 'other.json'}: file is missing"):
        load(tmp_path / "other")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_npz(tmp_path, damage):
    npz, _ = _saved(tmp_path)
    data = npz.read_bytes()
    data = data[: len(data) // 2] if damage == "truncate" else data[:100] + bytes([data[100] ^ 1]) + data[101:]
    npz.write_bytes(data)
    with pytest.raises(CheckpointError, match=rf"checkpoint {npz}: sha256 mismatch \(file truncated or corrupted\)"):
        load(tmp_path / "ck")


def _replace_npz(npz, js, arrays):
    """Write different arrays and a matching checksum, so only the shape/dtype check can fail."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz.write_bytes(buf.getvalue())
    record = json.loads(js.read_text())
    record["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    js.write_text(json.dumps(record))


def test_shape_and_dtype_mismatch(tmp_path):
    npz, js = _saved(tmp_path)
    _replace_npz(npz, js, {"W": np.ones((3, 2)), "n": np.arange(3)})
    with pytest.raises(CheckpointError, match=rf"checkpoint {npz}: array 'W' has shape \(3, 2\) and dtype "
                                              r"float64 in the npz, but shape \(2, 3\) and dtype float64 in the JSON"):
        load(tmp_path / "ck")
    _replace_npz(npz, js, {"W": np.ones((2, 3)), "n": np.arange(3, dtype=np.int32)})
    with pytest.raises(CheckpointError, match=r"array 'n' has shape \(3,\) and dtype int32 in the npz, "
                                              r"but shape \(3,\) and dtype int64 in the JSON"):
        load(tmp_path / "ck")
    _replace_npz(npz, js, {"W": np.ones((2, 3))})
    with pytest.raises(CheckpointError, match=r"arrays \['W'\] do not match the JSON record \['W', 'n'\]"):
        load(tmp_path / "ck")


def test_bad_json_and_bad_inputs(tmp_path):
    _, js = _saved(tmp_path)
    js.write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"checkpoint {js}: not valid JSON"):
        load(tmp_path / "ck")
    js.write_text("{}")
    with pytest.raises(CheckpointError, match="not a tinynim checkpoint"):
        load(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"dict keys must be strings, got \[1\] at a/"):
        save(tmp_path / "x", {"a": {1: np.ones(2)}})
    with pytest.raises(CheckpointError, match="metadata is not JSON-serialisable"):
        save(tmp_path / "x", {"a": np.ones(2)}, metadata={"f": object()})
    assert isinstance(CheckpointError("x"), ValueError)
