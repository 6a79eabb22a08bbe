"""Window geometry properties (hypothesis over integer shapes) and parity with timm's helpers."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from timm.models.swin_transformer import get_relative_position_index
from timm.models.swin_transformer import window_partition as timm_partition

from variants._window import (
    RelPosTable,
    permute_tokens,
    relative_position_index,
    shift_region_mask,
    window_order,
    window_partition,
    window_reverse,
)

small = st.integers(1, 4)


@given(b=st.integers(1, 2), nh=small, nw=small, wh=small, ww=small, c=st.integers(1, 3))
def test_partition_reverse_round_trip_and_timm_parity(b, nh, nw, wh, ww, c):
    x = torch.randn(b, nh * wh, nw * ww, c)
    win = window_partition(x, (wh, ww))
    assert win.shape == (b * nh * nw, wh, ww, c)
    assert torch.equal(win, timm_partition(x, (wh, ww)))
    assert torch.equal(window_reverse(win, (wh, ww), nh * wh, nw * ww), x)


@given(m=st.integers(1, 8))
def test_relative_index_equals_timm_for_a_full_window(m):
    assert torch.equal(relative_position_index((m, m), m), get_relative_position_index(m, m))


@given(h=st.integers(1, 9), w=st.integers(1, 9), m=st.integers(1, 5))
def test_relative_index_is_antisymmetric_and_clipped(h, w, m):
    idx = relative_position_index((h, w), m)
    side = 2 * m - 1
    dy, dx = idx // side - (m - 1), idx % side - (m - 1)
    assert torch.equal(dy, -dy.T) and torch.equal(dx, -dx.T)  # swapping q and k negates offsets
    assert idx.diagonal().eq((m - 1) * side + (m - 1)).all()  # zero offset on the diagonal
    assert dy.abs().max() <= m - 1 and dx.abs().max() <= m - 1
    assert 0 <= idx.min() and idx.max() < side * side


@given(n=st.integers(2, 4), m=st.integers(2, 5), data=st.data())
def test_shift_mask_is_region_equality(n, m, data):
    shift = data.draw(st.integers(1, m - 1))
    H = W = n * m
    mask = shift_region_mask((H, W), (m, m), (shift, shift))
    # expected: label every pixel by (row band, col band) directly, then compare per window
    band = torch.tensor([0 if i < H - m else (1 if i < H - shift else 2) for i in range(H)])
    labels = (band[:, None] * 3 + band[None, :]).float()[None, :, :, None]
    win = window_partition(labels, (m, m)).flatten(1)
    expected = win[:, :, None] == win[:, None, :]
    assert torch.equal(mask, expected)
    assert mask.diagonal(dim1=1, dim2=2).all()  # every token may attend to itself
    grid = mask.view(n, n, m * m, m * m)
    assert grid[: n - 1, : n - 1].all()  # windows away from the wrap-around are unmasked
    assert not grid[n - 1, n - 1].all()  # the corner window mixes four regions


def test_table_init_options():
    assert RelPosTable(3, 2, "zeros").relative_position_bias_table.abs().sum() == 0
    t = RelPosTable(3, 2, 0.5).relative_position_bias_table
    assert t.shape == (25, 2) and torch.all(t == 0.5)
    try:
        RelPosTable(3, 2, "ones")
    except ValueError as e:
        assert "'ones'" in str(e) and "trunc_normal" in str(e)
    else:
        raise AssertionError("bad init accepted")


@given(h=st.integers(1, 9), w=st.integers(1, 9), m=st.integers(1, 5))
def test_table_over_a_grid_equals_the_indexed_gather(h, w, m):
    """Global attention's tables come from strided views of a small offset table; they must be
    the very values the ``[L, L]`` index would gather (clipped offsets included)."""
    table = RelPosTable(m, 2)
    torch.nn.init.normal_(table.relative_position_bias_table)
    expected = table(relative_position_index((h, w), m), (h, w))
    assert torch.equal(table(None, (h, w)), expected)


@given(h=st.integers(1, 9), w=st.integers(1, 9), m=st.integers(1, 5))
def test_table_over_a_grid_has_the_indexed_gathers_gradient(h, w, m):
    """Training in global mode learns the table through the grid's build, as through the gather.
    In float64: each entry's gradient sums up to 6,561 terms, whose two fp32 orders differed by
    up to 3.4e-4 (50 draws at 9 x 9, window 1)."""
    table = RelPosTable(m, 2).double()
    weight = torch.randn(2, h * w, h * w, dtype=torch.float64)
    grads = []
    for index in (None, relative_position_index((h, w), m)):
        table.zero_grad()
        (table(index, (h, w)) * weight).sum().backward()
        grads.append(table.relative_position_bias_table.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


@given(h=st.integers(1, 12), w=st.integers(1, 12), m=st.integers(1, 5), data=st.data())
def test_window_order_is_roll_pad_partition_and_back(h, w, m, data):
    """One gather does timm's roll(-shift), zero padding and partition; one more undoes them."""
    window = (min(h, m), min(w, m))
    shift = (data.draw(st.integers(0, window[0] - 1)), data.draw(st.integers(0, window[1] - 1)))
    x = torch.randn(2, h, w, 3)
    pad_h, pad_w = (-h) % window[0], (-w) % window[1]
    rolled = torch.roll(x, (-shift[0], -shift[1]), (1, 2))
    padded = torch.nn.functional.pad(rolled, (0, 0, 0, pad_w, 0, pad_h))
    expected = window_partition(padded, window).reshape(2, -1, 3)
    gather, scatter = window_order((h, w), window, shift)
    tokens = x.reshape(2, h * w, 3)
    if pad_h or pad_w:
        tokens = torch.cat([tokens, torch.zeros(2, 1, 3)], dim=1)
    assert torch.equal(tokens[:, gather], expected)
    assert torch.equal(expected[:, scatter].view(2, h, w, 3), x)


