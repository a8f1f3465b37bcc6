"""Save and load trees of arrays as one self-verifying file, ``<path>.npz``::

    save("runs/mlp", {"params": params, "opt": state}, metadata={"step": 100})
    tree, meta = load("runs/mlp", backend="torch")        # {"step": 100}

**Format** ``tinynim-checkpoint-2``: a NumPy ``.npz`` (zip) archive with one member per array
leaf, named by its index ``"0"``, ``"1"``, … (so any string key round-trips, ``/`` included),
and two more members:

* ``__tinynim__``: the JSON record (as uint8 bytes): format, tinynim version, backend the
  arrays came from, the structure of the tree and of the metadata (dicts, lists, tuples;
  bool/int/float/str/None stored inline), and every array's path, shape and dtype;
* ``__sha256__``: the sha256 of the record's bytes followed by every array's raw bytes in
  index order, so it covers values, structure, shapes, dtypes and metadata.

**Atomic.** The archive is written to a unique temporary file beside the target, flushed and
fsync'd, renamed over ``<path>.npz`` with :func:`os.replace` (one atomic rename), and the
directory is fsync'd. At every instant the path holds the old checkpoint or the new one,
complete. Concurrent savers to one path: the last rename wins, none fails; a reader opens the
file once and sees one complete version. A process killed mid-save may leave its hidden
temporary ``.<name>.npz.<random>.tmp`` behind (never a damaged checkpoint); any other failure
removes it and raises :class:`CheckpointError` naming the path and the cause.

**Exact round trips, or a refusal at save time.** Containers: ``dict`` with ``str`` keys,
``list``, ``tuple`` (exact types: subclasses such as namedtuples would come back as their
base). Leaves: ``None``, ``bool``, ``int``, ``float``, ``str`` (exact types) and arrays of
any backend with an Array API dtype (bool, (u)int8–64, float32/64, complex64/128); NumPy
scalars are arrays and come back as 0-d arrays. Anything else (object or float16 arrays,
Python complex, non-string keys, custom classes) is a :class:`CheckpointError` naming the
leaf. Metadata follows the same rules.

:func:`load` verifies everything and raises :class:`CheckpointError` naming the file and the
problem (missing file, unreadable or truncated archive, checksum mismatch, missing record
fields or members, shape/dtype disagreeing with the record). Arrays come back bit-exact in
their saved dtype, on the active or the named backend; ``dtype="float32"``/``"float64"``
converts the floating arrays only (rounding to nearest), any other `dtype` is an error.

**Format 1** (tinynim 0.1.0: ``<path>.npz`` of arrays named by path plus a ``<path>.json``
record whose sha256 covers the npz only) is still read, with the checks it allows: its tree
structure is not covered by a hash. :func:`save` always writes format 2; a format-1
``<path>.json`` left beside it is ignored from then on (delete it at will).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import numpy as np
import array_api_compat

from backends import BackendError
from tinynim.backend import namespace, resolve, to_numpy

FORMAT = "tinynim-checkpoint-2"
FORMAT_1 = "tinynim-checkpoint-1"
RECORD, DIGEST = "__tinynim__", "__sha256__"
FIELDS = ("format", "tinynim_version", "backend", "arrays", "tree", "metadata")
FIELDS_1 = ("format", "arrays", "tree", "sha256", "metadata")
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64", "complex64", "complex128")
_INLINE = (bool, int, float, str, type(None))


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupted, inconsistent, or cannot be saved exactly."""


def _paths(path):
    base = str(path)
    for suffix in (".npz", ".json"):
        base = base.removesuffix(suffix)
    return Path(base + ".npz"), Path(base + ".json")


def exists(path) -> bool:
    """Whether the checkpoint file ``<path>.npz`` exists (it is verified by :func:`load`)."""
    return _paths(path)[0].is_file()


def _backend_name(x) -> str:
    """The backend an array belongs to: "numpy", "torch", "cupy", "jax" or "array_api_strict"."""
    for name in ("numpy", "torch", "cupy", "jax"):
        if getattr(array_api_compat, f"is_{name}_array")(x):
            return name
    return "array_api_strict" if array_api_compat.is_array_api_strict_namespace(namespace(x)) else "?"


# -- save --------------------------------------------------------------------------------

