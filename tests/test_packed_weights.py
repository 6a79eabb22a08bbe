"""Inference linears read their weight packed once into oneDNN's blocked layout, bit for bit
equal to the plain weight's result, and repack whenever the weight changes in a way torch
counts (an optimiser step, ``load_state_dict``, an in-place op, a replaced parameter)."""

from __future__ import annotations

import copy
import gc
import io

import pytest
import torch
from torch import nn

import variants._linear as linear
from harness.mlp import Mlp
from variants._linear import HAS_ONEDNN_LINEAR, Linear

pytestmark = pytest.mark.skipif(not HAS_ONEDNN_LINEAR, reason="torch built without oneDNN")


def _plain_onednn(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return linear.onednn_linear(x, layer.weight, layer.bias)  # the weight reordered per call


def _reorders(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = torch.ops.mkldnn._reorder_linear_weight

    def counted(weight, rows):
        calls.append(rows)
        return real(weight, rows)

    monkeypatch.setattr(linear, "_reorder", counted)
    return calls


def test_inference_packs_each_weight_once_and_equals_the_plain_weight_bit_for_bit(monkeypatch):
    packs = _reorders(monkeypatch)
    torch.manual_seed(0)
    layer = Linear(96, 384)
    with torch.inference_mode():
        for rows in (2, 49, 196, 3136):  # one packed copy serves every row count
            x = torch.randn(rows, 96)
            assert torch.equal(layer(x), _plain_onednn(x, layer))
        one = torch.randn(1, 96)  # oneDNN's path for a single row: equal within round-off
        torch.testing.assert_close(layer(one), _plain_onednn(one, layer), rtol=1e-5, atol=1e-5)
    assert len(packs) == 1


def test_mlp_fc1_with_gelu_reads_the_packed_weight(monkeypatch):
    packs = _reorders(monkeypatch)
    torch.manual_seed(0)
    mlp = Mlp(64, 256)
    x = torch.randn(2, 7, 7, 64)
    with torch.inference_mode():
        first, second = mlp(x), mlp(x)
    assert torch.equal(first, second)
    assert len(packs) == 2  # fc1 and fc2, once each


@pytest.mark.parametrize("change", ["optimiser_step", "load_state_dict", "no_grad_op", "replaced"])
def test_a_changed_weight_is_repacked(change):
    torch.manual_seed(0)
    layer = Linear(32, 48)
    x = torch.randn(10, 32)
    with torch.inference_mode():
        before = layer(x)
    if change == "optimiser_step":
        layer(x).square().sum().backward()
        torch.optim.SGD(layer.parameters(), lr=0.5).step()
    elif change == "load_state_dict":
        layer.load_state_dict(Linear(32, 48).state_dict())
    elif change == "no_grad_op":
        with torch.no_grad():
            layer.weight.mul_(-1.0)
    else:
        layer.weight = nn.Parameter(torch.randn(48, 32))
    with torch.inference_mode():
        after = layer(x)
        assert not torch.equal(after, before)
        assert torch.equal(after, _plain_onednn(x, layer))


def test_packed_copies_are_not_part_of_the_module_and_go_with_it():
    torch.manual_seed(0)
    model = nn.Sequential(Linear(16, 32), Linear(32, 8))
    with torch.inference_mode():
        out = model(torch.randn(3, 16))
    assert len(linear._PACKED) >= 2
    twin = copy.deepcopy(model)  # nothing packed is copied or pickled
    torch.save(model, io.BytesIO())
    assert set(model.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    with torch.inference_mode():
        assert torch.equal(twin(torch.ones(3, 16)), model(torch.ones(3, 16)))
    assert out.shape == (3, 8)
    gc.collect()
    alive = len(linear._PACKED)
    del model, twin
    gc.collect()
    assert len(linear._PACKED) == alive - 4


def test_training_reads_the_plain_weight(monkeypatch):
    packs = _reorders(monkeypatch)
    layer = Linear(16, 16)
    layer(torch.randn(4, 16, requires_grad=True)).sum().backward()
    with torch.no_grad():  # no_grad is inference too
        layer(torch.randn(4, 16))
    assert len(packs) == 1


def test_a_weight_made_under_inference_mode_is_read_plain(monkeypatch):
    """No version counter to tell a change by: never kept, and not packed every call either."""
    packs = _reorders(monkeypatch)
    with torch.inference_mode():
        layer = Linear(16, 16)
        x = torch.randn(4, 16)
        first = layer(x)
        layer.weight.mul_(2.0)  # in place, uncounted
        assert torch.equal(layer(x), _plain_onednn(x, layer))
        assert not torch.equal(layer(x), first)
    assert packs == []
