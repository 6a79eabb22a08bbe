"""The conv stem: two 3x3 stride-2 convolutions, BatchNorm and GELU between, LayerNorm after.

No ``from __future__ import annotations`` here: TorchScript reads the signatures of the
Python-only methods below as real types.
"""

import torch
from torch import Tensor, nn

from harness.bn_gelu import bn_gelu_train


class ConvStem(nn.Module):
    """Two 3x3 stride-2 convolutions (in -> dim/2 -> dim), BN+GELU between, LayerNorm after."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, H/4, W/4, dim]
        x = self.conv1(x)
        if not torch.jit.is_scripting() and self._light_backward():
            x = self._bn_gelu(x)  # keeps one map for backward instead of two
        else:
            x = self.act(self.bn1(x))
        return self.norm(self.conv2(x).permute(0, 2, 3, 1))

    @torch.jit.unused
    def _light_backward(self) -> bool:
        return (
            self.training
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting()
        )

    @torch.jit.unused
    def _bn_gelu(self, x: Tensor) -> Tensor:
        return bn_gelu_train(x, self.bn1)
