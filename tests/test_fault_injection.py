"""Seeded kill -9 at 24 points around checkpoint, record, log and table writes: after each one,
every finished record is intact and equal to an uninterrupted run's (see tests/fault_driver.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_train import TINY

ROOT = Path(__file__).parents[1]
GRID = '[grid]\n"model.variant" = ["swin", "lsla"]\n'


@pytest.mark.slow
def test_random_kills_never_lose_or_alter_a_finished_run(tmp_path):
    exp = tmp_path / "exp.toml"
    text = TINY.replace("epochs = 3", "epochs = 2").replace("limit_train = 96", "limit_train = 64")
    exp.write_text(text + "attn_stats = false\nthroughput = false\n" + GRID)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "tests" / "fault_driver.py"), str(exp), "7", "24"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["equal"] and summary["runs"] == ["variant=lsla", "variant=swin"]
    assert summary["kills"] >= 20, summary  # most attempts really were killed mid-write
