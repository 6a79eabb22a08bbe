"""LSLA attention through ``torch.nn.attention.flex_attention`` (the fused path on CUDA).

    out = softmax(QK^T * S + B_i + mask) V  +  (B_o * keep) V

S, B_i and the shift mask enter as a ``score_mod`` (flex differentiates through the captured
tables, so S and B_i learn); the outer bias, applied after the softmax, is the separate product
``B_o V``. ``P * (1 + B_o)`` needs P itself and stays on the explicit path. In global
attention the tables stay per offset (``[h, 2H-1, 2W-1]``): the score_mod computes each pair's
offset, and ``B_o V`` runs a few query rows at a time. Outside a
``torch.compile`` graph, flex runs compiled; eager flex would materialise the scores and gain
nothing. Compiled with dynamic shapes after the first (torch's automatic dynamic): one vit_lsla_t
forward takes 7 graphs (4 stages, shifted or not), a second batch size 2 more, later ones none,
where static shapes took 7 per batch size and hit dynamo's limit of 8 at the second one, after
which flex ran eager, unfused, while the layers recorded "flex". The graphs are counted apart
from the user's (``isolate_recompiles``), up to ``RECOMPILE_LIMIT``. Past it, or where compiling
fails, ``FlexGaveUp`` is raised with one warning and flex is off for the process: the layers
take (and record) the explicit path.
"""

from __future__ import annotations

import inspect
import warnings

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from variants._lsla_global import row_chunks, table_rows

RECOMPILE_LIMIT = 64  # graphs of this region: several presets, train and eval, bf16 and fp32
BACKEND = "inductor"  # tests count graphs with "eager", which compiles in milliseconds
_compiled = None
_gave_up = False


class FlexGaveUp(RuntimeError):
    """flex_attention's compiled graphs ran out, or it failed to compile: the explicit path."""


def usable() -> bool:
    """False once flex has given up in this process."""
    return not _gave_up


def _flex():
    global _compiled  # noqa: PLW0603  (one compiled region per process, built on first use)
    from torch.nn.attention.flex_attention import flex_attention  # noqa: PLC0415

    if torch.compiler.is_compiling():
        return flex_attention  # traced by the enclosing graph
    if _compiled is None:  # fullgraph: past the limit fail (and give up), never run eager
        options = region_options(torch.compile)
        _compiled = torch.compile(flex_attention, backend=BACKEND, fullgraph=True, **options)
    return _compiled


def region_options(compile_fn) -> dict:
    """``compile_fn``'s own limit for this region where it takes one (torch 2.14.1 does); an
    older torch counts every compiled function together, so its process-wide limit is raised
    (never lowered) to ``RECOMPILE_LIMIT``."""
    params = inspect.signature(compile_fn).parameters
    if "recompile_limit" in params and "isolate_recompiles" in params:
        return dict(recompile_limit=RECOMPILE_LIMIT, isolate_recompiles=True)
    from torch._dynamo import config  # noqa: PLC0415

    config.cache_size_limit = max(config.cache_size_limit, RECOMPILE_LIMIT)
    return {}


def _run(flex, *args, **kwargs) -> Tensor:
    """flex's output, or ``FlexGaveUp`` (one warning, flex off for the process) where its graphs
    ran out or it failed to compile."""
    global _gave_up  # noqa: PLW0603  (once flex has given up, it stays off in this process)
    from torch._dynamo import exc  # noqa: PLC0415

    limit_hit = getattr(exc, "FailOnRecompileLimitHit", None) or getattr(  # older torch's name
        exc, "FailOnCacheLimitHit", ()
    )
    try:
        return flex(*args, **kwargs)
    except limit_hit as e:
        why, cause = f"compiled {RECOMPILE_LIMIT} graphs, its limit (RECOMPILE_LIMIT)", e
    except exc.TorchDynamoException as e:  # the backend failed to compile, or dynamo to trace
        inner = getattr(e, "inner_exception", e)  # the backend's own error
        first_line = (str(inner).strip().splitlines() or [""])[0]
        why, cause = f"failed to compile ({type(inner).__name__}: {first_line})", e
    _gave_up = True
    warnings.warn(
        f"variants._lsla_flex: flex_attention {why}; LSLA layers take the explicit path from "
        "here on, recorded as 'explicit' in attention_kernels. To keep flex, raise "
        "RECOMPILE_LIMIT or use fewer shapes; for every arm alike, [model] kernel = 'explicit'.",
        stacklevel=3,
    )
    raise FlexGaveUp from cause


