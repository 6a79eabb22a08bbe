"""Load timm Swin checkpoints into ``swin_t_ref`` (or any patch-4 preset with ``swin`` attention).

timm's names already match ours except the inner bias, which lives in a ``RelPosTable`` submodule.
timm built for a small input clamps a stage's window to its feature map and sizes that stage's
table ``(2m-1)^2`` for the clamped ``m``; our tables stay ``(2M-1)^2`` and index the same offsets
from their centre, so such a table is embedded in the centre of ours. Any other key that does not
match is reported by name, never silently dropped.
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


def _embed_table(small: torch.Tensor, big: torch.Tensor) -> torch.Tensor | None:
    """A ``(2m-1)^2 x h`` table placed at the centre of a ``(2M-1)^2 x h`` one (offsets align)."""
    s_side, b_side = round(small.shape[0] ** 0.5), round(big.shape[0] ** 0.5)
    if small.shape[1] != big.shape[1] or s_side**2 != small.shape[0] or s_side > b_side:
        return None
    lo = (b_side - s_side) // 2
    out = big.detach().clone().view(b_side, b_side, -1)
    out[lo : lo + s_side, lo : lo + s_side] = small.view(s_side, s_side, -1)
    return out.view_as(big)


def load_timm_swin(model: nn.Module, source: nn.Module | Mapping[str, torch.Tensor]) -> None:
    """Copy a timm Swin model's (or state dict's) weights into ``model``; strict on both sides."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    converted = convert_timm_swin_state_dict(state)
    own = model.state_dict()
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    for key in set(own) & set(converted):
        if key.endswith("relative_position_bias_table") and own[key].shape != converted[key].shape:
            embedded = _embed_table(converted[key], own[key])
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
