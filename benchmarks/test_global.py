"""Global attention: vit_lsla_t against swin_t_ref, both with ``window = "global"``, in inference
at 448 px and in a training step at 224 px.

Time: interleaved rounds in one process at one pinned thread (``harness.timing``), batch 1.
Memory: the peak one forward (or training step) adds, each model in a process of its own on CPU
(``harness.peak_memory``), the allocator's peak on CUDA. Goals (issue 12, inference): time within
2x of Swin global, peak no more than Swin's. Each model's attention kernels are recorded (and
printed): on CPU both run the explicit core, a few query rows at a time over tables per offset
(``variants._lsla_global``), not SDPA with an ``L x L`` bias.
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


def _model_and_call(name: str, device: torch.device, img_size: int, train: bool):
    """The model and one call of it at batch 1: an inference forward, or (``train``) a
    training step's forward and backward; bf16 autocast on CUDA."""
    torch.manual_seed(0)
    model = create(name, attn_switches=GLOBAL, img_size=img_size).to(device).train(train)
    x = torch.randn(1, 3, img_size, img_size, device=device)
    precision = "bf16" if device.type == "cuda" else "fp32"

    def call():
        with torch.inference_mode(not train), autocast(device, precision):
            out = model(x)
        if train:
            model.zero_grad(set_to_none=True)
            out.float().logsumexp(-1).mean().backward()

    return model, call


def test_global_mode_448px(benchmark, device, interleaved_rounds):
    _compare(benchmark, device, interleaved_rounds, 448, train=False)


def test_global_training_step_224px(benchmark, device, interleaved_rounds):
    """No goal in the issue: where the two models stand when global attention trains."""
    _compare(benchmark, device, interleaved_rounds, 224, train=True)


def _compare(benchmark, device, interleaved_rounds, full_size: int, train: bool):
    img_size = 64 if benchmark.disabled else full_size  # disabled: a smoke test
    rounds = interleaved_rounds(3)
    models = {name: _model_and_call(name, device, img_size, train) for name in MODELS}
    fns = {name: fn for name, (_, fn) in models.items()}
    cmp = interleaved(fns, "swin_t_ref", device, rounds=rounds, warmup=1, threads=1)
    peak = {name: 0 for name in MODELS}
    if not benchmark.disabled:  # each peak is a fresh process (tests/test_peak_memory.py)
        peak = {
            name: forward_peak_bytes(name, img_size, GLOBAL, device=device, train=train)
            for name in MODELS
        }
    time_ratio = cmp.speedup("swin_t_ref", over="vit_lsla_t")  # LSLA time / Swin time
    kind = "global_train" if train else "global"
    info = dict(kind=kind, img_size=img_size, batch=1, rounds_interleaved=rounds)
    info.update(timing_threads=cmp.threads, load_avg=cmp.load_avg_before)
    info["round_order"] = cmp.round_order
    info["time_ratio_vit_lsla_t_vs_swin_t_ref"] = [time_ratio[k] for k in ("median", "q1", "q3")]
    info.update({f"peak_mb_{k}": v / 2**20 for k, v in peak.items()})
    info["median_s"] = cmp.as_dict()["median_s"]
    info["attention_kernels"] = {name: m.attention_kernels() for name, (m, _) in models.items()}
    run_benchmark(benchmark, fns["vit_lsla_t"], device, warmup=0, group=kind, **info)
