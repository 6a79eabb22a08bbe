"""Honest speed comparisons: candidates timed in one process, interleaved, over several rounds.

On a shared machine the same code swings by tens of percent between minutes, so a speed claim
compares candidates *within* each round (A, B, A, B...) and reports the median and spread of the
per-round ratios, never one sequential measurement. On CPU the thread count is pinned and recorded,
process CPU time is taken beside wall time (it shows when other processes stole the cores), with
its part in the OS kernel and the minor page faults per call (what the memory allocator costs:
fresh memory first touched, in a VM several microseconds a page), and the load average is
recorded, with the C allocator's policy (``harness.allocator``: the harness's commands and
benchmarks fix it, so that no candidate's page faults depend on what ran before it); on CUDA each
call is timed with CUDA events after warm-up.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from harness import allocator

ROUND_ORDER = "balanced"  # recorded with each comparison: rounds used to rotate (before 2026-12-06)

if sys.platform != "win32":
    import resource
else:  # no getrusage: kernel time and page faults go unrecorded
    resource = None


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float | None  # process CPU time (CPU only; None on CUDA)
    kernel_s: float | None = None  # the part of cpu_s in the OS kernel (POSIX CPU runs)
    page_faults: float | None = None  # minor page faults: fresh memory first touched


@contextmanager
def pinned_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op threads (None: leave as is); the old count comes back."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int = 1) -> Sample:
    """Seconds per call of ``fn`` (mean of ``repeats`` back-to-back calls)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return Sample(start.elapsed_time(end) / 1e3 / repeats, None)
    usage = _usage()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = _usage()
    if usage is None or after is None:
        return Sample(wall / repeats, cpu / repeats)
    kernel, faults = ((b - a) / repeats for a, b in zip(usage, after, strict=True))
    return Sample(wall / repeats, cpu / repeats, kernel, faults)


def _usage() -> tuple[float, int] | None:
    """This process's system CPU seconds and minor page faults so far, all threads."""
    if resource is None:
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_stime, usage.ru_minflt


def _spread(values: list[float]) -> dict[str, float]:
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "min": min(values),
        "max": max(values),
    }


@dataclass
class Comparison:
    """Per-round seconds of each candidate and the per-round ratios against ``baseline``."""

    baseline: str
    device: str
    threads: int
    rounds: int
    repeats: int
    load_avg_before: tuple[float, float, float] | None
    load_avg_after: tuple[float, float, float] | None = None
    allocator: str = ""  # harness.allocator.describe(): what each call's memory came from
    round_order: str = ROUND_ORDER  # the candidates' order within rounds (balanced_orders)
    wall_s: dict[str, list[float]] = field(default_factory=dict)
    cpu_s: dict[str, list[float]] = field(default_factory=dict)
    kernel_s: dict[str, list[float]] = field(default_factory=dict)
    page_faults: dict[str, list[float]] = field(default_factory=dict)

    def speedup(self, name: str, clock: str = "wall", over: str | None = None) -> dict[str, float]:
        """``over`` time / ``name`` time (``over``: the baseline unless given), round by round:
        above 1 means ``name`` is faster. ``clock``: "wall", "cpu" (process CPU time) or
        "outside_kernel" (wall time less the OS kernel's CPU time: what page faults and other
        system calls cost left out; CPU only). Rounds where either time is not positive are
        left out: getrusage's kernel time is tick-sampled, so over a call of a few milliseconds
        it can exceed the wall time; with none left, every figure is NaN."""
        ref, times = self._times(over or self.baseline, clock), self._times(name, clock)
        ratios = [b / c for b, c in zip(ref, times, strict=True) if b > 0 and c > 0]
        return _spread(ratios or [math.nan])

    def _times(self, name: str, clock: str) -> list[float]:
        if clock == "outside_kernel":
            kernel = self.kernel_s[name]
            return [w - k for w, k in zip(self.wall_s[name], kernel, strict=True)]
        return (self.wall_s if clock == "wall" else self.cpu_s)[name]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["median_s"] = {k: statistics.median(v) for k, v in self.wall_s.items()}
        out["median_page_faults"] = {k: statistics.median(v) for k, v in self.page_faults.items()}
        out["speedup"] = {k: self.speedup(k) for k in self.wall_s if k != self.baseline}
        if self.cpu_s:
            out["speedup_cpu"] = {
                k: self.speedup(k, "cpu") for k in self.cpu_s if k != self.baseline
            }
        return out


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def balanced_orders(n: int) -> list[list[int]]:
    """Williams' crossover design: ``n`` orders of ``range(n)`` (``2n`` for odd ``n``) in which
    each index takes every position, and follows every other index, equally often. A plain
    rotation keeps each candidate behind the same one every round, so whatever that one leaves
    in the caches (a GEMM's 48 MB, another model's weights) weighs on it alone."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    orders = [[(i + shift) % n for i in first] for shift in range(n)]
    return orders + [order[::-1] for order in orders] if n % 2 else orders


def interleaved(
    candidates: dict[str, Callable[[], Any]],
    baseline: str,
    device: torch.device,
    rounds: int = 7,
    warmup: int = 2,
    repeats: int = 1,
    threads: int | None = 1,
) -> Comparison:
    """Time every candidate once per round, in the orders of ``balanced_orders`` (each
    candidate in every position and after every other alike), after ``warmup`` untimed calls
    each; CPU runs at ``threads`` threads (CUDA ignores it)."""
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not among {', '.join(candidates)}")
    names = list(candidates)
    orders = balanced_orders(len(names))
    with pinned_threads(threads if device.type == "cpu" else None) as used:
        result = Comparison(baseline, str(device), used, rounds, repeats, load_average())
        result.allocator = allocator.describe()
        for name in names:
            for _ in range(warmup):
                candidates[name]()
        for r in range(rounds):
            for name in (names[i] for i in orders[r % len(orders)]):
                sample = time_call(candidates[name], device, repeats)
                result.wall_s.setdefault(name, []).append(sample.wall_s)
                if sample.cpu_s is not None:
                    result.cpu_s.setdefault(name, []).append(sample.cpu_s)
                if sample.page_faults is not None:
                    result.kernel_s.setdefault(name, []).append(sample.kernel_s)
                    result.page_faults.setdefault(name, []).append(sample.page_faults)
        result.load_avg_after = load_average()
    return result
