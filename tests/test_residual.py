"""The blocks' residual adds: DropPath's factor and the add in one pass while training, with
timm's draws and timm's result within one rounding."""

from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from harness.backbone import BackboneConfig, Block, residual_add

aten = torch.ops.aten


def _inputs(shape=(6, 7, 7, 16)):
    x = torch.randn(shape, requires_grad=True)
    branch = torch.randn(shape, requires_grad=True)
    return x, branch


@pytest.mark.parametrize("drop_prob", [0.2, 0.5, 0.9])
def test_same_images_dropped_and_same_values_as_timm(drop_prob):
    x, branch = _inputs()
    drop = DropPath(drop_prob).train()
    seed = torch.seed()
    ours = residual_add(x, branch, drop)
    torch.manual_seed(seed)
    timms = x + drop(branch)
    # one rounding (addcmul's fused multiply-add) where timm's mul then add round twice
    torch.testing.assert_close(ours, timms, rtol=1e-6, atol=1e-6)
    dropped = (timms - x).flatten(1).abs().amax(1) == 0
    assert torch.equal((ours - x).flatten(1).abs().amax(1) == 0, dropped)
    dout = torch.randn_like(x)
    grads = torch.autograd.grad(ours, (x, branch), dout)
    timm_grads = torch.autograd.grad(timms, (x, branch), dout)
    for g, t in zip(grads, timm_grads, strict=True):
        torch.testing.assert_close(g, t, rtol=0, atol=0)


@pytest.mark.parametrize(
    "drop_path", [nn.Identity(), DropPath(0.0).train(), DropPath(0.3).eval()], ids=str
)
def test_without_an_active_drop_path_it_is_the_plain_add(drop_path):
    x, branch = _inputs()
    state = torch.get_rng_state()
    assert torch.equal(residual_add(x, branch, drop_path), x + branch)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        self.calls.append((func, shapes))
        return func(*args, **(kwargs or {}))


def test_a_training_block_makes_one_pass_per_residual():
    torch.manual_seed(0)
    cfg = BackboneConfig(attn="lsla")
    block = Block(32, 2, 7, 0, cfg, drop_path=0.2).train()
    x = torch.randn(2, 7, 7, 32)
    with _Ops() as ops:
        block(x)
    factor = (2, 1, 1, 1)
    fused = [shapes for func, shapes in ops.calls if func == aten.addcmul.default]
    assert fused == [[(2, 7, 7, 32), (2, 7, 7, 32), factor]] * 2
    # timm's DropPath: a mul of the map by the factor, then the add: two passes over the map
    assert not [s for func, s in ops.calls if func == aten.mul.Tensor and factor in s]


def test_autograd_keeps_the_factor_alone():
    """As timm's mul does: the gradients need the per-image factor, not the maps."""
    x, branch = _inputs()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.shape) or t, lambda t: t
    ):
        residual_add(x, branch, DropPath(0.2).train())
    assert saved == [(6, 1, 1, 1)]


def test_under_bf16_the_product_is_not_rounded_to_bf16_first():
    """Autocast's branch is bf16 and the residual stream fp32: timm rounds branch x factor to
    bf16 before the add, addcmul adds the exact product."""
    x = torch.randn(4, 7, 7, 16)
    branch = torch.randn(4, 7, 7, 16).bfloat16()
    drop = DropPath(0.3).train()
    seed = torch.seed()
    ours = residual_add(x, branch, drop)
    torch.manual_seed(seed)
    factor = branch.new_empty((4, 1, 1, 1)).bernoulli_(0.7).div_(0.7)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, x + branch.float() * factor.float(), rtol=1e-6, atol=1e-6)
    torch.manual_seed(seed)
    torch.testing.assert_close(
        ours, x + drop(branch), rtol=0, atol=2**-7 * branch.abs().max() * 1.5
    )
