"""The conv stem's fast paths equal plain conv, BatchNorm, GELU, conv: the memory-light training
path exactly (float64), the folded channels-last inference path within fp32 round-off."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.measure import saved_bytes
from harness.stem import HAS_ONEDNN_CONV, ConvStem


def _light_and_plain_results(dtype: torch.dtype) -> tuple[list, list, ConvStem]:
    torch.manual_seed(0)
    light = ConvStem(3, 32).to(dtype).train()
    plain = copy.deepcopy(light)
    plain._light_backward = lambda x: False
    x = torch.randn(4, 3, 32, 32, dtype=dtype)
    results = []
    for stem in (light, plain):
        xi = x.clone().requires_grad_(True)
        y = stem(stem(xi).sum() * 0 + xi)  # two training steps' worth of running-stat updates
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        stats = [stem.bn1.running_mean, stem.bn1.running_var, stem.bn1.num_batches_tracked]
        results.append([y.detach(), xi.grad, *stats, *(p.grad for p in stem.parameters())])
    return *results, light


def test_light_conv_stem_equals_batchnorm_then_gelu():
    light_results, plain_results, light = _light_and_plain_results(torch.float64)
    for a, b in zip(light_results, plain_results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # the light front keeps its input (the image) and per-channel statistics: what is left is
    # the LayerNorm's input, one [B, H/4, W/4, C] map, and the small statistics
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    plain = copy.deepcopy(light)
    plain._light_backward = lambda x: False
    norm_input = 4 * 8 * 8 * 32 * x.element_size()
    assert saved_bytes(light, x) < 1.2 * norm_input < saved_bytes(plain, x) / 3


def test_light_conv_stem_in_fp32_is_within_round_off():
    """fp32 on CPU: channels-last maps and the fused GELU pass of ``harness.light_mlp``."""
    light_results, plain_results, _ = _light_and_plain_results(torch.float32)
    for a, b in zip(light_results, plain_results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _plain_eval(stem: ConvStem, x: torch.Tensor) -> torch.Tensor:
    stem._inference = lambda: False  # instance attribute: the op-by-op path
    try:
        with torch.inference_mode():
            return stem(x)
    finally:
        del stem._inference


def test_folded_inference_stem_equals_batchnorm_then_gelu():
    torch.manual_seed(0)
    stem = ConvStem(3, 32)
    x = torch.randn(2, 3, 32, 32)
    stem.train()(3 * x + 1)  # running statistics away from 0 and 1
    stem.eval()
    with torch.inference_mode():
        folded = stem(x)
    torch.testing.assert_close(folded, _plain_eval(stem, x), rtol=1e-5, atol=1e-5)
    assert stem._folded is not None


@pytest.mark.skipif(not HAS_ONEDNN_CONV, reason="this torch build has no oneDNN convolution")
def test_folded_inference_stem_runs_conv1_and_gelu_as_one_onednn_convolution():
    stem = ConvStem(3, 32).eval()
    with torch.inference_mode(), torch.profiler.profile() as prof:
        stem(torch.randn(1, 3, 32, 32))
    ops = [event.name for event in prof.events()]
    assert ops.count("mkldnn::_convolution_pointwise") == 2
    assert "aten::gelu" not in ops and "aten::convolution" not in ops


def test_folded_weights_follow_updates_of_weights_and_statistics():
    torch.manual_seed(0)
    stem = ConvStem(3, 32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        before = stem(x)
    stem.train()(x - 2)  # new running statistics
    with torch.no_grad():
        stem.conv1.weight.mul_(1.5)  # an optimiser step, in place
    stem.eval()
    with torch.inference_mode():
        after = stem(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _plain_eval(stem, x), rtol=1e-5, atol=1e-5)


def test_training_under_bf16_autocast_takes_the_op_by_op_stem():
    """Autocast picks each op's dtype; the light front's recompute could not match it."""
    torch.manual_seed(0)
    stem = ConvStem(3, 32).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stem(x)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16 and stem.conv1.weight.grad is not None
