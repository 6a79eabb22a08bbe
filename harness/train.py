"""The training loop: AdamW, warmup + cosine, grad clipping, autocast, EMA, DDP, exact resume.

Resume is exact: a checkpoint written after every epoch holds model, optimizer, scaler, EMA,
epoch counter and the RNG states (torch, CUDA, numpy, python); data order is drawn from a
generator seeded by (seed, epoch). On CPU a killed run that resumes ends bitwise equal to an
uninterrupted one (tested). Under ``torchrun`` the loop runs DDP (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset

from harness.config import RunConfig, TrainConfig
from harness.data import make_mixup
from harness.measure import autocast
from harness.results import write_jsonl

CHECKPOINT = "checkpoint.pt"


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_distributed(device_pref: str) -> Dist:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        use_cuda = device_pref != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(pref: str, ddp: Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"train.device={pref!r} but CUDA is not available; use 'cpu' or 'auto'"
            )
        if ddp.enabled:
            device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device


def resolve_precision(amp: str, device: torch.device) -> str:
    if amp == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return amp


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_at(step: int, total: int, warmup: int, t: TrainConfig) -> float:
    """Linear warmup from ``warmup_lr`` to ``lr``, then cosine decay to ``min_lr`` (per step)."""
    if step < warmup:
        return t.warmup_lr + (t.lr - t.warmup_lr) * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms and relative-position tables (as Swin does)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or "relative_position_bias_table" in name
        (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float = 0.0


def save_checkpoint(path: Path, model, optimizer, scaler, ema, state: TrainState) -> None:
    """Atomic write of everything needed to continue exactly where this epoch ended."""
    raw = model.module if hasattr(model, "module") else model
    payload = {
        "model": raw.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema else None,
        "state": state.__dict__,
        "rng": rng_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, optimizer, scaler, ema) -> TrainState:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    raw = model.module if hasattr(model, "module") else model
    raw.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scaler.load_state_dict(payload["scaler"])
    if ema is not None and payload["ema"] is not None:
        ema.load_state_dict(payload["ema"])
    set_rng_state(payload["rng"])
    return TrainState(**payload["state"])


def make_loader(
    ds,
    batch_size: int,
    workers: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    ddp: Dist,
    drop_last: bool,
) -> DataLoader:
    """Order depends only on (seed, epoch): resuming at epoch k replays epoch k exactly."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if ddp.enabled:  # every rank takes its own strided shard of one shared permutation
        order = torch.randperm(len(ds), generator=g) if shuffle else torch.arange(len(ds))
        ds = Subset(ds, order[ddp.rank :: ddp.world].tolist())
        sampler = None
    else:
        sampler = RandomSampler(ds, generator=g) if shuffle else None
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        generator=g,
        persistent_workers=False,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    ds,
    batch_size: int,
    workers: int,
    device: torch.device,
    precision: str,
    ddp: Dist,
) -> dict[str, float]:
    """top-1 / top-5 / loss over ``ds``; under DDP each rank scores a shard and sums are reduced."""
    model.eval()
    if ddp.enabled:
        ds = Subset(ds, list(range(ddp.rank, len(ds), ddp.world)))
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # n, top1, top5, loss
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with autocast(device, precision):
            logits = model(x).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        sums += torch.stack(
            [
                torch.tensor(len(y), device=device, dtype=torch.float64),
                (top[:, 0] == y).sum().double(),
                (top == y[:, None]).any(1).sum().double(),
                F.cross_entropy(logits, y, reduction="sum").double(),
            ]
        )
    if ddp.enabled:
        dist.all_reduce(sums)
    n = max(sums[0].item(), 1.0)
    return {
        "top1": 100 * sums[1].item() / n,
        "top5": 100 * sums[2].item() / n,
        "loss": sums[3].item() / n,
        "n": int(sums[0].item()),
    }


