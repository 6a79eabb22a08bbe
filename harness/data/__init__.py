"""Datasets: IP102, Mini-ImageNet and the embedded stand-ins, behind one ``build_dataset``."""

from __future__ import annotations

from harness.config import DataConfig, TrainConfig
from harness.data.base import DataError
from harness.data.embedded import STANDIN_NOTE, embedded
from harness.data.ip102 import ip102
from harness.data.mini_imagenet import mini_imagenet
from harness.data.transforms import build_transform, make_mixup

EMBEDDED = ("digits", "mnist5k")

__all__ = [
    "DataError",
    "STANDIN_NOTE",
    "build_dataset",
    "build_transform",
    "make_mixup",
    "is_standin",
]


def is_standin(name: str) -> bool:
    return name in EMBEDDED


def build_dataset(data: DataConfig, train: TrainConfig, split: str):
    """The ``split`` of ``data.name`` with the recipe's transform; ``limit_*`` caps applied."""
    transform = build_transform(data, train, is_training=split == "train")
    if data.name in EMBEDDED:
        ds = embedded(data.name, split, transform, data.split_seed)
    elif data.name == "ip102":
        ds = ip102(data.root, split, transform, data.corrupt)
    elif data.name == "mini_imagenet":
        ds = mini_imagenet(
            data.root,
            split,
            transform,
            data.corrupt,
            data.train_per_class,
            data.test_per_class,
            data.split_seed,
        )
    else:
        raise ValueError(
            f"data.name={data.name!r} is not valid; choices: digits, mnist5k, ip102, mini_imagenet"
        )
    limit = data.limit_train if split == "train" else data.limit_test
    if limit is not None and limit < len(ds):
        _truncate(ds, limit)
    return ds


def _truncate(ds, limit: int) -> None:
    """Keep an evenly spaced subset (so every class stays represented)."""
    step = len(ds) / limit
    keep = [int(i * step) for i in range(limit)]
    if hasattr(ds, "samples"):
        ds.samples = [ds.samples[i] for i in keep]
    else:
        ds.images, ds.labels = ds.images[keep], [ds.labels[i] for i in keep]
