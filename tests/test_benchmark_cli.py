"""``pytest --benchmark`` as the project card says: headline figures in the terminal, and saved
runs compared with ``--benchmark-compare``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
QUICK = ["--benchmark-max-time=0.05", "--benchmark-min-rounds=2", "-p", "no:cacheprovider"]


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "--benchmark", *QUICK, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_benchmark_flag_prints_the_ratio_and_scaling_lines():
    proc = _pytest("-k", "ratio or test_scaling", "benchmarks")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "vit_lsla_t / timm swin_tiny inference speed on cpu:" in proc.stdout
    assert "median over 7 interleaved rounds (IQR" in proc.stdout and "1 thread(s)" in proc.stdout
    assert "scaling of msa on cpu: time ~ tokens^" in proc.stdout
    assert "benchmark 'model-ratio'" in proc.stdout  # groups are pytest-benchmark groups


@pytest.mark.slow
def test_saved_runs_are_compared(tmp_path):
    storage = f"--benchmark-storage=file://{tmp_path}"
    select = ["-k", "test_attention and swin- and 14x14", "benchmarks/test_variants.py"]
    for _ in range(2):
        assert _pytest(*select, storage, "--benchmark-autosave").returncode == 0
    proc = _pytest(*select, storage, "--benchmark-compare")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0002" in proc.stdout and "NOW" in proc.stdout  # the saved run beside this one
