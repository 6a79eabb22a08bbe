"""Per-layer attention statistics on a held-out batch, to test the paper's "self-limited" claim.

Only layers whose variant declares ``records_attention`` (``variants/_contract.py``) are measured;
for any other variant the run records no statistics and the report says so. For every recorded
layer, over all windows, heads and real (not padding) queries of the batch:

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

import variants


def recording_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every attention layer that declares ``records_attention``."""
    found = []
    for name, module in model.named_modules():
        caps = variants.capabilities_of(module)
        if caps is not None and caps.records_attention:
            found.append((name, module))
    return found


@contextmanager
def recording(model: nn.Module) -> Iterator[list[tuple[str, nn.Module]]]:
    """Switch every recording layer on; restores the fast path and drops the weights after."""
    layers = recording_layers(model)
    for _, m in layers:
        m.recording = True
    try:
        yield layers
    finally:
        for _, m in layers:
            m.clear_record()


def _distances(grid: tuple[int, int], device) -> Tensor:
    h, w = grid
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    coords = torch.stack([ys.flatten(), xs.flatten()], 1).float()
    return torch.cdist(coords, coords)  # [N, N]


def summarise(
    weights: Tensor, grid: tuple[int, int], valid_queries: Tensor | None = None
) -> dict[str, float]:
    """Statistics of ``weights [B_, h, N, N]`` over a ``grid`` of N tokens, real queries only."""
    w = weights.float()
    N = w.shape[-1]
    a = w.abs()
    p = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    per_query = {  # each [B_, h, N]
        "entropy": -(p * p.clamp_min(1e-12).log()).sum(-1),
        "self_weight": w.diagonal(dim1=-2, dim2=-1),
        "mean_distance": (p * _distances(grid, w.device)).sum(-1),
        "row_sum": w.sum(-1),
    }
    if valid_queries is None:
        valid_queries = torch.ones(w.shape[0], N, dtype=torch.bool, device=w.device)
    keep = valid_queries[:, None, :].expand(-1, w.shape[1], -1)  # [B_, h, N]
    out = {key: value[keep].mean().item() for key, value in per_query.items()}
    out["entropy_norm"] = out["entropy"] / math.log(N) if N > 1 else 0.0
    out["tokens"] = N
    out["queries"] = int(valid_queries.sum().item())
    return out


@torch.no_grad()
def attention_statistics(model: nn.Module, images: Tensor) -> list[dict[str, object]]:
    """One row per recording attention layer (depth order) for a forward pass over ``images``."""
    was_training = model.training
    model.eval()
    rows = []
    try:
        with recording(model) as layers:
            model(images)
            for depth, (name, m) in enumerate(layers):
                rec = m.record
                if rec is None or rec.weights.shape[-1] < 2:
                    continue  # a 1-token map (last stage at small inputs) is trivially self-only
                row: dict[str, object] = {
                    "layer": name,
                    "depth": depth,
                    **summarise(rec.weights, rec.grid, rec.valid_queries),
                }
                pre = summarise(rec.before_outer, rec.grid, rec.valid_queries)
                row.update(
                    {f"{k}_softmax": pre[k] for k in ("entropy", "self_weight", "mean_distance")}
                )
                rows.append(row)
    finally:
        model.train(was_training)
    return rows


@torch.no_grad()
def attention_map(model: nn.Module, image: Tensor, layer: int = 0) -> dict[str, object] | None:
    """Head-averaged weights of the centre query of the first window of ``layer``, with and
    without the outer bias, as ``[wh, ww]`` nested lists; None if no layer records."""
    was_training = model.training
    model.eval()
    try:
        with recording(model) as layers:
            if not layers:
                return None
            model(image[:1])
            name, m = layers[layer]
            rec = m.record
            wh, ww = rec.grid
            query = (wh // 2) * ww + ww // 2
            has_outer = rec.weights_softmax is not None
            final = rec.weights[0, :, query].mean(0).view(wh, ww)
            pre = rec.before_outer[0, :, query].mean(0).view(wh, ww)
    finally:
        model.train(was_training)
    return {
        "layer": name,
        "query": [wh // 2, ww // 2],
        "grid": [wh, ww],
        "has_outer": has_outer,
        "with_outer": final.tolist(),
        "without_outer": pre.tolist(),
    }
