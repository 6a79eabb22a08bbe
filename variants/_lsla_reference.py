"""A deliberately naive re-implementation of ``LSLAAttention`` (its declared ``reference``).

It shares only the module's parameters and the documented window-clamp rule; geometry (shift,
padding, regions, relative offsets) is recomputed with Python loops per window and per head, so
the conformance tests compare the fast module with code that shares none of its tensor tricks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _region(i: int, size: int, window: int, shift: int) -> int:
    if shift == 0:
        return 0
    return 0 if i < size - window else (1 if i < size - shift else 2)


def _table(module, coords: list[tuple[int, int]], head: int) -> Tensor:
    """``[N, N]`` table values for head ``head`` at the clipped relative offsets of ``coords``."""
    M = module.window
    t = module.relative_position_bias_table[:, head]
    rows = []
    for yi, xi in coords:
        row = []
        for yj, xj in coords:
            dy = max(-(M - 1), min(M - 1, yi - yj)) + M - 1
            dx = max(-(M - 1), min(M - 1, xi - xj)) + M - 1
            row.append(t[dy * (2 * M - 1) + dx])
        rows.append(torch.stack(row))
    return torch.stack(rows)


def _attend(m, tokens: Tensor, coords, regions) -> Tensor:
    """tokens ``[B, N, C]`` of one window -> ``[B, N, C]`` (before the output projection)."""
    cfg, h, d = m.cfg, m.num_heads, m.head_dim
    proj = getattr(m, m.proj_name)(tokens)
    C = tokens.shape[-1]
    chunks = list(proj.split(C, dim=-1))
    q = chunks[0]
    k = chunks[1] if cfg.form == "qkv" else tokens
    v = chunks[-1] if cfg.form in ("qkv", "qxv") else tokens
    allowed = torch.tensor([[ri == rj for rj in regions] for ri in regions])
    outs = []
    for a in range(h):
        sl = slice(a * d, (a + 1) * d)
        qk = torch.einsum("bnd,bmd->bnm", q[..., sl], k[..., sl])
        if cfg.scale == "fixed":
            logits = qk / math.sqrt(d)
        else:
            s = _table(m.dyn_scale, coords, a)
            logits = qk * s if cfg.scale_op == "mul" else qk / s
        if cfg.inner_bias:
            logits = logits + _table(m.inner_bias, coords, a)
        logits = logits.masked_fill(~allowed, -math.inf)
        p = logits.softmax(-1)
        if cfg.outer_bias:
            bo = _table(m.outer_bias, coords, a)
            if cfg.mask_outer_bias:
                bo = bo * allowed
            p = p + bo if cfg.outer_op == "add" else p * (1 + bo)
        outs.append(torch.einsum("bnm,bmd->bnd", p, v[..., sl]))
    return torch.cat(outs, dim=-1)


def reference_forward(m, x: Tensor) -> Tensor:
    """Naive forward of an ``LSLAAttention`` in eval mode: ``[B, H, W, C] -> [B, H, W, C]``."""
    B, H, W, C = x.shape
    if m.cfg.window == "global":
        coords = [(i, j) for i in range(H) for j in range(W)]
        out = _attend(m, x.reshape(B, H * W, C), coords, [0] * len(coords))
        return m.proj(out).view(B, H, W, C)
    (wh, ww), (sh, sw) = m.window_and_shift(H, W)
    Hp, Wp = math.ceil(H / wh) * wh, math.ceil(W / ww) * ww
    xs = torch.zeros(B, Hp, Ww := Wp, C, dtype=x.dtype)
    xs[:, :H, :W] = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    out = torch.zeros_like(xs)
    for y0 in range(0, Hp, wh):
        for x0 in range(0, Ww, ww):
            coords = [(y0 + i, x0 + j) for i in range(wh) for j in range(ww)]
            regions = [(_region(i, Hp, wh, sh), _region(j, Wp, ww, sw)) for i, j in coords]
            tokens = torch.stack([xs[:, i, j] for i, j in coords], dim=1)
            local = [(i - y0, j - x0) for i, j in coords]
            res = m.proj(_attend(m, tokens, local, regions))
            for n, (i, j) in enumerate(coords):
                out[:, i, j] = res[:, n]
    return torch.roll(out[:, :H, :W], shifts=(sh, sw), dims=(1, 2))
