"""``harness.peak_memory``: the peak one forward adds, measured in a process of its own."""

from __future__ import annotations

import torch

import harness.models as models
from harness.measure import saved_bytes
from harness.peak_memory import forward_peak_bytes


def test_peak_is_the_forwards_own_and_grows_with_the_batch():
    """A child process inherits ``ru_maxrss`` from its parent on Linux; the figure must not."""
    held = torch.ones(256 * 2**20 // 4)  # 256 MiB resident in this (the parent) process
    held.add_(1)
    small = forward_peak_bytes("vit_lsla_micro", 32, {"window": "global"}, batch=1)
    large = forward_peak_bytes("vit_lsla_micro", 32, {"window": "global"}, batch=64)
    assert 0 < small < large < held.numel() * 4


def test_a_training_step_peaks_above_the_inference_forward_by_what_autograd_keeps():
    """With ``train``, forward and backward: the step holds at least the activations autograd
    saves on top of the forward's own peak. A difference, not a ratio: what the environment adds
    to both (20 MB more in tox's environment than in a plain venv) cancels."""
    spec = ("vit_lsla_micro", 32, {"window": "global"})
    inference = forward_peak_bytes(*spec, batch=64)
    step = forward_peak_bytes(*spec, batch=64, train=True)
    torch.manual_seed(0)
    model = models.create(spec[0], attn_switches=spec[2], img_size=spec[1]).train()
    kept = saved_bytes(model, torch.randn(64, 3, spec[1], spec[1]))
    assert step - inference > kept > 0
