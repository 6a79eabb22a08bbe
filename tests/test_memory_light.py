"""The core attention paths (memory-light backward; in-place, cached tables without autograd)
equal the op-by-op ones (exactly in float64) and keep less."""

from __future__ import annotations

import pytest
import torch

import harness.models
import variants
import variants._lsla_geometry as lsla_geometry
import variants._lsla_global as lsla_global
from harness.measure import count_flops, saved_bytes
from tests.kernels import results_by_path
from tests.perturb import away_from_init
from variants.lsla import LSLAAttention


def _explicit(name: str) -> bool:
    m = variants.create(name, 8, 2, 4, 0)
    return isinstance(m, LSLAAttention) and not m.fused


EXPLICIT = [n for n in variants.names() if _explicit(n)]


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("name", EXPLICIT)
@pytest.mark.parametrize("size", [(2, 15, 13), (1, 7, 7)])
def test_lsla_core_equals_the_op_by_op_path(name, shift, size):
    """Padded and shifted windows; one image of one window (the tables' gradients then have
    the logits' own shape: none may alias the logits' gradient, which is scaled in place)."""
    torch.manual_seed(0)
    m = variants.create(name, 48, 3, 7, shift).double()
    assert isinstance(m, LSLAAttention)
    away_from_init(m)
    x = torch.randn(*size, 48, dtype=torch.float64)
    light, plain = results_by_path(m, x, "_core_applies")
    params = [None, None, *(n for n, _ in m.named_parameters())]
    for name_, a, b in zip(params, light, plain, strict=True):
        # the inner bias is summed in fp32 on purpose (see _additive_bias), in either order
        tol = 1e-6 if name_ and "inner_bias" in name_ else 1e-12
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=name_)


def _no_grad_output(module, x, core: bool) -> torch.Tensor:
    module._core_applies = lambda q: core
    with torch.inference_mode():
        return module(x)


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("name", EXPLICIT)
def test_no_grad_core_equals_the_op_by_op_path(name, shift):
    torch.manual_seed(0)
    m = variants.create(name, 48, 3, 7, shift).eval()
    away_from_init(m)
    x = torch.randn(2, 15, 13, 48)  # padded and shifted windows
    torch.testing.assert_close(_no_grad_output(m, x, True), _no_grad_output(m, x, False))


@pytest.mark.parametrize("name", EXPLICIT)
def test_global_no_grad_core_equals_the_op_by_op_path(name, monkeypatch):
    """Global attention without autograd runs in chunks of query rows over table views; a
    small chunk budget gives several chunks and a short last one."""
    monkeypatch.setattr(lsla_global, "GLOBAL_CHUNK_ELEMENTS", 2 * 3 * 7 * 63 * 2)  # 2 rows each
    torch.manual_seed(0)
    m = variants.create(name, 48, 3, 4, 0, window="global").eval()
    away_from_init(m)
    x = torch.randn(2, 9, 7, 48)  # offsets up to 8 > M - 1 = 3: clipped
    torch.testing.assert_close(_no_grad_output(m, x, True), _no_grad_output(m, x, False))


@pytest.mark.parametrize("name", EXPLICIT)
def test_global_core_equals_the_op_by_op_path_under_autograd(name, monkeypatch):
    """Global attention with autograd: chunks of query rows, each through ``LSLACore`` over
    copies of the offsets' views and recomputed in backward; several chunks and a short last
    one, every gradient exact in float64."""
    monkeypatch.setattr(lsla_global, "GLOBAL_CHUNK_ELEMENTS", 2 * 3 * 7 * 63 * 2)  # 2 rows each
    torch.manual_seed(0)
    m = variants.create(name, 48, 3, 4, 0, window="global").double()
    away_from_init(m)
    x = torch.randn(2, 9, 7, 48, dtype=torch.float64)  # offsets up to 8 > M - 1 = 3: clipped
    light, plain = results_by_path(m, x, "_core_applies")
    params = [None, None, *(n for n, _ in m.named_parameters())]
    for name_, a, b in zip(params, light, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name_)


def test_global_core_builds_and_keeps_no_table_over_every_pair(monkeypatch):
    """Global attention under autograd: no op, in forward or backward, makes more than one
    chunk of query rows (here 2 of 16; an ``[h, L, L]`` table is 1.9 GB per stage-1 layer at
    448 px), and what autograd keeps is less than one such table (before: all three)."""
    from tests.allocations import LargestAllocation

    monkeypatch.setattr(lsla_global, "GLOBAL_CHUNK_ELEMENTS", 3 * 2 * 16 * 256)  # 2 rows each
    m = variants.create("lsla", 48, 3, 4, 0, window="global")
    x = torch.randn(1, 16, 16, 48, requires_grad=True)
    table = 3 * 256 * 256 * 4  # one fp32 [h, L, L] table
    with LargestAllocation() as seen:
        m(x).sum().backward()
    assert seen.nbytes <= table / 8, seen.op
    assert saved_bytes(m, x) < table
    assert m.kernels_used == {"explicit"}


def test_global_core_refuses_a_second_derivative():
    """Its backward adds the tables' gradients outside autograd: differentiating it again is
    an error, not a silently wrong result."""
    m = variants.create("lsla", 16, 2, 4, 0, window="global")
    x = torch.randn(1, 6, 6, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


@pytest.mark.parametrize("name", ["lsla", "swin"])
def test_global_attention_builds_no_token_pair_index(name, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an [L, L] relative-position index was built")

    monkeypatch.setattr(lsla_geometry, "relative_position_index", refuse)
    m = variants.create(name, 16, 2, 4, 0, window="global")
    x = torch.randn(1, 8, 8, 16)
    with torch.inference_mode():
        m.eval()(x)
    m.train()(x).sum().backward()


def test_no_grad_tables_follow_parameter_updates():
    """The combined tables are kept between calls; an in-place update (an optimiser step, a
    loaded state dict) must rebuild them, and training mode must see the new values too."""
    torch.manual_seed(0)
    m = variants.create("lsla", 48, 3, 7, 3).eval()
    x = torch.randn(2, 14, 14, 48)
    before = _no_grad_output(m, x, True)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    m.train()
    m(x).square().sum().backward()  # the grad path, then a step on every table
    opt.step()
    m.eval()
    after = _no_grad_output(m, x, True)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _no_grad_output(m, x, False), rtol=1e-5, atol=1e-5)
    fresh = variants.create("lsla", 48, 3, 7, 3).eval()
    m.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(_no_grad_output(m, x, True), _no_grad_output(fresh, x, False))


def test_lsla_core_keeps_no_window_sized_attention_maps():
    m = variants.create("lsla", 96, 3, 7, 3)
    x = torch.randn(4, 28, 28, 96)
    m._core_applies = lambda q: True
    light = saved_bytes(m, x)
    m._core_applies = lambda q: False
    plain = saved_bytes(m, x)
    maps = 4 * 16 * 3 * 49 * 49 * 4  # one [B*nW, h, N, N] fp32 tensor
    assert plain - light >= 2 * maps


def test_vit_lsla_t_saves_at_most_its_mac_share_of_swin_t_ref():
    """Issue #12's memory goal, counted exactly (224 px, batch 2, untrained weights)."""
    x = torch.randn(2, 3, 224, 224)
    saved, macs = {}, {}
    for name in ("vit_lsla_t", "swin_t_ref"):
        model = harness.models.create(name).train()
        saved[name] = saved_bytes(model, x)
        macs[name] = count_flops(model, 224)
    assert saved["vit_lsla_t"] / saved["swin_t_ref"] <= macs["vit_lsla_t"] / macs["swin_t_ref"]
