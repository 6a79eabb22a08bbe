"""Whole-model inference throughput: vit_lsla_t against timm's swin_tiny in the same process.

The paper's FLOPs ratio (4.5G / 3.5G) suggests vit_lsla_t should run >= 1.25x faster than
Swin-T; the measured ratio is recorded (``extra_info``), not asserted: speed goals live here.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.utils.benchmark as tbench

import harness.models  # noqa: F401  (registers the presets in timm)
from benchmarks.conftest import run_benchmark
from harness.measure import autocast

GOAL = 1.25
MODELS = ["vit_lsla_t", "vit_lsla_t_r3", "swin_t_ref", "swin_tiny_patch4_window7_224"]


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


def test_lsla_vs_timm_swin_tiny_ratio(benchmark, device):
    """Both models timed alternately with blocked_autorange; ratio of images/s recorded."""
    lsla, batch, precision = _setup("vit_lsla_t", device)
    swin, _, _ = _setup("swin_tiny_patch4_window7_224", device)
    for fn in (lsla, swin):
        fn()
    min_time = 2.0 if device.type == "cpu" else 1.0
    t_lsla = tbench.Timer("fn()", globals={"fn": lsla}).blocked_autorange(min_run_time=min_time)
    t_swin = tbench.Timer("fn()", globals={"fn": swin}).blocked_autorange(min_run_time=min_time)
    ratio = t_swin.median / t_lsla.median
    run_benchmark(
        benchmark,
        lsla,
        device,
        warmup=0,
        group="model-ratio",
        kind="ratio",
        variant="vit_lsla_t",
        batch=batch,
        precision=precision,
        img_size=224,
        lsla_images_per_s=batch / t_lsla.median,
        swin_images_per_s=batch / t_swin.median,
        throughput_ratio=ratio,
        goal=GOAL,
        meets_goal=bool(ratio >= GOAL),
    )
