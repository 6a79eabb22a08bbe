"""What identifies the state of the tensors a kept result was built from: each one's storage and
version counter, which torch bumps on every in-place change it sees (an optimiser step,
``load_state_dict``, an op under ``torch.no_grad()``).

Tensors made under ``torch.inference_mode()`` keep no version counter, so nothing built from them
can be known to be current: :func:`versions` gives None, and :func:`kept` rebuilds every call.
(Changes through ``tensor.data`` are not counted by torch either; the README says so.)"""

# No ``from __future__ import annotations``: TorchScript reads modules that import this one.
from collections.abc import Callable, MutableMapping
from typing import Any

import torch
from torch import Tensor


@torch.jit.unused
def versions(tensors: list[Tensor]) -> tuple | None:
    """``((storage, version), ...)`` of ``tensors``; None if any keeps no version counter."""
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t._version) for t in tensors)


@torch.jit.unused
def kept(cache: MutableMapping, key: Any, sources: list[Tensor], build: Callable[[], Any]) -> Any:
    """``build()`` (without autograd, outside inference mode, so the result can serve any later
    call), kept in ``cache[key]`` while ``sources`` are unchanged (:func:`versions`)."""
    version = versions(sources)
    hit = cache.get(key)
    if version is not None and hit is not None and hit[0] == version:
        return hit[1]
    with torch.inference_mode(False), torch.no_grad():
        built = build()
    if version is not None:
        cache[key] = (version, built)
    return built
