"""CUDA checks (skipped without a GPU): device parity, bf16 autocast, GPU memory in records."""

from __future__ import annotations

import pytest
import torch

import variants
from harness import models
from harness.measure import measure_throughput, nvml_memory_used_mb

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
