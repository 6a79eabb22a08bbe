"""TensorBoard event files for every run, when ``tensorboard`` is installed (optional extra).

Each run writes ``<run_dir>/tensorboard/``: per epoch the training loss, learning rate and the
validation top-1 / top-5 / loss; at the end the test metrics, throughput and memory, the run's
hyper-parameters beside its final metrics (the HPARAMS tab), and the attention map with and
without the outer bias as images. ``tensorboard --logdir runs/EXP`` compares the arms.
Without tensorboard a one-line note says how to get it; training is unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.results import flatten

_noted = False

EPOCH_SCALARS = ("train_loss", "lr", "val_top1", "val_top5", "val_loss", "epoch_time_s")


class Tracker:
    """Writes a run's event files on rank 0; does nothing elsewhere or without tensorboard."""

    def __init__(self, log_dir, enabled: bool, log) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            global _noted
            if not _noted:
                _noted = True
                log(
                    "note: no tensorboard event files (pip install 'vit-lsla-harness[tensorboard]')"
                )
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def epoch(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key in EPOCH_SCALARS:
            if key in row:
                self.writer.add_scalar(f"epoch/{key}", row[key], global_step=row["epoch"])
        self.writer.flush()

    def final(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        flat = flatten(record, skip=("config", "env", "history", "attn_stats", "attn_map"))
        metrics = {k: v for k, v in flat.items() if _is_number(v) and _is_result(k)}
        for key, value in metrics.items():
            self.writer.add_scalar(f"final/{key}", value)
        hparams = {k: v for k, v in flatten(record.get("config", {})).items() if _is_hparam(v)}
        hparams.update({f"switches.{k}": v for k, v in (record.get("switches") or {}).items()})
        self.writer.add_hparams(
            hparams, {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams"
        )
        if record.get("attn_map"):
            self._maps(record["attn_map"])
        self.writer.flush()

    def _maps(self, attn_map: dict[str, Any]) -> None:
        for key in ("without_outer", "with_outer"):
            image = np.asarray(attn_map[key], dtype=np.float32)
            span = float(image.max() - image.min()) or 1.0
            self.writer.add_image(
                f"attention/{key}", (image - image.min()) / span, dataformats="HW"
            )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_result(key: str) -> bool:
    return key.startswith(("metrics.", "throughput.", "memory.")) or key in ("params", "gmacs")


def _is_hparam(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool))
