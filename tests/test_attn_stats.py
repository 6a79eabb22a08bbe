"""Attention statistics respond to what they claim to measure (the paper's self-limiting claim)."""

from __future__ import annotations

import math

import pytest
import torch

from harness import models
from harness.attn_stats import attention_map, attention_statistics, summarise


def test_summarise_on_known_weights():
    N = 4
    uniform = torch.full((1, 1, N, N), 1 / N)
    s = summarise(uniform, (2, 2))
    assert s["entropy"] == pytest.approx(math.log(N)) and s["entropy_norm"] == pytest.approx(1)
    assert s["self_weight"] == pytest.approx(0.25) and s["row_sum"] == pytest.approx(1)
    # 2x2 grid: distances from a corner are 0, 1, 1, sqrt(2)
    assert s["mean_distance"] == pytest.approx((0 + 1 + 1 + math.sqrt(2)) / 4)
    eye = torch.eye(N).view(1, 1, N, N)
    s = summarise(eye, (2, 2))
    assert s["entropy"] == pytest.approx(0, abs=1e-6) and s["self_weight"] == 1
    assert s["mean_distance"] == 0


def _model(**switches):
    torch.manual_seed(0)
    return models.create("vit_lsla_micro", num_classes=5, attn_switches=switches).eval()


def test_negative_outer_bias_on_the_diagonal_lowers_self_weight():
    model = _model()
    with torch.no_grad():
        for _, attn in model.attention_modules():
            table = attn.outer_bias.relative_position_bias_table
            table.zero_()
            table[table.shape[0] // 2] = -0.05  # offset (0, 0): the query itself
    rows = attention_statistics(model, torch.randn(4, 3, 64, 64))
    assert rows and all(r["self_weight"] < r["self_weight_softmax"] - 0.04 for r in rows)
    assert all(r["row_sum"] < 1 for r in rows)  # rows no longer sum to one


def test_statistics_leave_the_model_on_the_fused_path_and_mode_unchanged():
    model = _model().train()
    attention_statistics(model, torch.randn(2, 3, 64, 64))
    assert model.training
    assert all(not a.recording and a.record is None for _, a in model.attention_modules())


def test_padding_queries_are_left_out():
    """A 5x5 map in 4x4 windows is padded to 8x8: only the 25 real queries per image count."""
    model = _model()
    rows = attention_statistics(model, torch.randn(2, 3, 80, 80))  # maps 20, 10, 5 and 3 px
    assert [r["queries"] for r in rows] == [2 * 20 * 20, 2 * 10 * 10, 2 * 5 * 5, 2 * 3 * 3]


def test_summarise_ignores_padding_rows():
    eye, uniform = torch.eye(4), torch.full((4, 4), 0.25)
    weights = torch.stack([eye, uniform]).view(2, 1, 4, 4)  # window 0 real, window 1 padding
    valid = torch.tensor([[True] * 4, [False] * 4])
    s = summarise(weights, (2, 2), valid)
    assert s["self_weight"] == 1 and s["entropy"] == pytest.approx(0, abs=1e-6)
    assert s["queries"] == 4


def test_attention_map_shape_and_outer_effect():
    model = _model(outer_init="zeros")
    m = attention_map(model, torch.randn(1, 3, 64, 64))
    assert m["grid"] == [4, 4] and len(m["with_outer"]) == 4
    assert m["with_outer"] == m["without_outer"]  # zero B_o: no effect
