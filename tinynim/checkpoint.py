"""Save and load trees of arrays: ``<path>.npz`` (the arrays) + ``<path>.json`` (the rest).

The JSON file records the tinynim version, the backend the arrays came from, the tree's
structure (dicts, lists, tuples; Python numbers, strings, booleans and None are stored
inline, so optimiser states with a ``step`` counter round-trip), every array's shape and
dtype, the sha256 of the npz file, and the user's metadata::

    save("runs/mlp", {"params": params, "opt": state}, metadata={"step": 100})
    tree, meta = load("runs/mlp", backend="torch")        # {"step": 100}

``load`` verifies everything it can and raises :class:`CheckpointError` naming the file
and the problem: a missing file, a checksum mismatch (truncated or corrupted npz), an
array whose shape or dtype differs from the JSON record. Arrays come back bit-exact, on
the active or the named backend, in their saved dtype unless `dtype` asks for another
floating dtype. The npz is written first and the JSON last, both through a temporary file,
so an interrupted save never leaves a pair that passes verification.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import array_api_compat

from tinynim.backend import namespace, resolve, to_numpy

FORMAT = "tinynim-checkpoint-1"
_INLINE = (bool, int, float, str, type(None))


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupted or inconsistent."""


def _paths(path):
    base = str(path)
    for suffix in (".npz", ".json"):
        base = base.removesuffix(suffix)
    return Path(base + ".npz"), Path(base + ".json")


def exists(path) -> bool:
    """Whether both files of the checkpoint at `path` exist (they are verified by :func:`load`)."""
    return all(file.is_file() for file in _paths(path))


def _backend_name(x) -> str:
    """The backend an array belongs to: "numpy", "torch", "cupy" or "array_api_strict"."""
    for name in ("numpy", "torch", "cupy"):
        if getattr(array_api_compat, f"is_{name}_array")(x):
            return name
    return "array_api_strict" if array_api_compat.is_array_api_strict_namespace(namespace(x)) else "?"


def _encode(tree, path, arrays):
    """Tree -> JSON-able structure; array leaves go to `arrays[path]` as numpy arrays."""
    if isinstance(tree, dict):
        bad = [k for k in tree if not isinstance(k, str)]
        if bad:
            raise CheckpointError(f"checkpoint: dict keys must be strings, got {bad!r} at {path or '/'}")
        return {"dict": {k: _encode(v, f"{path}{k}/", arrays) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [_encode(v, f"{path}{i}/", arrays) for i, v in enumerate(tree)]}
    if isinstance(tree, _INLINE):
        return {"value": tree}
    name = path.rstrip("/")
    arrays[name] = (to_numpy(tree), _backend_name(tree))
    return {"array": name}


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def _write(file: Path, data: bytes):
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, file)


def save(path, tree, metadata=None):
    """Write `tree` to ``<path>.npz`` and ``<path>.json`` (a trailing .npz/.json is dropped).

    `metadata`: anything JSON-serialisable, returned by :func:`load`.
    """
    from tinynim import __version__
    npz, meta_file = _paths(path)
    arrays = {}
    structure = _encode(tree, "", arrays)
    buf = io.BytesIO()
    np.savez(buf, **{name: a for name, (a, _) in arrays.items()})
    backends = sorted({b for _, b in arrays.values()})
    record = {
        "format": FORMAT, "tinynim_version": __version__,
        "backend": backends[0] if len(backends) == 1 else backends,
        "arrays": {name: {"shape": list(a.shape), "dtype": a.dtype.name} for name, (a, _) in arrays.items()},
        "tree": structure, "sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "metadata": metadata,
    }
    try:
        text = json.dumps(record, indent=1)
    except TypeError as err:
        raise CheckpointError(f"checkpoint {meta_file}: metadata is not JSON-serialisable: {err}") from err
    npz.parent.mkdir(parents=True, exist_ok=True)
    _write(npz, buf.getvalue())
    _write(meta_file, text.encode())


def _read_record(npz: Path, meta_file: Path) -> dict:
    for file in (meta_file, npz):
        if not file.is_file():
            raise CheckpointError(f"checkpoint {file}: file is missing")
    try:
        record = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {meta_file}: not valid JSON ({err})") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {meta_file}: not a tinynim checkpoint "
                              f"(format {FORMAT!r} expected)")
    digest = _sha256(npz)
    if digest != record["sha256"]:
        raise CheckpointError(f"checkpoint {npz}: sha256 mismatch (file truncated or corrupted): "
                              f"expected {record['sha256']}, got {digest}")
    return record


def _read_arrays(npz: Path, expected: dict) -> dict:
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as err:                      # zipfile/format errors of many kinds
        raise CheckpointError(f"checkpoint {npz}: cannot be read as npz ({err})") from err
    if set(arrays) != set(expected):
        raise CheckpointError(f"checkpoint {npz}: arrays {sorted(arrays)} do not match the JSON "
                              f"record {sorted(expected)}")
    for name, a in arrays.items():
        want = (tuple(expected[name]["shape"]), expected[name]["dtype"])
        if (a.shape, a.dtype.name) != want:
            raise CheckpointError(f"checkpoint {npz}: array {name!r} has shape {a.shape} and dtype "
                                  f"{a.dtype.name} in the npz, but shape {want[0]} and dtype {want[1]} "
                                  f"in the JSON")
    return arrays


def _decode(node, convert):
    (kind, value), = node.items()
    if kind == "dict":
        return {k: _decode(v, convert) for k, v in value.items()}
    if kind in ("list", "tuple"):
        items = [_decode(v, convert) for v in value]
        return items if kind == "list" else tuple(items)
    return value if kind == "value" else convert(value)


def load(path, *, backend=None, dtype=None):
    """Read a checkpoint written by :func:`save`: ``(tree, metadata)``.

    backend: a name or adapter (default: the active backend). dtype: e.g. "float32" to
    cast floating arrays (default: each array keeps its saved dtype).
    """
    npz, meta_file = _paths(path)
    record = _read_record(npz, meta_file)
    arrays = _read_arrays(npz, record["arrays"])
    adapter = resolve(backend)

    def convert(name):
        a = arrays[name]
        if a.dtype.kind == "f":
            return adapter.asarray(a, dtype or a.dtype.name)
        return adapter.asarray(a)
    return _decode(record["tree"], convert), record["metadata"]