@given(h=st.integers(1, 4), w=st.integers(1, 4), m=st.integers(1, 3), data=st.data())
def test_unpadded_window_orders_are_each_others_inverse(h, w, m, data):
    """What ``permute_tokens`` relies on where the attention layers call it."""
    h, w = h * m, w * m  # multiples of the window: nothing padded
    shift = (data.draw(st.integers(0, m - 1)), data.draw(st.integers(0, m - 1)))
    gather, scatter = window_order((h, w), (m, m), shift)
    assert torch.equal(gather[scatter], torch.arange(h * w))
    assert torch.equal(scatter[gather], torch.arange(h * w))


def test_permute_tokens_has_index_selects_gradients_and_gathers_them():
    gather, scatter = window_order((14, 14), (7, 7), (3, 3))
    x = torch.randn(2, 196, 8, dtype=torch.float64, requires_grad=True)
    ours = permute_tokens(x, gather, scatter)
    assert torch.equal(ours, x.index_select(1, gather))
    assert ours.grad_fn is not None and "PermuteTokens" in type(ours.grad_fn).__name__
    torch.autograd.gradcheck(lambda t: permute_tokens(t, gather, scatter), (x,))
    torch.autograd.gradgradcheck(lambda t: permute_tokens(t, gather, scatter) ** 2, (x,))
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        out = permute_tokens(x, gather, scatter)
    dout = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, dout)
    assert torch.equal(
        grad, x.index_select(1, gather).new_zeros(x.shape).index_add_(1, gather, dout)
    )
    assert [t is scatter for t in seen] == [True]  # the inverse index alone, no activation


def test_permute_tokens_without_autograd_is_index_select():
    gather, scatter = window_order((7, 14), (7, 7), (0, 3))
    x = torch.randn(1, 98, 4)
    with torch.no_grad():
        out = permute_tokens(x.requires_grad_(), gather, scatter)
    assert out.grad_fn is None and torch.equal(out, x.index_select(1, gather))
