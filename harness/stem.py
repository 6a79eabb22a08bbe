"""The conv stem: two 3x3 stride-2 convolutions, BatchNorm and GELU between, LayerNorm after.

No ``from __future__ import annotations`` here: TorchScript reads the signatures of the
Python-only methods below as real types.
"""

import functools

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import Tensor, nn

from harness.light_stem import conv_bn_gelu_conv_train
from variants._eager import plain_cpu_fp32
from variants._inference_chunks import chunked, rows_per_chunk
from variants._versions import kept


def _has_onednn_conv() -> bool:
    try:
        torch.ops.mkldnn._convolution_pointwise  # noqa: B018  (torch builds with oneDNN)
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


HAS_ONEDNN_CONV = _has_onednn_conv()


# the forward picks its path at run time (folded for inference, light for training), which an
# FX trace would freeze: timm's FX feature extraction keeps the stem whole, as a leaf
@register_notrace_module
class ConvStem(nn.Module):
    """Two 3x3 stride-2 convolutions (in -> dim/2 -> dim), BN+GELU between, LayerNorm after."""

    __jit_ignored_attributes__ = ["_folded"]  # noqa: RUF012  (Python-only inference cache)

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)
        self._folded: dict = {}  # inference weights (see _folded_weights)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, H/4, W/4, dim]
        if not torch.jit.is_scripting() and self._inference():
            return self._folded_forward(x)
        if not torch.jit.is_scripting() and self._light_backward(x):
            x = self._light_front(x)  # keeps its input for backward, not three maps
        else:
            x = self.conv2(self.act(self.bn1(self.conv1(x))))
        return self.norm(x.permute(0, 2, 3, 1))

    @torch.jit.unused
    def _light_backward(self, x: Tensor) -> bool:
        """Training in one dtype: under autocast the ops pick their own dtypes, which a
        recompute in backward (where autocast is off) would not reproduce."""
        return (
            self.training
            and torch.is_grad_enabled()
            and not torch.is_autocast_enabled(x.device.type)
            and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting()
        )

    @torch.jit.unused
    def _light_front(self, x: Tensor) -> Tensor:
        return conv_bn_gelu_conv_train(x, self.conv1, self.bn1, self.conv2)

    @torch.jit.unused
    def _inference(self) -> bool:
        return (
            not self.training
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting()
        )

    @torch.jit.unused
    def _folded_forward(self, x: Tensor) -> Tensor:
        """Inference with BatchNorm folded into conv1, both convolutions channels-last (oneDNN's
        fast layout on CPU): 1.48x the stem's speed measured at batch 4 (15 interleaved rounds);
        in fp32 on CPU, conv1 with its GELU as one oneDNN convolution: the stem 1.32x again
        (batch 4, 15 interleaved rounds)."""
        w1, b1, w2 = self._folded_weights()
        c1, c2 = self.conv1, self.conv2
        x = x.contiguous(memory_format=torch.channels_last)
        if HAS_ONEDNN_CONV and plain_cpu_fp32(x):
            # conv1's map is the stem's largest: images in groups where it would be mapped fresh
            pixels = x.shape[2] * x.shape[3] // (c1.stride[0] * c1.stride[1])
            per_image = x.element_size() * c1.out_channels * pixels
            images = rows_per_chunk(x.shape[0], per_image)
            convs = functools.partial(self._onednn_convs, weights=(w1, b1, w2))
            x = convs(x) if images is None else chunked(convs, x, images)
        else:
            x = self.act(F.conv2d(x, w1, b1, c1.stride, c1.padding))
            x = F.conv2d(x, w2, c2.bias, c2.stride, c2.padding)
        return self.norm(x.permute(0, 2, 3, 1))

    @torch.jit.unused
    def _onednn_convs(self, x: Tensor, weights: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        w1, b1, w2 = weights  # the folded ones, looked up once per forward
        x = _onednn_conv(x, w1, b1, self.conv1, gelu=True)
        return _onednn_conv(x, w2, self.conv2.bias, self.conv2, gelu=False)

    @torch.jit.unused
    def _folded_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """Kept while every tensor they come from is unchanged (``variants._versions``; made
        under inference mode, they keep no version, and are folded every call)."""
        bn = self.bn1
        sources = [self.conv1.weight, self.conv2.weight, bn.weight, bn.bias]
        sources += [bn.running_mean, bn.running_var]
        return kept(self._folded, "weights", sources, self._fold)

    @torch.jit.unused
    def _fold(self) -> tuple[Tensor, Tensor, Tensor]:
        bn, cl = self.bn1, torch.channels_last
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w1 = self.conv1.weight * k.view(-1, 1, 1, 1)
        b1 = bn.bias - bn.running_mean * k
        return w1.contiguous(memory_format=cl), b1, self.conv2.weight.contiguous(memory_format=cl)


def _onednn_conv(x: Tensor, weight: Tensor, bias: Tensor | None, conv: nn.Conv2d, gelu: bool):
    """``conv``'s geometry with these weights (then exact GELU) as one oneDNN convolution."""
    attr, algorithm = ("gelu", "none") if gelu else ("none", "")
    geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *geometry, attr, [], algorithm)
