"""Positive controls: generated images on which theory predicts how attention variants rank.

A dark, noisy canvas carries coloured one-token marks (4x4 px, aligned to the patch grid of the
``patch4`` stem, so each token sees one whole mark or none). With the ``vit_lsla_probe`` preset
(one stage of 4x4-token windows):

* ``task = "far_pair"`` (32 px: four windows): a red or green mark in each of two different
  windows, both inside the centre window of the shifted layout; label: same colour.
  Window attention without a shift never mixes windows, and the head pools a sum over tokens, which
  cannot express "same colour" of two separate parts (an XOR): chance, 50%. Shifted windows and
  global attention relate the windows and can reach 100%.
* ``task = "order"`` (16 px: one window): a red and a blue mark in one row; label: red left of
  blue.
  Without a position bias (the patch stem and pooling give no other position signal) a window is
  a set, blind to order: chance. The relative-position bias B_i makes it solvable.

If a predicted effect does not show, that is a finding about the harness (the report says so).
Images are drawn once per split from ``seed`` (not the run's seed: every arm and training seed
sees the same images); keep ``data.img_size`` at the task's canvas size (32 or 16 px), since
resizing breaks the token alignment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from harness.datasets._images import ArrayImages
from harness.datasets._registry import register
from variants._config import Range

TOKEN, WINDOW = 4, 4  # px per token, tokens per window side
SIZES = {"far_pair": 32, "order": 16}  # canvas px of each task
COLOURS = {"red": (230, 30, 30), "green": (30, 230, 30), "blue": (30, 30, 230)}
SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}
NOTE = "generated positive control (theory predicts the ranking; not a benchmark)"


@dataclass(frozen=True)
class MarksOptions:
    task: Literal["far_pair", "order"] = "far_pair"
    train_images: Annotated[int, Range(2)] = 1000
    val_images: Annotated[int, Range(2)] = 200
    test_images: Annotated[int, Range(2)] = 500
    seed: int = 0

    @property
    def label(self) -> str:  # results of the two tasks are kept apart
        return f"marks-{self.task}"


def _draw(canvas: np.ndarray, token: tuple[int, int], colour: str, rng) -> None:
    y, x = TOKEN * token[0], TOKEN * token[1]
    noise = rng.normal(0, 8, (TOKEN, TOKEN, 3))
    canvas[y : y + TOKEN, x : x + TOKEN] = np.clip(np.array(COLOURS[colour]) + noise, 0, 255)


def _far_pair(canvas: np.ndarray, rng) -> int:
    """Two marks in different windows, both in the shifted layout's centre window (tokens 2-5):
    one shifted block relates them directly; plain windows never do."""
    colours = rng.choice(["red", "green"], 2)
    _draw(canvas, (rng.integers(2, 6), rng.integers(2, 4)), colours[0], rng)  # left windows
    _draw(canvas, (rng.integers(2, 6), rng.integers(4, 6)), colours[1], rng)  # right windows
    return int(colours[0] == colours[1])


def _order(canvas: np.ndarray, rng) -> int:
    cols = rng.choice(WINDOW, 2, replace=False)
    row = rng.integers(WINDOW)  # one row: left and right is all there is to tell
    _draw(canvas, (row, cols[0]), "red", rng)
    _draw(canvas, (row, cols[1]), "blue", rng)
    return int(cols[0] < cols[1])


TASKS = {"far_pair": _far_pair, "order": _order}
CLASSES = {"far_pair": ["different", "same"], "order": ["red right", "red left"]}


def generate(task: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 RGB images ``[n, S, S, 3]`` (S: the task's canvas) and their 0/1 labels,
    fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    size = SIZES[task]
    images = np.clip(rng.normal(20, 6, (n, size, size, 3)), 0, 255)
    labels = np.array([TASKS[task](images[i], rng) for i in range(n)])
    return images.astype(np.uint8), labels


@register("marks", options=MarksOptions, needs_root=False, note=NOTE)
def marks(split: str, transform: Callable | None, data: Any, options: MarksOptions) -> ArrayImages:
    n = getattr(options, f"{split}_images")
    seed = 1000 * options.seed + SPLIT_OFFSETS[split]
    images, labels = generate(options.task, n, seed)
    name = f"marks-{options.task}/{split}"
    ds = ArrayImages(images, labels, 2, transform, CLASSES[options.task], name=name)
    ds.split_info = {"task": options.task, "seed": options.seed, "images": n, "note": NOTE}
    return ds
