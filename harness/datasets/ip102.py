"""IP102 v1.1 (Wu et al., CVPR 2019): 102 insect-pest classes, 45,095 / 7,508 / 22,619 images.

Layout::

    ROOT/images/00000.jpg ... 75221.jpg     flat
    ROOT/train.txt, val.txt, test.txt       lines "00002.jpg 0", labels 0..101
    ROOT/classes.txt                        optional; "1 rice leaf roller" numbered from 1,
                                            CRLF line ends and trailing tabs are tolerated
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.datasets._images import (
    DataError,
    ImageList,
    check_splits,
    require_dir,
    require_file,
    require_images_dir,
)
from harness.datasets._registry import NoOptions, register

NUM_CLASSES = 102
SPLITS = ("train", "val", "test")
SPLIT_SIZES = {"train": 45_095, "val": 7_508, "test": 22_619}


def read_classes(path, expected: int = NUM_CLASSES) -> list[str]:
    """Class names from ``classes.txt`` in label order; the count must equal ``expected``."""
    names: dict[int, str] = {}
    with open(path, newline="") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            number, _, name = line.partition(" ")
            if not number.isdigit():
                raise DataError(f"{path}:{lineno}: expected '<number> <name>', got {raw!r}")
            names[int(number)] = name.strip()
    if len(names) != expected or sorted(names) != list(range(1, expected + 1)):
        raise DataError(
            f"{path}: class-count mismatch: found {len(names)} classes numbered "
            f"{min(names, default=0)}..{max(names, default=0)}, expected {expected} "
            f"numbered 1..{expected}"
        )
    return [names[i] for i in range(1, expected + 1)]


def read_split(root, split: str, num_classes: int = NUM_CLASSES) -> list[tuple[str, int]]:
    """``(image path, label)`` pairs of one split file, every line checked."""
    split_file = require_file(root / f"{split}.txt", "IP102", "lines like '00002.jpg 0'")
    images = require_images_dir(root, "IP102")
    samples = []
    with open(split_file) as f:
        for lineno, raw in enumerate(f, 1):
            parts = raw.split()
            if not parts:
                continue
            where = f"{split_file}:{lineno}"
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{where}: expected '<image> <label>', got {raw.rstrip()!r}")
            label = int(parts[1])
            if not 0 <= label < num_classes:
                raise DataError(f"{where}: label {label} out of range 0..{num_classes - 1}")
            path = images / parts[0]
            if not path.is_file():
                raise DataError(f"{where}: image {parts[0]!r} not found in {str(images)!r}")
            samples.append((str(path), label))
    if not samples:
        raise DataError(f"{split_file}: no samples")
    return samples


@register("ip102")
def load(split: str, transform: Callable | None, data: Any, options: NoOptions) -> ImageList:
    return ip102(data.root, split, transform, data.corrupt)


def ip102(
    root,
    split: str,
    transform: Callable | None = None,
    corrupt: str = "fail",
    num_classes: int = NUM_CLASSES,
) -> ImageList:
    if split not in SPLITS:
        raise ValueError(f"IP102 split {split!r} is not valid; choices: {', '.join(SPLITS)}")
    root = require_dir(root, "IP102")
    classes = None
    if (root / "classes.txt").is_file():
        classes = read_classes(root / "classes.txt", num_classes)
    splits = {s: read_split(root, s, num_classes) for s in SPLITS}  # all three: checked together
    check_splits(f"IP102 ({root})", splits)
    return ImageList(splits[split], num_classes, transform, corrupt, classes, name=f"ip102/{split}")
