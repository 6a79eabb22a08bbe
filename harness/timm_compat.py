"""Load timm Swin checkpoints into ``swin_t_ref`` (or any patch-4 preset with ``swin`` attention).

timm's names already match ours except the inner bias, which lives in a ``RelPosTable`` submodule.
Any key that still does not match is reported by name, never silently dropped.
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


def load_timm_swin(model: nn.Module, source: nn.Module | Mapping[str, torch.Tensor]) -> None:
    """Copy a timm Swin model's (or state dict's) weights into ``model``; strict on both sides."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    converted = convert_timm_swin_state_dict(state)
    own = model.state_dict()
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    mismatched = sorted(k for k in set(own) & set(converted) if own[k].shape != converted[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            "timm Swin checkpoint does not fit this model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape-mismatched {mismatched[:5]} "
            "(is the model a patch-4 preset with 'swin' attention and the same num_classes?)"
        )
    model.load_state_dict(converted, strict=True)
