"""LSLA attention through ``torch.nn.attention.flex_attention`` (the fused path on CUDA).

    out = softmax(QK^T * S + B_i + mask) V  +  (B_o * keep) V

S, B_i and the shift mask enter as a ``score_mod`` (flex differentiates through the captured
tables, so S and B_i learn); the outer bias, applied after the softmax, is the separate product
``B_o V``. ``P * (1 + B_o)`` needs P itself and stays on the explicit path. Outside a
``torch.compile`` graph, flex runs compiled (once per shape); eager flex would materialise the
scores and gain nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

_compiled = None


def _flex():
    global _compiled  # noqa: PLW0603  (one compiled kernel per process, built on first use)
    from torch.nn.attention.flex_attention import flex_attention  # noqa: PLC0415

    if torch.compiler.is_compiling():
        return flex_attention  # traced by the enclosing graph
    if _compiled is None:
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def attend_flex(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: Tensor | None,
    inner: Tensor | None,
    neg: Tensor | None,
    outer: Tensor | None,
    scale_div: bool,
) -> Tensor:
    """q, k, v ``[B*nW, h, N, d]``; S and B_i ``[h, N, N]`` (None: fixed scale / no bias);
    ``neg`` ``[nW, N, N]`` (0 / -inf); ``outer`` = B_o * keep, ``[nW or 1, h, N, N]``."""
    nW = neg.shape[0] if neg is not None else 1

    def score_mod(score, b, h, q_idx, kv_idx):
        if scale is not None:
            s = scale[h, q_idx, kv_idx]
            score = score / s if scale_div else score * s
        if inner is not None:
            score = score + inner[h, q_idx, kv_idx]
        if neg is not None:
            score = score + neg[b % nW, q_idx, kv_idx]
        return score

    out = _flex()(q, k, v, score_mod=score_mod, scale=1.0 if scale is not None else None)
    if outer is None:
        return out
    B_ = q.shape[0]
    per_window = v.unflatten(0, (B_ // outer.shape[0], outer.shape[0]))  # [B, nW, h, N, d]
    return out + (outer.to(v.dtype) @ per_window).flatten(0, 1)
