"""Positive controls: the generated ``marks`` tasks, the theory behind their predicted orderings
(checked exactly on the real modules, no training), ``predict`` in experiments, and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from harness import models
from harness.config import ConfigError, load_experiment
from harness.datasets.marks import SIZES, TOKEN, WINDOW, generate
from reports.predictions import outcome, prediction_table

CONFIGS = "harness/configs/"


def _mark_tokens(image: np.ndarray) -> list[tuple[int, int, str]]:
    """(row, col, colour) of every token whose mean colour is a mark's."""
    side = image.shape[0] // TOKEN
    tokens = image.reshape(side, TOKEN, side, TOKEN, 3).mean(axis=(1, 3))
    found = []
    for (r, c), _ in np.ndenumerate(tokens[..., 0]):
        pixel = tokens[r, c]
        if pixel.max() > 150:
            found.append((r, c, "rgb"[int(pixel.argmax())]))
    return found


@pytest.mark.parametrize("task", ["far_pair", "order"])
def test_marks_are_seeded_token_aligned_and_labelled_by_the_rule(task):
    images, labels = generate(task, 200, seed=3)
    assert images.shape == (200, SIZES[task], SIZES[task], 3)
    again, _ = generate(task, 200, seed=3)
    assert np.array_equal(images, again) and not np.array_equal(images, generate(task, 200, 4)[0])
    assert 0.35 < labels.mean() < 0.65  # balanced
    for image, label in zip(images, labels, strict=True):
        marks = _mark_tokens(image)
        assert len(marks) == 2
        (r0, c0, k0), (r1, c1, k1) = marks
        windows = {(r // WINDOW, c // WINDOW) for r, c, _ in marks}
        if task == "far_pair":
            assert len(windows) == 2 and label == int(k0 == k1)
        else:
            assert len(windows) == 1 and r0 == r1 and {k0, k1} == {"r", "b"}
            red_col = c0 if k0 == "r" else c1
            blue_col = c1 if k0 == "r" else c0
            assert label == int(red_col < blue_col)


def _pooled(variant: str, images: torch.Tensor, **switches) -> torch.Tensor:
    """Pre-logit features of a probe model with large random weights (at timm's 0.02 init the
    attention is nearly uniform, hence nearly linear, in every variant)."""
    torch.manual_seed(0)
    model = models.create("vit_lsla_probe", attn=variant, attn_switches=switches).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.5)
        return model.forward_head(model.forward_features(images), pre_logits=True)


def _canvas(marks: dict[tuple[int, int], tuple[float, float, float]], size: int) -> torch.Tensor:
    x = torch.zeros(3, size, size)
    for (r, c), rgb in marks.items():
        x[:, TOKEN * r : TOKEN * (r + 1), TOKEN * c : TOKEN * (c + 1)] = torch.tensor(rgb)[
            :, None, None
        ]
    return x


RED, GREEN, BLUE = (1.0, 0.1, 0.1), (0.1, 1.0, 0.1), (0.1, 0.1, 1.0)


@pytest.mark.parametrize(
    ("variant", "additive"), [("swin_window", True), ("swin", False), ("msa", False)]
)
def test_plain_windows_pool_a_sum_of_windows_so_same_colour_is_out_of_reach(variant, additive):
    """Pooled features are f(w1) + f(w2) exactly when windows never mix: then
    F(r,r) + F(g,g) == F(r,g) + F(g,r) and no linear head separates "same" from "different"."""
    a, b = (2, 3), (4, 4)  # different windows, both in the centre shifted window
    images = torch.stack(
        [
            _canvas({a: c1, b: c2}, SIZES["far_pair"])
            for c1, c2 in ((RED, RED), (GREEN, GREEN), (RED, GREEN), (GREEN, RED))
        ]
    )
    f = _pooled(variant, images)
    gap = (f[0] + f[1] - f[2] - f[3]).abs().max().item()
    assert (gap < 1e-5) if additive else (gap > 1e-3), gap


@pytest.mark.parametrize(("variant", "blind"), [("wmsa", True), ("swin", False)])
def test_without_a_position_bias_a_window_is_blind_to_left_and_right(variant, blind):
    left = _canvas({(1, 0): RED, (1, 2): BLUE}, SIZES["order"])
    right = _canvas({(1, 2): RED, (1, 0): BLUE}, SIZES["order"])
    f = _pooled(variant, torch.stack([left, right]), window="window")
    gap = (f[0] - f[1]).abs().max().item()
    assert (gap < 1e-5) if blind else (gap > 1e-3), gap


def test_predict_entries_must_name_arms():
    text = 'experiment = "c"\npredict = ["swin > nope"]\n[grid]\n"model.variant" = ["swin", "msa"]'
    with pytest.raises(ConfigError, match="predict entry 'swin > nope' .* unknown: nope"):
        load_experiment(text=text)
    with pytest.raises(ConfigError, match="must read 'ARM > ARM'"):
        load_experiment(text=text.replace("swin > nope", "swin beats msa"))
    runs = load_experiment(CONFIGS + "control_windows.toml")
    assert runs[0].predict == ("swin > swin_window", "msa > swin_window")


def _runs(deltas: dict[int, float], predict=("a > b",)) -> pd.DataFrame:
    rows = []
    for seed, d in deltas.items():
        for arm, top1 in (("a", 50 + d), ("b", 50.0)):
            rows.append(
                dict(
                    experiment="x",
                    dataset="marks-order",
                    arm=arm,
                    seed=seed,
                    top1=top1,
                    status="finished",
                    predict=predict,
                )
            )
    return pd.DataFrame(rows)


def test_predictions_hold_fail_or_reverse_by_the_paired_interval():
    held = prediction_table(_runs({0: 40, 1: 45, 2: 42}))
    assert held.loc[0, "outcome"].startswith("holds") and held.loc[0, "seeds"] == 3
    assert held.loc[0, "delta_top1"] == pytest.approx(127 / 3)
    unclear = prediction_table(_runs({0: 5, 1: -4, 2: 1}))
    assert unclear.loc[0, "outcome"].startswith("not shown")
    reversed_ = prediction_table(_runs({0: -40, 1: -45, 2: -42}))
    assert reversed_.loc[0, "outcome"].startswith("reversed")
    assert outcome(3.0, None, 1) == "1 paired seed: no interval, not tested"
    assert prediction_table(_runs({0: 1}, predict=())).empty
