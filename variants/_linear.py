"""``Linear``: an ``nn.Linear`` that runs fp32 inference on CPU through oneDNN's matmul.

``nn.Linear`` runs MKL's GEMM on CPU. oneDNN, which torch bundles (and which torch.compile's CPU
backend fuses linear layers with), was 2.1-2.4x as fast at every linear shape of the Swin-T
layout, bias included, on the 2-core AMD EPYC of 2026-12-02 (1 thread, interleaved rounds), and
fc1 with its GELU fused 2.1-4.1x; results equal within fp32 round-off (GELU bit for bit). In
training (``OneDNNLinear``) the forward and the input's gradient run on oneDNN; inference reads
each weight packed once into oneDNN's layout (:func:`packed_weight`). Other dtypes and devices,
FLOP counting, traces and graph captures take ``nn.Linear``'s path.
"""

# No ``from __future__ import annotations``: TorchScript compiles ``Linear.forward``.

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.weak import WeakIdKeyDictionary

from variants._cpu_build import cpuinfo_lines
from variants._eager import plain_cpu_fp32
from variants._versions import versions


def _has_onednn_linear() -> bool:
    try:
        torch.ops.mkldnn._linear_pointwise  # noqa: B018  (present in torch builds with oneDNN)
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


HAS_ONEDNN_LINEAR = _has_onednn_linear()


def _cpu_vendor() -> str:
    """The CPU's vendor as Linux names it (``GenuineIntel``, ``AuthenticAMD``); "" elsewhere."""
    vendors = (ln.split(":", 1)[1] for ln in cpuinfo_lines() or [] if ln.startswith("vendor_id"))
    return next(vendors, "").strip()


# The input's gradient in training, dY W, on MKL's GEMM where the CPU is Intel's: a training
# step's 48 products took 180 against 211 ms on oneDNN reading the weight transposed (Xeon,
# 2026-12-06, 5 interleaved rounds; stage 4's fc2 65 against 149 GFLOP/s). On AMD's EPYC MKL
# takes a slower path (90-104 GFLOP/s against oneDNN's 94-227), so oneDNN keeps it there.
def _input_grad_on_mkl() -> bool:
    return torch.backends.mkl.is_available() and _cpu_vendor() == "GenuineIntel"


INPUT_GRAD_ON_MKL = _input_grad_on_mkl()


@torch.jit.unused
def onednn_applies(x: Tensor) -> bool:
    """fp32 inference on CPU, in eager execution (``variants._eager``)."""
    return HAS_ONEDNN_LINEAR and not torch.is_grad_enabled() and plain_cpu_fp32(x)


@torch.jit.unused
def onednn_trains(x: Tensor) -> bool:
    """fp32 training on CPU, in eager execution: :class:`OneDNNLinear` under autograd."""
    return HAS_ONEDNN_LINEAR and torch.is_grad_enabled() and plain_cpu_fp32(x)


@torch.jit.unused
def onednn_linear(
    x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool = False, packed: bool = False
) -> Tensor:
    """``x @ weight.T + bias`` (then exact GELU), through oneDNN; ``x`` of any leading shape.
    ``packed``: read the weight from its copy in oneDNN's blocked layout (:func:`packed_weight`),
    for inference, where the weight does not change between calls."""
    flat = x.reshape(-1, x.shape[-1])
    attr, algorithm = ("gelu", "none") if gelu else ("none", "")
    w = packed_weight(weight) if packed else weight
    out = torch.ops.mkldnn._linear_pointwise(flat.contiguous(), w, bias, attr, [], algorithm)
    return out.view(*x.shape[:-1], weight.shape[0])


# weight -> (its storage and version when packed, the packed copy); an entry goes with
# its weight, and is never pickled or copied with a module
_PACKED = WeakIdKeyDictionary()
PACKING_ROWS = 4096  # oneDNN's layout for "many rows"; the same for 64 rows up, measured


def _reorder(weight: Tensor, rows: int) -> Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


@torch.jit.unused
def packed_weight(weight: Tensor) -> Tensor:
    """``weight`` reordered once into the blocked layout oneDNN's matmul reads, which a plain
    weight is reordered into on every call: 1.02-1.07x at the Swin-T layout's shapes at batch 4,
    1.16x at stage 4's fc1 at batch 1 (interleaved, 1 thread, 2026-12-05); results bit for bit
    equal from 2 rows up (one row takes oneDNN's vector path: within round-off). Repacked when
    the weight changes in a way torch counts (its version counter: an optimiser step,
    ``load_state_dict``, an in-place op) or is replaced; ``weight.data``'s in-place changes,
    which torch does not count, are not seen (as for the stem's folded weights and the
    attention's kept tables)."""
    key = versions([weight])
    if key is None:  # made under inference mode: no version to tell a change by, and packing
        return weight  # every call would cost more than it saves (2 ms for a 9 MB weight)
    entry = _PACKED.get(weight)
    if entry is not None and entry[0] == key:
        return entry[1]
    packed = _reorder(weight.detach(), PACKING_ROWS)
    _PACKED[weight] = (key, packed)
    return packed


@torch.jit.unused
def input_gradient(dout: Tensor, weight: Tensor) -> Tensor:
    """``dout @ weight``, a linear layer's input gradient (``dout`` of any leading shape), on the
    faster of the two GEMMs for this CPU (:data:`INPUT_GRAD_ON_MKL`)."""
    if not INPUT_GRAD_ON_MKL:
        return onednn_linear(dout, weight.t(), None)  # a strided view: no transposed copy
    flat = dout.reshape(-1, dout.shape[-1])
    return (flat @ weight).view(*dout.shape[:-1], weight.shape[1])


def cpu_gemms() -> str:
    """Which library runs each product of an fp32 linear layer on CPU, for the records."""
    if not HAS_ONEDNN_LINEAR:
        return "torch's own (nn.Linear's path)"
    grad = "MKL" if INPUT_GRAD_ON_MKL else "oneDNN"
    return f"forward oneDNN, input gradient {grad}, weight gradient torch.mm"


class OneDNNLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` with oneDNN's matmul forward, the input's gradient on
    :func:`input_gradient` (on oneDNN it reads the weight through a transposed view, 0.90x the
    time of copying it first, AMD EPYC), the weight's gradient, ``dY^T X``, on ``torch.mm``
    (oneDNN would need both operands transposed and copied). Keeps what ``F.linear`` keeps: the
    input and the weight.
    fc1 + GELU, forward and backward, 1.61x ``F.linear``'s GEMMs (interleaved, 1 thread)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_linear(x, weight, bias)

    @staticmethod
    @once_differentiable  # a second derivative would miss the kernel's ops: say so
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        dflat = dout.reshape(-1, dout.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = input_gradient(dout, weight)
        if ctx.needs_input_grad[1]:
            dw = dflat.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dflat.sum(0)
        return dx, dw, db


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict); fp32 on CPU through
    oneDNN, inference and training."""

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting():
            if onednn_applies(x):
                return onednn_linear(x, self.weight, self.bias, packed=True)
            if onednn_trains(x):
                return OneDNNLinear.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
