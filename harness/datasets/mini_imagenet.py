"""Mini-ImageNet for 100-way classification, re-split per class with a seeded, recorded split.

Two layouts are recognised:

* Ravi & Larochelle: ``ROOT/{train,val,test}.csv`` with header ``filename,label`` (label = WordNet
  id, e.g. ``n0153282900000005.jpg,n01532829``) and the images in ``ROOT/images/``, flat or in
  one folder per class (``images/n01532829/n0153282900000005.jpg``, a common repackaging).
  The 64/16/20 class split is for few-shot learning; all rows are pooled here.
* Folder per class: ``ROOT/<wnid>/*.jpg`` (one folder per class).

All classes are then re-split per class: files sorted, shuffled with ``split_seed``, the first
``train_per_class`` are for training, of which the last ``val_per_class`` are held out for
validation (model selection reads only these), and the next ``test_per_class`` go to test
(defaults 500 / 50 / 100: 450 train, 50 val, 100 test per class). ``split_manifest`` returns
exactly which files went where, for the run record.
"""

from __future__ import annotations

import csv
import hashlib
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from harness.datasets._images import (
    DataError,
    ImageList,
    check_splits,
    require_dir,
    require_images_dir,
)
from harness.datasets._registry import register
from variants._config import Range

NUM_CLASSES = 100
SPLITS = ("train", "val", "test")  # val is carved from the training images, seeded
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def _image_file(images: Path, filename: str, wnid: str) -> Path | None:
    """The image, flat (``images/x.jpg``) or in its class folder (``images/wnid/x.jpg``)."""
    for candidate in (images / filename, images / wnid / filename):
        if candidate.is_file():
            return candidate
    return None


def _from_csvs(root: Path) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = {}
    images = require_images_dir(root, "Mini-ImageNet")
    for name in ("train.csv", "val.csv", "test.csv"):
        path = root / name
        if not path.is_file():
            raise DataError(
                f"Mini-ImageNet: {name!r} missing in {str(root)!r} (Ravi CSV layout "
                "needs train.csv, val.csv and test.csv)"
            )
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != ["filename", "label"]:
                raise DataError(f"{path}:1: expected header 'filename,label', got {header!r}")
            for lineno, row in enumerate(reader, 2):
                if len(row) != 2:
                    raise DataError(f"{path}:{lineno}: expected 'filename,label', got {row!r}")
                file = _image_file(images, row[0], row[1])
                if file is None:
                    raise DataError(
                        f"{path}:{lineno}: image {row[0]!r} not found in {str(images)!r} "
                        f"(nor in {str(images / row[1])!r})"
                    )
                by_class.setdefault(row[1], []).append(str(file))
    return _without_repeats(by_class, root)


def _without_repeats(by_class: dict[str, list[str]], root: Path) -> dict[str, list[str]]:
    """Rows are pooled before the re-split, so a repeated row is harmless once dropped (kept, it
    could land in train and test at once); one file under two labels is an error."""
    owner: dict[str, str] = {}
    repeats = 0
    for wnid, files in by_class.items():
        for f in files:
            if owner.setdefault(f, wnid) != wnid:
                raise DataError(
                    f"Mini-ImageNet: {Path(f).name!r} is listed under both {owner[f]!r} and "
                    f"{wnid!r} in the CSVs of {str(root)!r}"
                )
        repeats += len(files) - len(set(files))
        by_class[wnid] = list(dict.fromkeys(files))
    if repeats:
        print(
            f"warning: Mini-ImageNet: dropped {repeats} repeated CSV row(s) in {root}",
            file=sys.stderr,
        )
    return by_class


