"""The training loop: AdamW, warmup + cosine, grad clipping, autocast, EMA, DDP, exact resume.

Resume is exact: a checkpoint written after every epoch holds model, optimizer, scaler, EMA,
epoch counter and the RNG states (torch, CUDA, numpy, python); data order is drawn from a
generator seeded by (seed, epoch). On CPU a killed run that resumes ends bitwise equal to an
uninterrupted one (tested). Under ``torchrun`` the loop runs DDP (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset

from harness.config import TrainConfig
from harness.layout import RunDir
from harness.measure import autocast
from harness.results import write_jsonl
from harness.runtime import RunContext, rng_state, set_rng_state
from harness.transforms import make_mixup


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


def require_finite(metrics: dict[str, float], where: str) -> None:
    """A NaN/inf loss or metric means the weights blew up: the run diverged, it did not finish."""
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise Diverged(f"{where}: {shown}")


def effective_schedule(t: TrainConfig, global_batch: int) -> TrainConfig:
    """``t`` with its learning rates scaled to ``global_batch`` when ``lr_scaling`` is linear."""
    if t.lr_scaling == "none":
        return t
    f = global_batch / t.lr_reference_batch
    return dataclasses.replace(t, lr=t.lr * f, min_lr=t.min_lr * f, warmup_lr=t.warmup_lr * f)


def lr_at(step: int, total: int, warmup: int, t: TrainConfig) -> float:
    """Linear warmup from ``warmup_lr`` to ``lr``, then cosine decay to ``min_lr`` (per step)."""
    if step < warmup:
        return t.warmup_lr + (t.lr - t.warmup_lr) * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm's rule: no weight decay on biases, norms and what ``model.no_weight_decay()`` names
    (the relative-position tables, as Swin does)."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float = 0.0


@dataclass
class Trainer:
    """The objects one training run updates, built once by ``build_trainer``."""

    model: nn.Module  # the raw model: evaluation, EMA and checkpoints use it
    net: nn.Module  # what the loop calls: the DDP wrapper under torchrun, else the model
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: Any  # timm ModelEmaV3 or None
    mixup: Any  # timm Mixup or None
    schedule: TrainConfig  # the recipe with its learning rates scaled to the global batch
    total_steps: int  # of the whole schedule (all epochs)
    warmup_steps: int


def save_checkpoint(files: RunDir, trainer: Trainer, state: TrainState) -> None:
    """Everything needed to continue exactly where this epoch ended, written atomically.

    The bytes reach the disk (fsync) before the rename, and the previous checkpoint is kept as
    ``checkpoint.prev.pt`` so a damaged latest one still leaves an epoch to resume from. A failed
    write (disk full, say) leaves no temporary file behind.
    """
    # timm's key names: timm.create_model(preset, checkpoint_path=...) reads state_dict_ema when
    # present (else state_dict), and everything loads with torch.load(weights_only=True)
    payload = {
        "arch": getattr(trainer.model, "pretrained_cfg", {}).get("architecture"),
        "state_dict": trainer.model.state_dict(),
        "state_dict_ema": trainer.ema.module.state_dict() if trainer.ema else None,
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "state": dataclasses.asdict(state),
        "rng": rng_state(),
    }
    fd, tmp = tempfile.mkstemp(dir=files.path, prefix=".checkpoint.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        if files.checkpoint.exists():
            os.replace(files.checkpoint, files.previous_checkpoint)
        os.replace(tmp, files.checkpoint)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(files: RunDir, trainer: Trainer) -> dict[str, str]:
    """The finished run's weights as ``model.safetensors``: the EMA weights when EMA is on (the
    file's metadata and the returned entry say which), loadable with
    ``timm.create_model(preset, checkpoint_path=...)``."""
    source = "ema" if trainer.ema is not None else "final"
    module = trainer.ema.module if trainer.ema is not None else trainer.model
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    arch = getattr(trainer.model, "pretrained_cfg", {}).get("architecture") or ""
    tmp = files.weights.with_name(".model.safetensors.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "weights": source, "arch": arch})
    os.replace(tmp, files.weights)
    return {"file": files.weights.name, "weights": source}


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises zip, unpickling and EOF errors of many kinds for bad bytes
        return None
    return payload if isinstance(payload, dict) and "state" in payload else None


def resume_point(files: RunDir, log) -> dict[str, Any] | None:
    """The newest readable checkpoint (latest, else the previous one); damaged ones are set aside
    under ``*.unreadable`` and named, so a run never fails forever on a half-written file."""
    for path in (files.checkpoint, files.previous_checkpoint):
        if not path.exists():
            continue
        payload = _read_checkpoint(path)
        if payload is not None:
            return payload
        path.replace(path.with_name(path.name + ".unreadable"))
        log(f"warning: {path} is unreadable; kept as {path.name}.unreadable")
    return None


def load_checkpoint(payload: dict[str, Any], trainer: Trainer) -> TrainState:
    trainer.model.load_state_dict(payload["state_dict"])
    trainer.optimizer.load_state_dict(payload["optimizer"])
    trainer.scaler.load_state_dict(payload["scaler"])
    if trainer.ema is not None and payload["state_dict_ema"] is not None:
        trainer.ema.module.load_state_dict(payload["state_dict_ema"])
    set_rng_state(payload["rng"])
    return TrainState(**payload["state"])


def make_loader(ctx: RunContext, ds, epoch: int, workers: int | None = None) -> DataLoader:
    """Shuffled training batches whose order depends only on (seed, epoch): resuming at epoch k
    replays epoch k exactly. The last incomplete batch is dropped."""
    data, ddp = ctx.cfg.data, ctx.ddp
    workers = data.num_workers if workers is None else workers
    g = torch.Generator().manual_seed(ctx.cfg.train.seed * 100_003 + epoch)
    if ddp.enabled:  # every rank takes its own strided shard of one shared permutation
        order = torch.randperm(len(ds), generator=g)
        ds = Subset(ds, order[ddp.rank :: ddp.world].tolist())
        sampler = None
    else:
        sampler = RandomSampler(ds, generator=g)
    return DataLoader(
        ds,
        batch_size=data.batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        generator=g,
    )


@torch.no_grad()
def evaluate(ctx: RunContext, model: nn.Module, ds, workers: int | None = None) -> dict[str, float]:
    """top-1 / top-5 / loss over ``ds``; under DDP each rank scores a shard and sums are reduced."""
    model.eval()
    device, data = ctx.device, ctx.cfg.data
    if ctx.ddp.enabled:
        ds = Subset(ds, list(range(ctx.ddp.rank, len(ds), ctx.ddp.world)))
    workers = data.num_workers if workers is None else workers
    loader = DataLoader(ds, batch_size=data.eval_batch_size, num_workers=workers)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # n, top1, top5, loss
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with autocast(device, ctx.precision):
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        sums += torch.stack(
            [
                torch.tensor(len(y), device=device, dtype=torch.float64),
                (top[:, 0] == y).sum().double(),
                (top == y[:, None]).any(1).sum().double(),
                F.cross_entropy(logits, y, reduction="sum").double(),
            ]
        )
    if ctx.ddp.enabled:
        dist.all_reduce(sums)
    n = max(sums[0].item(), 1.0)
    return {
        "top1": 100 * sums[1].item() / n,
        "top5": 100 * sums[2].item() / n,
        "loss": sums[3].item() / n,
        "n": int(sums[0].item()),
    }


def _progress(ctx: RunContext, loader, state: TrainState):
    t = ctx.cfg.train
    if not (t.progress and ctx.ddp.main and sys.stderr.isatty()):  # bars only on a terminal
        return loader
    from tqdm.auto import tqdm

    desc = f"{ctx.cfg.run_id} ep {state.epoch + 1}/{t.epochs}"
    return tqdm(loader, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def _loss(ctx: RunContext, trainer: Trainer, x, y) -> torch.Tensor:
    if trainer.mixup is not None:
        x, y = trainer.mixup(x, y)
    with autocast(ctx.device, ctx.precision):
        logits = trainer.net(x)
    logits = logits.float()
    if trainer.mixup is not None:  # soft targets, label smoothing already applied by Mixup
        return torch.sum(-y * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, y, label_smoothing=ctx.cfg.train.label_smoothing)


def train_epoch(ctx: RunContext, trainer: Trainer, train_ds, state: TrainState) -> dict[str, float]:
    """One pass over the training set; updates ``state.step`` and the model."""
    t = ctx.cfg.train
    trainer.net.train()
    loader = _progress(ctx, make_loader(ctx, train_ds, state.epoch), state)
    optimizer, scaler = trainer.optimizer, trainer.scaler
    loss_sum, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        lr = lr_at(state.step, trainer.total_steps, trainer.warmup_steps, trainer.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _loss(ctx, trainer, x, y)
        if not torch.isfinite(loss):
            raise Diverged(f"loss is {loss.item()} at epoch {state.epoch + 1}, step {state.step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if t.clip_grad:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(trainer.net.parameters(), t.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        if trainer.ema is not None:
            trainer.ema.update(trainer.model, step=state.step)
        state.step += 1
        loss_sum, n = loss_sum + loss.item() * len(x), n + len(x)
        if hasattr(loader, "set_postfix"):
            loader.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
    return {"train_loss": loss_sum / max(n, 1), "lr": optimizer.param_groups[0]["lr"]}


def build_trainer(ctx: RunContext, model: nn.Module, train_ds) -> Trainer:
    """Optimizer, scaler, EMA, mixing and the schedule's length for ``model`` on ``train_ds``."""
    t, data = ctx.cfg.train, ctx.cfg.data
    if (t.mixup > 0 or t.cutmix > 0) and data.batch_size % 2:
        raise ValueError(f"data.batch_size={data.batch_size} must be even with mixup/cutmix")
    steps = len(make_loader(ctx, train_ds, epoch=0, workers=0))
    if steps == 0:
        raise ValueError(
            f"data.batch_size={data.batch_size} is larger than the training set "
            f"({len(train_ds)} images per process)"
        )
    schedule = effective_schedule(t, data.batch_size * ctx.ddp.world)
    if t.grad_checkpointing:
        model.set_grad_checkpointing(True)
    ema = None
    if t.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=t.ema_decay, device=ctx.device)
    return Trainer(
        model=model,
        net=nn.parallel.DistributedDataParallel(model) if ctx.ddp.enabled else model,
        optimizer=torch.optim.AdamW(param_groups(model, t.weight_decay), lr=schedule.lr),
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=ctx.precision == "fp16"),
        ema=ema,
        mixup=make_mixup(t, train_ds.num_classes),
        schedule=schedule,
        total_steps=steps * t.epochs,
        warmup_steps=steps * t.warmup_epochs,
    )


