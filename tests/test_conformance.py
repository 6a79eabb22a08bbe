"""The contract every registered variant meets (``variants/_contract.py``), using nothing else.

New variants are picked up without edits here; what a variant declares in its ``capabilities``
turns the optional checks on (a reference to compare with, a fused switch, shifted windows,
recorded weights), and each one skipped says why.
"""

from __future__ import annotations

import pytest
import torch

import variants
from tests.conftest import assert_close_verbose

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


def caps(name: str) -> variants.Capabilities:
    return variants.get(name).capabilities


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


def test_trains_after_a_first_forward_under_inference_mode(name):
    """A FLOP count or an inference benchmark first, training after: nothing cached may break it."""
    m = build(name, 4, 2)
    with torch.inference_mode():
        m(torch.randn(2, 9, 11, DIM))
    m.train()
    m(torch.randn(2, 9, 11, DIM)).square().mean().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("flip_fused", [False, True], ids=["default", "fused-flipped"])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_matches_its_reference(name, shape, flip_fused):
    reference, switch = caps(name).reference, caps(name).fused_switch
    if reference is None:
        pytest.skip(f"{name}: declares no reference implementation")
    if flip_fused and switch is None:
        pytest.skip(f"{name}: declares no fused switch")
    switches = {switch: not getattr(variants.get(name).config, switch)} if flip_fused else {}
    H, W, M, s = shape
    m = build(name, M, s, **switches)
    x = torch.randn(2, H, W, DIM)
    with torch.no_grad():
        assert_close_verbose(m(x), reference(m, x), atol=2e-5, rtol=1e-4, what=f"{name} {switches}")


def test_shift_mask_keeps_regions_apart_as_declared(name):
    """Perturbing tokens of one image region leaves a non-adjacent region's outputs unchanged,
    exactly when the variant declares ``respects_mask`` (and leaks when it declares it does not)."""
    cfg = variants.get(name).config
    if not caps(name).shifts(cfg):
        pytest.skip(f"{name}: does not shift windows")
    m = build(name, 4, 2)
    x = torch.randn(1, 8, 8, DIM)
    x2 = x.clone()
    x2[:, :2, :2] += 10.0  # rows/cols 0-1 wrap into the last window together with rows 6-7
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    # token (6, 6) shares a shifted window with (0, 0) but lies in another region
    if caps(name).respects_mask(cfg):
        assert_close_verbose(y2[:, 6:, 6:], y[:, 6:, 6:], atol=1e-5, what="masked region")
    else:
        assert not torch.allclose(y2[:, 6:, 6:], y[:, 6:, 6:], atol=1e-5), "declared leak absent"
    assert not torch.allclose(y2[:, :2, :2], y[:, :2, :2])


def test_recorded_weights_match_the_contract(name):
    if not caps(name).records_attention:
        pytest.skip(f"{name}: does not record attention weights")
    m = build(name, 4, 2)
    m.recording = True
    with torch.no_grad():
        m(torch.randn(2, 9, 11, DIM))
    rec = m.record
    m.clear_record()
    B_, h, N, N2 = rec.weights.shape
    assert h == HEADS and N == N2 == rec.grid[0] * rec.grid[1]
    valid = rec.valid_queries  # None: no padding anywhere
    valid = torch.ones(B_, N, dtype=torch.bool) if valid is None else valid
    assert valid.shape == (B_, N) and valid.sum() == 2 * 9 * 11  # every real token, once
    assert torch.allclose(rec.before_outer.sum(-1), torch.ones(B_, h, N), atol=1e-5)  # softmax
    assert m.record is None and not m.recording


@pytest.mark.parametrize("shape", SHAPES[:2], ids=_id)
def test_integrates_into_backbone(name, shape):
    from harness import models

    model = models.create("vit_lsla_micro", attn=name, num_classes=5).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 4 * shape[0], 4 * shape[1]))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
