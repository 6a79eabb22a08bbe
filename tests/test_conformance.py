"""The contract every registered variant meets; new variants are picked up without edits here."""

from __future__ import annotations

import pytest
import torch

import variants
from tests.conftest import assert_close_verbose
from tests.reference import reference_forward

# (H, W, window, shift): a divisible map, a padded map with shift, a map smaller than the window
SHAPES = [(8, 8, 4, 2), (9, 11, 4, 2), (3, 3, 4, 2)]
DIM, HEADS = 24, 3


def build(name: str, window: int, shift: int, seed: int = 0, **switches) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = variants.create(name, DIM, HEADS, window, shift, **switches)
    with torch.no_grad():  # non-trivial values everywhere so no term can hide behind zero init
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def _id(shape):
    return "H{}xW{}-M{}-s{}".format(*shape)


@pytest.fixture(params=variants.names())
def name(request):
    return request.param


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_shape_and_finite(name, shape):
    H, W, M, s = shape
    m = build(name, M, s)
    x = torch.randn(2, H, W, DIM)
    y = m(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("shape", SHAPES[:2], ids=_id)
def test_gradient_reaches_every_parameter(name, shape):
    H, W, M, s = shape
    m = build(name, M, s).train()
    x = torch.randn(2, H, W, DIM, requires_grad=True)
    m(x).square().mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"no gradient for {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"zero/NaN grad: {pname}"
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_deterministic_under_seed(name):
    a, b = build(name, 4, 2, seed=3), build(name, 4, 2, seed=3)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na
    x = torch.randn(2, 9, 11, DIM)
    y1, y2, y3 = a(x), a(x), b(x)
    assert torch.equal(y1, y2) and torch.equal(y1, y3)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_matches_naive_reference(name, shape, fused):
    H, W, M, s = shape
    m = build(name, M, s, fused=fused)
    x = torch.randn(2, H, W, DIM)
    with torch.no_grad():
        assert_close_verbose(
            m(x), reference_forward(m, x), atol=2e-5, rtol=1e-4, what=f"{name} fused={fused}"
        )


def test_shift_mask_blocks_other_regions(name):
    """Perturbing tokens of one image region leaves outputs of a non-adjacent region unchanged."""
    m = build(name, 4, 2)
    if m.cfg.window == "global" or m.shift_size == 0:
        pytest.skip(f"{name}: no shifted windows (window={m.cfg.window!r})")
    if not m.respects_mask:
        pytest.skip(f"{name}: outer bias is added across the shift mask (mask_outer_bias=False)")
    x = torch.randn(1, 8, 8, DIM)
    x2 = x.clone()
    x2[:, :2, :2] += 10.0  # rows/cols 0-1 wrap into the last window together with rows 6-7
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    # token (6, 6) shares a shifted window with (0, 0) but lies in another region
    assert_close_verbose(y2[:, 6:, 6:], y[:, 6:, 6:], atol=1e-5, what="masked region")
    assert not torch.allclose(y2[:, :2, :2], y[:, :2, :2])


def test_unmasked_outer_bias_leaks_across_regions():
    m = build("lsla_outer_unmasked", 4, 2)
    x = torch.randn(1, 8, 8, DIM)
    x2 = x.clone()
    x2[:, :2, :2] += 10.0
    with torch.no_grad():
        assert not torch.allclose(m(x2)[:, 6:, 6:], m(x)[:, 6:, 6:], atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES[:2], ids=_id)
def test_integrates_into_backbone(name, shape):
    from harness import models

    model = models.create("vit_lsla_micro", attn=name, num_classes=5).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 4 * shape[0], 4 * shape[1]))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