def _end_epoch(ctx: RunContext, trainer: Trainer, state: TrainState, row: dict[str, Any]) -> None:
    """Log the epoch, then checkpoint it and its metrics (rank 0), then wait for every rank."""
    t = ctx.cfg.train
    state.history.append(row)
    ctx.log(
        f"[{ctx.cfg.experiment}/{ctx.cfg.run_id}] epoch {state.epoch}/{t.epochs} "
        f"loss {row['train_loss']:.4f} val top1 {row['val_top1']:.2f} top5 {row['val_top5']:.2f} "
        f"lr {row['lr']:.2e} {row['epoch_time_s']:.1f}s"
    )
    if ctx.ddp.main:
        save_checkpoint(ctx.files, trainer, state)
        write_jsonl(ctx.files.metrics, state.history)
        if ctx.tracker is not None:
            ctx.tracker.epoch(row)
    ctx.ddp.barrier()


def fit(
    ctx: RunContext, model: nn.Module, train_ds, val_ds, stop_after: int | None = None
) -> tuple[TrainState, Trainer]:
    """Train to ``train.epochs``, resuming from the run's checkpoint if there is one.

    ``stop_after`` ends this call after that many epochs (the checkpoint continues the run).
    """
    trainer = build_trainer(ctx, model, train_ds)
    state = TrainState()
    payload = resume_point(ctx.files, ctx.log)
    if payload is not None:
        state = load_checkpoint(payload, trainer)
        ctx.log(f"[{ctx.cfg.experiment}/{ctx.cfg.run_id}] resuming after epoch {state.epoch}")
    done_now = 0
    while state.epoch < ctx.cfg.train.epochs and (stop_after is None or done_now < stop_after):
        start = time.perf_counter()
        row = train_epoch(ctx, trainer, train_ds, state)
        val = evaluate(ctx, model, val_ds)
        require_finite(val, f"validation after epoch {state.epoch + 1}")
        state.epoch += 1
        done_now += 1
        state.best_top1 = max(state.best_top1, val["top1"])
        row = {"epoch": state.epoch, **row, "val_top1": val["top1"], "val_top5": val["top5"]}
        row.update(val_loss=val["loss"], epoch_time_s=time.perf_counter() - start)
        _end_epoch(ctx, trainer, state, row)
    return state, trainer
