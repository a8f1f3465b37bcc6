"""Parameter trees: nested dicts (and tuples/lists) whose leaves are arrays.

Params and grads share one structure, so everything an optimiser or a gradient check needs
is a walk over leaves. ``None`` leaves (e.g. ``dx`` of an Embedding) are kept as ``None``.
Paths name leaves as ``"block/attn/Wq"``.
"""
from __future__ import annotations

import math

from tinynim.backend import namespace


def tree_map(f, tree, *rest):
    """Apply `f` leaf-wise over trees of identical structure; ``None`` leaves stay ``None``."""
    if isinstance(tree, dict):
        if any(set(r) != set(tree) for r in rest):
            raise ValueError(f"tree_map: key mismatch {sorted(tree)} vs {[sorted(r) for r in rest]}")
        return {k: tree_map(f, tree[k], *(r[k] for r in rest)) for k in tree}
    if isinstance(tree, (list, tuple)):
        if any(len(r) != len(tree) for r in rest):
            raise ValueError("tree_map: sequence length mismatch")
        return type(tree)(tree_map(f, *xs) for xs in zip(tree, *rest))
    if tree is None:
        return None
    return f(tree, *rest)


def leaves_with_paths(tree, prefix=""):
    """``[(path, leaf), ...]`` in a deterministic order (dict keys sorted), skipping None."""
    if isinstance(tree, dict):
        return [p for k in sorted(tree) for p in leaves_with_paths(tree[k], f"{prefix}{k}/")]
    if isinstance(tree, (list, tuple)):
        return [p for i, t in enumerate(tree) for p in leaves_with_paths(t, f"{prefix}{i}/")]
    return [] if tree is None else [(prefix.rstrip("/"), tree)]


def leaves(tree):
    return [leaf for _, leaf in leaves_with_paths(tree)]


def add(a, b):
    return tree_map(lambda x, y: x + y, a, b)


def sub(a, b):
    return tree_map(lambda x, y: x - y, a, b)


def scale(a, c):
    return tree_map(lambda x: c * x, a)


def axpy(c, x, y):
    """c·x + y, leaf-wise."""
    return tree_map(lambda u, v: c * u + v, x, y)


def zeros_like(tree):
    return tree_map(lambda x: namespace(x).zeros_like(x), tree)


def vdot(a, b) -> float:
    """Σ over leaves of ⟨a, b⟩ (a Python float)."""
    total = 0.0
    for x, y in zip(leaves(a), leaves(b)):
        xp = namespace(x, y)
        total += float(xp.sum(x * y))
    return total


def global_norm(tree) -> float:
    """√(Σ over leaves of ‖leaf‖²)."""
    return math.sqrt(vdot(tree, tree))


def flatten(tree):
    """Tree -> (1-D vector, spec). `spec` restores the structure with :func:`unflatten`."""
    pairs = leaves_with_paths(tree)
    if not pairs:
        raise ValueError("flatten: the tree has no array leaves")
    xp = namespace(*[leaf for _, leaf in pairs])
    vec = xp.concat([xp.reshape(leaf, (-1,)) for _, leaf in pairs])
    return vec, (tree, [(p, tuple(leaf.shape)) for p, leaf in pairs])


def unflatten(vec, spec):
    """Inverse of :func:`flatten`: a 1-D vector -> a tree with the original structure.

    A 2-D (P, D) array of P flattened trees gives one tree whose leaves carry a leading
    axis of P (a population of parameter sets, e.g. for evolution strategies)."""
    template, shapes = spec
    need = sum(math.prod(shape) for _, shape in shapes)
    if len(vec.shape) not in (1, 2) or vec.shape[-1] != need:
        raise ValueError(f"unflatten: vector has {vec.shape[-1] if vec.shape else 0} entries, "
                         f"the tree needs {need}" + ("" if len(vec.shape) == 1 else f" (shape {tuple(vec.shape)})"))
    xp = namespace(vec)
    lead = tuple(vec.shape[:-1])
    parts, start = {}, 0
    for path, shape in shapes:
        size = math.prod(shape)
        parts[path] = xp.reshape(vec[..., start:start + size], lead + shape)
        start += size
    return _rebuild(template, parts, "")


def _rebuild(t, parts, prefix):
    if isinstance(t, dict):
        return {k: _rebuild(t[k], parts, f"{prefix}{k}/") for k in t}
    if isinstance(t, (list, tuple)):
        return type(t)(_rebuild(x, parts, f"{prefix}{i}/") for i, x in enumerate(t))
    return None if t is None else parts[prefix.rstrip("/")]


def get(tree, path: str):
    """The leaf at ``"a/b/c"``."""
    for key in path.split("/"):
        tree = tree[int(key)] if isinstance(tree, (list, tuple)) else tree[key]
    return tree


def set_leaf(tree, path: str, value):
    """A copy of `tree` with the leaf at `path` replaced (inputs are never mutated)."""
    key, _, rest = path.partition("/")
    if isinstance(tree, (list, tuple)):
        i = int(key)
        new = set_leaf(tree[i], rest, value) if rest else value
        return type(tree)(new if j == i else x for j, x in enumerate(tree))
    new = set_leaf(tree[key], rest, value) if rest else value
    return {**tree, key: new}
