"""CUDA checks (skipped without a GPU): device parity, bf16 autocast, GPU memory in records."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import variants
from harness import models
from harness.measure import measure_throughput, nvml_memory_used_mb
from harness.mlp import Mlp
from tests.kernels import (
    FLEX_GEOMETRIES,
    FLEX_VARIANTS,
    TRAIN_AND_EVAL,
    results_by_path,
    train_or_evaluate,
)
from tests.perturb import away_from_init

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", variants.names())
def test_cuda_matches_cpu_in_fp32(name):
    torch.manual_seed(0)
    m = variants.create(name, 48, 3, 7, 3).eval()
    x = torch.randn(2, 14, 15, 48)
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        ref = m(x)
        out = m.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["swin", "lsla", "msa"])
def test_bf16_autocast_forward_backward(name):
    m = models.create("vit_lsla_micro", attn=name, num_classes=10).cuda()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = m(x).float().logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_throughput_records_peak_memory_on_cuda():
    m = models.create("vit_lsla_micro", num_classes=10).cuda()
    tp = measure_throughput(m, 64, batch_size=8, steps=2, warmup=1, precision="bf16")
    assert tp.peak_mem_allocated_mb > 0 and tp.peak_mem_reserved_mb >= tp.peak_mem_allocated_mb
    assert nvml_memory_used_mb("cuda") > 0


# every variant in windows, shifted or not; global attention (tables per offset) with S, B_i
# and B_o, multiplied and divided: each case compiles flex's kernels anew, within the time
# .ci/gpu-check gives the tests
FLEX_CASES = [(name, g) for name in FLEX_VARIANTS for g in ("window", "shifted")] + [
    ("lsla", "global"),
    ("lsla_scale_div", "global"),
    ("swin", "global"),  # SDPA in windows; in global attention flex, its bias per offset
]


@pytest.mark.parametrize(("name", "geometry"), FLEX_CASES)
def test_flex_forward_and_backward_equal_the_explicit_core(name, geometry):
    """Triton's kernels, with the captured tables' gradients (global: per offset)."""
    torch.manual_seed(0)
    m = variants.create(name, 48, 3, 7, **FLEX_GEOMETRIES[geometry]).cuda()
    away_from_init(m)
    x = torch.randn(2, 15, 13, 48, device="cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    results = results_by_path(m, x)
    assert m.kernels_used == {"flex", "explicit"}
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-4)


def test_flex_is_the_automatic_choice_on_cuda():
    m = variants.create("lsla", 48, 3, 7, 3).cuda()
    m(torch.randn(2, 14, 14, 48, device="cuda")).sum().backward()
    assert m.kernels_used == {"flex"}


def test_flex_stays_compiled_through_training_and_evaluation():
    """Several batch sizes, with and without autograd, in bf16: flex keeps its graphs."""
    from tests.test_flex_compiles import SHIFTED  # noqa: PLC0415
    from variants import _lsla_flex  # noqa: PLC0415

    model = models.create("vit_lsla_micro", num_classes=10, **SHIFTED).cuda()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*flex_attention")  # run eager, or given up
        for batch, train in TRAIN_AND_EVAL:
            train_or_evaluate(model, batch, train, "cuda")
    kernels = {k for m in model.modules() for k in getattr(m, "kernels_used", ())}
    assert kernels == {"flex"} and _lsla_flex.usable()


@pytest.mark.parametrize("autocast", [False, True])
def test_light_mlp_on_cuda_equals_op_by_op(autocast):
    torch.manual_seed(0)
    light = Mlp(64, 256).cuda().train()
    plain = copy.deepcopy(light)
    plain._light_backward = lambda: False
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(4, 49, 64, device="cuda")
    results = []
    for mlp in (light, plain):
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            y = mlp(xi)
        y.float().square().sum().backward()
        results.append([y.float(), xi.grad, *(p.grad for p in mlp.parameters())])
    tolerance = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-4, atol=1e-4)
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, **tolerance)
