"""Whole-model speed and memory of vit_lsla_t against swin_t_ref and timm's swin_tiny, measured
the honest way (``harness.timing``): one process, interleaved rounds, one pinned CPU thread,
median and IQR of the per-round ratios, process CPU time beside wall time; a square GEMM runs in
the same rounds (the faster of MKL's and oneDNN's on CPU), so "share of the GEMM peak" compares
like with like. Each model's minor page faults and OS-kernel time per call are recorded beside:
in a VM, where a fault costs microseconds, they move the ratio to timm, whose Swin touches more
fresh memory per call.

Saved activations are counted exactly: every tensor autograd saves for backward during one
training forward, each storage once (views of one buffer are not counted twice).
"""

from __future__ import annotations

import statistics

import pytest
import timm
import torch

import harness.models  # noqa: F401  (registers the presets in timm)
from benchmarks.conftest import run_benchmark
from harness.measure import autocast, count_flops, saved_bytes
from harness.timing import interleaved
from variants._linear import HAS_ONEDNN_LINEAR, onednn_linear

REFERENCE = "swin_tiny_patch4_window7_224"
MODELS = ("vit_lsla_t", "swin_t_ref", REFERENCE)
GEMM = 2048


def _model_step(name: str, device: torch.device, batch: int, mode: str):
    torch.manual_seed(0)
    model = timm.create_model(name).to(device).train(mode == "train")
    x = torch.randn(batch, 3, 224, 224, device=device)
    precision = "bf16" if device.type == "cuda" else "fp32"

    def inference():
        with torch.inference_mode(), autocast(device, precision):
            model(x)

    def train():
        with autocast(device, precision):
            loss = model(x).float().logsumexp(-1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return (inference if mode == "inference" else train), model


def _gemms(device: torch.device) -> dict:
    """The square GEMM of the peak: torch.mm (MKL on CPU) and, where torch has it, oneDNN's
    matmul, which the models' linears use in CPU inference (on an AMD EPYC it ran 2.2x MKL)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(GEMM, GEMM, device=device, dtype=dtype)
    gemms = {"gemm": lambda: a @ a}
    if device.type == "cpu" and HAS_ONEDNN_LINEAR:
        gemms["gemm_onednn"] = lambda: onednn_linear(a, a, None)
    return gemms


@pytest.mark.parametrize(("mode", "batch"), [("inference", 4), ("inference", 16), ("train", 4)])
def test_speed_vs_swin(benchmark, device, interleaved_rounds, mode, batch):
    batch = 1 if benchmark.disabled else batch  # disabled: a smoke test of the same code
    fns, flops = {}, {}
    for name in MODELS:
        fns[name], model = _model_step(name, device, batch, mode)
        flops[name] = 2 * count_flops(model, 224) * batch * (3 if mode == "train" else 1)
    gemms = _gemms(device)
    fns.update(gemms)
    rounds = interleaved_rounds(7)
    warmup = 0 if benchmark.disabled else 2
    cmp = interleaved(fns, "swin_t_ref", device, rounds=rounds, warmup=warmup, threads=1)
    summary = cmp.as_dict()
    median = summary["median_s"]
    peak = max(2 * GEMM**3 / median[name] for name in gemms)  # the faster library's
    info = dict(kind="speed", mode=mode, batch=batch, rounds_interleaved=rounds)
    info.update(timing_threads=cmp.threads, load_avg=cmp.load_avg_before, gemm_gflops=peak / 1e9)
    info["round_order"] = cmp.round_order
    for name in ("vit_lsla_t", REFERENCE):
        s = cmp.speedup(name)
        info[f"speedup_{name}_vs_swin_t_ref"] = [s["median"], s["q1"], s["q3"]]
    info["speedup_vit_lsla_t_vs_timm"] = cmp.speedup("vit_lsla_t", over=REFERENCE)["median"]
    if cmp.kernel_s:  # the same without the OS kernel's time: timm's page faults left out
        outside = cmp.speedup("vit_lsla_t", "outside_kernel", over=REFERENCE)["median"]
        info["speedup_vit_lsla_t_vs_timm_outside_kernel"] = outside
    for name in ("vit_lsla_t", "swin_t_ref"):
        info[f"gemm_share_{name}"] = flops[name] / median[name] / peak
    if cmp.cpu_s:
        info["speedup_cpu_time_vit_lsla_t"] = cmp.speedup("vit_lsla_t", "cpu")["median"]
    if cmp.page_faults:  # what the allocator costs each model: fresh memory first touched
        info["page_faults_per_call"] = {k: summary["median_page_faults"][k] for k in MODELS}
        info["kernel_ms_per_call"] = {k: 1e3 * statistics.median(cmp.kernel_s[k]) for k in MODELS}
    run_benchmark(benchmark, fns["vit_lsla_t"], device, warmup=0, group=f"speed-{mode}", **info)


def test_saved_activations(benchmark, device):
    # the batch of the measurement (per-window tables weigh more at 1-2); the smoke
    # test (timing disabled) counts the same tensors at batch 1
    batch = 1 if benchmark.disabled else 8
    x = torch.randn(batch, 3, 224, 224, device=device)
    per_image = {}
    for name in MODELS:
        model = timm.create_model(name).to(device).train()
        per_image[name] = saved_bytes(model, x) / batch
    info = {f"saved_mb_per_image_{k}": v / 2**20 for k, v in per_image.items()}
    info["saved_ratio_vit_lsla_t_vs_swin_t_ref"] = per_image["vit_lsla_t"] / per_image["swin_t_ref"]
    model = timm.create_model("vit_lsla_t").to(device).train()
    run_benchmark(
        benchmark, lambda: saved_bytes(model, x), device, warmup=0, group="memory",
        kind="memory", **info,
    )  # fmt: skip
