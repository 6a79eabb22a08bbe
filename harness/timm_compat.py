"""Load timm Swin checkpoints into ``swin_t_ref`` (or any patch-4 preset with ``swin`` attention).

timm's names already match ours except the inner bias, which lives in a ``RelPosTable`` submodule.
timm built for a small input clamps a stage's window to its feature map, per side (a 96x160
input gives 3x5 windows in the last stage), and sizes that stage's table ``(2h-1)(2w-1)`` for the
clamped ``h x w``; our tables stay ``(2M-1)^2`` and index the same offsets from their centre, so
such a table is embedded in the centre of ours. The clamped window is read from the timm module
(or, for a bare state dict, derived from the table size when only one shape fits). Any other key
that does not match is reported by name, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

_RENAMES = (("attn.relative_position_bias_table", "attn.inner_bias.relative_position_bias_table"),)
_IGNORED_SUFFIXES = ("relative_position_index", "attn_mask")  # buffers we derive ourselves


def convert_timm_swin_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename timm Swin keys to ours; derived buffers are dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(_IGNORED_SUFFIXES):
            continue
        for old, new in _RENAMES:
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    return out


def _table_sides(rows: int, side: int) -> list[tuple[int, int]]:
    """Every (2h-1, 2w-1) with odd sides up to ``side`` whose product is ``rows``."""
    return [(a, rows // a) for a in range(1, side + 1, 2) if rows % a == 0 and rows // a <= side]


def _embed_table(
    small: torch.Tensor, big: torch.Tensor, window: tuple[int, int] | None
) -> torch.Tensor | None:
    """A ``(2h-1)(2w-1) x heads`` table placed at the centre of a ``(2M-1)^2 x heads`` one."""
    b_side = round(big.shape[0] ** 0.5)
    if window is not None:
        sides = [(2 * window[0] - 1, 2 * window[1] - 1)]
    else:
        sides = _table_sides(small.shape[0], b_side)
    if small.shape[1] != big.shape[1] or len(sides) != 1:
        return None
    (sh, sw), heads = sides[0], big.shape[1]
    if sh * sw != small.shape[0] or sh > b_side or sw > b_side:
        return None
    top, left = (b_side - sh) // 2, (b_side - sw) // 2
    out = big.detach().clone().view(b_side, b_side, heads)
    out[top : top + sh, left : left + sw] = small.view(sh, sw, heads)
    return out.view_as(big)


def _timm_window(source: object, timm_key: str) -> tuple[int, int] | None:
    """The (clamped) window of the timm attention module owning ``timm_key``, if known."""
    if not isinstance(source, nn.Module):
        return None
    window = getattr(source.get_submodule(timm_key.rsplit(".", 1)[0]), "window_size", None)
    return tuple(window) if window is not None else None


def load_timm_swin(model: nn.Module, source: nn.Module | Mapping[str, torch.Tensor]) -> None:
    """Copy a timm Swin model's (or state dict's) weights into ``model``; strict on both sides."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    converted = convert_timm_swin_state_dict(state)
    own = model.state_dict()
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    for key in set(own) & set(converted):
        if key.endswith("relative_position_bias_table") and own[key].shape != converted[key].shape:
            timm_key = key.replace("attn.inner_bias.", "attn.")
            window = _timm_window(source, timm_key)
            embedded = _embed_table(converted[key], own[key], window)
            if embedded is not None:
                converted[key] = embedded
    mismatched = sorted(k for k in set(own) & set(converted) if own[k].shape != converted[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            "timm Swin checkpoint does not fit this model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape-mismatched {mismatched[:5]} "
            "(is the model a patch-4 preset with 'swin' attention and the same num_classes?)"
        )
    model.load_state_dict(converted, strict=True)