def train_epoch(
    model,
    loader,
    optimizer,
    scaler,
    ema,
    mixup,
    state: TrainState,
    total: int,
    warmup: int,
    cfg: RunConfig,
    device,
    precision: str,
    ddp: Dist,
) -> dict[str, float]:
    t = cfg.train
    model.train()
    show = t.progress and ddp.main
    if show:
        from tqdm.auto import tqdm

        loader = tqdm(
            loader,
            desc=f"{cfg.run_id} ep {state.epoch + 1}/{t.epochs}",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
    loss_sum, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state.step, total, warmup, t)
        if mixup is not None:
            x, y = mixup(x, y)
        with autocast(device, precision):
            logits = model(x)
        logits = logits.float()
        if mixup is not None:
            loss = torch.sum(-y * F.log_softmax(logits, dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
        if not torch.isfinite(loss):
            raise Diverged(f"loss is {loss.item()} at epoch {state.epoch + 1}, step {state.step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if t.clip_grad:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(model.module if hasattr(model, "module") else model, step=state.step)
        state.step += 1
        loss_sum, n = loss_sum + loss.item() * len(x), n + len(x)
        if show:
            loader.set_postfix(
                loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}"
            )
    return {"train_loss": loss_sum / max(n, 1), "lr": optimizer.param_groups[0]["lr"]}


def fit(
    model: nn.Module,
    train_ds,
    val_ds,
    cfg: RunConfig,
    device: torch.device,
    precision: str,
    ddp: Dist,
    stop_after: int | None = None,
) -> tuple[TrainState, Any]:
    """Train to ``cfg.train.epochs`` (resuming from the run's checkpoint if present).

    ``stop_after`` ends the process's work after that many epochs *of this call* (used to test
    resume); the checkpoint then continues the run.
    """
    t = cfg.train
    run_dir = cfg.run_dir
    if t.mixup > 0 or t.cutmix > 0:
        if cfg.data.batch_size % 2:
            raise ValueError(
                f"data.batch_size={cfg.data.batch_size} must be even with mixup/cutmix"
            )
    mixup = make_mixup(t, train_ds.num_classes)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    ema = None
    if t.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=t.ema_decay, device=device)
    net = nn.parallel.DistributedDataParallel(model) if ddp.enabled else model

    state = TrainState()
    ckpt = run_dir / CHECKPOINT
    if ckpt.exists():
        state = load_checkpoint(ckpt, net, optimizer, scaler, ema)
    steps_per_epoch = len(
        make_loader(train_ds, cfg.data.batch_size, 0, True, t.seed, 0, ddp, drop_last=True)
    )
    if steps_per_epoch == 0:
        raise ValueError(
            f"data.batch_size={cfg.data.batch_size} is larger than the training set "
            f"({len(train_ds)} images per process)"
        )
    total, warmup = steps_per_epoch * t.epochs, steps_per_epoch * t.warmup_epochs
    done_now = 0
    while state.epoch < t.epochs and (stop_after is None or done_now < stop_after):
        start = time.perf_counter()
        loader = make_loader(
            train_ds,
            cfg.data.batch_size,
            cfg.data.num_workers,
            True,
            t.seed,
            state.epoch,
            ddp,
            drop_last=True,
        )
        row = train_epoch(
            net,
            loader,
            optimizer,
            scaler,
            ema,
            mixup,
            state,
            total,
            warmup,
            cfg,
            device,
            precision,
            ddp,
        )
        val = evaluate(
            model, val_ds, cfg.data.eval_batch_size, cfg.data.num_workers, device, precision, ddp
        )
        state.epoch += 1
        done_now += 1
        state.best_top1 = max(state.best_top1, val["top1"])
        row = {
            "epoch": state.epoch,
            **row,
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "val_loss": val["loss"],
            "epoch_time_s": time.perf_counter() - start,
        }
        state.history.append(row)
        if ddp.main:
            print(
                f"[{cfg.experiment}/{cfg.run_id}] epoch {state.epoch}/{t.epochs} "
                f"loss {row['train_loss']:.4f} val top1 {val['top1']:.2f} top5 {val['top5']:.2f} "
                f"lr {row['lr']:.2e} {row['epoch_time_s']:.1f}s",
                flush=True,
            )
            save_checkpoint(ckpt, net, optimizer, scaler, ema, state)
            write_jsonl(run_dir / "metrics.jsonl", state.history)
        if ddp.enabled:
            dist.barrier()
    return state, ema
