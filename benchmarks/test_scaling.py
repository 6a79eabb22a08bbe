"""Time and attention memory versus token count: global (O(N^2)) vs windowed (O(N M^2)).

Memory: on CUDA the peak allocated bytes of one forward; everywhere, the measured size of the
attention-weight tensors the layer materialises (recorded through the explicit path), which is
the term that scales quadratically for global attention and linearly for windows.
"""

from __future__ import annotations

import pytest
import torch

import variants
from benchmarks.conftest import run_benchmark, step
from harness.attn_stats import recording

DIM, HEADS, WINDOW, BATCH = 96, 3, 8, 2
SIDES = [8, 16, 24, 32, 48]


def attention_bytes(attn, x) -> int:
    with torch.inference_mode(), recording(attn) as layers:
        attn(x)
        return sum(m.record.weights.numel() * m.record.weights.element_size() for _, m in layers)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", ["msa", "swin", "lsla"])
def test_scaling(benchmark, device, name, side):
    torch.manual_seed(0)
    attn = variants.create(name, DIM, HEADS, WINDOW, WINDOW // 2).to(device).eval()
    x = torch.randn(BATCH, side, side, DIM, device=device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step(attn, x, "fwd")()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    run_benchmark(
        benchmark,
        step(attn, x, "fwd"),
        device,
        group=f"scaling-{name}",
        kind="scaling",
        variant=name,
        side=side,
        tokens=side * side,
        window=WINDOW,
        batch=BATCH,
        attn_bytes=attention_bytes(attn, x),
        peak_bytes=peak,
    )
