"""Global attention of the LSLA family over all ``L = H*W`` tokens of a grid, a few query rows
at a time, with its tables per offset (``[h, 2H-1, 2W-1]``, ``variants._window.offset_table``)
read as strided views (``reversed_query_rows``): no ``L x L`` table or index exists, and the
logits of one chunk of queries bound the memory, in inference and under autograd
(:class:`GlobalCore`, which keeps Q, K, V and the small tables and recomputes each chunk in
backward).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.ops import aten

from variants import _lsla_cpu
from variants._lsla_core import Tables, apply_outer, core_grads, outer_term, scale_and_bias
from variants._window import reversed_query_rows

# logits per chunk of queries in global attention (4 MB in fp32; at least one row of query
# tokens), so that chunks come from the heap, not fresh from the OS (glibc maps anything above
# 32 MB anew: 64 MB chunks took 327k page faults per forward at 448 px, these none, and each
# model's forward ran 1.2-1.3x as fast)
GLOBAL_CHUNK_ELEMENTS = 1 << 20


def row_chunks(rows: int, per_row: int, budget: int) -> list[tuple[int, int]]:
    """``(r0, r1)`` of each chunk of ``rows`` query rows, ``budget`` elements at most at
    ``per_row`` a row (at least one row a chunk)."""
    step = max(1, budget // per_row)
    return [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]


def _chunks(q: Tensor, grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Query rows of each chunk, ``GLOBAL_CHUNK_ELEMENTS`` logits at most."""
    B, h, L, _ = q.shape
    return row_chunks(grid[0], B * h * grid[1] * L, GLOBAL_CHUNK_ELEMENTS)


def table_rows(table: Tensor | None, grid: tuple[int, int], r0: int, r1: int) -> Tensor | None:
    """Rows ``r0:r1`` of a table per offset for queries in reversed order, ``[h, R*W, L]``."""
    if table is None:
        return None
    H, W = grid
    return reversed_query_rows(table, grid, r0, r1).reshape(table.shape[0], -1, H * W)


def attend_global_no_grad(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    t: Tables,
    grid: tuple[int, int],
    scale_div: bool,
    outer_mul: bool,
) -> Tensor:
    """q, k, v ``[B, h, L, d]``; ``t`` holds S, B_i and the outer term (``1 + B_o`` for
    ``outer_mul``) per offset. Every chunk's logits use one buffer and its output is written
    into another: a fresh buffer per chunk (17 MB for a row of queries at 448 px) left the
    heap split by the small objects made between them, and one stage-1 layer peaked at
    128-161 MB where it now takes 53 (fresh processes); a small output kept per chunk did the
    same under autograd."""
    (B, h, L, _), W = q.shape, grid[1]
    q = q.flip(-2)  # reversed query order: what the table views are laid out for
    out = q.new_empty(B, h, L, v.shape[-1])
    chunks = _chunks(q, grid)
    buffer = q.new_empty(B * h * (chunks[0][1] - chunks[0][0]) * W * L)  # the largest chunk's
    for r0, r1 in chunks:
        part = Tables(*(None if x is None else reversed_query_rows(x, grid, r0, r1) for x in t))
        logits = buffer[: B * h * (r1 - r0) * W * L].view(B, h, (r1 - r0) * W, L)
        torch.matmul(q[:, :, r0 * W : r1 * W], k.transpose(-2, -1), out=logits)
        on_grid = (B, h, r1 - r0, W, *grid)
        scale_and_bias(logits.view(on_grid), part, scale_div)
        a = torch.softmax(logits, dim=-1, out=logits)
        apply_outer(a.view(on_grid), part, outer_mul)
        torch.matmul(a, v, out=out[:, :, r0 * W : r1 * W])
    return out.flip(-2)


class GlobalCore(torch.autograd.Function):
    """Global attention under autograd: q, k, v ``[B, h, L, d]``; S, B_i and B_o per offset
    (None: absent; B_o without the 1 of ``outer_mul``). Forward as
    :func:`attend_global_no_grad`; backward recomputes each chunk's maps (``core_grads``)
    and adds each table's gradient back onto its offsets. Nothing ``L x L`` is built or kept
    (``LSLACore`` over whole maps kept the three ``[h, L, L]`` tables and rebuilt
    ``[B, h, L, L]`` maps: at 224 px 1.8x this time and 3x the memory in a training step)."""

    @staticmethod
    def forward(ctx, q, k, v, s, inner, bo, grid, scale_div: bool, outer_mul: bool):
        ctx.save_for_backward(q, k, v, s, inner, bo)
        ctx.args = (grid, scale_div, outer_mul)
        t = Tables(s, inner, outer_term(bo, None, outer_mul))
        return attend_global_no_grad(q, k, v, t, grid, scale_div, outer_mul)

    @staticmethod
    @once_differentiable  # a second derivative would miss the C++ fold: say so
    def backward(ctx, dout):
        q, k, v, *tables = ctx.saved_tensors
        grid, scale_div, outer_mul = ctx.args
        W = grid[1]
        q, dout = q.flip(-2), dout.flip(-2)  # reversed query order, as the table views
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        dtables = [None if t is None else torch.zeros_like(t) for t in tables]
        for r0, r1 in _chunks(q, grid):
            at = slice(r0 * W, r1 * W)
            s, inner, bo = (table_rows(t, grid, r0, r1) for t in tables)
            grads = core_grads(
                q[:, :, at], k, v, s, inner, None, bo, None, dout[:, :, at], scale_div, outer_mul
            )
            dq[:, :, at] = grads[0]
            dk.add_(grads[1])
            dv.add_(grads[2])
            for into, chunk in zip(dtables, grads[3:], strict=True):
                if into is not None:
                    _add_onto_offsets(into, chunk, grid, r0, r1)
        return dq.flip(-2), dk, dv, *dtables, None, None, None


def _add_onto_offsets(into: Tensor, chunk: Tensor, grid: tuple[int, int], r0: int, r1: int):
    """Add the gradient of rows ``r0:r1`` of a table's view (``[h, R*W, L]``) onto the offsets
    it was read from: the adjoint of :func:`reversed_query_rows` (two overlapping unfolds)."""
    H, W = grid
    h, R = into.shape[0], r1 - r0
    g = chunk.reshape(h, R, W, H, W)
    if _lsla_cpu.fold_onto_offsets(g, into, grid, r0):  # one pass, fp32 on CPU
        return
    g = aten.unfold_backward(g, [h, R, 2 * W - 1, H], 2, W, 1)
    into[:, r0 : r1 + H - 1] += aten.unfold_backward(g, [h, R + H - 1, 2 * W - 1], 1, H, 1)
