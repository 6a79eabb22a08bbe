"""LSLA-specific behaviour that the generic conformance tests cannot know about."""

from __future__ import annotations

import pytest
import torch

import variants
from tests.test_conformance import DIM, build


def _region_perturbation(m):
    x = torch.randn(1, 8, 8, DIM)
    x2 = x.clone()
    x2[:, :2, :2] += 10.0
    with torch.no_grad():
        return m(x)[:, 6:, 6:], m(x2)[:, 6:, 6:]


@pytest.mark.parametrize(
    "outer_op, mask_outer_bias, leaks",
    [("add", True, False), ("add", False, True), ("mul", True, False), ("mul", False, False)],
)
def test_outer_bias_crosses_the_shift_mask_only_when_added_unmasked(
    outer_op, mask_outer_bias, leaks
):
    """P * (1 + B_o) is 0 wherever the mask made P 0, so a multiplied B_o cannot leak."""
    switches = dict(outer_op=outer_op, mask_outer_bias=mask_outer_bias)
    cfg = variants.resolve("lsla", switches)
    assert variants.get("lsla").capabilities.respects_mask(cfg) is not leaks
    y, y2 = _region_perturbation(build("lsla", 4, 2, **switches))
    assert (not torch.allclose(y, y2, atol=1e-5)) is leaks


@pytest.mark.parametrize("name", ["swin", "lsla"])
def test_bf16_autocast_keeps_the_bias_in_fp32_in_windowed_and_shifted_blocks(name):
    """Under autocast the weights are fp32 in W and SW blocks alike (they were bf16 in SW only)."""
    dtypes = {}
    for shift in (0, 2):
        m = build(name, 4, shift, fused=False)
        m.recording = True
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            m(torch.randn(2, 8, 8, DIM))
        dtypes[shift] = m.record.weights.dtype
        m.clear_record()
    assert dtypes == {0: torch.float32, 2: torch.float32}


@pytest.mark.parametrize(("size", "permutes"), [(8, True), (7, False)])  # window 4: 7 is padded
@pytest.mark.parametrize("name", ["swin", "lsla"])
def test_window_gathers_backward_gathers_where_nothing_is_padded(name, size, permutes):
    """Unpadded, the tokens' way into windows and back are permutations: their gradients are
    gathers by the inverse order, not scatters into zeros (``variants._window.permute_tokens``);
    padded, index_select's own gradient, and the same gradients as the explicit path."""
    torch.manual_seed(0)
    fused, explicit = build(name, 4, 2), build(name, 4, 2, fused=False)
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, size, size, DIM, requires_grad=True)
    dout = torch.randn(2, size, size, DIM)
    grads = [torch.autograd.grad(m(x), x, dout)[0] for m in (fused, explicit)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    with torch.profiler.profile() as prof:
        torch.autograd.grad(fused(x), x, dout)
    names = {e.name for e in prof.events()}
    assert ("aten::index_add_" in names) is not permutes
