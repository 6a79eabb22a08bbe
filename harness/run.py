"""One run = (model preset, variant, dataset, seed, recipe) -> ``result.json``.

``execute`` goes through five named steps: **prepare** (datasets, model), **train** (resuming
from a checkpoint if there is one), **evaluate** (test split, and EMA weights), **measure**
(params, MACs, throughput, memory, attention statistics) and **record** (one atomic
``result.json``). A NaN/inf loss ends the run as ``diverged``, CUDA out-of-memory as ``oom``;
either way a record is written so a sweep can go on and a report can show what happened.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

import variants
from harness import models
from harness.attn_stats import attention_map, attention_statistics, recording_layers
from harness.config import RunConfig
from harness.data import build_dataset, dataset_label, dataset_note
from harness.measure import (
    count_flops,
    count_params,
    environment,
    measure_throughput,
    nvml_memory_used_mb,
)
from harness.results import write_json
from harness.runtime import (
    Dist,
    RunContext,
    distributed,
    make_deterministic,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from harness.tracking import Tracker
from harness.train import (
    Diverged,
    Trainer,
    TrainState,
    evaluate,
    fit,
    require_finite,
    save_weights,
)


@dataclass
class Prepared:
    """What the prepare step builds: the three splits and the model on its device."""

    train: Any
    val: Any
    test: Any
    model: torch.nn.Module


def build_model(cfg: RunConfig, num_classes: int) -> torch.nn.Module:
    overrides: dict[str, Any] = {"num_classes": num_classes, "img_size": cfg.data.img_size}
    variant = cfg.model.variant or models.PRESETS[cfg.model.preset]["attn"]
    overrides["attn"] = variant
    switches = dict(cfg.model.switches)
    fused_switch = variants.get(variant).capabilities.fused_switch
    if cfg.model.kernel == "explicit" and fused_switch:
        switches[fused_switch] = False
    if switches:
        overrides["attn_switches"] = switches
    if cfg.model.drop_path_rate is not None:
        overrides["drop_path_rate"] = cfg.model.drop_path_rate
    return models.create(cfg.model.preset, **overrides)


def _base_record(cfg: RunConfig, model: torch.nn.Module | None) -> dict[str, Any]:
    variant, switches = cfg.model.variant or "?", {}
    if model is not None:
        variant = model.cfg.attn
        switches = dataclasses.asdict(variants.resolve(variant, model.cfg.attn_switches))
    return {
        "experiment": cfg.experiment,
        "run_id": cfg.run_id,
        "arm": cfg.arm,
        "model": cfg.model.preset,
        "variant": variant,
        "switches": switches,
        "dataset": dataset_label(cfg.data),
        "dataset_note": dataset_note(cfg.data.name),
        "seed": cfg.train.seed,
        "recipe": cfg.train.recipe,
        "img_size": cfg.data.img_size,
        "config": cfg.to_dict(),
    }


def prepare(ctx: RunContext) -> Prepared:
    """Datasets (the exact split written to ``split.json``) and the model, seeded."""
    cfg = ctx.cfg
    if ctx.ddp.main:
        write_json(ctx.files.config, cfg.to_dict())
    make_deterministic(cfg.train.deterministic)
    seed_everything(cfg.train.seed)
    splits = [build_dataset(cfg.data, cfg.train, s) for s in ("train", "val", "test")]
    model = build_model(cfg, splits[0].num_classes).to(ctx.device)
    if ctx.ddp.main and hasattr(splits[0], "split_files"):  # the exact re-split, file by file
        write_json(ctx.files.split, {**splits[0].split_info, "files": splits[0].split_files})
    return Prepared(*splits, model)


def _data_record(data: Prepared) -> dict[str, Any]:
    return {
        "num_classes": data.train.num_classes,
        "train_size": len(data.train),
        "val_size": len(data.val),
        "test_size": len(data.test),
        "split": getattr(data.train, "split_info", None),
        "skipped": sorted({*data.train.skipped, *data.val.skipped, *data.test.skipped}),
    }


def _schedule_record(ctx: RunContext, trainer: Trainer) -> dict[str, Any]:
    """The learning rates as configured (per reference batch) and as used (global batch)."""
    t, used = ctx.cfg.train, trainer.schedule
    return {
        "lr_scaling": t.lr_scaling,
        "global_batch": ctx.cfg.data.batch_size * ctx.ddp.world,
        "reference_batch": t.lr_reference_batch,
        **{f"{k}_base": getattr(t, k) for k in ("lr", "min_lr", "warmup_lr")},
        **{k: getattr(used, k) for k in ("lr", "min_lr", "warmup_lr")},
    }


def evaluate_test(ctx: RunContext, trainer: Trainer, test_ds, state: TrainState) -> dict:
    """Test-split metrics of the final weights (and of the EMA weights when EMA is on)."""
    test = evaluate(ctx, trainer.model, test_ds)
    require_finite(test, "test evaluation")
    metrics = {
        "top1": test["top1"],
        "top5": test["top5"],
        "loss": test["loss"],
        "best_val_top1": state.best_top1,
        "epochs": state.epoch,
        # model selection reads only val; test is scored once, here, on the final weights
        "test_weights": f"final (epoch {state.epoch})",
    }
    if trainer.ema is not None:
        ema_test = evaluate(ctx, trainer.ema.module, test_ds, workers=0)
        metrics.update(top1_ema=ema_test["top1"], top5_ema=ema_test["top5"])
    return metrics


def _throughput(ctx: RunContext, model) -> dict[str, Any]:
    m = ctx.cfg.measure
    kw = dict(
        img_size=ctx.cfg.data.img_size,
        batch_size=m.batch_size,
        steps=m.steps,
        warmup=m.warmup,
        precision=ctx.precision,
        channels_last=m.channels_last,
        compiled=m.compile,
    )
    tp = {
        mode: measure_throughput(model, mode=mode, **kw).as_dict()
        for mode in ("inference", "train")
    }
    memory = {
        "peak_allocated_mb": tp["train"]["peak_mem_allocated_mb"],
        "peak_reserved_mb": tp["train"]["peak_mem_reserved_mb"],
        "nvml_used_mb": nvml_memory_used_mb(ctx.device) if ctx.device.type == "cuda" else None,
    }
    return {"throughput": tp, "memory": memory}


def _attention(ctx: RunContext, model, test_ds) -> dict[str, Any]:
    if not recording_layers(model):
        variant = model.cfg.attn
        return {"attn_stats": [], "attn_stats_note": f"variant {variant!r} records no weights"}
    n = min(16, len(test_ds))
    batch = torch.stack([test_ds[i][0] for i in range(n)]).to(ctx.device)
    return {
        "attn_stats": attention_statistics(model, batch),
        "attn_map": attention_map(model, batch),
    }


def measure(ctx: RunContext, model, test_ds) -> dict[str, Any]:
    """Params, MACs, and (as configured) throughput, memory and attention statistics."""
    out: dict[str, Any] = {
        "params": count_params(model),
        "macs": count_flops(model, ctx.cfg.data.img_size),
    }
    out["gmacs"] = out["macs"] / 1e9
    if ctx.cfg.measure.throughput:
        out.update(_throughput(ctx, model))
    if ctx.cfg.measure.attn_stats:
        out.update(_attention(ctx, model, test_ds))
    return out


def _record(ctx: RunContext, record: dict[str, Any], started: float) -> dict[str, Any] | None:
    """Write the record (rank 0) and wait until every rank has seen it."""
    record["wall_time_s"] = time.perf_counter() - started
    record["env"] = environment(ctx.device)
    record["env"].update(precision=ctx.precision, world_size=ctx.ddp.world)
    if ctx.ddp.main:
        write_json(ctx.files.result, record)
        if ctx.tracker is not None:
            ctx.tracker.final(record)
    ctx.ddp.barrier()
    return record if ctx.ddp.main else None


def _run(ctx: RunContext, stop_after: int | None) -> dict[str, Any] | None:
    started = time.perf_counter()
    ctx.files.path.mkdir(parents=True, exist_ok=True)
    data = prepare(ctx)
    record = {**_base_record(ctx.cfg, data.model), "data": _data_record(data)}
    try:
        state, trainer = fit(ctx, data.model, data.train, data.val, stop_after)
        if state.epoch < ctx.cfg.train.epochs:
            return None  # stopped early on purpose; the checkpoint continues the run
        record.update(status="finished", history=state.history)
        record["schedule"] = _schedule_record(ctx, trainer)
        record["metrics"] = evaluate_test(ctx, trainer, data.test, state)
        record["attention_kernels"] = data.model.attention_kernels()  # training and test
        if ctx.ddp.main:
            record["weights"] = save_weights(ctx.files, trainer)
            record.update(measure(ctx, data.model, data.test))
    except Diverged as exc:
        record.update(status="diverged", error=str(exc))
    except torch.cuda.OutOfMemoryError as exc:
        record.update(status="oom", error=str(exc).splitlines()[0])
    return _record(ctx, record, started)


def execute(
    cfg: RunConfig, stop_after: int | None = None, ddp: Dist | None = None
) -> dict[str, Any] | None:
    """Run ``cfg`` to completion (or ``stop_after`` epochs); returns the record on rank 0.

    ``ddp`` is the sweep's process group; without it the run joins (and leaves) one itself.
    """
    with nullcontext(ddp) if ddp is not None else distributed(cfg.train.device) as job:
        device = resolve_device(cfg.train.device, job)
        tracker = Tracker(cfg.run_dir.tensorboard, job.main, print)
        ctx = RunContext(cfg, device, resolve_precision(cfg.train.amp, device), job, tracker)
        try:
            return _run(ctx, stop_after)
        finally:
            tracker.close()


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line; an error re-raised from a DataLoader worker (whose message
    carries the worker's whole traceback) is reduced to the worker's own last line."""
    text = str(exc)
    if "Original Traceback" in text:
        head, _, message = text.strip().splitlines()[-1].partition(": ")
        return f"{head.rsplit('.', 1)[-1]}: {message}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"


def failure_record(cfg: RunConfig, exc: BaseException) -> dict[str, Any]:
    """A record for a run that crashed with an unexpected error (kept so the sweep goes on)."""
    record = _base_record(cfg, None)
    record.update(
        status="failed",
        error=one_line(exc),
        traceback=traceback.format_exc(limit=5),
    )
    return record


__all__ = ["build_model", "execute", "failure_record", "measure", "prepare"]
