"""Row chunks for the largest inference maps on CPU, so that no call maps fresh memory: the
MLP's hidden map and the stem's conv1 map (``harness``), the attention's input projection
(``variants.lsla``, Swin's included).

glibc's malloc serves an allocation above its largest mmap threshold (32 MB on 64-bit) with
fresh pages every call, and each page faults on first touch: in the VM of 2026-12-05, 1.6 us a
page, 30 ms for stage 1's 74 MB hidden map at batch 16. Computed in chunks of a few MB that are
freed and reused, the same maps take no faults and less memory: stage 1's MLP 1.32x at batch 16,
the conv stem 1.29x (9 interleaved rounds, 1 thread); whole models at batch 16, all three
chunked, vit_lsla_t 1.071x (IQR 1.018-1.084) and swin_t_ref 1.069x (1.046-1.095), 9 rounds.
Below the threshold glibc mostly reuses its memory and chunking only adds a copy (0.87-0.99x),
so maps below it run whole: at batch 4 and 224 px no map is chunked.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

FRESH_MAP_BYTES = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
CHUNK_BYTES = 4 << 20  # measured best of 1, 2, 4 and 8 MB for stage 1's MLP at batch 16


def rows_per_chunk(rows: int, bytes_per_row: int) -> int | None:
    """Rows per chunk (the chunk nearest CHUNK_BYTES) for a map of ``rows`` x ``bytes_per_row``;
    None: run it whole."""
    if rows * bytes_per_row <= FRESH_MAP_BYTES:
        return None
    chunk = max(1, (CHUNK_BYTES + bytes_per_row // 2) // bytes_per_row)
    return chunk if chunk < rows else None  # one row above the threshold: nothing to split


def chunked(fn: Callable[[Tensor], Tensor], x: Tensor, rows: int) -> Tensor:
    """``fn`` over ``x``'s leading dimension, ``rows`` at a time, the results concatenated."""
    return torch.cat([fn(x[start : start + rows]) for start in range(0, x.shape[0], rows)])
