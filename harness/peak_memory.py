"""Peak memory of one inference forward (or one training step) of a preset, each measured on
its own.

On CUDA the allocator's own peak (``torch.cuda.max_memory_allocated``) is exact. On CPU there is
no allocator counter, so the forward runs in a fresh Python process and the figure is the rise of
that process's peak resident set (``VmHWM``) over what model and input already held; one
process per measurement, so one model's high-water mark never hides another's. It is the first
forward's peak, so it includes what inference builds once and keeps (the linear layers' packed
weights, ``variants._linear.packed_weight``: 89 of vit_lsla_t's 125 MB at 224 px, batch 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import torch


def forward_peak_bytes(
    preset: str,
    img_size: int,
    switches: dict[str, Any] | None = None,
    batch: int = 1,
    device: torch.device | str = "cpu",
    timeout_s: float = 600.0,
    train: bool = False,
) -> int:
    """Bytes one inference forward of ``preset`` (attention ``switches``) adds to the peak;
    with ``train``, one training step's forward and backward (bf16 autocast on CUDA)."""
    device = torch.device(device)
    spec = dict(preset=preset, img_size=img_size, switches=switches or {}, batch=batch)
    spec["train"] = train
    if device.type == "cuda":
        return _measure(**spec, device=device)
    cmd = [sys.executable, "-m", "harness.peak_memory", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peak-memory process for {preset} failed: {done.stderr[-2000:]}")
    return int(done.stdout.split()[-1])


def _rss_peak_bytes() -> int:
    """This process's peak resident set. ``VmHWM`` belongs to the process's own memory map;
    ``ru_maxrss`` is not used because Linux carries it across ``exec`` from the parent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak CPU memory needs Linux")


def _measure(
    preset: str,
    img_size: int,
    switches: dict[str, Any],
    batch: int,
    device: torch.device,
    train: bool = False,
) -> int:
    import harness.models as models  # noqa: PLC0415  (only the measuring process needs timm)
    from harness.measure import autocast  # noqa: PLC0415

    model = models.create(preset, attn_switches=switches, img_size=img_size).to(device)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if cuda else _rss_peak_bytes()
    if train:
        with autocast(device, "bf16" if cuda else "fp32"):
            loss = model.train()(x).float().logsumexp(-1).mean()
        loss.backward()
    else:
        with torch.inference_mode():
            model.eval()(x)
    return (torch.cuda.max_memory_allocated(device) if cuda else _rss_peak_bytes()) - before


if __name__ == "__main__":  # the measuring process: one JSON spec in, one byte count out
    torch.set_num_threads(1)
    print(_measure(**json.loads(sys.argv[1]), device=torch.device("cpu")))
