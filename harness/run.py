"""One run = (model preset, variant, dataset, seed, recipe) -> ``result.json``.

``execute`` trains (resuming if a checkpoint exists), evaluates on the test split, measures
throughput, memory, params, MACs and attention statistics, and writes the record atomically.
A NaN/inf loss ends the run as ``diverged``; CUDA out-of-memory as ``oom``; either way a record
is written so a sweep can go on and a report can show what happened.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Any

import torch

from harness import models
from harness.attn_stats import attention_map, attention_statistics
from harness.config import RunConfig
from harness.data import STANDIN_NOTE, build_dataset, is_standin
from harness.measure import (
    count_flops,
    count_params,
    environment,
    measure_throughput,
    nvml_memory_used_mb,
)
from harness.results import CONFIG_FILE, RESULT_FILE, write_json
from harness.train import (
    Diverged,
    evaluate,
    fit,
    resolve_device,
    resolve_precision,
    seed_everything,
    setup_distributed,
)


def build_model(cfg: RunConfig, num_classes: int) -> torch.nn.Module:
    overrides: dict[str, Any] = {"num_classes": num_classes, "img_size": cfg.data.img_size}
    if cfg.model.variant:
        overrides["attn"] = cfg.model.variant
    if cfg.model.switches:
        overrides["attn_switches"] = dict(cfg.model.switches)
    if cfg.model.drop_path_rate is not None:
        overrides["drop_path_rate"] = cfg.model.drop_path_rate
    return models.create(cfg.model.preset, **overrides)


def _base_record(cfg: RunConfig, model: torch.nn.Module | None) -> dict[str, Any]:
    attn = model.cfg.attn if model is not None else (cfg.model.variant or "?")
    switches = {}
    if model is not None:
        first = model.attention_modules()[0][1]
        switches = dataclasses.asdict(first.cfg)
    return {
        "experiment": cfg.experiment,
        "run_id": cfg.run_id,
        "model": cfg.model.preset,
        "variant": attn,
        "switches": switches,
        "dataset": cfg.data.name,
        "dataset_note": STANDIN_NOTE if is_standin(cfg.data.name) else "",
        "seed": cfg.train.seed,
        "recipe": cfg.train.recipe,
        "img_size": cfg.data.img_size,
        "config": cfg.to_dict(),
    }


def _measure(model, cfg: RunConfig, device, precision: str) -> dict[str, Any]:
    m = cfg.measure
    out: dict[str, Any] = {
        "params": count_params(model),
        "macs": count_flops(model, cfg.data.img_size),
    }
    out["gmacs"] = out["macs"] / 1e9
    if m.throughput:
        kw = dict(
            img_size=cfg.data.img_size,
            batch_size=m.batch_size,
            steps=m.steps,
            warmup=m.warmup,
            precision=precision,
            channels_last=m.channels_last,
            compiled=m.compile,
        )
        out["throughput"] = {
            mode: measure_throughput(model, mode=mode, **kw).as_dict()
            for mode in ("inference", "train")
        }
        out["memory"] = {
            "peak_allocated_mb": out["throughput"]["train"]["peak_mem_allocated_mb"],
            "peak_reserved_mb": out["throughput"]["train"]["peak_mem_reserved_mb"],
            "nvml_used_mb": nvml_memory_used_mb(device) if device.type == "cuda" else None,
        }
    return out


def execute(cfg: RunConfig, stop_after: int | None = None) -> dict[str, Any] | None:
    """Run ``cfg`` to completion (or ``stop_after`` epochs); returns the record on rank 0."""
    started = time.perf_counter()
    ddp = setup_distributed(cfg.train.device)
    device = resolve_device(cfg.train.device, ddp)
    precision = resolve_precision(cfg.train.amp, device)
    run_dir = cfg.run_dir
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG_FILE, cfg.to_dict())
    if cfg.train.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    seed_everything(cfg.train.seed)

    train_ds = build_dataset(cfg.data, cfg.train, "train")
    val_ds = build_dataset(cfg.data, cfg.train, "val")
    test_ds = build_dataset(cfg.data, cfg.train, "test")
    model = build_model(cfg, train_ds.num_classes).to(device)
    record = _base_record(cfg, model)
    if ddp.main and hasattr(train_ds, "split_files"):  # the exact re-split, file by file
        write_json(run_dir / "split.json", {**train_ds.split_info, "files": train_ds.split_files})
    record["data"] = {
        "num_classes": train_ds.num_classes,
        "train_size": len(train_ds),
        "val_size": len(val_ds),
        "test_size": len(test_ds),
        "split": getattr(train_ds, "split_info", None),
        "skipped": sorted({*train_ds.skipped, *val_ds.skipped, *test_ds.skipped}),
    }
    try:
        state, ema = fit(model, train_ds, val_ds, cfg, device, precision, ddp, stop_after)
        if state.epoch < cfg.train.epochs:
            return None  # stopped early on purpose; the checkpoint continues the run
        record["history"] = state.history
        record["status"] = "finished"
        test = evaluate(
            model, test_ds, cfg.data.eval_batch_size, cfg.data.num_workers, device, precision, ddp
        )
        record["metrics"] = {
            "top1": test["top1"],
            "top5": test["top5"],
            "loss": test["loss"],
            "best_val_top1": state.best_top1,
            "epochs": state.epoch,
        }
        if ema is not None:
            ema_test = evaluate(
                ema.module, test_ds, cfg.data.eval_batch_size, 0, device, precision, ddp
            )
            record["metrics"].update(top1_ema=ema_test["top1"], top5_ema=ema_test["top5"])
        if ddp.main:
            record.update(_measure(model, cfg, device, precision))
            if cfg.measure.attn_stats:
                batch = torch.stack([test_ds[i][0] for i in range(min(16, len(test_ds)))])
                record["attn_stats"] = attention_statistics(model, batch.to(device))
                record["attn_map"] = attention_map(model, batch.to(device))
    except Diverged as exc:
        record.update(status="diverged", error=str(exc))
    except torch.cuda.OutOfMemoryError as exc:
        record.update(status="oom", error=str(exc).splitlines()[0])
    record["wall_time_s"] = time.perf_counter() - started
    record["env"] = environment(device)
    record["env"].update(precision=precision, world_size=ddp.world)
    if ddp.main:
        write_json(run_dir / RESULT_FILE, record)
    if ddp.enabled:  # every rank sees the record before the sweep looks at the next run
        torch.distributed.barrier()
    return record if ddp.main else None


def failure_record(cfg: RunConfig, exc: BaseException) -> dict[str, Any]:
    """A record for a run that crashed with an unexpected error (kept so the sweep goes on)."""
    record = _base_record(cfg, None)
    record.update(
        status="failed",
        error=f"{type(exc).__name__}: {exc}",
        traceback=traceback.format_exc(limit=5),
    )
    return record


__all__ = ["build_model", "execute", "failure_record"]
