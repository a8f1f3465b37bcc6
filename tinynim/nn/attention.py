"""Multi-head softmax self-attention (scaled dot product), bias-free.

Forward, for x: (B, T, D) with H heads of size d = D / H::

    [Q | K | V] = x [Wq | Wk | Wv]            one GEMM, then split into heads (B, H, T, d)
    S = Q Kᵀ / √d                              (B, H, T, T) logits
    P = softmax_j(S) over allowed j only       masked entries get probability 0
    O = P V                                    (B, H, T, d), heads merged back to (B, T, D)
    out = O Wo                                 (B, T, D)

"Allowed" is ``mask`` (True = may attend; shape (T, T), (B, T, T) or (B, H, T, T), size-1
axes broadcast) and, with ``causal=True``, also j ≤ t. A query row with no allowed key has
P = 0, so its output is exactly zero (a convention: the softmax of nothing is undefined).
The softmax subtracts the row maximum over allowed entries, so it never overflows.
Bias-free: every projection is a plain matrix (a bias on K cancels in the softmax anyway).

Backward, with G = dL/d(out):
``dWo = Oᵀ G``, ``dO = G Woᵀ``; through O = P V: ``dP = dO Vᵀ``, ``dV = Pᵀ dO``;
through the row softmax (Jacobian diag(p) − p pᵀ): ``dS = P ⊙ (dP − Σ_j P ⊙ dP)``, which is
0 at masked entries because P is; through S: ``dQ = dS K / √d``, ``dK = dSᵀ Q / √d``;
finally ``d[Wq|Wk|Wv] = xᵀ [dQ|dK|dV]`` and ``dx = [dQ|dK|dV] [Wq|Wk|Wv]ᵀ``.

Passes over memory. The (B, H, T, T) arrays are the largest, so the code spends few passes
on them: the scale 1/√d is folded into Wq (a D×D matrix: q' = x Wq/√d, S = q' Kᵀ; in
backward dS needs no rescaling and dWq = xᵀ dq'/√d), and the masked softmax adds a 0/−inf
bias of the mask's shape once (cheaper than a select over S; exp(−inf − m) = 0 with m the
finite row maximum, 0 for an empty row).

Cache: ``AttentionCache(x, W, q, k, v, P, O)``: the input, [Wq/√d|Wk|Wv] (D, 3D), the heads
q' (scaled), k, v (B, H, T, d), the probabilities P (B, H, T, T) and the merged head outputs
O (B, T, D).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat

from tinynim.backend import asarray, matmul, namespace
from tinynim.nn.base import Layer
from tinynim.random import as_rng


def split_heads(x, n_heads):
    """(B, T, H·d) -> (B, H, T, d)."""
    xp = namespace(x)
    B, T, D = x.shape
    return xp.permute_dims(xp.reshape(x, (B, T, n_heads, D // n_heads)), (0, 2, 1, 3))


def merge_heads(x):
    """(B, H, T, d) -> (B, T, H·d), the inverse of :func:`split_heads`."""
    xp = namespace(x)
    B, H, T, d = x.shape
    return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (B, T, H * d))


def causal_mask(xp, T, n, device):
    """Boolean M[t, i] = (i ≤ t), shape (T, n): query t may see key i."""
    t = xp.arange(T, device=device)
    i = xp.arange(n, device=device)
    return xp.expand_dims(t, axis=1) >= xp.expand_dims(i, axis=0)


class AttentionCache(NamedTuple):
    x: object           # (B, T, D) input
    W: object           # (D, 3D) [Wq/√d | Wk | Wv]
    q: object           # (B, H, T, d) scaled queries q' = x Wq/√d
    k: object           # (B, H, T, d)
    v: object           # (B, H, T, d)
    P: object           # (B, H, T, T) attention probabilities
    O: object           # (B, T, D) heads merged, before Wo


class SoftmaxAttention(Layer):
    def __init__(self, d_model: int, n_heads: int, causal: bool = False):
        self.check_sizes(d_model=d_model, n_heads=n_heads)
        if d_model % n_heads:
            raise ValueError(f"SoftmaxAttention: d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.d_head = d_model // n_heads

    def init(self, rng, *, dtype=None, backend=None):
        """Wq, Wk, Wv, Wo ~ N(0, 1/d_model) (LeCun normal, as :class:`Linear`)."""
        rng = as_rng(rng)
        std = 1.0 / math.sqrt(self.d_model)
        shape = (self.d_model, self.d_model)
        return {k: rng.normal(shape, std=std, dtype=dtype, backend=backend) for k in ("Wq", "Wk", "Wv", "Wo")}

    @property
    def param_shapes(self):
        return {k: (self.d_model, self.d_model) for k in ("Wq", "Wk", "Wv", "Wo")}

    def _allowed(self, xp, x, mask):
        """The boolean mask as (B|1, H|1, T, T), or None when every key is allowed."""
        B, T, _ = x.shape
        if mask is not None:
            self.check_input(mask, what="mask", dtype="bool", like=x)
            shape = tuple(mask.shape)
            as4 = {2: (1, 1) + shape, 3: shape[:1] + (1,) + shape[1:], 4: shape}.get(len(shape))
            if (as4 is None or as4[2:] != (T, T)
                    or any(n not in (1, want) for n, want in zip(as4[:2], (B, self.n_heads)))):
                raise ValueError(f"{self.name}: expected mask of shape (T, T), (B, T, T) or (B, H, T, T) "
                                 f"broadcastable to {(B, self.n_heads, T, T)}, got shape {shape}")
            mask = xp.reshape(mask, as4)
        if self.causal:
            causal = causal_mask(xp, T, T, array_api_compat.device(x))       # (T, T): key j ≤ query t
            mask = causal if mask is None else (mask & causal)
        return mask

    def forward(self, params, x, mask=None):
        xp = self.check_input(x, ndim=3, last=self.d_model, min_steps=1)
        self.check_params(params, x)
        D, H = self.d_model, self.n_heads
        W = xp.concat([params["Wq"] / math.sqrt(self.d_head), params["Wk"], params["Wv"]], axis=1)  # (D, 3D)
        qkv = x @ W                                                           # (B, T, 3D)
        q, k, v = (split_heads(qkv[..., i * D:(i + 1) * D], H) for i in range(3))  # (B, H, T, d)
        S = matmul(q, k.mT)                                                   # (B, H, T, T) scaled logits
        allowed = self._allowed(xp, x, mask)
        if allowed is None:
            E = xp.exp(S - xp.max(S, axis=-1, keepdims=True))                 # (B, H, T, T)
            P = E / xp.sum(E, axis=-1, keepdims=True)
        else:
            zero = xp.zeros((), dtype=S.dtype, device=array_api_compat.device(S))
            S = S + xp.where(allowed, zero, -math.inf)                        # masked logits -> -inf
            m = xp.max(S, axis=-1, keepdims=True)                             # -inf: empty row
            E = xp.exp(S - xp.where(m > -math.inf, m, 0.0))                   # exactly 0 where masked
            Z = xp.sum(E, axis=-1, keepdims=True)                             # (B, H, T, 1)
            P = E / xp.where(Z > 0, Z, 1.0)                                   # empty row -> P = 0
        O = merge_heads(P @ v)                                                # (B, T, D)
        return O @ params["Wo"], AttentionCache(x, W, q, k, v, P, O)

    def backward(self, params, cache, dout, *, need_dx=True):
        x, W, q, k, v, P, O = cache
        self.check_dout(dout, tuple(x.shape))
        # exercise: softmax_attention
        xp = namespace(dout)
        D = self.d_model
        dWo = xp.reshape(O, (-1, D)).T @ xp.reshape(dout, (-1, D))            # (D, D)
        dO = split_heads(dout @ params["Wo"].T, self.n_heads)                 # (B, H, T, d)
        dP = matmul(dO, v.mT)                                                 # (B, H, T, T)
        dv = P.mT @ dO                                                        # (B, H, T, d)
        dS = P * (dP - xp.sum(P * dP, axis=-1, keepdims=True))                # (B, H, T, T) dL/dS
        dq, dk = dS @ k, dS.mT @ q                                            # (B, H, T, d) dL/dq', dL/dk
        dqkv = xp.concat([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, T, 3D)
        dW = xp.reshape(x, (-1, D)).T @ xp.reshape(dqkv, (-1, 3 * D))         # (D, 3D)
        grads = {"Wq": dW[:, :D] / math.sqrt(self.d_head), "Wk": dW[:, D:2 * D], "Wv": dW[:, 2 * D:],
                 "Wo": dWo}
        return (dqkv @ W.T if need_dx else None), grads                       # (B, T, D)
        # end exercise

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        mask = asarray(rng.uniform((2, 4, 4), host=True) < 0.6)           # (B, T, T), may empty a row
        return {"unmasked": (SoftmaxAttention(6, 2), rng.normal((2, 4, 6)), {}),
                "causal": (SoftmaxAttention(6, 2, causal=True), rng.normal((2, 4, 6)), {}),
                "masked": (SoftmaxAttention(6, 3), rng.normal((2, 4, 6)), {"mask": mask}),
                "causal_masked": (SoftmaxAttention(6, 2, causal=True), rng.normal((2, 4, 6)), {"mask": mask})}
