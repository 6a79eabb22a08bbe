"""Where a run executes: device, precision, the DDP process group, seeds and RNG state.

``distributed(device)`` is the one place that joins the process group (when launched by
``torchrun``, i.e. ``WORLD_SIZE > 1``) and the one place that leaves it, so a sweep of many runs
shares one group and an error or Ctrl-C still tears it down.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from harness.config import RunConfig
from harness.layout import RunDir


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a decision only rank 0 can make)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


@dataclass(frozen=True)
class RunContext:
    """Everything a step of a run needs besides the model and data: passed as one object."""

    cfg: RunConfig
    device: torch.device
    precision: str
    ddp: Dist
    tracker: Any = None  # harness.tracking.Tracker: event files for TensorBoard

    @property
    def files(self) -> RunDir:
        return self.cfg.run_dir

    def log(self, message: str) -> None:
        """Print on rank 0 only, and keep the line in the run's ``log.txt``."""
        if self.ddp.main:
            print(message, flush=True)
            append_line(self.files.log, message)


def append_line(path: Path, message: str) -> None:
    """One line at the end of a log file (the run directory may not exist yet: then nothing)."""
    if path.parent.is_dir():
        with open(path, "a") as f:
            f.write(message.rstrip("\n") + "\n")


@contextmanager
def distributed(device_pref: str = "auto") -> Iterator[Dist]:
    """Join the process group for the body when launched by ``torchrun``; leave it after."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Dist()
        return
    joined_here = not dist.is_initialized()
    if joined_here:
        use_cuda = device_pref != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    finally:
        if joined_here and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(pref: str, ddp: Dist) -> torch.device:
    """``auto`` is CUDA when present; under DDP each rank takes its local GPU."""
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


def make_deterministic(enabled: bool) -> None:
    if enabled:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and numbers, so that a checkpoint holding it loads with
    ``torch.load(weights_only=True)``."""
    _, py_keys, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"keys": torch.tensor(py_keys, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((3, tuple(py["keys"].tolist()), py["gauss"]))
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
