"""``build_dataset``: the split a run asks for, from the dataset registry (``harness.datasets``),
with the recipe's transform and the ``limit_*`` caps applied."""

from __future__ import annotations

from harness import datasets
from harness.config import DataConfig, TrainConfig
from harness.transforms import build_transform


def dataset_note(name: str) -> str:
    """What every result on dataset ``name`` must say about it ("" for the real benchmarks)."""
    return datasets.get(name).note


def dataset_label(data: DataConfig) -> str:
    """How results name the dataset: its name, or what its options call it (``marks-order``)."""
    options = datasets.get(data.name).options(**data.options)
    return getattr(options, "label", data.name)


def build_dataset(data: DataConfig, train: TrainConfig, split: str):
    """The ``split`` of ``data.name`` with the recipe's transform; ``limit_*`` caps applied."""
    spec = datasets.get(data.name)
    transform = build_transform(data, train, is_training=split == "train")
    ds = spec.load(split, transform, data, spec.options(**data.options))
    limit = data.limit_train if split == "train" else data.limit_test
    if limit is not None and limit < len(ds):
        _truncate(ds, limit)
    return ds


def verify(data: DataConfig, train: TrainConfig, decode: bool = False) -> dict[str, object]:
    """Build every split as a run would (root, split files, class count, each listed image on
    disk: errors name the file and line); with ``decode``, also open every image.

    Returns the split sizes and, with ``decode``, ``bad``: ``[(file, reason)]``.
    """
    spec = datasets.get(data.name)
    options = spec.options(**data.options)
    splits = {s: spec.load(s, None, data, options) for s in ("train", "val", "test")}
    report: dict[str, object] = {s: len(ds) for s, ds in splits.items()}
    if decode:
        report["bad"] = [bad for ds in splits.values() for bad in _undecodable(ds)]
    return report


def check_data(runs, log, decode: bool = False) -> list[tuple[str, str]]:
    """``verify`` each distinct dataset of ``runs`` once (before anything trains); logs the
    split sizes and returns the images that do not decode (only looked for with ``decode``)."""
    seen, bad = set(), []
    for run in runs:
        key = repr(run.data)
        if key in seen:
            continue
        seen.add(key)
        report = verify(run.data, run.train, decode=decode)
        bad += report.pop("bad", [])
        shown = ", ".join(f"{k} {v}" for k, v in report.items())
        log(f"data: {run.data.name}{f' ({run.data.root})' if run.data.root else ''}: {shown}")
    return bad


def _undecodable(ds) -> list[tuple[str, str]]:
    from harness.datasets._images import DECODE_ERRORS, load_rgb

    if not hasattr(ds, "samples"):
        return []  # in-memory arrays: nothing to decode
    bad = []
    for path, _ in _progress(ds.samples, f"decoding {ds.name}"):
        try:
            load_rgb(path)
        except DECODE_ERRORS as exc:
            bad.append((path, f"{type(exc).__name__}: {exc}"))
    return bad


def _progress(items, desc: str):
    import sys

    if not sys.stderr.isatty():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, leave=False)


def _truncate(ds, limit: int) -> None:
    """Keep an evenly spaced subset (so every class stays represented)."""
    step = len(ds) / limit
    keep = [int(i * step) for i in range(limit)]
    if hasattr(ds, "samples"):
        ds.samples = [ds.samples[i] for i in keep]
    else:
        ds.images, ds.labels = ds.images[keep], [ds.labels[i] for i in keep]
