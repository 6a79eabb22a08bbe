"""Whole-model inference throughput: vit_lsla_t against timm's swin_tiny in the same process.

The paper's FLOPs ratio (4.5G / 3.5G) suggests vit_lsla_t should run >= 1.25x faster than
Swin-T; the measured ratio is recorded (``extra_info``), not asserted: speed goals live here.
"""

from __future__ import annotations

import pytest
import timm
import torch

import harness.models  # noqa: F401  (registers the presets in timm)
from benchmarks.conftest import run_benchmark
from harness.measure import autocast
from harness.timing import interleaved, pinned_threads

GOAL = 1.25
REFERENCE = "swin_tiny_patch4_window7_224"
MODELS = ["vit_lsla_t", "vit_lsla_t_r3", "swin_t_ref", REFERENCE]


def _setup(name: str, device: torch.device):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=1000).to(device).eval()
    batch = 32 if device.type == "cuda" else 4
    x = torch.randn(batch, 3, 224, 224, device=device)
    precision = "bf16" if device.type == "cuda" else "fp32"

    def fwd():
        with torch.inference_mode(), autocast(device, precision):
            return model(x)

    return fwd, batch, precision


@pytest.mark.parametrize("name", MODELS)
def test_model_inference(benchmark, device, name):
    fwd, batch, precision = _setup(name, device)
    result = run_benchmark(
        benchmark,
        fwd,
        device,
        group="model-inference-224",
        kind="model",
        variant=name,
        batch=batch,
        precision=precision,
        img_size=224,
    )
    del result


def test_lsla_vs_timm_swin_tiny_ratio(benchmark, device, interleaved_rounds):
    """vit_lsla_t, swin_t_ref and timm's swin_tiny timed interleaved in this process (CPU: one
    pinned thread); the median and spread of the per-round speed-ups are recorded."""
    fns = {name: _setup(name, device)[0] for name in ("vit_lsla_t", "swin_t_ref", REFERENCE)}
    _, batch, precision = _setup("vit_lsla_t", device)
    rounds = interleaved_rounds(7 if device.type == "cpu" else 20)
    warmup = 0 if benchmark.disabled else 2  # disabled: a smoke test
    cmp = interleaved(fns, REFERENCE, device, rounds=rounds, warmup=warmup, threads=1)
    speedup = cmp.speedup("vit_lsla_t")
    median_s = cmp.as_dict()["median_s"]
    vs_swin_ref = cmp.speedup("vit_lsla_t", over="swin_t_ref")["median"]
    with pinned_threads(cmp.threads if device.type == "cpu" else None):
        run_benchmark(
            benchmark,
            fns["vit_lsla_t"],
            device,
            warmup=0,
            group="model-ratio",
            kind="ratio",
            variant="vit_lsla_t",
            batch=batch,
            precision=precision,
            img_size=224,
            throughput_ratio=speedup["median"],
            ratio_q1=speedup["q1"],
            ratio_q3=speedup["q3"],
            ratio_cpu_time=cmp.speedup("vit_lsla_t", "cpu")["median"] if cmp.cpu_s else None,
            ratio_vs_swin_t_ref=vs_swin_ref,
            rounds_interleaved=cmp.rounds,
            round_order=cmp.round_order,
            timing_threads=cmp.threads,
            load_avg=cmp.load_avg_before,
            lsla_images_per_s=batch / median_s["vit_lsla_t"],
            swin_images_per_s=batch / median_s[REFERENCE],
            goal=GOAL,
            meets_goal=bool(speedup["median"] >= GOAL),
        )
