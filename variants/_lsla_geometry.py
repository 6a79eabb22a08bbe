"""Window geometry of the LSLA family: shapes, token order, masks and indices, cached per shape.

``WindowGeometry`` is mixed into ``variants.lsla.LSLAAttention``; ``Geometry`` is what one forward
hands its attention maths besides Q, K and V.
"""

# No ``from __future__ import annotations``: TorchScript needs real annotation objects.
from typing import NamedTuple

import torch
from torch import Tensor

from variants._window import (
    permute_tokens,
    relative_position_index,
    shift_region_mask,
    window_order,
    window_partition,
)


class Geometry(NamedTuple):
    """Where the tokens of one forward sit: what the attention maths needs besides Q, K, V."""

    grid: tuple[int, int]  # token layout of each map (a window, or the whole map)
    index: Tensor | None  # [N, N] relative-position index into the tables; None: global
    mask: Tensor | None  # [nW, N, N] True where query and key share an image region
    neg: Tensor | None  # [nW, N, N] fp32: 0 where ``mask`` is True, -inf elsewhere
    keep: Tensor | None  # [nW, 1, N, N] fp32: 1 where ``mask`` is True (B_o applies), else 0
    valid: Tensor | None  # [B_, N] real (not padding) queries; only built while recording


def shift_masks(
    padded: tuple[int, int], window: tuple[int, int], shift: tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """The region mask, ``neg`` and ``keep``: the last two stored with rows padded to a multiple
    of 16 (the fused CPU kernel's layout, ``padded_rows``); every other path reads N x N views."""
    mask = shift_region_mask(padded, window, shift, device)
    n_windows, n = mask.shape[0], mask.shape[-1]
    rows = torch.zeros([2, n_windows, n, padded_width(n)], device=device)
    neg = rows[0, :, :, :n].masked_fill_(~mask, float("-inf"))
    keep = rows[1, :, :, :n].copy_(mask)
    return mask, neg, keep.unsqueeze(1)


def padded_width(n: int) -> int:
    """``n`` rounded up to 16: the rows of the fused CPU kernel's tables."""
    return (n + 15) // 16 * 16


def padded_rows(mask: Tensor) -> Tensor:
    """``[nW, N, NP]``: the padded storage behind ``neg`` or ``keep`` of :func:`shift_masks`."""
    nW, n = mask.shape[0], mask.shape[-1]
    np_ = padded_width(n)
    assert mask.stride()[-2:] == (np_, 1), "a mask from shift_masks"
    return mask.as_strided((nW, n, np_), (mask.stride(0), np_, 1))


def valid_queries(
    B: int,
    size: tuple[int, int],
    padded: tuple[int, int],
    window: tuple[int, int],
    device: torch.device,
) -> Tensor:
    """``[B*nW, N]``: False for the padding tokens, which attention statistics leave out."""
    valid = torch.zeros(1, padded[0], padded[1], 1, dtype=torch.bool, device=device)
    valid[:, : size[0], : size[1]] = True
    per_window = window_partition(valid, window).flatten(1)  # [nW, N]
    return per_window.repeat(B, 1)


class WindowGeometry:
    """Geometry tensors of one attention layer (``window_size``, ``shift_size`` and a ``_cache``
    dict are the host module's)."""

    def window_and_shift(self, H: int, W: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """timm's rule: a window larger than the map shrinks to it, and then nothing shifts."""
        M, s = self.window_size, self.shift_size
        window = (min(H, M), min(W, M))
        shift = (0 if H <= M else s, 0 if W <= M else s)
        return window, shift

    def _index(self, grid: tuple[int, int], device: torch.device) -> Tensor:
        if torch.jit.is_scripting():
            return relative_position_index(grid, self.window_size, device)
        return self._cached(("index", grid, device))

    def _order(
        self,
        size: tuple[int, int],
        window: tuple[int, int],
        shift: tuple[int, int],
        device: torch.device,
    ) -> tuple[Tensor, Tensor]:
        """Token gather into windows and scatter back (``variants._window.window_order``)."""
        if torch.jit.is_scripting():
            return window_order(size, window, shift, device)
        return self._cached(("order", size, window, shift, device))

    def _mask(
        self,
        padded: tuple[int, int],
        window: tuple[int, int],
        shift: tuple[int, int],
        device: torch.device,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The shift mask, as an additive fp32 term (0 or -inf) and as a 0/1 factor."""
        if torch.jit.is_scripting():
            return shift_masks(padded, window, shift, device)
        return self._cached(("mask", padded, window, shift, device))

    @torch.jit.unused  # TorchScript takes index_select: an autograd.Function cannot compile
    def _permute(self, tokens: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
        """``tokens.index_select(1, order)``, ``order`` a permutation (``permute_tokens``)."""
        return permute_tokens(tokens, order, inverse)

    @torch.jit.unused
    def _cached(self, key: tuple):
        """Geometry tensors, built once per ``key``: ``("index", grid, device)``,
        ``("mask", padded, window, shift, device)`` or ``("order", size, window, shift, device)``.

        Built outside inference mode: a tensor made under ``torch.inference_mode`` cannot be
        saved for backward, and the first forward (a FLOP count, say) may well run there. While
        a graph is being captured (``torch.compile``, ``torch.export``) nothing is cached: the
        geometry becomes part of the graph instead of a stray tensor attribute.
        """
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return self._build(key)
        if key in self._cache:  # every forward after the first: a lookup, nothing built
            return self._cache[key]
        with torch.inference_mode(False), torch.no_grad():
            self._cache[key] = self._build(key)
        return self._cache[key]

    @torch.jit.unused
    def _build(self, key: tuple):
        kind, *shape, device = key
        if kind == "index":
            return relative_position_index(shape[0], self.window_size, device)
        if kind == "mask":
            return shift_masks(*shape, device)
        return window_order(*shape, device)
