"""The benchmark suite is skipped by the normal test run (it times things); run every benchmark
once here, untimed, so an API change cannot leave it broken until someone benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_every_benchmark_runs_once():
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "-q", "-x", "-p", "no:cacheprovider",
           "-o", "addopts=", "--benchmark-disable"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
