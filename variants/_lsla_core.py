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


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Reduce a broadcast gradient to ``shape`` (the table's own shape), never an alias of
    ``grad``: where the shapes already match (one image of one window) ``sum_to_size`` returns
    ``grad`` itself, which the backward then scales in place."""
    out = grad.sum_to_size(shape)
    return out.clone() if out.data_ptr() == grad.data_ptr() else out


def _bias(inner: Tensor | None, neg: Tensor | None) -> Tensor | None:
    if inner is None or neg is None:
        return inner if neg is None else neg
    return inner + neg


def outer_term(bo: Tensor | None, keep: Tensor | None, outer_mul: bool) -> Tensor | None:
    """What multiplies (``1 + B_o * keep``) or is added to (``B_o * keep``) the softmax."""
    if bo is None:
        return None
    term = bo if keep is None else bo * keep
    return 1.0 + term if outer_mul else term


class LSLACore(torch.autograd.Function):
    """q, k, v ``[B, nW, h, N, d]`` (or ``[B_, h, N, d]``); the tables S ``[h, N, N]``, B_i and
    B_o ``[1, h, N, N]``; the shift mask as ``neg`` (0 / -inf) and ``keep`` (1 / 0, where B_o
    applies), ``[nW, 1, N, N]``; None where a switch is off (a fixed scale is applied to Q
    before). Each broadcasts; the combined terms are rebuilt in backward rather than kept, and
    every N x N pass that can be is done in place."""

    @staticmethod
    def forward(ctx, q, k, v, s, inner, neg, bo, keep, scale_div: bool, outer_mul: bool):
        tables = Tables(s, _bias(inner, neg), outer_term(bo, keep, outer_mul))
        ctx.save_for_backward(q, k, v, s, inner, neg, bo, keep)
        ctx.flags = (scale_div, outer_mul)
        return attend_no_grad(q, k, v, tables, scale_div, outer_mul)

    @staticmethod
    def backward(ctx, dout):
        grads = core_grads(*ctx.saved_tensors, dout, *ctx.flags)
        dq, dk, dv, ds, dinner, dbo = grads
        return dq, dk, dv, ds, dinner, None, dbo, None, None, None


def core_grads(q, k, v, s, inner, neg, bo, keep, dout, scale_div: bool, outer_mul: bool):
    """:class:`LSLACore`'s gradients, its maps recomputed: ``(dq, dk, dv, dS, dB_i, dB_o)``,
    each table's reduced to its own shape (None where absent)."""
    qk = q @ k.transpose(-2, -1)
    logits = qk if s is None else (qk / s if scale_div else qk * s)
    bias = _bias(inner, neg)
    logits = logits if bias is None else logits.add_(bias)
    p = torch.softmax(logits, dim=-1, out=logits)
    outer = outer_term(bo, keep, outer_mul)
    a = p if outer is None else (p * outer if outer_mul else p + outer)
    dv = a.transpose(-2, -1) @ dout
    da = dout @ v.transpose(-2, -1)
    dbo = None
    if bo is not None:
        dbo_full = da * p if outer_mul else da
        dbo = _sum_to(dbo_full if keep is None else dbo_full * keep, bo.shape)
    dp = da.mul_(outer) if outer_mul and outer is not None else da
    dlogits = torch._softmax_backward_data(dp, p, -1, p.dtype)
    dinner = None if inner is None else _sum_to(dlogits, inner.shape)
    ds = None
    if s is not None:
        if scale_div:  # d(qk / s)/ds = -qk / s^2
            ds = _sum_to(qk.mul_(dlogits).div_(s * s).neg_(), s.shape)
            dlogits = dlogits.div_(s)
        else:
            ds = _sum_to(qk.mul_(dlogits), s.shape)
            dlogits = dlogits.mul_(s)
    dq = dlogits @ k
    dk = dlogits.transpose(-2, -1) @ q
    return dq, dk, dv, ds, dinner, dbo


class Tables(NamedTuple):
    """The small per-geometry terms of one layer's attention, each broadcasting over
    ``[B, nW, h, N, N]``: S ``[h, N, N]`` (None: fixed scale, applied to Q), the additive term
    B_i + shift mask ``[nW or 1, h or 1, N, N]`` and the outer term B_o * keep (or 1 + that for
    ``outer_mul``) ``[nW or 1, h, N, N]``; None where a switch is off."""

    scale: Tensor | None
    bias: Tensor | None
    outer: Tensor | None


def attend_no_grad(q: Tensor, k: Tensor, v: Tensor, t: Tables, scale_div: bool, outer_mul: bool):
    """The forward of :class:`LSLACore` without autograd: every N x N pass, the softmax too,
    in place on the one logits buffer, the tables precombined (fewer fresh buffers: on CPU a
    fresh buffer costs page faults as well as memory traffic)."""
    logits = scale_and_bias(q @ k.transpose(-2, -1), t, scale_div)
    a = torch.softmax(logits, dim=-1, out=logits)  # row by row: each row is read, then written
    return apply_outer(a, t, outer_mul) @ v


def scale_and_bias(logits: Tensor, t: Tables, scale_div: bool) -> Tensor:
    if t.scale is not None and t.bias is not None:  # one pass (1.04x the layer, two passes)
        fused = torch.addcdiv if scale_div else torch.addcmul
        return fused(t.bias, logits, t.scale, out=logits)
    if t.scale is not None:
        logits = logits.div_(t.scale) if scale_div else logits.mul_(t.scale)
    return logits if t.bias is None else logits.add_(t.bias)


def apply_outer(a: Tensor, t: Tables, outer_mul: bool) -> Tensor:
    if t.outer is None:
        return a
    return a.mul_(t.outer) if outer_mul else a.add_(t.outer)
