"""A test helper: the largest block of memory any op makes while code runs, backward included
(views of existing memory count nothing)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LargestAllocation(TorchDispatchMode):
    """``with LargestAllocation() as seen: ...``, then ``seen.nbytes`` and ``seen.op``: the
    largest storage an op created (a view's storage is its base's, counted where it was made)."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {t.untyped_storage().data_ptr() for t in _tensors(args, kwargs)}
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            storage = t.untyped_storage()
            if storage.data_ptr() not in inputs and storage.nbytes() > self.nbytes:
                self.nbytes, self.op = storage.nbytes(), func
        return out


def _tensors(*trees) -> list[torch.Tensor]:
    return [t for t in tree_flatten(trees)[0] if isinstance(t, torch.Tensor)]
