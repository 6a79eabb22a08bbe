"""pytest-benchmark fixtures: CPU always, CUDA when present, context per row.

On CUDA, pytest-benchmark's own table times synchronised calls (wall clock); each row also
carries CUDA-event timings taken after warm-up (``extra_info.cuda_event_ms_median``), which the
headline figures and the report prefer.

Run: ``pytest --benchmark`` (or ``tox -e bench``, which also saves each run under
``.benchmarks/`` so ``pytest --benchmark --benchmark-compare`` compares with the last one); add
``--benchmark-json=PATH`` to keep the numbers for ``python -m reports``. Plain ``pytest`` skips
them (``--benchmark-skip``).
"""

from __future__ import annotations

import statistics

import pytest
import torch

from harness import allocator
from harness.timing import time_call
from variants._linear import cpu_gemms

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def interleaved_rounds(request, benchmark):
    """``rounds(default)``: the rounds of an interleaved comparison, ``--interleaved-rounds``
    when given; one round when timing is off (plain ``pytest`` runs each benchmark once)."""
    chosen = request.config.getoption("interleaved_rounds")

    def rounds(default: int) -> int:
        return 1 if benchmark.disabled else chosen or default

    return rounds


def synced(fn, device: torch.device):
    """``fn`` followed by a CUDA synchronise, so timings include the kernels themselves."""
    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def run_benchmark(benchmark, fn, device: torch.device, warmup: int = 2, **info):
    """Warm up, then time ``fn`` with pytest-benchmark; ``info`` lands in the JSON row."""
    fn = synced(fn, device)
    for _ in range(warmup):
        fn()
    if "group" in info:  # one table per group: like compared with like
        benchmark.group = info["group"]
    benchmark.extra_info.update(info)
    benchmark.extra_info.update(
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        allocator=allocator.describe(),
    )
    if device.type == "cpu":
        benchmark.extra_info["cpu_gemms"] = cpu_gemms()  # which library ran each linear product
    result = benchmark(fn)
    if device.type == "cuda":
        benchmark.extra_info.update(cuda_event_times(fn, device))
    return result


def cuda_event_times(fn, device: torch.device, rounds: int = 20) -> dict[str, float]:
    """Median and IQR of ``rounds`` CUDA-event timings of ``fn`` (already warm)."""
    ms = [1e3 * time_call(fn, device).wall_s for _ in range(rounds)]
    q1, _, q3 = statistics.quantiles(ms, n=4)
    return {"cuda_event_ms_median": statistics.median(ms), "cuda_event_ms_iqr": q3 - q1}


def step(module, x, mode: str):
    """A forward (inference mode) or forward+backward closure over ``module`` and ``x``."""
    if mode == "fwd":

        def fwd():
            with torch.inference_mode():
                return module(x)

        return fwd
    x = x.detach().requires_grad_(True)

    def fwd_bwd():
        module(x).float().square().mean().backward()

    return fwd_bwd
