"""The MLP's GELU and fc2 in training keeping GELU's input for backward, not its output as well.

Op by op, autograd keeps the hidden map twice: GELU keeps its input h for its gradient and fc2
keeps GELU's output a for its weight's gradient, two ``[tokens, 4C]`` maps per block, more than
half of a Swin-T's saved activations. :class:`GeluLinear` keeps h alone and recomputes a in
backward, where the fp32 CPU path does it in the same pass as GELU's gradient
(``_gelu_cpu.cpp``: one exp for both, cheaper than torch's gradient pass alone); elsewhere
torch's GELU runs once more. With oneDNN's linear layers, :class:`LightMlp` runs fc1, GELU and
fc2 as one function, so that the same pass also sums fc1's bias gradient (a whole training step
of vit_lsla_t 1.008x, IQR 1.004-1.023, 11 interleaved rounds, Intel Xeon, 1 thread). Results
equal the op-by-op MLP within round-off.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from variants._cpu_build import BuildError, build_and_load, disabled
from variants._eager import plain_cpu_fp32
from variants._linear import HAS_ONEDNN_LINEAR, input_gradient, onednn_linear, onednn_trains

SOURCE = Path(__file__).with_name("_gelu_cpu.cpp")
CHANNELS_LAST = torch.channels_last


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The fused pass, or None (switched off, or no compiler: the attention kernel, built by the
    same compiler, warns about that once): torch's ops then do the same maths."""
    if disabled():
        return None
    try:
        lib = build_and_load(SOURCE)
    except BuildError:
        return None
    p = ctypes.c_void_p
    lib.gelu_and_grad.argtypes = [p, p, p, p, ctypes.c_long, ctypes.c_int]
    lib.gelu_and_grad.restype = None
    lib.gelu_and_grad_sum.argtypes = [p, p, p, p, ctypes.c_long, ctypes.c_long, p, ctypes.c_int]
    lib.gelu_and_grad_sum.restype = None
    return lib


def gelu_and_grad(h: Tensor, da: Tensor) -> tuple[Tensor, Tensor]:
    """``GELU(h)`` and the gradient at h given ``da``, the gradient at GELU's output, which the
    fused pass overwrites with the result (a fresh buffer's first touch costs more than the pass
    itself: 2 of the 3 ms per 19 MB map at batch 4)."""
    dense = h.is_contiguous() or (h.dim() == 4 and h.is_contiguous(memory_format=CHANNELS_LAST))
    same_layout = dense and h.stride() == da.stride()  # the pass runs over memory, in order
    fused = plain_cpu_fp32(h) and plain_cpu_fp32(da) and same_layout
    lib = library() if fused else None
    if lib is None:
        return F.gelu(h), torch.ops.aten.gelu_backward(da, h)
    a = torch.empty_like(h)
    with record_function("light_mlp::gelu_and_grad"):  # named in torch.profiler's tables
        lib.gelu_and_grad(
            h.data_ptr(), da.data_ptr(), a.data_ptr(), da.data_ptr(), h.numel(),
            torch.get_num_threads(),
        )  # fmt: skip
    return a, da


def gelu_grad_and_bias_grad(h: Tensor, da: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`gelu_and_grad` plus the gradient's sum over the rows (the last dimension is the
    row), the preceding layer's bias gradient: in the same pass for contiguous fp32 maps whose
    rows are a multiple of 16 floats (a separate ``sum(0)`` reads the whole map again), else
    :func:`gelu_and_grad` and torch's sum (under a dispatch mode such as a FLOP counter too)."""
    width = h.shape[-1]
    fits = width % 16 == 0 and h.is_contiguous() and da.is_contiguous()
    lib = library() if fits and plain_cpu_fp32(h) and plain_cpu_fp32(da) else None
    if lib is None:
        a, dh = gelu_and_grad(h, da)
        return a, dh, dh.reshape(-1, width).sum(0)
    threads = max(1, min(torch.get_num_threads(), h.numel() // width))
    sums = h.new_zeros(threads, width)
    a = torch.empty_like(h)
    with record_function("light_mlp::gelu_and_grad"):
        lib.gelu_and_grad_sum(
            h.data_ptr(), da.data_ptr(), a.data_ptr(), da.data_ptr(), h.numel() // width,
            width, sums.data_ptr(), threads,
        )  # fmt: skip
    return a, da, sums.sum(0)


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if HAS_ONEDNN_LINEAR and plain_cpu_fp32(x):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


def _input_gradient(dout: Tensor, weight: Tensor) -> Tensor:  # dout @ weight
    if HAS_ONEDNN_LINEAR and plain_cpu_fp32(dout):
        return input_gradient(dout, weight)
    return F.linear(dout, weight.t())


class GeluLinear(torch.autograd.Function):
    """``linear(gelu(h), weight, bias)``, saving h and the weight. Under autocast the forward's
    ops take autocast's dtypes and the backward computes in the output gradient's dtype, as
    autocast's own backward does (autograd casts the weight's gradient to the weight's dtype)."""

    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return _linear(F.gelu(h), weight, bias)

    @staticmethod
    @once_differentiable  # a second derivative would miss the fused pass: say so
    def backward(ctx, dout):
        h, weight = ctx.saved_tensors
        weight = weight.to(dout.dtype)
        da = _input_gradient(dout, weight)
        a, dh = gelu_and_grad(h, da.to(h.dtype))
        dflat = dout.reshape(-1, dout.shape[-1])
        dw = db = None
        if ctx.needs_input_grad[1]:
            dw = dflat.t() @ a.to(dout.dtype).reshape(-1, a.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dflat.sum(0)
        return dh, dw, db


class LightMlp(torch.autograd.Function):
    """``fc2(gelu(fc1(x)))`` in fp32 on CPU with oneDNN's linear layers, saving x, GELU's input
    and the weights (what fc1 and :class:`GeluLinear` save between them); in backward fc1's bias
    gradient comes out of the fused GELU pass (:func:`gelu_grad_and_bias_grad`). The caller
    checks :func:`applies`."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        h = onednn_linear(x, w1, b1)
        ctx.save_for_backward(x, h, w1, w2)
        ctx.has_bias = (b1 is not None, b2 is not None)
        return onednn_linear(F.gelu(h), w2, b2)

    @staticmethod
    @once_differentiable  # a second derivative would miss the fused pass: say so
    def backward(ctx, dout):
        x, h, w1, w2 = ctx.saved_tensors
        a, dh, db1 = gelu_grad_and_bias_grad(h, input_gradient(dout, w2))
        dflat, hflat = dout.reshape(-1, dout.shape[-1]), dh.reshape(-1, dh.shape[-1])
        need = ctx.needs_input_grad
        dx = input_gradient(dh, w1) if need[0] else None
        dw1 = hflat.t() @ x.reshape(-1, x.shape[-1]) if need[1] else None
        dw2 = dflat.t() @ a.reshape(-1, a.shape[-1]) if need[3] else None
        db2 = dflat.sum(0) if ctx.has_bias[1] and need[4] else None
        return dx, dw1, db1 if ctx.has_bias[0] and need[2] else None, dw2, db2

    @staticmethod
    def applies(x: Tensor, hidden: int) -> bool:
        """fp32 training on CPU with oneDNN and the fused pass built, hidden rows of a multiple
        of 16 floats."""
        return hidden % 16 == 0 and onednn_trains(x) and library() is not None
