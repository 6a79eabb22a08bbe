"""Root pytest hooks shared by tests/ and benchmarks/.

``pytest --benchmark`` runs the benchmark suite (plain ``pytest`` skips it: it times things).
The terminal summary then states the headline figures: the vit_lsla_t / timm swin_tiny
throughput ratio and the scaling exponent of each variant.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--benchmark",
        action="store_true",
        help="run the benchmarks (same as --benchmark-only); plain pytest skips them",
    )
    parser.addoption(
        "--interleaved-rounds",
        type=_whole_number,
        default=None,
        metavar="N",
        help="rounds of every interleaved speed comparison (default: each benchmark's own, "
        "7 for most); more rounds narrow the spread on a noisy machine",
    )


def _fix_allocator() -> None:
    from harness import allocator

    try:
        allocator.use(allocator.from_env())
    except ValueError as exc:  # a bad LSLA_MALLOC: one line, no traceback
        raise pytest.UsageError(str(exc)) from None


def _whole_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text!r}), e.g. 15")
    return int(text)


def pytest_configure(config):
    """``--benchmark`` switches pytest-benchmark to benchmarks only (its own configure runs
    last); a timed run fixes the C allocator's policy first (``harness.allocator``, chosen by
    ``LSLA_MALLOC``); create the folder of ``--benchmark-json`` (pytest-benchmark does not)."""
    if config.getoption("benchmark", False):
        config.option.benchmark_only = True
    timed = getattr(config.option, "benchmark_only", False)
    if timed and not getattr(config.option, "benchmark_disable", False):
        _fix_allocator()
    target = config.getoption("benchmark_json", None)
    if target:
        Path(str(target)).parent.mkdir(parents=True, exist_ok=True)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(time) on log(tokens)."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return num / sum((x - mx) ** 2 for x in xs)


def _ratio_line(info: dict) -> str:
    cpu = info.get("ratio_cpu_time")
    return (
        f"vit_lsla_t / timm swin_tiny inference speed on {info.get('device_name')}: "
        f"{info['throughput_ratio']:.2f}x median over {info.get('rounds_interleaved')} "
        f"interleaved rounds (IQR {info.get('ratio_q1', float('nan')):.2f}-"
        f"{info.get('ratio_q3', float('nan')):.2f}"
        + (f"; CPU time {cpu:.2f}x" if cpu is not None else "")
        + f"; vs swin_t_ref {info.get('ratio_vs_swin_t_ref', float('nan')):.2f}x); goal "
        f"{info['goal']}x; batch {info['batch']}, {info['precision']}, "
        f"{info.get('timing_threads')} thread(s)" + _allocator(info)
    )


def _interleaved(ratios: list[float], info: dict) -> str:
    """``median (IQR q1-q3, n interleaved rounds in <order> order, t thread(s))`` of per-round
    ratios; rows from before the order was recorded were timed in rotating order."""
    med, q1, q3 = ratios
    order = info.get("round_order", "rotating")
    return (
        f"{med:.2f}x (IQR {q1:.2f}-{q3:.2f}, {info['rounds_interleaved']} interleaved rounds in "
        f"{order} order, {info['timing_threads']} thread(s))"
    )


def _speed_line(info: dict) -> str:
    return (
        f"vit_lsla_t vs swin_t_ref, {info['mode']} batch {info['batch']}: "
        f"{_interleaved(info['speedup_vit_lsla_t_vs_swin_t_ref'], info)}; vs timm swin_tiny "
        f"{info['speedup_vit_lsla_t_vs_timm']:.2f}x{_outside_kernel(info)}; GEMM-peak share "
        f"{100 * info['gemm_share_vit_lsla_t']:.0f}% (swin_t_ref "
        f"{100 * info['gemm_share_swin_t_ref']:.0f}%, peak {info['gemm_gflops']:.0f} GFLOP/s)"
        + _faults(info)
        + _allocator(info)
        + _cpu_gemms(info)
    )


def _outside_kernel(info: dict) -> str:
    """`` (r outside the OS kernel)`` where that ratio was recorded and reads otherwise."""
    outside = info.get("speedup_vit_lsla_t_vs_timm_outside_kernel")
    if outside is None or math.isnan(outside):  # NaN: no round with a positive time outside
        return ""
    if f"{outside:.2f}" == f"{info['speedup_vit_lsla_t_vs_timm']:.2f}":
        return ""
    return f" ({outside:.2f}x outside the OS kernel)"


def _allocator(info: dict) -> str:
    """``; allocator <policy>`` where the row recorded it (``harness.allocator``)."""
    return f"; allocator {info['allocator']}" if info.get("allocator") else ""


def _cpu_gemms(info: dict) -> str:
    """``; linear layers: <libraries>`` where the row recorded them (``variants._linear``)."""
    return f"; linear layers: {info['cpu_gemms']}" if info.get("cpu_gemms") else ""


def _faults(info: dict) -> str:
    """``; page faults per call: name n (k ms in the kernel), ...`` where they were recorded."""
    faults, kernel = info.get("page_faults_per_call"), info.get("kernel_ms_per_call") or {}
    if not faults:
        return ""
    each = (f"{n} {f:.0f} ({kernel.get(n, float('nan')):.0f} ms)" for n, f in faults.items())
    return "; page faults per call (OS-kernel time): " + ", ".join(each)


def _global_line(info: dict) -> str:
    return (
        f"global attention at {info['img_size']} px, vit_lsla_t / swin_t_ref time: "
        f"{_interleaved(info['time_ratio_vit_lsla_t_vs_swin_t_ref'], info)}, goal <= 2; "
        f"peak {info['peak_mb_vit_lsla_t']:.0f} vs {info['peak_mb_swin_t_ref']:.0f} MB "
        f"(goal: no more than Swin's){_kernels(info)}"
    )


def _global_train_line(info: dict) -> str:
    return (
        f"global attention, training step at {info['img_size']} px, vit_lsla_t / swin_t_ref "
        f"time: {_interleaved(info['time_ratio_vit_lsla_t_vs_swin_t_ref'], info)}; peak "
        f"{info['peak_mb_vit_lsla_t']:.0f} vs {info['peak_mb_swin_t_ref']:.0f} MB (no goal)"
        f"{_kernels(info)}"
    )


def _kernels(info: dict) -> str:
    """``; kernels: name k+k, ...`` where the row recorded which kernels each model ran."""
    kernels = info.get("attention_kernels") or {}
    each = (f"{name} {'+'.join(used) or 'unrecorded'}" for name, used in kernels.items())
    return "; kernels: " + ", ".join(each) if kernels else ""


def headline_lines(benchmarks) -> list[str]:
    """The summary lines for pytest-benchmark's results (``.extra_info`` and ``.stats``)."""
    lines, scaling = [], {}
    for b in benchmarks:
        info = getattr(b, "extra_info", {}) or {}
        if info.get("kind") == "ratio":
            lines.append(_ratio_line(info))
        elif info.get("kind") == "speed":
            lines.append(_speed_line(info))
        elif info.get("kind") == "memory":
            lines.append(
                "saved activations per image, vit_lsla_t / swin_t_ref: "
                f"{info['saved_ratio_vit_lsla_t_vs_swin_t_ref']:.3f} "
                f"({info['saved_mb_per_image_vit_lsla_t']:.1f} vs "
                f"{info['saved_mb_per_image_swin_t_ref']:.1f} MB; goal <= 0.875)"
            )
        elif info.get("kind") == "global":
            lines.append(_global_line(info))
        elif info.get("kind") == "global_train":
            lines.append(_global_train_line(info))
        elif info.get("kind") == "scaling" and getattr(b, "stats", None) is not None:
            key = (info["variant"], info.get("device", "cpu"))
            scaling.setdefault(key, []).append((info["tokens"], b.stats.median))
    for (variant, device), points in sorted(scaling.items()):
        if len(points) >= 2:
            lines.append(
                f"scaling of {variant} on {device}: time ~ tokens^{_slope(points):.2f} "
                f"({len(points)} sizes; global attention is ~2, windows ~1)"
            )
    return lines


def pytest_terminal_summary(terminalreporter):
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    lines = headline_lines(getattr(session, "benchmarks", []) or [])
    if lines:
        terminalreporter.section("headline figures")
        for line in lines:
            terminalreporter.write_line(line)
