"""``build_dataset``: the split a run asks for, from the dataset registry (``harness.datasets``),
with the recipe's transform and the ``limit_*`` caps applied."""

from __future__ import annotations

from harness import datasets
from harness.config import DataConfig, TrainConfig
from harness.transforms import build_transform


def dataset_note(name: str) -> str:
    """What every result on dataset ``name`` must say about it ("" for the real benchmarks)."""
    return datasets.get(name).note


def build_dataset(data: DataConfig, train: TrainConfig, split: str):
    """The ``split`` of ``data.name`` with the recipe's transform; ``limit_*`` caps applied."""
    spec = datasets.get(data.name)
    transform = build_transform(data, train, is_training=split == "train")
    ds = spec.load(split, transform, data, spec.options(**data.options))
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
