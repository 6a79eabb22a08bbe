"""Global attention at 448 px: vit_lsla_t against swin_t_ref, both with ``window = "global"``.

Time: interleaved rounds in one process at one pinned thread (``harness.timing``), batch 1,
inference. Memory: the peak one forward adds, each model in a process of its own on CPU
(``harness.peak_memory``), the allocator's peak on CUDA. Goals (issue 12): time within 2x of
Swin global, peak no more than Swin's. Each model's attention kernels are recorded (and printed):
in CPU inference both run the explicit core, a few query rows at a time, not SDPA with an
``L x L`` bias (``variants._lsla_kernels``).
"""

from __future__ import annotations

import torch

from benchmarks.conftest import run_benchmark
from harness.measure import autocast
from harness.models import create
from harness.peak_memory import forward_peak_bytes
from harness.timing import interleaved

MODELS = ("vit_lsla_t", "swin_t_ref")
GLOBAL = {"window": "global"}


def _model_and_forward(name: str, device: torch.device, img_size: int):
    torch.manual_seed(0)
    model = create(name, attn_switches=GLOBAL, img_size=img_size).to(device).eval()
    x = torch.randn(1, 3, img_size, img_size, device=device)
    precision = "bf16" if device.type == "cuda" else "fp32"

    def forward():
        with torch.inference_mode(), autocast(device, precision):
            model(x)

    return model, forward


def test_global_mode_448px(benchmark, device, interleaved_rounds):
    img_size = 64 if benchmark.disabled else 448  # disabled: a smoke test
    rounds = interleaved_rounds(3)
    models = {name: _model_and_forward(name, device, img_size) for name in MODELS}
    fns = {name: forward for name, (_, forward) in models.items()}
    cmp = interleaved(fns, "swin_t_ref", device, rounds=rounds, warmup=1, threads=1)
    peak = {name: 0 for name in MODELS}
    if not benchmark.disabled:  # each peak is a fresh process (tests/test_peak_memory.py)
        peak = {name: forward_peak_bytes(name, img_size, GLOBAL, device=device) for name in MODELS}
    time_ratio = cmp.speedup("swin_t_ref", over="vit_lsla_t")  # LSLA time / Swin time
    info = dict(kind="global", img_size=img_size, batch=1, rounds_interleaved=rounds)
    info.update(timing_threads=cmp.threads, load_avg=cmp.load_avg_before)
    info["time_ratio_vit_lsla_t_vs_swin_t_ref"] = [time_ratio[k] for k in ("median", "q1", "q3")]
    info.update({f"peak_mb_{k}": v / 2**20 for k, v in peak.items()})
    info["median_s"] = cmp.as_dict()["median_s"]
    info["attention_kernels"] = {name: m.attention_kernels() for name, (m, _) in models.items()}
    run_benchmark(benchmark, fns["vit_lsla_t"], device, warmup=0, group="global", **info)
