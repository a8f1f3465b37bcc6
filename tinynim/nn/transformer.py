"""The pre-norm transformer block, composed from existing layers (nothing re-derived).

Forward, x: (B, T, D)::

    h   = x + Attn(LN₁(x))                  Attn: softmax or linear self-attention
    out = h + MLP(LN₂(h))                   MLP: D -> d_mlp -> D, GELU between, biases

``norm=False`` drops both LayerNorms (as the linear-attention ICL papers do, e.g.
arXiv:2212.07677). GELU (tanh approximation) is the activation of GPT-2-style blocks; it is
smooth, so the gradient checks need no kink tolerance.

It is literally ``Sequential(Residual(Sequential(LN₁, Attn)), Residual(Sequential(LN₂, MLP)))``,
so params follow the container keys: ``"0/0"`` = LN₁, ``"0/1"`` = Attn (e.g. ``"0/1/Wq"``),
``"1/0"`` = LN₂, ``"1/1"`` = MLP (``"1/1/0/W"`` its first Linear); without norms ``"0"`` =
Attn and ``"1"`` = MLP. Backward is theirs: Sequential's chain rule, and at each Residual
``dx = dout + dx_inner`` because x reaches the output both directly and through the sublayer.
The cache is Sequential's, the tuple of the two residual branches' caches.

Per-call keywords reach the attention layer, e.g. ``forward(p, x, mask=m)`` for softmax
attention (m: (T, T), (B, T, T) or (B, H, T, T), True = may attend) or ``n_context=n`` for
linear attention.
"""
from __future__ import annotations

from tinynim.backend import asarray
from tinynim.nn.attention import SoftmaxAttention
from tinynim.nn.containers import Residual, Sequential
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.nn.mlp import MLP
from tinynim.nn.norm import LayerNorm
from tinynim.random import as_rng

ATTENTIONS = {"softmax": SoftmaxAttention, "linear": LinearSelfAttention}


class TransformerBlock(Sequential):
    def __init__(self, d_model: int, n_heads: int, d_mlp: int, causal: bool = False,
                 attention: str = "softmax", norm: bool = True):
        self.check_sizes(d_model=d_model, n_heads=n_heads, d_mlp=d_mlp)
        if attention not in ATTENTIONS:
            raise ValueError(f"TransformerBlock: attention must be one of {sorted(ATTENTIONS)}, got {attention!r}")
        self.d_model, self.causal, self.attention, self.norm = d_model, causal, attention, norm
        attn = ATTENTIONS[attention](d_model, n_heads, causal=causal)
        mlp = MLP([d_model, d_mlp, d_model], activation="gelu")
        if norm:
            attn, mlp = Sequential(LayerNorm(d_model), attn), Sequential(LayerNorm(d_model), mlp)
        super().__init__(Residual(attn), Residual(mlp))

    def forward(self, params, x, **kw):
        self.check_input(x, ndim=3, last=self.d_model, min_steps=1)
        return super().forward(params, x, **kw)

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        mask = asarray(rng.uniform((2, 3, 3), host=True) < 0.7)             # (B, T, T)
        return {"causal": (TransformerBlock(4, 2, 6, causal=True), rng.normal((2, 3, 4)), {}),
                "masked": (TransformerBlock(4, 2, 5), rng.normal((2, 3, 4)), {"mask": mask}),
                "linear_no_norm": (TransformerBlock(4, 2, 6, attention="linear", norm=False),
                                   rng.normal((2, 4, 4)), {"n_context": 3})}
