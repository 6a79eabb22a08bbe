"""A dataset written only to ``harness/datasets/_registry.py``'s contract: one file, no edits
elsewhere (the README's "Adding a dataset" shows the same shape). Bars on noise: the label is the
orientation of a bright bar (horizontal or vertical), so a model can learn it in one epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

from harness.datasets import register
from harness.datasets._images import ArrayImages
from variants import Range


@dataclass(frozen=True)
class Options:
    per_class: Annotated[int, Range(2)] = 40


@register("toy_bars", options=Options, needs_root=False, note="generated toy dataset (tests)")
def load(split: str, transform: Any, data: Any, options: Options) -> ArrayImages:
    seed = {"train": 0, "val": 1, "test": 2}[split] + 10 * data.split_seed
    rng = np.random.default_rng(seed)
    n = 2 * options.per_class
    images = rng.integers(0, 60, (n, 16, 16), dtype=np.uint8)
    labels = np.arange(n) % 2
    for i, label in enumerate(labels):
        row = rng.integers(2, 14)
        if label:
            images[i, :, row] = 255
        else:
            images[i, row, :] = 255
    return ArrayImages(images, labels, 2, transform, name=f"toy_bars/{split}")
