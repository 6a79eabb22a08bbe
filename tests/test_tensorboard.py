"""Each run writes TensorBoard event files that tensorboard itself reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.sweep import run_sweep
from tests.test_sweep import GRID
from tests.test_train import tiny


def test_a_two_run_sweep_writes_event_files_tensorboard_reads(tmp_path):
    pytest.importorskip("tensorboard")
    runs = tiny(tmp_path, "train.epochs=2", "measure.throughput=false", grid=GRID)
    assert run_sweep(runs, log=lambda *_: None) == {"finished": ["variant=swin", "variant=lsla"]}
    for cfg in runs:
        assert list(cfg.run_dir.tensorboard.rglob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs[1].run_dir.tensorboard)).Reload()
    tags = events.Tags()
    assert {"epoch/train_loss", "epoch/val_top1", "final/metrics.top1"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("epoch/val_top1")] == [1, 2]
    assert {"attention/with_outer", "attention/without_outer"} <= set(tags["images"])
    inspect = [sys.executable, "-m", "tensorboard.main", "--inspect", "--logdir", str(tmp_path)]
    proc = subprocess.run(inspect, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "epoch/val_top1" in proc.stdout + proc.stderr
