"""A toy variant written only to the contract in ``variants/_contract.py``: one file, no edits
elsewhere. It mixes tokens by average pooling (PoolFormer-style) instead of attention, declares no
capabilities (no recorded weights, no shift, no reference), and still runs everywhere a variant
runs: the conformance tests, a sweep and the report (``tests/test_one_file_variant.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor, nn

import variants


@dataclass(frozen=True)
class PoolMixerConfig:
    pool: Annotated[int, variants.Range(1, 7)] = 3  # odd sizes keep the map's shape


@variants.register("toy_pool_mixer")
@variants.register("toy_pool_mixer_wide", pool=5)
class PoolMixerAttention(nn.Module):
    """Token mixing by local average pooling minus identity, then a linear projection."""

    Config = PoolMixerConfig

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        cfg: PoolMixerConfig = PoolMixerConfig(),
    ) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(cfg.pool, stride=1, padding=cfg.pool // 2, count_include_pad=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, H, W, C] -> [B, H, W, C]
        pooled = self.pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(pooled - x)
