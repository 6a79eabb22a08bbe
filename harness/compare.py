"""Speed and memory of an experiment's arms, measured against each other the honest way.

Each run measures its own throughput, alone and at another moment; ratios between such numbers
mix the arms with the machine's mood. ``compare_arms`` builds one model per arm (as its runs
build it, untrained: speed does not depend on the weights) and times every arm in one process,
interleaved over rounds at a pinned thread count (``harness.timing``), a training step and an
inference forward at the experiment's measurement batch, and counts each arm's saved activations
exactly. ``python -m harness compare EXP.toml`` writes ``<out_dir>/<experiment>/arms.json``;
the report shows each arm against the baseline with the spread of the per-round ratios.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from harness.config import RunConfig
from harness.layout import ExperimentDir
from harness.measure import autocast, saved_bytes
from harness.results import write_json
from harness.runtime import Dist, resolve_device, resolve_precision
from harness.timing import interleaved


def _one_per_arm(runs: list[RunConfig]) -> dict[str, RunConfig]:
    arms: dict[str, RunConfig] = {}
    for run in runs:
        arms.setdefault(run.arm, run)
    return arms


def _steps(cfg: RunConfig, device: torch.device, precision: str, num_classes: int):
    from harness.run import build_model

    torch.manual_seed(0)
    model = build_model(cfg, num_classes).to(device)
    x = torch.randn(cfg.measure.batch_size, 3, cfg.data.img_size, cfg.data.img_size, device=device)

    def inference() -> None:
        model.eval()
        with torch.inference_mode(), autocast(device, precision):
            model(x)

    def train() -> None:
        model.train()
        with autocast(device, precision):
            loss = model(x).float().logsumexp(-1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.train()
    saved = saved_bytes(model, x) / x.shape[0]
    return inference, train, saved


def compare_arms(
    runs: list[RunConfig], num_classes: int, rounds: int = 7, threads: int | None = 1
) -> dict[str, Any]:
    """Interleaved inference and training-step times of every arm, and their saved activations."""
    arms = _one_per_arm(runs)
    first = next(iter(arms.values()))
    baseline = first.baseline if first.baseline in arms else next(iter(arms))
    device = resolve_device(first.train.device, Dist())
    precision = resolve_precision(first.train.amp, device)
    built = {arm: _steps(cfg, device, precision, num_classes) for arm, cfg in arms.items()}
    out: dict[str, Any] = dict(baseline=baseline, device=str(device), precision=precision)
    out.update(batch_size=first.measure.batch_size, img_size=first.data.img_size, rounds=rounds)
    out["machine"] = platform.node()
    out["cpu_count"] = os.cpu_count()
    out["arms"] = {arm: {"saved_mb_per_image": b[2] / 2**20} for arm, b in built.items()}
    for i, mode in enumerate(("inference", "train")):
        fns = {arm: b[i] for arm, b in built.items()}
        cmp = interleaved(fns, baseline, device, rounds=rounds, threads=threads)
        out.update(threads=cmp.threads, load_avg=cmp.load_avg_before, allocator=cmp.allocator)
        out["round_order"] = cmp.round_order
        medians = cmp.as_dict()
        for arm, stats in out["arms"].items():
            stats[f"{mode}_ms_median"] = 1e3 * medians["median_s"][arm]
            stats[f"{mode}_page_faults"] = medians["median_page_faults"].get(arm)
            s = cmp.speedup(arm)
            stats[f"{mode}_speedup"] = [s["median"], s["q1"], s["q3"]]
    base_saved = out["arms"][baseline]["saved_mb_per_image"]
    for stats in out["arms"].values():
        stats["saved_ratio"] = stats["saved_mb_per_image"] / base_saved
    return out


def write_comparison(runs: list[RunConfig], result: dict[str, Any]) -> ExperimentDir:
    exp = ExperimentDir(Path(runs[0].out_dir) / runs[0].experiment)
    write_json(exp.arms, result)
    return exp
