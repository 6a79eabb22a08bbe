"""What identifies the state of the tensors a kept result was built from: each one's storage and
version counter, which torch bumps on every in-place change it sees (an optimiser step,
``load_state_dict``, an op under ``torch.no_grad()``).

Tensors made under ``torch.inference_mode()`` keep no version counter, so nothing built from them
can be known to be current: :func:`versions` gives None and the caller rebuilds every call.
(Changes through ``tensor.data`` are not counted by torch either; the README says so.)"""

# No ``from __future__ import annotations``: TorchScript reads modules that import this one.
import torch
from torch import Tensor


@torch.jit.unused
def versions(tensors: list[Tensor]) -> tuple | None:
    """``((storage, version), ...)`` of ``tensors``; None if any keeps no version counter."""
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t._version) for t in tensors)
