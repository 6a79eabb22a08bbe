"""Several plain ``sweep`` processes on one directory: every run trains exactly once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.claims import try_claim
from harness.results import read_record
from tests.test_train import TINY

ROOT = Path(__file__).parents[1]
GRID4 = '[grid]\n"model.variant" = ["swin", "lsla", "wmsa", "qxx"]\n'


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_processes_started_together_share_the_grid(tmp_path, workers):
    exp = tmp_path / "exp.toml"
    text = TINY.replace("epochs = 3", "epochs = 1") + "throughput = false\nattn_stats = false\n"
    exp.write_text(f"out_dir = '{tmp_path}'\n" + text + GRID4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "sweep", str(exp), "--no-progress"]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(workers)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e.decode()[-1500:] for _, e in outputs]
    logs = "".join(out.decode() for out, _ in outputs)
    starts = re.findall(r"\] (variant=\w+): (?:starting|resuming)", logs)
    assert sorted(starts) == sorted(f"variant={v}" for v in ("swin", "lsla", "wmsa", "qxx"))
    records = [read_record(p) for p in (tmp_path / "tiny").rglob("result.json")]
    assert len(records) == 4 and all(r["status"] == "finished" for r in records)
    assert not list((tmp_path / "tiny").rglob("claim.json"))  # every claim released


def test_a_claim_is_exclusive_and_a_dead_holder_is_taken_over(tmp_path):
    path = tmp_path / "run" / "claim.json"
    first = try_claim(path)
    assert first is not None and try_claim(path) is None  # a live holder (this very process)
    first._stop.set()
    text = path.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999')
    path.write_text(text)  # the holder's process is gone from this host
    second = try_claim(path)
    assert second is not None and second.token != first.token
    second.release()
    assert not path.exists()
