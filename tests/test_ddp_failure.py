"""A DDP sweep where one rank hits a bad image stops every rank in seconds, and the record keeps
the real error (before: the healthy rank waited out gloo's 30-minute timeout)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import read_json
from tests.fakedata import make_ip102
from tests.test_train import TINY

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_one_rank_failing_stops_the_job_with_the_real_error(tmp_path):
    data = make_ip102(tmp_path / "ip", per_split=(16, 8, 8))
    bad = data / "images" / "00017.jpg"  # val index 1: evaluated by rank 1 of 2
    bad.write_bytes(bad.read_bytes()[:40])
    exp = tmp_path / "exp.toml"
    exp.write_text(
        f'out_dir = "{tmp_path}"\n' + TINY + '[grid]\n"model.variant" = ["swin", "lsla"]\n'
    )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "harness", "sweep", str(exp), "--no-progress",
        "--set", "data.name='ip102'", "--set", f"data.root='{data}'", "--set", "data.batch_size=4",
        "--set", "train.epochs=1", "--set", "measure.throughput=false",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    took = time.monotonic() - start
    assert proc.returncode != 0 and took < 120, (took, proc.stderr[-3000:])
    run = tmp_path / "tiny" / "variant=swin"
    record = read_json(run / "result.json")
    assert record["status"] == "failed"
    assert record["error"].startswith("rank 1: DataError: ") and "00017.jpg" in record["error"]
    assert set(record["ranks"]) == {"0", "1"}
    assert read_json(run / "failure.rank1.json")["echo"] is False
    assert "failed on rank 1: DataError" in proc.stderr and "Traceback" not in proc.stdout
    assert not (tmp_path / "tiny" / "variant=lsla").exists()  # the job stopped; nothing hung