def _from_folders(root: Path) -> dict[str, list[str]]:
    by_class = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "images"):
        files = sorted(str(f) for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if files:
            by_class[folder.name] = files
    return by_class


def scan(root) -> dict[str, list[str]]:
    """Files per class (WordNet id), from whichever layout ``root`` has."""
    root = require_dir(root, "Mini-ImageNet")
    if any((root / n).exists() for n in ("train.csv", "val.csv", "test.csv")):
        return _from_csvs(root)
    by_class = _from_folders(root)
    if not by_class:
        raise DataError(
            f"Mini-ImageNet: {str(root)!r} has neither train/val/test.csv nor "
            "class folders with images"
        )
    return by_class


def resplit(
    by_class: dict[str, list[str]],
    train_per_class: int,
    test_per_class: int,
    seed: int,
    num_classes: int = NUM_CLASSES,
    val_per_class: int = 0,
) -> dict[str, list[tuple[str, int]]]:
    """Per class, seeded: ``train_per_class`` images for training, of which the last
    ``val_per_class`` are held out as validation, and the next ``test_per_class`` for test.

    The test split does not depend on ``val_per_class``: carving validation out of the training
    block keeps test results comparable with runs made before there was a validation split.
    """
    if len(by_class) != num_classes:
        raise DataError(
            f"Mini-ImageNet: class-count mismatch: found {len(by_class)} classes, "
            f"expected {num_classes}"
        )
    if val_per_class >= train_per_class:
        raise DataError(
            f"Mini-ImageNet: val_per_class={val_per_class} must be smaller than "
            f"train_per_class={train_per_class} (validation is carved from the training images)"
        )
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    keep = train_per_class - val_per_class
    for label, wnid in enumerate(sorted(by_class)):
        files = sorted(by_class[wnid])
        need = train_per_class + test_per_class
        if len(files) < need:
            raise DataError(
                f"Mini-ImageNet: class {wnid!r} has {len(files)} images, fewer than "
                f"train_per_class + test_per_class = {need}"
            )
        random.Random(f"{seed}-{wnid}").shuffle(files)
        splits["train"] += [(f, label) for f in files[:keep]]
        splits["val"] += [(f, label) for f in files[keep:train_per_class]]
        splits["test"] += [(f, label) for f in files[train_per_class:need]]
    check_splits("Mini-ImageNet", splits)
    return splits


def split_manifest(splits: dict[str, list[tuple[str, int]]]) -> dict[str, object]:
    """Counts and a content hash of the split (file names + labels), for the run record."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        for path, label in splits[name]:
            digest.update(f"{name}:{Path(path).name}:{label}\n".encode())
    return {"counts": {k: len(v) for k, v in splits.items()}, "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class Options:
    """Mini-ImageNet's own [data] keys: how many images per class each split gets."""

    train_per_class: Annotated[int, Range(2)] = 500  # training + validation images per class
    val_per_class: Annotated[int, Range(1)] = 50  # carved from the training images
    test_per_class: Annotated[int, Range(1)] = 100


@register("mini_imagenet", options=Options)
def load(split: str, transform: Callable | None, data: Any, options: Options) -> ImageList:
    return mini_imagenet(
        data.root,
        split,
        transform,
        corrupt=data.corrupt,
        train_per_class=options.train_per_class,
        test_per_class=options.test_per_class,
        split_seed=data.split_seed,
        val_per_class=options.val_per_class,
    )


def mini_imagenet(
    root,
    split: str,
    transform: Callable | None = None,
    corrupt: str = "fail",
    train_per_class: int = 500,
    test_per_class: int = 100,
    split_seed: int = 0,
    num_classes: int = NUM_CLASSES,
    val_per_class: int = 50,
) -> ImageList:
    if split not in SPLITS:
        raise ValueError(
            f"Mini-ImageNet split {split!r} is not valid; choices: {', '.join(SPLITS)}"
        )
    by_class = scan(root)
    splits = resplit(
        by_class, train_per_class, test_per_class, split_seed, num_classes, val_per_class
    )
    ds = ImageList(
        splits[split],
        num_classes,
        transform,
        corrupt,
        classes=sorted(by_class),
        name=f"mini_imagenet/{split}",
    )
    ds.split_files = {k: [Path(f).name for f, _ in v] for k, v in splits.items()}
    ds.split_info = {
        **split_manifest(splits),
        "seed": split_seed,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "test_per_class": test_per_class,
    }
    return ds
