"""``harness.peak_memory``: the peak one forward adds, measured in a process of its own."""

from __future__ import annotations

import torch

from harness.peak_memory import forward_peak_bytes


def test_peak_is_the_forwards_own_and_grows_with_the_batch():
    """A child process inherits ``ru_maxrss`` from its parent on Linux; the figure must not."""
    held = torch.ones(256 * 2**20 // 4)  # 256 MiB resident in this (the parent) process
    held.add_(1)
    small = forward_peak_bytes("vit_lsla_micro", 32, {"window": "global"}, batch=1)
    large = forward_peak_bytes("vit_lsla_micro", 32, {"window": "global"}, batch=64)
    assert 0 < small < large < held.numel() * 4


def test_a_training_step_peaks_above_the_inference_forward():
    """With ``train``, forward and backward: autograd keeps the activations (about 2x here)."""
    spec = ("vit_lsla_micro", 32, {"window": "global"})
    # the least of two fresh processes each: what else a process touches only adds to a peak
    # (one inference in a clean clone's first test run peaked at 48 MB against 25 in the others)
    inference = min(forward_peak_bytes(*spec, batch=64) for _ in range(2))
    step = min(forward_peak_bytes(*spec, batch=64, train=True) for _ in range(2))
    assert step > 1.5 * inference
