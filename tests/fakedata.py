"""Synthetic JPEG datasets in the exact on-disk layouts of IP102 and Mini-ImageNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _jpeg(path: Path, seed: int, size: int = 12) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, "JPEG")


def make_ip102(
    root: Path, per_split=(6, 3, 4), num_classes: int = 102, classes_txt: bool = True
) -> Path:
    """``root/images/00000.jpg..``, ``train/val/test.txt`` and a CRLF, tab-padded classes.txt."""
    images = root / "images"
    images.mkdir(parents=True)
    index = 0
    for split, n in zip(("train", "val", "test"), per_split, strict=True):
        lines = []
        for _ in range(n):
            name = f"{index:05d}.jpg"
            _jpeg(images / name, index)
            lines.append(f"{name} {(index * 7) % num_classes}")
            index += 1
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    if classes_txt:
        rows = [f"{i} pest number {i}\t\t" for i in range(1, num_classes + 1)]
        (root / "classes.txt").write_bytes("\r\n".join(rows).encode() + b"\r\n")
    return root


def wnids(n: int) -> list[str]:
    return [f"n{1000000 + i:08d}" for i in range(n)]


def make_mini_csv(root: Path, num_classes: int = 100, per_class: int = 4) -> Path:
    """Ravi & Larochelle layout: flat images/ and train/val/test.csv (64/16/20 class split)."""
    images = root / "images"
    images.mkdir(parents=True)
    ids = wnids(num_classes)
    n_train, n_val = int(num_classes * 0.64), int(num_classes * 0.16)
    groups = {
        "train": ids[:n_train],
        "val": ids[n_train : n_train + n_val],
        "test": ids[n_train + n_val :],
    }
    for split, members in groups.items():
        rows = ["filename,label"]
        for c, wnid in enumerate(members):
            for k in range(per_class):
                name = f"{wnid}{k + 1:08d}.jpg"
                _jpeg(images / name, c * 1000 + k)
                rows.append(f"{name},{wnid}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def make_mini_folders(root: Path, num_classes: int = 100, per_class: int = 4) -> Path:
    for c, wnid in enumerate(wnids(num_classes)):
        folder = root / wnid
        folder.mkdir(parents=True)
        for k in range(per_class):
            _jpeg(folder / f"{wnid}_{k}.JPEG", c * 1000 + k)
    return root
