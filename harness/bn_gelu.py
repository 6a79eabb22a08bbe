"""BatchNorm followed by GELU, in training, keeping one tensor for backward instead of two.

Op by op, autograd keeps BatchNorm's input and GELU's input (BatchNorm's output): two full
feature maps of the conv stem, its largest ones (112 x 112 at 224 px). This function keeps the
BatchNorm input only and recomputes the normalised map in backward (one multiply-add per
element). Running statistics are updated exactly as ``nn.BatchNorm2d`` updates them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _channel(t: Tensor) -> Tensor:
    return t.view(1, -1, 1, 1)


class BatchNormGELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
        z, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, weight, bias, running_mean, running_var, mean, invstd)
        ctx.eps = eps
        return torch.nn.functional.gelu(z)

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, running_mean, running_var, mean, invstd = ctx.saved_tensors
        z = (x - _channel(mean)) * _channel(invstd * weight) + _channel(bias)
        dz = torch.ops.aten.gelu_backward(dy, z)
        dx, dw, db = torch.ops.aten.native_batch_norm_backward(
            dz, x, weight, running_mean, running_var, mean, invstd, True, ctx.eps,
            [True, True, True],
        )  # fmt: skip
        return dx, dw, db, None, None, None, None


def bn_gelu_train(x: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    """``gelu(bn(x))`` for a training-mode ``bn`` with affine weights and running statistics."""
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    return BatchNormGELU.apply(
        x, bn.weight, bn.bias, bn.running_mean, bn.running_var, momentum, bn.eps
    )