def _score_mod(scale, inner, scale_div: bool, read, neg: Tensor | None = None):
    """flex's ``score_mod``: S and B_i as ``read(table, h, q_idx, kv_idx)`` gives them, then
    the shift mask of window ``b % nW``."""
    nW = neg.shape[0] if neg is not None else 1

    def score_mod(score, b, h, q_idx, kv_idx):
        if scale is not None:
            s = read(scale, h, q_idx, kv_idx)
            score = score / s if scale_div else score * s
        if inner is not None:
            score = score + read(inner, h, q_idx, kv_idx)
        if neg is not None:
            score = score + neg[b % nW, q_idx, kv_idx]
        return score

    return score_mod


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

    def read(table, h, q_idx, kv_idx):
        return table[h, q_idx, kv_idx]

    score_mod = _score_mod(scale, inner, scale_div, read, neg)
    out = _run(_flex(), q, k, v, score_mod=score_mod, scale=1.0 if scale is not None else None)
    if outer is None:
        return out
    B_ = q.shape[0]
    per_window = v.unflatten(0, (B_ // outer.shape[0], outer.shape[0]))  # [B, nW, h, N, d]
    return out + (outer.to(v.dtype) @ per_window).flatten(0, 1)


def attend_flex_global(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: Tensor | None,
    inner: Tensor | None,
    outer: Tensor | None,
    grid: tuple[int, int],
    scale_div: bool,
) -> Tensor:
    """Global attention over the ``L = H*W`` tokens of ``grid``: q, k, v ``[B, h, L, d]``; S,
    B_i and B_o per offset, ``[h, 2H-1, 2W-1]`` (``variants._window.offset_table``; None:
    absent). The score_mod reads each pair's offset from its token indices, so no ``[h, L, L]``
    table (1.9 GB each in fp32 per stage-1 layer at 448 px) is built, nor its gradient."""
    H, W = grid

    def read(table, h, q_idx, kv_idx):  # entry [., a, b] holds the offset (H-1-a, W-1-b)
        dy, dx = q_idx // W - kv_idx // W, q_idx % W - kv_idx % W
        return table[h, (H - 1) - dy, (W - 1) - dx]

    score_mod = _score_mod(scale, inner, scale_div, read)
    out = _run(_flex(), q, k, v, score_mod=score_mod, scale=1.0 if scale is not None else None)
    return out if outer is None else out + global_outer_product(outer, v, grid)


# B_o's elements per chunk of queries in global_outer_product (64 MB in fp32): fewer, larger
# products on CUDA, whose caching allocator reuses the chunks' memory
OUTER_CHUNK_ELEMENTS = 1 << 24


def global_outer_product(outer: Tensor, v: Tensor, grid: tuple[int, int]) -> Tensor:
    """``B_o V`` over the ``L`` tokens of ``grid``, B_o per offset ``[h, 2H-1, 2W-1]``, v
    ``[B, h, L, d]``: a few query rows at a time, each a copy of the strided view
    (``table_rows``) of the offsets; under autograd every chunk is recomputed in
    backward, so neither pass keeps more of B_o than one chunk."""
    outer = outer.to(v.dtype)
    parts = []
    for r0, r1 in row_chunks(grid[0], v.shape[1] * grid[1] * v.shape[2], OUTER_CHUNK_ELEMENTS):
        if torch.is_grad_enabled():
            parts.append(checkpoint(_rows_times_v, outer, v, grid, r0, r1, use_reentrant=False))
        else:
            parts.append(_rows_times_v(outer, v, grid, r0, r1))
    return torch.cat(parts, dim=-2).flip(-2)  # back to the natural query order


def _rows_times_v(outer: Tensor, v: Tensor, grid: tuple[int, int], r0: int, r1: int) -> Tensor:
    """Query rows ``r0:r1`` (reversed order) of ``B_o V``: ``[B, h, (r1-r0)*W, d]``."""
    return table_rows(outer, grid, r0, r1) @ v
