"""Counting and timing primitives: parameters, MACs, throughput, peak memory, environment.

MACs follow the Swin convention (linears, convolutions, the QK^T and AV matmuls; norms, softmax and
elementwise ops are free) and are read from ``torch.utils.flop_counter.FlopCounterMode``, which
reports FLOPs = 2 x MACs. torch 2.14 has no formula for the CPU flash-attention kernel that SDPA
dispatches to, so one is registered here; without it fused attention would count as zero.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.utils.flop_counter as flop_counter
from torch import nn

from harness import allocator
from harness.identity import git_commit
from harness.timing import Sample, load_average, time_call
from variants._linear import cpu_gemms

_aten = torch.ops.aten


def _register_cpu_sdpa_formulas() -> None:
    fwd = _aten._scaled_dot_product_flash_attention_for_cpu
    bwd = _aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(fwd)
        def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if bwd not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(bwd)
        def _cpu_sdpa_bwd(
            grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
        ) -> int:
            return flop_counter.sdpa_backward_flop_count(
                grad_out_shape, query_shape, key_shape, value_shape
            )


_register_cpu_sdpa_formulas()


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in seen.values())


def count_flops(
    model: nn.Module, img_size: int | tuple[int, int] = 224, in_chans: int = 3, batch_size: int = 1
) -> int:
    """Multiply-accumulates of one forward pass per image (FlopCounterMode FLOPs / 2)."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    param = next(model.parameters())
    x = torch.randn(batch_size, in_chans, h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), flop_counter.FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // (2 * batch_size)


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Throughput:
    images_per_s: float  # batch / median step time (robust to a busy machine)
    images_per_s_mean: float  # batch * steps / total time
    step_ms_median: float
    step_ms_iqr: float
    batch_size: int
    steps: int
    warmup: int
    mode: str  # "inference" | "train"
    precision: str
    channels_last: bool
    compiled: bool
    device: str
    peak_mem_allocated_mb: float | None = None
    peak_mem_reserved_mb: float | None = None
    threads: int | None = None  # intra-op CPU threads the steps ran with
    cpu_ms_median: float | None = None  # process CPU time per step (CPU; None on CUDA)
    kernel_ms_median: float | None = None  # of it, in the OS kernel (POSIX CPU runs)
    page_faults_median: float | None = None  # minor page faults per step: fresh memory touched
    load_avg: list[float] | None = None  # the machine's 1/5/15-minute load, before the steps

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast context for ``precision``; fp32 is a no-op context."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"precision={precision!r} is not valid; choices: fp32, bf16, fp16")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


def measure_throughput(
    model: nn.Module,
    img_size: int,
    batch_size: int = 32,
    mode: str = "inference",
    steps: int = 10,
    warmup: int = 3,
    precision: str = "fp32",
    channels_last: bool = False,
    compiled: bool = False,
    in_chans: int = 3,
) -> Throughput:
    """Images/s on synthetic input already on the device, each step timed by
    ``harness.timing.time_call`` (CUDA events after warm-up on CUDA; wall and process CPU time on
    CPU, its OS-kernel part and the minor page faults), with the thread count and the load
    average recorded beside. One model alone: to compare models, use
    ``harness.timing.interleaved`` (``python -m harness compare``).

    ``mode="train"`` times forward + backward + an SGD-free ``zero_grad`` (the optimizer's cost is
    excluded so variants compare on the network alone). Peak memory is reset before the timed steps.
    """
    if mode not in ("inference", "train"):
        raise ValueError(f"mode={mode!r} is not valid; choices: inference, train")
    device = next(model.parameters()).device
    x = torch.randn(batch_size, in_chans, img_size, img_size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    step = _step(model, torch.compile(model) if compiled else model, x, mode, precision)
    model.train(mode == "train")
    load = load_average()
    samples = _time_steps(step, device, steps, warmup)
    times = [sample.wall_s for sample in samples]
    cpu = [sample.cpu_s for sample in samples if sample.cpu_s is not None]
    kernel = [sample.kernel_s for sample in samples if sample.kernel_s is not None]
    faults = [sample.page_faults for sample in samples if sample.page_faults is not None]
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (median,) * 3
    alloc = reserved = None
    if device.type == "cuda":
        alloc = torch.cuda.max_memory_allocated(device) / 2**20
        reserved = torch.cuda.max_memory_reserved(device) / 2**20
    return Throughput(
        images_per_s=batch_size / median,
        images_per_s_mean=batch_size * steps / sum(times),
        step_ms_median=1e3 * median,
        step_ms_iqr=1e3 * (q3 - q1),
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        mode=mode,
        precision=precision,
        channels_last=channels_last,
        compiled=compiled,
        device=str(device),
        peak_mem_allocated_mb=alloc,
        peak_mem_reserved_mb=reserved,
        threads=torch.get_num_threads() if device.type == "cpu" else None,
        cpu_ms_median=1e3 * statistics.median(cpu) if cpu else None,
        kernel_ms_median=1e3 * statistics.median(kernel) if kernel else None,
        page_faults_median=statistics.median(faults) if faults else None,
        load_avg=list(load) if load else None,
    )


def _step(model: nn.Module, fn, x: torch.Tensor, mode: str, precision: str):
    """One inference forward, or one forward + backward (gradients dropped after)."""
    device = x.device

    def inference() -> None:
        with torch.inference_mode(), autocast(device, precision):
            fn(x)

    def train() -> None:
        with autocast(device, precision):
            loss = fn(x).float().logsumexp(-1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return inference if mode == "inference" else train


def _time_steps(step, device: torch.device, steps: int, warmup: int) -> list[Sample]:
    """Each timed step's seconds (``time_call``); peak memory reset after warm-up."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return [time_call(step, device) for _ in range(steps)]


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward during one forward of ``model`` on ``x``: every saved
    tensor's storage counted once (views share it), parameters and the input left out."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    skip.add(x.untyped_storage().data_ptr())
    return sum(n for ptr, n in seen.items() if ptr not in skip)


def nvml_memory_used_mb(device: torch.device | str | None = None) -> float | None:
    """Device memory used per NVML (all processes, CUDA context included); None without a GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            index = torch.device(device).index if device is not None else None
            handle = pynvml.nvmlDeviceGetHandleByIndex(index or 0)
            return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Library versions, device name, TF32 flags and git commit, for every result row."""
    import timm

    device = torch.device(device)
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "allocator": allocator.describe(),
    }
    if device.type == "cpu":
        env["cpu_gemms"] = cpu_gemms()  # which library ran each linear product
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env
