"""A test helper: move every parameter off its initial value (tables start constant or tiny,
where different paths could agree by accident)."""

from __future__ import annotations

import torch
from torch import nn


def away_from_init(module: nn.Module, scale: float = 0.1) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module
