"""Whether a tensor is a plain fp32 CPU tensor in eager execution, autocast off: the condition
for the kernels that run outside torch's dispatcher (the fused CPU attention) or outside what a
capture can express (oneDNN's fused linear), so that FLOP counting, fake tensors, traces, graph
captures and autocast see ops they know."""

# No ``from __future__ import annotations``: TorchScript reads modules that import this one.
import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode


@torch.jit.unused
def plain_cpu_fp32(x: Tensor) -> bool:
    return (
        type(x) is Tensor
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")  # autocast's ops pick their own dtypes
        and _get_current_dispatch_mode() is None
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
    )
