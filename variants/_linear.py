"""``Linear``: an ``nn.Linear`` that runs fp32 inference on CPU through oneDNN's matmul.

``nn.Linear`` runs MKL's GEMM on CPU. oneDNN, which torch bundles (and which torch.compile's CPU
backend fuses linear layers with), was 2.1-2.4x as fast at every linear shape of the Swin-T
layout, bias included, on the 2-core AMD EPYC of 2026-12-02 (1 thread, interleaved rounds), and
fc1 with its GELU fused 2.1-4.1x; results equal within fp32 round-off (GELU bit for bit). Where
oneDNN is not the faster library (other CPUs) it costs little; training, other dtypes and
devices, FLOP counting and traces take ``nn.Linear``'s path.
"""

# No ``from __future__ import annotations``: TorchScript compiles ``Linear.forward``.

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants._eager import plain_cpu_fp32


def _has_onednn_linear() -> bool:
    try:
        torch.ops.mkldnn._linear_pointwise  # noqa: B018  (present in torch builds with oneDNN)
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


HAS_ONEDNN_LINEAR = _has_onednn_linear()


@torch.jit.unused
def onednn_applies(x: Tensor) -> bool:
    """fp32 inference on CPU, in eager execution (``variants._eager``)."""
    return HAS_ONEDNN_LINEAR and not torch.is_grad_enabled() and plain_cpu_fp32(x)


@torch.jit.unused
def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool = False) -> Tensor:
    """``x @ weight.T + bias`` (then exact GELU), through oneDNN; ``x`` of any leading shape."""
    flat = x.reshape(-1, x.shape[-1])
    attr, algorithm = ("gelu", "none") if gelu else ("none", "")
    out = torch.ops.mkldnn._linear_pointwise(flat.contiguous(), weight, bias, attr, [], algorithm)
    return out.view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict); fp32 CPU inference
    through oneDNN."""

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting() and onednn_applies(x):
            return onednn_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