def _encode(node, path, arrays, refuse):
    """Tree -> JSON-able structure; arrays are appended to `arrays` as (path, numpy, backend)."""
    kind = type(node)
    if kind is dict:
        bad = [k for k in node if type(k) is not str]
        if bad:
            refuse(path, f"dict keys must be strings, got {bad!r}")
        return {"dict": {k: _encode(v, f"{path}/{k}", arrays, refuse) for k, v in node.items()}}
    if kind in (list, tuple):
        return {kind.__name__: [_encode(v, f"{path}/{i}", arrays, refuse) for i, v in enumerate(node)]}
    if kind in _INLINE:
        return {"value": node}
    if not array_api_compat.is_array_api_obj(node):
        refuse(path, f"a {kind.__module__}.{kind.__qualname__} cannot be saved exactly (containers: "
                     "dict, list, tuple; leaves: arrays, bool, int, float, str, None)")
    try:
        a = np.asarray(to_numpy(node), order="C")
    except (TypeError, RuntimeError, ValueError) as err:      # e.g. torch bfloat16
        refuse(path, f"array of dtype {getattr(node, 'dtype', '?')} has no exact host copy ({err})")
    if a.dtype.name not in DTYPES:
        refuse(path, f"array dtype {a.dtype} is not an Array API dtype ({', '.join(DTYPES)})")
    arrays.append((path, a, _backend_name(node)))
    return {"array": len(arrays) - 1}


def _digest(record: bytes, arrays) -> str:
    h = hashlib.sha256(record)
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()


def save(path, tree, metadata=None):
    """Write `tree` and `metadata` atomically to ``<path>.npz`` (a trailing .npz/.json is
    dropped). See the module docstring for what can be saved and the guarantees."""
    from tinynim import __version__
    file, _ = _paths(path)

    def refuse(where, why):
        raise CheckpointError(f"checkpoint {file}: cannot save {where}: {why}")
    arrays = []
    record = {"format": FORMAT, "tinynim_version": __version__,
              "tree": _encode(tree, "tree", arrays, refuse),
              "metadata": _encode(metadata, "metadata", arrays, refuse)}
    backends = sorted({b for _, _, b in arrays})
    record["backend"] = backends[0] if len(backends) == 1 else backends
    record["arrays"] = [{"path": p, "shape": list(a.shape), "dtype": a.dtype.name} for p, a, _ in arrays]
    text = json.dumps(record).encode()
    members = {RECORD: np.frombuffer(text, np.uint8),
               DIGEST: np.frombuffer(_digest(text, [a for _, a, _ in arrays]).encode(), np.uint8)}
    members.update((str(i), a) for i, (_, a, _) in enumerate(arrays))
    _write_atomic(file, lambda f: np.savez(f, **members))


