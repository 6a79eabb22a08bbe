"""Per-layer attention statistics on a held-out batch, to test the paper's "self-limited" claim.

For every attention layer, over all windows, heads and queries of the batch:

* ``entropy``: entropy (nats) of each query's weights normalised to sum 1 (absolute values, since
  an additive outer bias can make weights negative), and ``entropy_norm`` = entropy / log(N).
* ``self_weight``: the weight a query puts on itself (the raw, un-normalised value).
* ``mean_distance``: weight-averaged distance, in tokens, between query and key inside the window
  (or the whole map for global attention); shifted windows use their own window coordinates.
* ``*_softmax``: the same before the outer bias, so its effect is visible directly.

Layers whose map is a single token are left out (their weight on themselves is 1 by definition).
``attention_map`` returns one query's weights with and without the outer bias for the report.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


@contextmanager
def recording(model: nn.Module) -> Iterator[list[tuple[str, nn.Module]]]:
    """Switch every attention module to record its weights; restores the fused path after."""
    layers = [(n, m) for n, m in model.named_modules() if hasattr(m, "record_attn")]
    for _, m in layers:
        m.record_attn = True
    try:
        yield layers
    finally:
        for _, m in layers:
            m.record_attn = False
            m.last_attn = m.last_softmax = None


def _distances(grid: tuple[int, int], device) -> Tensor:
    h, w = grid
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    coords = torch.stack([ys.flatten(), xs.flatten()], 1).float()
    return torch.cdist(coords, coords)  # [N, N]


def summarise(weights: Tensor, grid: tuple[int, int]) -> dict[str, float]:
    """Statistics of ``weights [B_, h, N, N]`` over a ``grid`` of N tokens."""
    w = weights.float()
    N = w.shape[-1]
    a = w.abs()
    p = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    dist = (p * _distances(grid, w.device)).sum(-1)
    return {
        "entropy": entropy.mean().item(),
        "entropy_norm": (entropy.mean() / math.log(N)).item() if N > 1 else 0.0,
        "self_weight": w.diagonal(dim1=-2, dim2=-1).mean().item(),
        "mean_distance": dist.mean().item(),
        "row_sum": w.sum(-1).mean().item(),
        "tokens": N,
    }


@torch.no_grad()
def attention_statistics(model: nn.Module, images: Tensor) -> list[dict[str, object]]:
    """One row per attention layer (depth order) for a forward pass over ``images``."""
    was_training = model.training
    model.eval()
    rows = []
    try:
        with recording(model) as layers:
            model(images)
            for depth, (name, m) in enumerate(layers):
                if m.last_attn is None or m.last_attn.shape[-1] < 2:
                    continue  # a 1-token map (last stage at small inputs) is trivially self-only
                row: dict[str, object] = {
                    "layer": name,
                    "depth": depth,
                    **summarise(m.last_attn, m.last_grid),
                }
                pre = summarise(m.last_softmax, m.last_grid)
                row.update(
                    {f"{k}_softmax": pre[k] for k in ("entropy", "self_weight", "mean_distance")}
                )
                rows.append(row)
    finally:
        model.train(was_training)
    return rows


@torch.no_grad()
def attention_map(model: nn.Module, image: Tensor, layer: int = 0) -> dict[str, object]:
    """Head-averaged weights of the centre query of the first window of ``layer``, with and
    without the outer bias, as ``[wh, ww]`` nested lists."""
    was_training = model.training
    model.eval()
    try:
        with recording(model) as layers:
            model(image[:1])
            name, m = layers[layer]
            wh, ww = m.last_grid
            query = (wh // 2) * ww + ww // 2
            final = m.last_attn[0, :, query].mean(0).view(wh, ww)
            pre = m.last_softmax[0, :, query].mean(0).view(wh, ww)
    finally:
        model.train(was_training)
    return {
        "layer": name,
        "query": [wh // 2, ww // 2],
        "grid": [wh, ww],
        "with_outer": final.tolist(),
        "without_outer": pre.tolist(),
    }
