"""Interleaved timing: balanced orders, pinned threads, ratios, CPU time; CUDA events on a GPU."""

from __future__ import annotations

import math
import mmap
import statistics
import sys
import time

import pytest
import torch

from harness import allocator
from harness.timing import Comparison, balanced_orders, interleaved, pinned_threads, time_call

CPU = torch.device("cpu")


def _sleeper(seconds: float, calls: list[str], name: str):
    def fn():
        calls.append(name)
        time.sleep(seconds)

    return fn


def test_rounds_rotate_the_order_and_ratios_follow_the_times():
    calls: list[str] = []
    fns = {"slow": _sleeper(0.02, calls, "slow"), "fast": _sleeper(0.01, calls, "fast")}
    cmp = interleaved(fns, baseline="slow", device=CPU, rounds=4, warmup=1)
    timed = calls[2:]  # after one warm-up call each
    assert timed == ["slow", "fast", "fast", "slow", "slow", "fast", "fast", "slow"]
    assert len(cmp.wall_s["slow"]) == len(cmp.wall_s["fast"]) == 4
    speed = cmp.speedup("fast")
    assert 1.5 < speed["median"] < 2.5 and speed["min"] <= speed["median"] <= speed["max"]
    # sleeping uses no CPU: process CPU time stays far below wall time
    assert max(cmp.cpu_s["slow"]) < 0.5 * min(cmp.wall_s["slow"])
    out = cmp.as_dict()
    assert out["threads"] == 1 and set(out["speedup"]) == {"fast"}
    assert out["load_avg_before"] is None or len(out["load_avg_before"]) == 3
    assert out["allocator"] == allocator.describe()  # the policy each call ran under


@pytest.mark.parametrize("n", range(1, 8))
def test_balanced_orders_give_each_candidate_every_position_and_predecessor_alike(n):
    orders = balanced_orders(n)
    assert len(orders) == (2 * n if n % 2 else n)
    assert all(sorted(order) == list(range(n)) for order in orders)
    repeats = len(orders) // n
    for position in range(n):  # each index as often in each position
        assert sorted(order[position] for order in orders) == sorted(list(range(n)) * repeats)
    pairs = [(a, b) for order in orders for a, b in zip(order[:-1], order[1:], strict=True)]
    counts = {pair: pairs.count(pair) for pair in set(pairs)}
    assert len(counts) == n * (n - 1)  # every ordered pair of different indices, equally often
    assert len(set(counts.values())) <= 1


def test_a_candidate_slowed_only_right_after_another_is_not_timed_slow_every_round():
    """What a candidate leaves behind (caches, heap) can slow the next one. Under a plain
    rotation "a" followed "b" in most rounds and measured 3x slower than "c"; balanced, after
    "b" in a third of the rounds, its median is its own time."""
    calls: list[str] = []

    def after_b_slow():
        calls.append("a")
        time.sleep(0.03 if len(calls) > 1 and calls[-2] == "b" else 0.01)

    fns = {"b": _sleeper(0.001, calls, "b"), "a": after_b_slow, "c": _sleeper(0.01, calls, "c")}
    cmp = interleaved(fns, baseline="c", device=CPU, rounds=6, warmup=0)
    assert 0.7 < cmp.speedup("a")["median"] < 1.4


def test_threads_are_pinned_during_and_restored_after():
    before = torch.get_num_threads()
    seen = []
    interleaved({"a": lambda: seen.append(torch.get_num_threads())}, "a", CPU, rounds=2)
    assert set(seen) == {1} and torch.get_num_threads() == before
    with pinned_threads(None) as used:
        assert used == before


def test_unknown_baseline_is_named():
    with pytest.raises(ValueError, match="baseline 'b' is not among a"):
        interleaved({"a": lambda: None}, "b", CPU)


