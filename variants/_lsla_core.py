"""LSLA's explicit attention core as one autograd function that keeps no N x N tensor for backward.

    out = (softmax(QK^T * S + B) + B_o) V          (or QK^T / S; or softmax(.) * (1 + B_o))

Written op by op, autograd keeps QK^T, the softmax and the weights for every window of the batch:
three ``[B_, h, N, N]`` tensors per layer, more than Swin's fused attention keeps in total. Here
backward recomputes them from Q, K, V and the small tables (one more ``QK^T`` product), so what is
saved is Q, K, V (views of tensors the projections keep anyway) and the ``[nW, h, N, N]`` tables.
The tables broadcast over ``[B, nW, h, N, N]``; no per-image copy of them is ever made.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def _weights(q, k, s, inner, neg, bo, keep, scale_div: bool, outer_mul: bool):
    qk = q @ k.transpose(-2, -1)
    logits = (qk / s if scale_div else qk * s) + (inner + neg)
    p = logits.softmax(dim=-1)
    bo = bo * keep
    a = p * (1.0 + bo) if outer_mul else p + bo
    return qk, p, a


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Reduce a broadcast gradient to ``shape`` (the table's own shape)."""
    return grad.sum_to_size(shape)


class LSLACore(torch.autograd.Function):
    """q, k, v ``[B, nW, h, N, d]`` (or ``[B_, h, N, d]``); the tables S ``[h, N, N]``, B_i and
    B_o ``[1, h, N, N]``; the shift mask as ``neg`` (0 / -inf) and ``keep`` (1 / 0, where B_o
    applies), ``[nW, 1, N, N]``: each broadcasts, and the combined terms are rebuilt in
    backward rather than kept."""

    @staticmethod
    def forward(ctx, q, k, v, s, inner, neg, bo, keep, scale_div: bool, outer_mul: bool):
        _, _, a = _weights(q, k, s, inner, neg, bo, keep, scale_div, outer_mul)
        ctx.save_for_backward(q, k, v, s, inner, neg, bo, keep)
        ctx.flags = (scale_div, outer_mul)
        return a @ v

    @staticmethod
    def backward(ctx, dout):
        q, k, v, s, inner, neg, bo, keep = ctx.saved_tensors
        scale_div, outer_mul = ctx.flags
        qk, p, a = _weights(q, k, s, inner, neg, bo, keep, scale_div, outer_mul)
        dv = a.transpose(-2, -1) @ dout
        da = dout @ v.transpose(-2, -1)
        dbo = _sum_to((da * p if outer_mul else da) * keep, bo.shape)
        dp = da * (1.0 + bo * keep) if outer_mul else da
        dlogits = p * (dp - (dp * p).sum(dim=-1, keepdim=True))
        dinner = _sum_to(dlogits, inner.shape)
        if scale_div:
            dqk = dlogits / s
            ds = _sum_to(-dlogits * qk / (s * s), s.shape)
        else:
            dqk = dlogits * s
            ds = _sum_to(dlogits * qk, s.shape)
        dq = dqk @ k
        dk = dqk.transpose(-2, -1) @ q
        return dq, dk, dv, ds, dinner, None, dbo, None, None, None


class Tables(NamedTuple):
    """The small per-geometry terms of one layer's attention, each broadcasting over
    ``[B, nW, h, N, N]``: S ``[h, N, N]`` (None: fixed scale, applied to Q), the additive term
    B_i + shift mask ``[nW or 1, h or 1, N, N]`` and the outer term B_o * keep (or 1 + that for
    ``outer_mul``) ``[nW or 1, h, N, N]``; None where a switch is off."""

    scale: Tensor | None
    bias: Tensor | None
    outer: Tensor | None


def attend_no_grad(q: Tensor, k: Tensor, v: Tensor, t: Tables, scale_div: bool, outer_mul: bool):
    """The forward of :class:`LSLACore` without autograd: each N x N pass is done in place on
    the one logits buffer, the tables precombined (fewer and smaller fresh buffers: on CPU a
    fresh buffer costs page faults as well as memory traffic)."""
    logits = q @ k.transpose(-2, -1)
    a = _scale_and_bias(logits, t, scale_div).softmax(dim=-1)
    return _outer(a, t, outer_mul) @ v


def _scale_and_bias(logits: Tensor, t: Tables, scale_div: bool) -> Tensor:
    if t.scale is not None:
        logits = logits.div_(t.scale) if scale_div else logits.mul_(t.scale)
    return logits if t.bias is None else logits.add_(t.bias)


def _outer(a: Tensor, t: Tables, outer_mul: bool) -> Tensor:
    if t.outer is None:
        return a
    return a.mul_(t.outer) if outer_mul else a.add_(t.outer)


GLOBAL_CHUNK_ELEMENTS = 1 << 24  # logits per chunk of queries in global attention (64 MB fp32)


def attend_global_no_grad(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    t: Tables,
    grid: tuple[int, int],
    scale_div: bool,
    outer_mul: bool,
) -> Tensor:
    """Global attention over the ``L = H*W`` tokens of ``grid`` without autograd, a few query
    rows at a time. The tables are ``[h, H, W, H, W]`` strided views for queries in reversed
    order (``variants._window.reversed_query_view``), so no ``L x L`` table or index exists and
    the logits of one chunk of queries at a time bound the memory."""
    B, h, L, _ = q.shape
    H, W = grid
    q = q.flip(-2)  # reversed query order: what the table views are laid out for
    out = q.new_empty(B, h, L, v.shape[-1])
    rows = max(1, GLOBAL_CHUNK_ELEMENTS // (B * h * W * L))
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        part = Tables(*(None if x is None else x[:, r0:r1] for x in t))
        logits = q[:, :, r0 * W : r1 * W] @ k.transpose(-2, -1)
        on_grid = (B, h, r1 - r0, W, H, W)
        _scale_and_bias(logits.view(on_grid), part, scale_div)
        a = logits.softmax(dim=-1)
        _outer(a.view(on_grid), part, outer_mul)
        out[:, :, r0 * W : r1 * W] = a @ v
    return out.flip(-2)
