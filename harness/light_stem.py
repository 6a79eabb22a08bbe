"""The conv stem's front in training (conv1, BatchNorm, GELU, conv2) keeping only its input.

Op by op, autograd keeps conv1's output (BatchNorm's input), GELU's input and conv2's input:
three feature maps at half the image's resolution, the stem's largest (112 x 112 x 48 each at
224 px, 2.3 MB per image). This function keeps the image (which the caller holds anyway) and the
per-channel batch statistics, and recomputes the maps in backward (conv1 costs 27 MACs per
output value), channels-last (no layout conversions), BatchNorm as one ``addcmul`` and GELU with
its gradient in one pass (``harness.light_mlp.gelu_and_grad``): 1.33x the stem's training step
of op-by-op recomputes in NCHW (batch 4, 15 interleaved rounds). Running statistics are updated
once, exactly as ``nn.BatchNorm2d`` updates them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.light_mlp import gelu_and_grad

convolution_backward = torch.ops.aten.convolution_backward


def _channel(t: Tensor) -> Tensor:
    return t.view(1, -1, 1, 1)


def _channels_last(x: Tensor) -> Tensor:
    """oneDNN's layout: every map after it follows, so no convolution converts one (the image
    is kept as given, not in this copy)."""
    return x.contiguous(memory_format=torch.channels_last)


class ConvBNGELUConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, bn_w, bn_b, running_mean, running_var, w2, b2, conf):
        (s1, p1, s2, p2), momentum, eps = conf
        y1 = F.conv2d(_channels_last(x), w1, None, s1, p1)
        z, mean, invstd = torch.ops.aten.native_batch_norm(
            y1, bn_w, bn_b, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, w1, bn_w, bn_b, running_mean, running_var, w2, mean, invstd)
        ctx.conf = conf
        ctx.has_b2 = b2 is not None
        return F.conv2d(F.gelu(z), w2, b2, s2, p2)

    @staticmethod
    def backward(ctx, dout):
        x, w1, bn_w, bn_b, running_mean, running_var, w2, mean, invstd = ctx.saved_tensors
        (s1, p1, s2, p2), _, eps = ctx.conf
        x = _channels_last(x)
        y1 = F.conv2d(x, w1, None, s1, p1)
        scale = invstd * bn_w
        z = torch.addcmul(_channel(bn_b - mean * scale), y1, _channel(scale))  # BatchNorm
        conv2 = (s2, p2, [1, 1], False, [0, 0], 1)
        dg = convolution_backward(dout, z, w2, None, *conv2, [True, False, False])[0]
        g, dz = gelu_and_grad(z, dg)  # GELU recomputed with its gradient, in one pass on CPU
        b2_size = [w2.shape[0]] if ctx.has_b2 else None
        _, dw2, db2 = convolution_backward(dout, g, w2, b2_size, *conv2, [False, True, ctx.has_b2])
        dy1, dbn_w, dbn_b = torch.ops.aten.native_batch_norm_backward(
            dz, y1, bn_w, running_mean, running_var, mean, invstd, True, eps, [True, True, True]
        )
        dx, dw1, _ = convolution_backward(
            dy1, x, w1, None, s1, p1, [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], True, False],
        )  # fmt: skip
        return dx, dw1, dbn_w, dbn_b, None, None, dw2, db2, None


def conv_bn_gelu_conv_train(x: Tensor, conv1: nn.Conv2d, bn: nn.BatchNorm2d, conv2: nn.Conv2d):
    """``conv2(gelu(bn(conv1(x))))`` for a training-mode ``bn`` with affine weights and running
    statistics, and bias-free ``conv1`` (BatchNorm's shift makes a bias redundant)."""
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    geometry = (conv1.stride, conv1.padding, conv2.stride, conv2.padding)
    return ConvBNGELUConv.apply(
        x, conv1.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var,
        conv2.weight, conv2.bias, (geometry, momentum, bn.eps),
    )  # fmt: skip