@pytest.mark.gpu
def test_cuda_timing_uses_events():
    device = torch.device("cuda")
    a = torch.randn(2048, 2048, device=device)
    sample = time_call(lambda: a @ a, device, repeats=5)
    assert sample.cpu_s is None and 0 < sample.wall_s < 1.0


def test_speedup_over_another_candidate_than_the_baseline():
    calls: list[str] = []
    fns = {n: _sleeper(t, calls, n) for n, t in (("a", 0.005), ("b", 0.02), ("c", 0.01))}
    cmp = interleaved(fns, baseline="a", device=CPU, rounds=3, warmup=0)
    assert 1.5 < cmp.speedup("c", over="b")["median"] < 2.5  # c is twice as fast as b
    assert cmp.speedup("c")["median"] < 1  # and slower than the baseline a


def _touch_fresh_pages(size: int = 16 << 20) -> None:
    """Map ``size`` fresh bytes and write one byte a page, as a fresh tensor's first fill does."""
    with mmap.mmap(-1, size) as fresh:
        for offset in range(0, size, 4096):
            fresh[offset] = 1


@pytest.mark.skipif(sys.platform == "win32", reason="no getrusage")
def test_page_faults_of_fresh_memory_are_counted_per_call():
    fns = {"fresh": _touch_fresh_pages, "idle": lambda: time.sleep(0.001)}
    cmp = interleaved(fns, baseline="idle", device=CPU, rounds=2, warmup=1)
    # 4096 pages of 4 KB, or 8 of 2 MB where the kernel backs the map with huge pages
    assert min(cmp.page_faults["fresh"]) >= 8 > max(cmp.page_faults["idle"])
    assert all(t >= 0 for t in cmp.kernel_s["fresh"])
    # outside the OS kernel: each round's wall time less its kernel time, ratios from those
    outside = [w - k for w, k in zip(cmp.wall_s["fresh"], cmp.kernel_s["fresh"], strict=True)]
    idle = [w - k for w, k in zip(cmp.wall_s["idle"], cmp.kernel_s["idle"], strict=True)]
    # rounds whose tick-sampled kernel time exceeds their wall time are left out (none left: NaN)
    ratios = [i / f for i, f in zip(idle, outside, strict=True) if i > 0 and f > 0]
    expect = statistics.median(ratios) if ratios else math.nan
    without_faults = cmp.speedup("fresh", "outside_kernel", over="idle")["median"]
    assert without_faults == pytest.approx(expect, nan_ok=True)
    assert cmp.as_dict()["median_page_faults"]["fresh"] >= 8


def test_outside_kernel_leaves_each_rounds_kernel_time_out():
    """Given times, not measured ones: getrusage splits CPU time into user and kernel by tick
    samples, so over a call of a few milliseconds the kernel part can exceed the wall time (in
    one CI run, 2 rounds of a 16 MB first touch gave a median ratio of -32.9)."""
    cmp = Comparison("idle", "cpu", threads=1, rounds=3, repeats=1, load_avg_before=None)
    cmp.wall_s = {"idle": [1.0, 1.0, 1.0], "fresh": [4.0, 5.0, 6.0]}
    cmp.kernel_s = {"idle": [0.0, 0.0, 0.5], "fresh": [3.0, 3.0, 3.0]}
    assert cmp.speedup("fresh", over="idle")["median"] == pytest.approx(1 / 5)
    assert cmp.speedup("fresh", "outside_kernel", over="idle")["median"] == pytest.approx(1 / 2)
    cmp.kernel_s["fresh"] = [3.0, 5.5, 3.0]  # round 2: more kernel time than wall time
    outside = cmp.speedup("fresh", "outside_kernel", over="idle")
    assert outside["median"] == pytest.approx((1 / 1 + 0.5 / 3) / 2)  # rounds 1 and 3 only
    assert outside["min"] > 0
    cmp.kernel_s["fresh"] = [4.0, 5.0, 6.0]  # no round left: no figure, not a wrong one
    assert all(math.isnan(v) for v in cmp.speedup("fresh", "outside_kernel").values())