def _write_atomic(file: Path, write):
    """Unique temporary in file's directory -> write(f) -> flush, fsync -> os.replace -> fsync dir."""
    tmp = file.with_name(f".{file.name}.{secrets.token_hex(8)}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise CheckpointError(f"checkpoint {file}: cannot save: {err}") from err
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException as err:                      # also Ctrl-C: leave nothing behind
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointError(f"checkpoint {file}: cannot save: {err}") from err
        raise
    if os.name == "posix":                            # make the rename itself durable
        try:
            dir_fd = os.open(file.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:          # an unreadable directory, or a filesystem without directory fsync
            pass


# -- load --------------------------------------------------------------------------------

def _fields(record, needed, where):
    if not isinstance(record, dict):
        raise CheckpointError(f"checkpoint {where}: the record is not a JSON object")
    missing = [k for k in needed if k not in record]
    if missing:
        raise CheckpointError(f"checkpoint {where}: the record lacks the field(s) {', '.join(missing)}")


def _check_arrays(file, arrays: dict, expected: dict):
    """`arrays` and `expected` ({name: {"shape", "dtype"}}) agree on names, shapes, dtypes."""
    if set(arrays) != set(expected):
        raise CheckpointError(f"checkpoint {file}: arrays {sorted(arrays)} do not match the record "
                              f"{sorted(expected)}")
    for name, a in arrays.items():
        want = (tuple(expected[name]["shape"]), expected[name]["dtype"])
        if (a.shape, a.dtype.name) != want:
            raise CheckpointError(f"checkpoint {file}: array {name!r} has shape {a.shape} and dtype "
                                  f"{a.dtype.name} in the npz, but shape {want[0]} and dtype {want[1]} "
                                  f"in the record")


def _read(file: Path, data):
    """Format 2: (record, {index: array}) from the open archive `data`, verified."""
    missing = [m for m in (RECORD, DIGEST) if m not in data.files]
    if missing:
        raise CheckpointError(f"checkpoint {file}: the archive lacks the member(s) {', '.join(missing)}")
    text, digest = data[RECORD].tobytes(), data[DIGEST].tobytes().decode("ascii", "replace")
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {file}: the record is not valid JSON ({err})") from err
    _fields(record, FIELDS, file)
    if record["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {file}: format {record['format']!r} is not {FORMAT!r}")
    names = [m for m in data.files if m not in (RECORD, DIGEST)]
    arrays = {name: data[name] for name in names}
    expected = {str(i): spec for i, spec in enumerate(record["arrays"])}
    _check_arrays(file, arrays, expected)
    actual = _digest(text, [arrays[str(i)] for i in range(len(expected))])
    if actual != digest:
        raise CheckpointError(f"checkpoint {file}: sha256 mismatch (contents or structure altered): "
                              f"expected {digest}, got {actual}")
    return record, {i: arrays[str(i)] for i in range(len(expected))}


def _read_format_1(file: Path, json_file: Path, f, data):
    """Format 1: the npz `data` (open file `f`) beside `json_file`, verified as far as it allows."""
    try:
        record = json.loads(json_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {json_file}: not valid JSON ({err})") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT_1:
        raise CheckpointError(f"checkpoint {json_file}: not a tinynim checkpoint "
                              f"(format {FORMAT_1!r} expected)")
    _fields(record, FIELDS_1, json_file)
    f.seek(0)
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    if h.hexdigest() != record["sha256"]:
        raise CheckpointError(f"checkpoint {file}: sha256 mismatch (file truncated or corrupted): "
                              f"expected {record['sha256']}, got {h.hexdigest()}")
    arrays = {name: data[name] for name in data.files}
    _check_arrays(file, arrays, record["arrays"])
    plain_json = record["metadata"]                   # encodes without refusals: JSON types only
    return {**record, "metadata": _encode(plain_json, "metadata", [], refuse=None)}, arrays


def _decode(node, convert):
    (kind, value), = node.items()
    if kind == "dict":
        return {k: _decode(v, convert) for k, v in value.items()}
    if kind in ("list", "tuple"):
        items = [_decode(v, convert) for v in value]
        return items if kind == "list" else tuple(items)
    if kind == "value" and type(value) in _INLINE:
        return value
    if kind == "array":
        return convert(value)
    raise ValueError(f"unknown node {node!r}")


def load(path, *, backend=None, dtype=None):
    """Read a checkpoint written by :func:`save` (format 2, or format 1): ``(tree, metadata)``.

    backend: a name or adapter (default: the active backend). dtype: None (every array keeps
    its saved dtype), "float32" or "float64" (floating arrays are converted; others keep theirs).
    """
    if dtype not in (None, "float32", "float64"):
        raise ValueError(f"checkpoint.load: dtype must be None, 'float32' or 'float64' (it converts "
                         f"floating arrays only), got {dtype!r}")
    file, json_file = _paths(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file}: " + ("is a directory, not a checkpoint file"
                                                        if file.is_dir() else "file is missing"))
    adapter = resolve(backend)
    try:
        with open(file, "rb") as f, np.load(f, allow_pickle=False) as data:   # one open: one version
            if RECORD in data.files or DIGEST in data.files:
                record, arrays = _read(file, data)
            elif json_file.is_file():
                record, arrays = _read_format_1(file, json_file, f, data)
            else:
                raise CheckpointError(f"checkpoint {file}: the archive has no {RECORD} member (format 2) "
                                      f"and no {json_file.name} lies beside it (format 1)")
    except CheckpointError:
        raise
    except Exception as err:                          # zipfile/zlib/npy errors of many kinds
        raise CheckpointError(f"checkpoint {file}: cannot be read as npz (file truncated or "
                              f"corrupted?): {type(err).__name__}: {err}") from err

    def convert(ref):
        a = arrays[ref]
        target = dtype if dtype is not None and a.dtype.kind == "f" else a.dtype.name
        try:
            return adapter.asarray(a, target)
        except BackendError as err:
            raise CheckpointError(f"checkpoint {file}: array {ref!r} ({a.dtype}) cannot be put on "
                                  f"backend {adapter.name}: {err}") from err
    try:
        return _decode(record["tree"], convert), _decode(record["metadata"], convert)
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {file}: malformed tree in the record ({err!r})") from err
