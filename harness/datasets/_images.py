"""A labelled list of image files with strict checking and a corrupt-file policy.

Checks made when the dataset is built (each error names the file, line and the valid range):
missing root, missing split file, malformed line, a line naming a missing image, a label out of
range. Decoding errors at load time either fail (``corrupt="fail"``, the default) or are skipped
(``corrupt="skip"``): with ``skip`` the list is scanned once when built, unreadable files are
dropped, counted and listed in ``skipped`` (and in the run record).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

CORRUPT_POLICIES = ("fail", "skip")


class DataError(ValueError):
    """A problem with the user's dataset on disk; the message says where and what."""


def require_dir(root: str | os.PathLike | None, what: str) -> Path:
    if root is None:
        raise DataError(f"{what}: no dataset root given (set data.root or --set data.root=PATH)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{what}: dataset root {str(path)!r} does not exist or is not a directory")
    return path


def require_file(path: Path, what: str, expected: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what}: missing {path.name!r} in {str(path.parent)!r} ({expected})")
    return path


ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip", ".rar", ".7z")


def require_images_dir(root: Path, what: str) -> Path:
    """``root/images``, or an error that says what is there instead (an archive, ``Images/``)."""
    images = root / "images"
    if images.is_dir():
        return images
    near = [p.name for p in sorted(root.iterdir()) if p.name.lower().startswith("images")]
    archives = [n for n in near if n.lower().endswith(ARCHIVES)]
    if archives:
        hint = f"extract {archives[0]} into {images}"
    elif near:
        hint = f"rename {near[0]!r} to 'images' (the name is case-sensitive)"
    else:
        hint = "the images are expected in an 'images' folder"
    raise DataError(f"{what}: no {str(images)!r}; {hint}")


def _examples(items: list[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:3])
    return shown + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def check_splits(what: str, splits: dict[str, list[tuple[str, int]]]) -> None:
    """No image twice in one split, none in two splits: either would inflate or leak accuracy."""
    for split, samples in splits.items():
        seen: set[str] = set()
        twice = [p for p, _ in samples if p in seen or seen.add(p)]
        if twice:
            raise DataError(
                f"{what}: {len(twice)} image(s) listed more than once in {split}: "
                f"{_examples(twice)}; remove the repeated lines"
            )
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = sorted({p for p, _ in splits[a]} & {p for p, _ in splits[b]})
            if both:
                raise DataError(
                    f"{what}: {len(both)} image(s) are in both {a} and {b}: {_examples(both)}; "
                    "a split must not share images with another"
                )


# What a broken, truncated or hostile image file raises in PIL.
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """An 8-bit RGB image; 16- and 32-bit grey images are scaled down, not clipped to white."""
    with Image.open(path) as img:
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
            values = np.asarray(img, dtype=np.float64)
            bits = 16 if img.mode.startswith("I;16") or values.max() < 2**16 else 32
            img = Image.fromarray((values / (2**bits - 1) * 255).round().astype(np.uint8))
        return img.convert("RGB")


class ImageList(Dataset):
    """``(path, label)`` pairs loaded as RGB PIL images and passed through ``transform``."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        num_classes: int,
        transform: Callable | None = None,
        corrupt: str = "fail",
        classes: Sequence[str] | None = None,
        name: str = "images",
    ) -> None:
        if corrupt not in CORRUPT_POLICIES:
            raise ValueError(
                f"corrupt={corrupt!r} is not valid; choices: {', '.join(CORRUPT_POLICIES)}"
            )
        self.name = name
        self.num_classes = num_classes
        self.classes = list(classes) if classes else [str(i) for i in range(num_classes)]
        self.transform = transform
        self.corrupt = corrupt
        self.skipped: list[str] = []
        self.samples = list(samples)
        if corrupt == "skip":
            self.samples = [s for s in self.samples if self._readable(s[0])]

    def _readable(self, path: str) -> bool:
        try:
            with Image.open(path) as img:
                img.load()
            return True
        except DECODE_ERRORS:
            self.skipped.append(path)
            return False

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            img = load_rgb(path)
        except DECODE_ERRORS as exc:
            raise DataError(
                f"{self.name}: cannot decode image {path!r} ({exc}); use "
                "data.corrupt='skip' to drop unreadable files"
            ) from exc
        return (self.transform(img) if self.transform else img), label


class ArrayImages(Dataset):
    """In-memory uint8 images (``[N, H, W]`` grey or ``[N, H, W, 3]``) with labels."""

    def __init__(
        self,
        images,
        labels: Sequence[int],
        num_classes: int,
        transform: Callable | None = None,
        classes: Sequence[str] | None = None,
        name: str = "arrays",
    ) -> None:
        self.images, self.labels = images, [int(x) for x in labels]
        self.num_classes, self.transform, self.name = num_classes, transform, name
        self.classes = list(classes) if classes else [str(i) for i in range(num_classes)]
        self.skipped: list[str] = []

    @property
    def targets(self) -> list[int]:
        return self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        img = Image.fromarray(self.images[index]).convert("RGB")
        return (self.transform(img) if self.transform else img), self.labels[index]
